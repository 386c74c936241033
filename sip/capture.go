package sip

import (
	"bytes"
	"net"
	"net/netip"
	"time"
)

// CaptureFunc sees every SIP datagram the UDP listener reads or writes, with
// the time and both addresses, e.g. to write a per-call capture (MessageCallID
// tells which call). It runs on the transport's read and write paths: it must
// return quickly and must not keep msg after it returns.
type CaptureFunc func(at time.Time, src, dst netip.AddrPort, msg []byte)

// captureConn tees the datagrams of a PacketConn to a CaptureFunc. sipgo
// serves any net.PacketConn, so the wrapper is invisible to it.
type captureConn struct {
	net.PacketConn
	capture CaptureFunc
	local   netip.AddrPort
}

func newCaptureConn(c net.PacketConn, f CaptureFunc) *captureConn {
	cc := &captureConn{PacketConn: c, capture: f}
	if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
		cc.local = unmapped(ua)
	}
	return cc
}

func (c *captureConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if n > 0 {
		if ua, ok := addr.(*net.UDPAddr); ok {
			c.capture(time.Now(), unmapped(ua), c.local, b[:n])
		}
	}
	return n, addr, err
}

func (c *captureConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(b, addr)
	if err == nil {
		if ua, ok := addr.(*net.UDPAddr); ok {
			c.capture(time.Now(), c.local, unmapped(ua), b[:n])
		}
	}
	return n, err
}

// unmapped is a's address with IPv4 as IPv4 (sipgo resolves destinations
// to 16-byte IPs), so both directions of one flow compare equal.
func unmapped(a *net.UDPAddr) netip.AddrPort {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// maxCallIDScan bounds how much of a message MessageCallID reads: the
// Call-ID is a header, and headers come before any large body.
const maxCallIDScan = 8 << 10

// MessageCallID returns the Call-ID header value of a raw SIP message
// (long form "Call-ID:" or compact "i:", any case), or "" if it has none
// before the end of the headers. It does not parse the message otherwise,
// so it is cheap enough to run on every datagram.
func MessageCallID(msg []byte) string {
	if len(msg) > maxCallIDScan {
		msg = msg[:maxCallIDScan]
	}
	id := ""
	forEachRawHeader(msg, func(name, value, _ []byte) bool {
		if bytes.EqualFold(name, []byte("call-id")) || bytes.EqualFold(name, []byte("i")) {
			id = string(bytes.TrimSpace(value))
			return false
		}
		return true
	})
	return id
}
