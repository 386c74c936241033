package media

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

var testRemote = netip.MustParseAddrPort("127.0.0.1:40000")

// newTestStream returns an unstarted stream whose packet handler can be
// driven directly.
func newTestStream(tb testing.TB, cfg StreamConfig) *Stream {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Conn = c
	if cfg.Remote == nil {
		cfg.Remote = net.UDPAddrFromAddrPort(testRemote)
	}
	if cfg.Codec.Name == "" {
		cfg.Codec = PCMU
	}
	s, err := NewStream(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func marshal(tb testing.TB, p rtp.Packet) []byte {
	tb.Helper()
	if p.Version == 0 {
		p.Version = 2
	}
	b, err := p.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func pcmuPacket(seq uint16, payload []byte) rtp.Packet {
	return rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 7}, Payload: payload}
}

// garbage is a table of datagrams that must be dropped, counted, and never
// panic. It seeds the fuzz corpus too.
var garbage = map[string][]byte{
	"empty":            {},
	"one byte":         {0x80},
	"eleven bytes":     {0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
	"version 0":        {0x00, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff},
	"version 1":        {0x40, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff},
	"version 3":        {0xc0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff},
	"padding > body":   {0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff, 200},
	"padding zero":     {0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff, 0},
	"padding no body":  {0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7},
	"csrc 15 short":    {0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3, 4},
	"ext header short": {0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xbe},
	"ext len too big":  {0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xbe, 0xde, 0xff, 0xff, 0x10, 0},
	"two-byte ext bad": {0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0x10, 0x00, 0, 1, 5, 9, 0, 0},
	"unknown pt 96":    {0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff},
	"rtcp rr":          {0x81, 201, 0, 7, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0},
	"short dtmf":       {0x80, 101, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 0x80},
}

func TestHandlePacketGarbage(t *testing.T) {
	s := newTestStream(t, StreamConfig{DTMFPayloadType: 101})
	now := time.Now()
	for name, b := range garbage {
		before := s.Stats()
		s.handlePacket(b, testRemote, now)
		after := s.Stats()
		if after.Dropped != before.Dropped+1 || after.PacketsIn != before.PacketsIn {
			t.Errorf("%s: stats %+v -> %+v, want one more Dropped", name, before, after)
		}
	}
	// A valid packet from the wrong port is dropped too.
	s.handlePacket(marshal(t, pcmuPacket(1, make([]byte, 160))), netip.MustParseAddrPort("127.0.0.1:40001"), now)
	if st := s.Stats(); st.Dropped != uint64(len(garbage))+1 || st.Receive.Packets != 0 {
		t.Errorf("wrong source: %+v", st)
	}
	// The same address written as IPv4-in-IPv6 is the right source.
	s.handlePacket(marshal(t, pcmuPacket(2, make([]byte, 160))), netip.MustParseAddrPort("[::ffff:127.0.0.1]:40000"), now)
	if st := s.Stats(); st.PacketsIn != 1 || st.Receive.Packets != 1 {
		t.Errorf("mapped IPv4 source not accepted: %+v", st)
	}
}

// Valid but unusual packets (CSRCs, header extension, padding) are played
// with exactly their payload.
func TestHandlePacketValidOddities(t *testing.T) {
	s := newTestStream(t, StreamConfig{})
	payload := PCMU.Encode(nil, Tone(1000, FrameDuration, 0.5))
	want := PCMU.Decode(nil, payload)
	p := pcmuPacket(10, payload)
	p.CSRC = []uint32{1, 2, 3}
	p.Padding, p.PaddingSize = true, 7
	p.Extension, p.ExtensionProfile = true, rtp.ExtensionProfileOneByte
	if err := p.SetExtension(1, []byte{0xaa, 0xbb}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.handlePacket(marshal(t, p), testRemote, now)
	p2 := pcmuPacket(11, payload)
	p2.Extension, p2.ExtensionProfile = true, 0x1234 // RFC 3550 generic extension
	s.handlePacket(marshal(t, p2), testRemote, now)
	if st := s.Stats(); st.PacketsIn != 2 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	var got []int16
	for i := range 4 {
		got = append(got, s.rx.Pull(now.Add(time.Duration(i)*FrameDuration))...)
	}
	both := append(slices.Clone(want), want...)
	found := false
	for i := 0; i+len(both) <= len(got); i++ {
		found = found || slices.Equal(got[i:i+len(both)], both)
	}
	if !found {
		t.Error("the two payloads were not played back to back")
	}
}

// TestStreamDTMFChannel: digits reach the DTMF channel once each, and a
// consumer that does not read loses digits instead of blocking the reader.
func TestStreamDTMFChannel(t *testing.T) {
	s := newTestStream(t, StreamConfig{DTMFPayloadType: 101})
	now := time.Now()
	for i := range dtmfBuffer + 4 {
		for k := range 3 { // start, continuation, end: one digit
			p := pcmuPacket(uint16(3*i+k), []byte{byte(i % 10), 10, 0, byte(160 * (k + 1))})
			p.PayloadType, p.Timestamp = 101, uint32(i*8000)
			if k == 2 {
				p.Payload[1] |= 0x80
			}
			s.handlePacket(marshal(t, p), testRemote, now)
		}
	}
	if n := len(s.dtmf); n != dtmfBuffer {
		t.Errorf("%d digits queued, want %d (the rest dropped)", n, dtmfBuffer)
	}
	if d := (<-s.dtmf).Digit; d != '0' {
		t.Errorf("first digit %q", d)
	}
	if st := s.Stats(); st.DTMFIn != dtmfBuffer+4 || st.Dropped != 0 {
		t.Errorf("%+v", st)
	}
}

func TestFramesDropOldest(t *testing.T) {
	s := newTestStream(t, StreamConfig{})
	for i := range framesBuffer + 5 {
		f := make([]int16, FrameSamples)
		f[0] = int16(i)
		s.deliver(f)
	}
	if st := s.Stats(); st.FramesDropped != 5 {
		t.Errorf("FramesDropped %d, want 5", st.FramesDropped)
	}
	if first := <-s.frames; first[0] != 5 {
		t.Errorf("oldest kept frame is %d, want 5 (frames 0-4 dropped)", first[0])
	}
}

// TestRTCPMuxDemux: with rtcp-mux, RTCP on the RTP port is read as RTCP;
// without it, it is dropped like any non-RTP datagram.
func TestRTCPMuxDemux(t *testing.T) {
	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 9}})
	if err != nil {
		t.Fatal(err)
	}
	mux := newTestStream(t, StreamConfig{RTCPMux: true})
	mux.handlePacket(rr, testRemote, time.Now())
	if st := mux.Stats(); st.RTCPReceived != 1 || st.Dropped != 0 {
		t.Errorf("mux: %+v", st)
	}
	plain := newTestStream(t, StreamConfig{})
	plain.handlePacket(rr, testRemote, time.Now())
	if st := plain.Stats(); st.RTCPReceived != 0 || st.Dropped != 1 {
		t.Errorf("no mux: %+v", st)
	}
}

