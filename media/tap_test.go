package media_test

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
)

// tapLog keeps copies of what a Tap saw.
type tapLog struct {
	mu   sync.Mutex
	pkts []tapped
}

type tapped struct {
	src, dst netip.AddrPort
	b        []byte
}

func (l *tapLog) tap(_ time.Time, src, dst netip.AddrPort, b []byte) {
	l.mu.Lock()
	l.pkts = append(l.pkts, tapped{src, dst, append([]byte(nil), b...)})
	l.mu.Unlock()
}

// between returns the datagrams tapped from src to dst.
func (l *tapLog) between(src, dst netip.AddrPort) [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [][]byte
	for _, p := range l.pkts {
		if p.src == src && p.dst == dst {
			out = append(out, p.b)
		}
	}
	return out
}

// TestTapSeesBothDirections: a stream with a Tap shows it the RTP it sends
// (carrying the tone it was given), the RTP it receives, and the RTCP both
// ways on the separate RTCP port, each with the right addresses.
func TestTapSeesBothDirections(t *testing.T) {
	ports := media.PortRange{Min: 30000, Max: 39999}
	lo := net.IPv4(127, 0, 0, 1)
	ra, ca, err := ports.ListenPair(lo)
	if err != nil {
		t.Fatal(err)
	}
	rb, cb, err := ports.ListenPair(lo)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }
	aRTP, aRTCP, bRTP, bRTCP := addr(ra), addr(ca), addr(rb), addr(cb)

	var log tapLog
	mk := func(conn, rtcpConn *net.UDPConn, remote netip.AddrPort, tap media.Tap) *media.Stream {
		s, err := media.NewStream(media.StreamConfig{Conn: conn, RTCPConn: rtcpConn, Remote: net.UDPAddrFromAddrPort(remote),
			Codec: media.PCMU, RTCPInterval: 200 * time.Millisecond, Tap: tap})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		s.Start(t.Context())
		return s
	}
	a := mk(ra, ca, bRTP, log.tap)
	b := mk(rb, cb, aRTP, nil)
	a.Enqueue(media.Tone(1000, time.Second, 0.5))
	b.Enqueue(media.Tone(400, time.Second, 0.5))

	rtptest.Eventually(t, wait, "RTP and RTCP both ways through the tap", func() bool {
		return len(log.between(aRTP, bRTP)) >= 50 && len(log.between(bRTP, aRTP)) >= 50 &&
			len(log.between(aRTCP, bRTCP)) >= 1 && len(log.between(bRTCP, aRTCP)) >= 1
	})

	dominant := func(pkts [][]byte) float64 {
		var pcm []int16
		for _, b := range pkts {
			var p rtp.Packet
			if err := p.Unmarshal(b); err != nil {
				t.Fatalf("tapped RTP does not parse: %v", err)
			}
			pcm = media.PCMU.Decode(pcm, p.Payload)
		}
		return media.DominantFrequency(pcm, 300, 3400, 10)
	}
	if f := dominant(log.between(aRTP, bRTP)); f != 1000 {
		t.Errorf("tapped outbound audio at %v Hz, want the 1000 Hz tone sent", f)
	}
	if f := dominant(log.between(bRTP, aRTP)); f != 400 {
		t.Errorf("tapped inbound audio at %v Hz, want the peer's 400 Hz tone", f)
	}
	// Counts agree with the stream's own: every packet sent was tapped.
	a.Close()
	if out, st := len(log.between(aRTP, bRTP)), a.Stats(); uint64(out) != st.PacketsOut {
		t.Errorf("tapped %d outbound RTP packets, stream sent %d", out, st.PacketsOut)
	}
}
