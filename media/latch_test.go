package media_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
)

// latchSetup is a stream whose SDP named sdpPeer, while the "NATed" phone
// sends from nat, another loopback port.
func latchSetup(t *testing.T, cfg media.LatchConfig) (s *media.Stream, sdpPeer, nat *rtptest.Peer) {
	t.Helper()
	sdpPeer, nat = rtptest.NewPeer(t), rtptest.NewPeer(t)
	st, err := media.NewStream(media.StreamConfig{
		Conn:   rtptest.Listen(t),
		Remote: sdpPeer.Addr(),
		Codec:  media.PCMU,
		Latch:  cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.Start(t.Context())
	sdpPeer.To, nat.To = st.LocalAddr(), st.LocalAddr()
	nat.SSRC = 0x0badcafe
	return st, sdpPeer, nat
}

func toneFrame() []byte {
	return media.PCMU.Encode(nil, media.Tone(1000, media.FrameDuration, 0.8))
}

// receivesRTP reports whether conn gets an RTP datagram within d.
func receivesRTP(conn *net.UDPConn, d time.Duration) bool {
	buf := make([]byte, 1500)
	conn.SetReadDeadline(time.Now().Add(d))
	defer conn.SetReadDeadline(time.Time{})
	n, err := conn.Read(buf)
	return err == nil && n >= 12 && buf[0]>>6 == 2
}

func addrOf(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestLatchLearnsNATedSource(t *testing.T) {
	st, sdpPeer, nat := latchSetup(t, media.LatchConfig{Window: 10 * time.Second, Packets: 5})
	payload := toneFrame()
	// Paced like a phone, for long enough that the jitter buffer plays
	// tone after the switch.
	for i := range 60 {
		nat.Send(0, i == 0, uint32(i*160), payload)
		time.Sleep(5 * time.Millisecond)
	}
	rtptest.Eventually(t, wait, "remote moved to the NATed source", func() bool { return st.Remote() == addrOf(nat.Conn) })
	if !receivesRTP(nat.Conn, wait) {
		t.Fatal("no RTP sent to the learned source")
	}
	// The first four packets were votes, dropped; the rest is audio.
	if st := st.Stats(); st.Dropped != 4 || st.PacketsIn != 56 {
		t.Errorf("dropped %d, in %d; want 4 dropped (the votes) and 56 in", st.Dropped, st.PacketsIn)
	}
	toneSeen := false
	for range 100 {
		f := nextFrame(t, st)
		if isTone(f) {
			toneSeen = true
			break
		}
	}
	if !toneSeen {
		t.Error("audio from the learned source was not played")
	}
	// Locked now: the SDP address no longer counts, however much it sends.
	for i := range 20 {
		sdpPeer.Send(0, i == 0, uint32(i*160), payload)
	}
	rtptest.Eventually(t, wait, "SDP-address packets dropped", func() bool { return st.Stats().Dropped >= 24 })
	if got := st.Remote(); got != addrOf(nat.Conn) {
		t.Errorf("remote moved again to %v after locking", got)
	}
}

func TestLatchIgnoresStrayPackets(t *testing.T) {
	st, sdpPeer, nat := latchSetup(t, media.LatchConfig{Window: 10 * time.Second, Packets: 5})
	stray := rtptest.NewPeer(t)
	stray.To = st.LocalAddr()
	payload := toneFrame()
	// Interleaved sources never make a run of five from one of them.
	for i := range 40 {
		nat.Send(0, false, uint32(i*160), payload)
		stray.Send(0, false, uint32(i*160), payload)
	}
	// Four in a row, then another source: still not enough.
	for i := range 4 {
		nat.Send(0, false, uint32(i*160), payload)
	}
	stray.Send(0, false, 0, payload)
	// Junk never counts: not RTP, or a payload type we did not negotiate.
	for range 10 {
		nat.SendRaw([]byte("hello, not rtp at all"))
		nat.Send(96, false, 0, payload)
	}
	rtptest.Eventually(t, wait, "every packet dropped", func() bool { return st.Stats().Dropped >= 105 })
	if got := st.Remote(); got != addrOf(sdpPeer.Conn) {
		t.Fatalf("remote moved to %v on stray packets", got)
	}
	if !receivesRTP(sdpPeer.Conn, wait) {
		t.Error("RTP no longer goes to the SDP address")
	}
	if st.Stats().PacketsIn != 0 {
		t.Error("stray packets were played")
	}
}

func TestLatchLocksOnSDPAddress(t *testing.T) {
	st, sdpPeer, nat := latchSetup(t, media.LatchConfig{Window: 10 * time.Second, Packets: 5})
	payload := toneFrame()
	sdpPeer.Send(0, true, 0, payload)
	rtptest.Eventually(t, wait, "SDP-address packet played", func() bool { return st.Stats().PacketsIn == 1 })
	for i := range 30 {
		nat.Send(0, i == 0, uint32(i*160), payload)
	}
	rtptest.Eventually(t, wait, "other source dropped", func() bool { return st.Stats().Dropped == 30 })
	if got := st.Remote(); got != addrOf(sdpPeer.Conn) {
		t.Fatalf("remote moved to %v though the SDP address works", got)
	}
}

func TestLatchWindowCloses(t *testing.T) {
	st, sdpPeer, nat := latchSetup(t, media.LatchConfig{Window: 100 * time.Millisecond, Packets: 3})
	time.Sleep(300 * time.Millisecond) // past the window, whatever the load
	payload := toneFrame()
	for i := range 30 {
		nat.Send(0, i == 0, uint32(i*160), payload)
	}
	rtptest.Eventually(t, wait, "late packets dropped", func() bool { return st.Stats().Dropped == 30 })
	if got := st.Remote(); got != addrOf(sdpPeer.Conn) {
		t.Fatalf("remote moved to %v after the window", got)
	}
}

func TestLatchOffByDefault(t *testing.T) {
	st, sdpPeer, nat := latchSetup(t, media.LatchConfig{})
	payload := toneFrame()
	for i := range 30 {
		nat.Send(0, i == 0, uint32(i*160), payload)
	}
	rtptest.Eventually(t, wait, "packets dropped", func() bool { return st.Stats().Dropped == 30 })
	if got := st.Remote(); got != addrOf(sdpPeer.Conn) {
		t.Fatalf("remote moved to %v with learning off", got)
	}
}

// SetRemote moves the stream (a re-INVITE's new address): RTP goes to and
// is accepted from the new address only. SetRemoteHold stops sending;
// SetCodec switches the payload.
func TestStreamSetRemoteHoldCodec(t *testing.T) {
	st, oldPeer, newPeer := latchSetup(t, media.LatchConfig{})
	if !receivesRTP(oldPeer.Conn, wait) {
		t.Fatal("no RTP to the first address")
	}
	if err := st.SetRemote(addrOf(newPeer.Conn), netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetRemote(netip.MustParseAddrPort("0.0.0.0:4000"), netip.AddrPort{}); err == nil {
		t.Error("SetRemote accepted 0.0.0.0")
	}
	if !receivesRTP(newPeer.Conn, wait) {
		t.Fatal("no RTP to the new address")
	}
	payload := toneFrame()
	for i := range 10 {
		newPeer.Send(0, i == 0, uint32(i*160), payload)
	}
	rtptest.Eventually(t, wait, "new address's packets played", func() bool { return st.Stats().PacketsIn == 10 })

	st.SetRemoteHold(true)
	// Let a packet already on its way land, then expect silence on the wire.
	for receivesRTP(newPeer.Conn, 100*time.Millisecond) {
	}
	before := st.Stats().PacketsOut
	if receivesRTP(newPeer.Conn, 300*time.Millisecond) {
		t.Error("RTP sent while the peer holds")
	}
	if after := st.Stats().PacketsOut; after != before {
		t.Errorf("PacketsOut grew from %d to %d while held", before, after)
	}
	st.Enqueue(media.Tone(1000, 200*time.Millisecond, 0.5)) // drains unheard
	st.SetRemoteHold(false)
	if !receivesRTP(newPeer.Conn, wait) {
		t.Fatal("no RTP after resume")
	}

	if err := st.SetCodec(media.PCMA); err != nil {
		t.Fatal(err)
	}
	rtptest.Eventually(t, wait, "PCMA on the wire", func() bool {
		buf := make([]byte, 1500)
		newPeer.Conn.SetReadDeadline(time.Now().Add(wait))
		n, err := newPeer.Conn.Read(buf)
		return err == nil && n > 12 && buf[1]&0x7f == media.PCMA.PayloadType
	})
	pcma := media.PCMA.Encode(nil, media.Tone(1000, media.FrameDuration, 0.8))
	for i := range 10 {
		newPeer.Send(media.PCMA.PayloadType, false, uint32((20+i)*160), pcma)
	}
	rtptest.Eventually(t, wait, "PCMA packets played", func() bool { return st.Stats().PacketsIn == 20 })
}
