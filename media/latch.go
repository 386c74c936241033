package media

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// LatchConfig enables symmetric RTP learning (a.k.a. latching or
// comedia) for peers behind NAT, whose RTP arrives from the NAT's public
// address rather than the private one their SDP named.
//
// For Window after Start, while the SDP address
// has sent nothing, a new source is adopted once Packets consecutive valid
// RTP packets of the negotiated payload types came from it; RTP and RTCP
// are then sent there and the address is locked. A packet from the SDP
// address (or SetRemote) locks the stream to it at once, so nothing can take over a peer
// that works, and a stray or spoofed packet never moves the stream: it
// only starts a count that any other source resets.
type LatchConfig struct {
	Window  time.Duration // 0 disables learning
	Packets int           // consecutive packets needed; default DefaultLatchPackets
}

// Defaults for LatchConfig.
const (
	DefaultLatchWindow  = 10 * time.Second
	DefaultLatchPackets = 5
)

type latch struct {
	window time.Duration
	need   int
	// settled is set once the source is known (learned, or the SDP
	// address sent), or learning is off: the fast path checks only it.
	settled atomic.Bool

	mu    sync.Mutex
	until time.Time
	cand  netip.AddrPort
	count int
}

func (l *latch) init(c LatchConfig) error {
	if c.Window < 0 || c.Packets < 0 {
		return fmt.Errorf("media: bad latch config %+v", c)
	}
	l.window = c.Window
	l.need = c.Packets
	if l.need == 0 {
		l.need = DefaultLatchPackets
	}
	l.settled.Store(c.Window == 0)
	return nil
}

// open starts the learning window.
func (l *latch) open(now time.Time) {
	if l.window == 0 {
		return
	}
	l.mu.Lock()
	l.until = now.Add(l.window)
	l.cand, l.count = netip.AddrPort{}, 0
	l.mu.Unlock()
	l.settled.Store(false)
}

// confirmed: the expected source sent RTP, so it is the one.
func (l *latch) confirmed() {
	if !l.settled.Load() {
		l.settled.Store(true)
	}
}

// learnSource decides about an RTP-port datagram from src, which is not the
// current remote. It returns true when src has just become the remote (the
// packet is then processed as the peer's).
func (s *Stream) learnSource(src netip.AddrPort, b []byte, at time.Time) bool {
	l := &s.latch
	if l.settled.Load() {
		return false
	}
	l.mu.Lock()
	if at.After(l.until) {
		l.mu.Unlock()
		l.settled.Store(true) // the window closed on the SDP address
		return false
	}
	if !s.latchable(b) {
		l.mu.Unlock()
		return false // RTCP, junk, foreign payload types: no vote either way
	}
	if src != l.cand {
		l.cand, l.count = src, 0
	}
	l.count++
	if l.count < l.need {
		l.mu.Unlock()
		return false
	}
	l.mu.Unlock()
	l.settled.Store(true)
	var rtcp netip.AddrPort
	if s.rtcpEnabled() {
		if s.rtcpMux {
			rtcp = src
		} else if src.Port() < 65535 {
			rtcp = netip.AddrPortFrom(src.Addr(), src.Port()+1)
		} else {
			rtcp = s.peer().rtcp
		}
	}
	old := s.peer().rtp
	s.addrs.Store(&peerAddrs{rtp: src, rtcp: rtcp})
	s.log.Info("rtp source learned", "sdp_remote", old, "remote", src, "packets", l.need)
	return true
}

// latchable reports whether b looks like RTP of this stream: version 2,
// not RTCP, and the codec's or telephone-event's payload type.
func (s *Stream) latchable(b []byte) bool {
	if len(b) < 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) {
		return false
	}
	pt := b[1] & 0x7f
	s.mu.Lock()
	codecPT := s.codec.PayloadType
	s.mu.Unlock()
	return pt == codecPT || (s.dtmfPT != 0 && pt == s.dtmfPT)
}
