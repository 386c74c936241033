package media

import (
	"errors"
	"fmt"
	"net/netip"
)

// peerAddrs is where a stream sends: RTP, and RTCP when it is on.
type peerAddrs struct {
	rtp, rtcp netip.AddrPort
}

func (s *Stream) peer() *peerAddrs { return s.addrs.Load() }

// Remote is where the stream sends RTP now, and the only source it accepts
// RTP from.
func (s *Stream) Remote() netip.AddrPort { return s.peer().rtp }

// SetRemote moves the stream to a new peer address, as a re-INVITE or
// UPDATE with a new c=/m= line asks: RTP goes there and is accepted only
// from there from now on. rtcp is the new RTCP address; when it is not
// valid the stream derives it as NewStream does (the same address with
// rtcp-mux, else port+1). NAT learning ends: the signalled address is
// authoritative, and the old address's packets still in flight must not
// win it back.
func (s *Stream) SetRemote(rtp, rtcp netip.AddrPort) error {
	rtp = unmap(rtp)
	if !rtp.IsValid() || rtp.Port() == 0 || rtp.Addr().IsUnspecified() {
		return fmt.Errorf("media: bad remote address %v", rtp)
	}
	if s.rtcpEnabled() {
		switch {
		case s.rtcpMux:
			rtcp = rtp
		case rtcp.IsValid() && rtcp.Port() != 0:
			rtcp = unmap(rtcp)
		case rtp.Port() == 65535:
			return errors.New("media: remote RTP port 65535 leaves no RTCP port")
		default:
			rtcp = netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1)
		}
	} else {
		rtcp = netip.AddrPort{}
	}
	s.addrs.Store(&peerAddrs{rtp: rtp, rtcp: rtcp})
	s.latch.confirmed()
	s.log.Info("rtp remote changed", "remote", rtp)
	return nil
}

// SetRemoteHold stops (true) or resumes (false) sending to the peer, as a
// sendonly, inactive or c=0.0.0.0 offer from it asks (RFC 3264 §8.4). The
// clock keeps running and the playout queue keeps draining, so queued audio
// does not pile up and the resume is live; inbound audio is unaffected.
// This is the peer's hold; Hold (gate.go) is ours, with music.
func (s *Stream) SetRemoteHold(held bool) { s.sendOff.Store(held) }

// RemoteHeld reports whether sending is stopped by SetRemoteHold.
func (s *Stream) RemoteHeld() bool { return s.sendOff.Load() }

// Codec is the codec the stream sends with now.
func (s *Stream) Codec() Codec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.codec
}

// SetCodec switches the stream to another codec (a re-INVITE that
// negotiated one): the next packet is sent with it and inbound packets of
// its payload type are decoded with it.
func (s *Stream) SetCodec(c Codec) error {
	if !c.valid() || c.PayloadType > 127 {
		return fmt.Errorf("media: unsupported codec %v", c)
	}
	if s.dtmfPT != 0 && c.PayloadType == s.dtmfPT {
		return fmt.Errorf("media: codec payload type %d is telephone-event's", c.PayloadType)
	}
	s.mu.Lock()
	s.codec = c
	s.mu.Unlock()
	s.rx.setCodec(c)
	return nil
}

// setCodec makes packets of c's payload type audio decoded with c. A
// detecting Receiver (zero codec) stays detecting.
func (r *Receiver) setCodec(c Codec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detect {
		return
	}
	r.codec = c
}