// TestRTCPReportOnWire: the SR we send describes what we received (loss,
// highest sequence, jitter) and echoes the peer's SR for its RTT; the
// peer's report about us gives RTT, loss and jitter in Stats.
func TestRTCPReportOnWire(t *testing.T) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	s := newTestStream(t, StreamConfig{RTCPMux: true, Remote: sink.LocalAddr().(*net.UDPAddr), CNAME: "test@voxbridge"})
	remote := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	t0 := time.Now()
	// 20 packets with 3 lost.
	for i := range 23 {
		if i == 5 || i == 6 || i == 15 {
			continue
		}
		s.handlePacket(marshal(t, pcmuPacket(uint16(100+i), make([]byte, 160))), remote, t0.Add(time.Duration(i)*FrameDuration))
	}
	// The peer's SR, received 250 ms before our report.
	peerSR := &rtcp.SenderReport{SSRC: 7, NTPTime: 0xAAAABBBBCCCCDDDD}
	b, _ := rtcp.Marshal([]rtcp.Packet{peerSR, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 7, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "peer"}}}}}})
	reportAt := t0.Add(time.Second)
	s.handleRTCP(b, reportAt.Add(-250*time.Millisecond))
	s.sendRTCP(reportAt, true)

	buf := make([]byte, 1500)
	sink.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := sink.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := rtcp.Unmarshal(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if err := rtcp.CompoundPacket(pkts).Validate(); err != nil {
		t.Errorf("not a valid compound packet: %v", err)
	}
	sr, ok := pkts[0].(*rtcp.SenderReport)
	if !ok || len(sr.Reports) != 1 || len(pkts) != 3 {
		t.Fatalf("got %v", pkts)
	}
	if _, ok := pkts[2].(*rtcp.Goodbye); !ok {
		t.Errorf("no BYE in %v", pkts)
	}
	if cname, _ := rtcp.CompoundPacket(pkts).CNAME(); cname != "test@voxbridge" {
		t.Errorf("CNAME %q", cname)
	}
	rb := sr.Reports[0]
	if rb.SSRC != 7 || rb.TotalLost != 3 || rb.FractionLost != 3*256/23 || rb.LastSequenceNumber != 122 ||
		rb.LastSenderReport != 0xBBBBCCCC || rb.Delay != 65536/4 {
		t.Errorf("report block %+v", rb)
	}
	if sr.SSRC != s.tx.ssrc || sr.NTPTime != ntpTime(reportAt) {
		t.Errorf("SR %+v", sr)
	}

	// The peer reports on us: 10 % lost, jitter 80 units, and our SR echoed
	// back after it held it 100 ms, arriving 130 ms after we sent it: RTT 30 ms.
	ourSR := ntpTime(reportAt)
	rr := &rtcp.ReceiverReport{SSRC: 7, Reports: []rtcp.ReceptionReport{{
		SSRC: s.tx.ssrc, FractionLost: 26, TotalLost: 12, Jitter: 80,
		LastSenderReport: uint32(ourSR >> 16), Delay: 65536 / 10,
	}}}
	b, _ = rtcp.Marshal([]rtcp.Packet{rr})
	s.handleRTCP(b, reportAt.Add(130*time.Millisecond))
	st := s.Stats()
	if st.RTTMS < 29.9 || st.RTTMS > 30.1 || st.RemoteLost != 12 || st.RemoteLossFraction != 26.0/256 || st.RemoteJitterMS != 10 {
		t.Errorf("RTT %v, remote lost %d fraction %v jitter %v", st.RTTMS, st.RemoteLost, st.RemoteLossFraction, st.RemoteJitterMS)
	}
}

