package media

import (
	"net"
	"net/netip"
	"time"
)

// Tap sees every RTP and RTCP datagram a Stream reads from or writes to its
// sockets, with the time and both addresses (src, dst), e.g. to write a
// capture. It runs on the stream's read and send paths, so it must return
// quickly without blocking, and it must not keep b after it returns.
// Datagrams read are tapped before the source check, so a capture also
// shows what the stream dropped.
type Tap func(at time.Time, src, dst netip.AddrPort, b []byte)

// localAddrPort is conn's bound address, for a Tap's src or dst.
func localAddrPort(conn *net.UDPConn) netip.AddrPort {
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		return la.AddrPort()
	}
	return netip.AddrPort{}
}

// tapOut shows a datagram just written on conn to dst to the Tap, if any.
func (s *Stream) tapOut(conn *net.UDPConn, dst netip.AddrPort, b []byte) {
	if tap := s.tap.Load(); tap != nil {
		(*tap)(time.Now(), localAddrPort(conn), dst, b)
	}
}

// SetTap replaces the stream's Tap while it runs (nil: none), for taps
// that are wanted only part of a call, such as a live transcription: a
// stream without one pays nothing per datagram.
func (s *Stream) SetTap(t Tap) {
	if t == nil {
		s.tap.Store(nil)
		return
	}
	s.tap.Store(&t)
}
