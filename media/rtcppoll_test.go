package media_test

import (
	"net"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
)

// TestRTCPSeparatePortRTT: a peer on a separate RTCP port answers each of
// the stream's sender reports at once, giving in DLSR how long it held it.
// On loopback the true round trip is well under a millisecond, so the RTT
// the stream computes must stay small however late it reads the reply (on
// Linux its clock polls the RTCP socket every 100 ms; the kernel's arrival
// stamp is what keeps the figure honest). Every reply is counted, a BYE
// from the peer just before Close too, and the stream's BYE reaches the
// peer when it closes.
func TestRTCPSeparatePortRTT(t *testing.T) {
	rtpPeer, rtcpPeer, rtcpConn := rtptest.Listen(t), rtptest.Listen(t), rtptest.Listen(t)
	s, err := media.NewStream(media.StreamConfig{
		Conn: rtptest.Listen(t), RTCPConn: rtcpConn,
		Remote: rtpPeer.LocalAddr().(*net.UDPAddr), RemoteRTCP: rtcpPeer.LocalAddr().(*net.UDPAddr),
		Codec: media.PCMU, RTCPInterval: 150 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.Start(t.Context())

	buf := make([]byte, 2048)
	// read returns the next RTCP compound from the stream and when it came.
	read := func() ([]rtcp.Packet, time.Time) {
		t.Helper()
		rtcpPeer.SetReadDeadline(time.Now().Add(wait))
		n, err := rtcpPeer.Read(buf)
		if err != nil {
			t.Fatalf("no RTCP from the stream: %v", err)
		}
		at := time.Now()
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			t.Fatalf("stream sent bad RTCP: %v", err)
		}
		return pkts, at
	}
	const rounds = 3
	for i := range rounds {
		pkts, readAt := read()
		sr, ok := pkts[0].(*rtcp.SenderReport)
		if !ok {
			t.Fatalf("compound starts with %T, want a sender report", pkts[0])
		}
		held := time.Since(readAt)
		rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0x5eed, Reports: []rtcp.ReceptionReport{{
			SSRC: sr.SSRC, LastSenderReport: uint32(sr.NTPTime >> 16), Delay: uint32(held.Seconds() * 65536),
		}}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rtcpPeer.WriteToUDPAddrPort(rr, rtcpConn.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			t.Fatal(err)
		}
		rtptest.Eventually(t, wait, "the reply counted", func() bool { return s.Stats().RTCPReceived == uint64(i+1) })
		// 1/65536 s fields and scheduling on a loaded machine: 25 ms is
		// generous for loopback, and far below the poll interval's error.
		if rtt := s.Stats().RTTMS; rtt < 0 || rtt > 25 {
			t.Errorf("round %d: RTT %.2f ms on loopback", i, rtt)
		}
	}
	// The peer says BYE and the stream closes at once: the BYE, already in
	// the socket, still counts.
	bye, err := rtcp.Marshal([]rtcp.Packet{&rtcp.Goodbye{Sources: []uint32{0x5eed}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rtcpPeer.WriteToUDPAddrPort(bye, rtcpConn.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !s.Stats().RemoteBye {
		t.Error("the peer's BYE, sent before Close, was not counted")
	}
	for {
		pkts, _ := read()
		if _, ok := pkts[len(pkts)-1].(*rtcp.Goodbye); ok {
			break
		}
	}
}