// TestClockCatchUp stalls the clock by holding the queue lock. After a
// short stall it sends every missed packet; after a long one it skips
// ahead with the RTP timestamp following the wall clock. Either way the
// sequence numbers stay contiguous.
func TestClockCatchUp(t *testing.T) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	s := newTestStream(t, StreamConfig{Remote: sink.LocalAddr().(*net.UDPAddr)})
	s.Start(t.Context())
	read := func() rtp.Header {
		buf := make([]byte, 1500)
		sink.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := sink.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			t.Fatal(err)
		}
		return p.Header
	}
	for _, want := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond} {
		prev := read()
		locked := time.Now()
		s.mu.Lock()
		time.Sleep(want)
		s.mu.Unlock()
		stall := time.Since(locked) // on a loaded machine, maybe longer than asked
		// Drain what was sent around the stall and look at the increments.
		var tsGap uint32
		for range 40 {
			h := read()
			if h.SequenceNumber != prev.SequenceNumber+1 {
				t.Fatalf("stall %v: sequence %d after %d", stall, h.SequenceNumber, prev.SequenceNumber)
			}
			if d := h.Timestamp - prev.Timestamp; d != FrameSamples {
				tsGap += d - FrameSamples
			}
			prev = h
		}
		// A stall shorter than the catch-up limit (less the frame the clock
		// may already have been waiting for) is repaired by sending every
		// packet; a longer one skips, but never more than it lasted.
		skipped := time.Duration(tsGap/FrameSamples) * FrameDuration
		switch {
		case stall < (maxCatchUp-1)*FrameDuration && skipped != 0:
			t.Errorf("stall %v: %v of packets skipped, want all sent", stall, skipped)
		case stall > (maxCatchUp+1)*FrameDuration && (skipped == 0 || skipped > stall):
			t.Errorf("stall %v: timestamp skipped %v", stall, skipped)
		}
	}
}

