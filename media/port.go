package media

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"
)

// PortRange allocates local RTP UDP sockets from [Min, Max]. RTP gets an even
// port p and the range must also hold p+1, which RTCP will use.
type PortRange struct{ Min, Max int }

// ParsePortRange parses "10000-20000".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return PortRange{}, fmt.Errorf("media: port range %q: want MIN-MAX", s)
	}
	min, err1 := strconv.Atoi(strings.TrimSpace(lo))
	max, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Errorf("media: port range %q: not numbers", s)
	}
	r := PortRange{Min: min, Max: max}
	if err := r.validate(); err != nil {
		return PortRange{}, err
	}
	return r, nil
}

func (r PortRange) validate() error {
	if r.Min < 1 || r.Max > 65535 || r.Min > r.Max {
		return fmt.Errorf("media: port range %d-%d: want 1 <= MIN <= MAX <= 65535", r.Min, r.Max)
	}
	if r.count() == 0 {
		return fmt.Errorf("media: port range %d-%d holds no even/odd RTP/RTCP pair", r.Min, r.Max)
	}
	return nil
}

// first returns the lowest even port of the range; count how many even ports
// p have p+1 inside the range too.
func (r PortRange) first() int { return r.Min + r.Min%2 }

func (r PortRange) count() int {
	if f := r.first(); f+1 <= r.Max {
		return (r.Max-1-f)/2 + 1
	}
	return 0
}

// String returns "MIN-MAX".
func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Min, r.Max) }

// Listen binds a UDP socket on ip (nil: all interfaces) at a free even port in
// the range. It starts at a random offset so concurrent calls and restarts do
// not all fight over the lowest ports, and skips ports already in use.
func (r PortRange) Listen(ip net.IP) (*net.UDPConn, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	n := r.count()
	start := rand.IntN(n)
	for i := range n {
		port := r.first() + 2*((start+i)%n)
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			// Anything but "in use" (bad address, permission) fails for every port.
			return nil, fmt.Errorf("media: listen rtp on %v: %w", ip, err)
		}
	}
	return nil, fmt.Errorf("media: no free rtp port in %s on %v", r, ip)
}

// ListenPair binds RTP on a free even port p of the range and RTCP on p+1
// (RFC 3550 §11), both on ip. Pairs where either port is taken are skipped.
func (r PortRange) ListenPair(ip net.IP) (rtpConn, rtcpConn *net.UDPConn, err error) {
	if err := r.validate(); err != nil {
		return nil, nil, err
	}
	n := r.count()
	start := rand.IntN(n)
	for i := range n {
		port := r.first() + 2*((start+i)%n)
		a, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return nil, nil, fmt.Errorf("media: listen rtp on %v: %w", ip, err)
		}
		b, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port + 1})
		if err != nil {
			a.Close()
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return nil, nil, fmt.Errorf("media: listen rtcp on %v: %w", ip, err)
		}
		return a, b, nil
	}
	return nil, nil, fmt.Errorf("media: no free rtp/rtcp port pair in %s on %v", r, ip)
}
