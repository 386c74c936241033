package sip

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

// DefaultKeepalive is how often registered phones get a NAT keepalive:
// under the 30 s that the stingiest NATs keep an idle UDP mapping.
const DefaultKeepalive = 25 * time.Second

// keepalivePing is what a keepalive sends: a double CRLF, RFC 5626
// §4.4.1's ping. On TCP and TLS every SIP stack must skip CRLFs between
// messages (RFC 3261 §7.5). On UDP we send the same 4 bytes rather than an
// OPTIONS: it is what PJSIP, Linphone and most phones send themselves and
// ignore when received, it opens no transaction and asks nothing back, and
// an OPTIONS the phone does not answer would be retransmitted for 32 s.
var keepalivePing = []byte("\r\n\r\n")

// keepaliveTarget is one registered binding that gets keepalives.
type keepaliveTarget struct {
	source    string // "ip:port" the REGISTER came from: the NAT's mapping
	transport string
	expires   time.Time
}

// keepalives are the bindings that get NAT keepalives, by extension and
// contact. Every binding does, NATed or not: a phone whose Contact already
// names its public address (STUN, an ALG) is behind a NAT all the same,
// and 4 bytes every 25 s cost a phone on the LAN nothing. The registrar
// replaces an extension's set after each REGISTER; bindings made before
// a restart get keepalives from their next refresh.
type keepalives struct {
	mu      sync.Mutex
	targets map[string]map[string]keepaliveTarget // extension → contact → target
}

// update makes current (an extension's bindings after a REGISTER) the
// extension's keepalive targets: removed bindings stop getting them.
func (k *keepalives) update(extension string, current []store.Registration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(current) == 0 {
		delete(k.targets, extension)
		return
	}
	if k.targets == nil {
		k.targets = map[string]map[string]keepaliveTarget{}
	}
	set := make(map[string]keepaliveTarget, len(current))
	for _, r := range current {
		set[r.Contact] = keepaliveTarget{source: r.SourceAddr, transport: strings.ToLower(r.Transport), expires: r.ExpiresAt}
	}
	k.targets[extension] = set
}

// due drops expired targets and returns the others.
func (k *keepalives) due(now time.Time) []keepaliveTarget {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []keepaliveTarget
	for ext, set := range k.targets {
		for contact, t := range set {
			if !now.Before(t.expires) {
				delete(set, contact)
				continue
			}
			out = append(out, t)
		}
		if len(set) == 0 {
			delete(k.targets, ext)
		}
	}
	return out
}

// keepaliveLoop pings every registered binding each Registrar.Keepalive,
// until the server closes: one goroutine and one ticker for all of them.
func (s *Server) keepaliveLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.cfg.Registrar.Keepalive)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			for _, target := range s.keep.due(now) {
				if err := s.sendKeepalive(target); err != nil {
					s.log.Debug("sip keepalive", "source", target.source, "transport", target.transport, "err", err)
				}
			}
		}
	}
}

// sendKeepalive writes the ping to where the binding's REGISTER came from,
// from our SIP port (UDP) or on its connection (TCP, TLS). A closed
// connection is not reopened: the phone must register again anyway.
func (s *Server) sendKeepalive(t keepaliveTarget) error {
	switch t.transport {
	case "udp", "":
		if s.cfg.UDP == nil {
			return nil
		}
		ap, err := netip.ParseAddrPort(t.source)
		if err != nil {
			return err
		}
		_, err = s.cfg.UDP.WriteTo(keepalivePing, net.UDPAddrFromAddrPort(ap))
		return err
	case "tcp", "tls":
		c, err := s.ua.TransportLayer().GetConnection(t.transport, t.source)
		if err != nil || c == nil {
			return err // gone: nothing to keep open
		}
		if w, ok := c.(io.Writer); ok {
			_, err = w.Write(keepalivePing)
		}
		return err
	}
	return nil // websockets keep themselves open
}