func FuzzStreamPacket(f *testing.F) {
	for _, b := range garbage {
		f.Add(b)
	}
	f.Add(marshal(f, pcmuPacket(1, make([]byte, 160))))
	f.Add(marshal(f, pcmuPacket(2, make([]byte, 240))))
	f.Add([]byte{0x80, 101, 0, 3, 0, 0, 0, 9, 0, 0, 0, 7, 5, 0x8a, 0, 160})
	f.Add([]byte{0x80, 13, 0, 4, 0, 0, 0, 9, 0, 0, 0, 7, 60})
	s := newTestStream(f, StreamConfig{DTMFPayloadType: 101, RTCPMux: true})
	at := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		s.handlePacket(b, testRemote, at)
		if fr := s.rx.Pull(at); len(fr) != FrameSamples {
			t.Fatalf("frame of %d samples", len(fr))
		}
		at = at.Add(FrameDuration)
		for len(s.dtmf) > 0 {
			<-s.dtmf
		}
	})
}

// BenchmarkReceivePath measures a live stream's receive path per 20 ms
// packet: source check, parse, jitter buffer, decode, playout of one frame.
// The owned copy handed to Frames is left out (one 320-byte allocation).
func BenchmarkReceivePath(b *testing.B) {
	s := newTestStream(b, StreamConfig{DTMFPayloadType: 101})
	pkt := marshal(b, pcmuPacket(0, PCMU.Encode(nil, Tone(1000, FrameDuration, 0.5))))
	at := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for i := 0; b.Loop(); i++ {
		pkt[2], pkt[3] = byte(i>>8), byte(i)
		ts := uint32(i * FrameSamples)
		pkt[4], pkt[5], pkt[6], pkt[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		s.handlePacket(pkt, testRemote, at)
		s.rx.Pull(at)
		at = at.Add(FrameDuration)
	}
	if st := s.Stats(); st.Dropped != 0 || st.PacketsLate != 0 {
		b.Fatalf("%+v", st)
	}
}

// BenchmarkSendTick measures one clock tick (queue, encode, marshal, send)
// with audio queued; Enqueue's own copies are outside the timed loop.
func BenchmarkSendTick(b *testing.B) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	s := newTestStream(b, StreamConfig{Remote: sink.LocalAddr().(*net.UDPAddr)})
	s.Enqueue(Tone(1000, time.Hour, 0.5))
	b.ReportAllocs()
	for b.Loop() {
		s.tick(time.Now())
	}
	if s.Stats().PacketsOut == 0 {
		b.Fatal("nothing sent")
	}
}

// FuzzReceiverSequence reads the input as a run of packets (a length byte,
// a time step byte, then the packet) so sequence numbers, timestamps, SSRCs
// and payload types vary together: the Receiver must never panic, every
// frame is 160 samples, and the counters stay consistent.
func FuzzReceiverSequence(f *testing.F) {
	pkt := func(seq uint16, ts uint32, ssrc uint32, pt uint8, n int) []byte {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: make([]byte, n)}
		b, _ := p.Marshal()
		return append([]byte{byte(len(b)), 20}, b...)
	}
	var seed []byte
	for i := range 20 {
		seed = append(seed, pkt(uint16(65530+i), uint32(i*160), 7, 0, 160)...)
	}
	f.Add(seed)
	f.Add(append(pkt(1, 0, 1, 0, 160), append(pkt(2, 4000000000, 1, 0, 80), append(pkt(2, 160, 2, 13, 1), pkt(9, 320, 2, 101, 4)...)...)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReceiver(ReceiverConfig{DTMFPayloadType: 101, MaxDelay: 100 * time.Millisecond})
		at := time.Unix(1000, 0)
		for len(in) >= 2 {
			n, step := int(in[0]), time.Duration(in[1])*time.Millisecond
			in = in[2:]
			n = min(n, len(in))
			r.Push(in[:n], at)
			in = in[n:]
			at = at.Add(step)
			if fr := r.Pull(at); len(fr) != FrameSamples {
				t.Fatalf("frame of %d", len(fr))
			}
		}
		for range 20 {
			at = at.Add(FrameDuration)
			r.Pull(at)
		}
		if st := r.Stats(); st.BufferedMS < 0 || st.ConcealedMS < 0 || st.DelayMSMean < 0 {
			t.Fatalf("%+v", st)
		}
	})
}
