//go:build linux

package media

import (
	"errors"
	"net/netip"
	"syscall"
	"time"
	"unsafe"
)

// On Linux a stream's separate RTCP socket is not given a reader goroutine
// of its own: its clock polls it (pollRTCP) every rtcpPollInterval. RTCP
// comes every few seconds, so a goroutine blocked on it all call long cost
// a stack and a read buffer per call for almost no work. The kernel stamps
// each datagram's arrival (SO_TIMESTAMPNS), so RTT and DLSR stay exact
// although the report is read up to an interval later.

// initRTCPPoll prepares the RTCP socket for polling; false means it
// cannot be polled and needs a reader goroutine.
func (s *Stream) initRTCPPoll() bool {
	rc, err := s.rtcpConn.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return false
	}
	s.rtcpRaw = rc
	return true
}

// rtcpPollMax bounds the datagrams one poll reads, so a flood at the RTCP
// port cannot hold up the clock that polls it; the rest wait a poll.
const rtcpPollMax = 16

// pollRTCP reads, without blocking, what the RTCP socket holds. buf and oob
// are the polling clock's scratch space.
func (s *Stream) pollRTCP(buf, oob []byte) {
	for range rtcpPollMax {
		var n, oobn, flags int
		var from syscall.Sockaddr
		var err error
		if rerr := s.rtcpRaw.Read(func(fd uintptr) bool {
			n, oobn, flags, from, err = syscall.Recvmsg(int(fd), buf, oob, 0)
			return true // one attempt: never park the clock
		}); rerr != nil {
			return // closed
		}
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) {
			return
		}
		src := sockaddrAddrPort(from)
		if err != nil {
			s.logDrop("rtcp read error", src, nil, err)
			return
		}
		now := time.Now()
		if n == len(buf) || flags&syscall.MSG_TRUNC != 0 {
			s.stats.dropped.Add(1)
			s.logDrop("oversized datagram", src, buf[:n], nil)
			continue
		}
		// The tap sees the datagram when it was read, so a capture stays in
		// the order things happened here; RTCP timing uses the arrival.
		if tap := s.tap.Load(); tap != nil {
			(*tap)(now, src, localAddrPort(s.rtcpConn), buf[:n])
		}
		s.handleRTCPFrom(buf[:n], src, arrivalTime(oob[:oobn], now))
	}
}

func sockaddrAddrPort(sa syscall.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// arrivalTime is the kernel's SCM_TIMESTAMPNS in oob, or fallback.
func arrivalTime(oob []byte, fallback time.Time) time.Time {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return fallback
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS &&
			len(m.Data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&m.Data[0]))
			at := time.Unix(int64(ts.Sec), int64(ts.Nsec))
			// A stamp from the future or far past means a clock step: the
			// read time is the better guess.
			if at.After(fallback) || fallback.Sub(at) > time.Minute {
				return fallback
			}
			return at
		}
	}
	return fallback
}
