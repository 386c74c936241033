package media

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

var testRemote = netip.MustParseAddrPort("127.0.0.1:40000")

// newTestStream returns an unstarted stream whose packet handler can be
// driven directly.
func newTestStream(tb testing.TB, dtmfPT uint8) *Stream {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := NewStream(StreamConfig{Conn: c, Remote: net.UDPAddrFromAddrPort(testRemote), Codec: PCMU, DTMFPayloadType: dtmfPT})
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
	"comfort noise":    {0x80, 13, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0x40},
	"rtcp rr":          {0x81, 201, 0, 7, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0},
	"short dtmf":       {0x80, 101, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 0x80},
}

func TestHandlePacketGarbage(t *testing.T) {
	s := newTestStream(t, 101)
	for name, b := range garbage {
		before := s.Stats()
		s.handlePacket(b, testRemote)
		after := s.Stats()
		if after.Dropped != before.Dropped+1 || after.PacketsIn != before.PacketsIn {
			t.Errorf("%s: stats %+v -> %+v, want one more Dropped", name, before, after)
		}
	}
	// A valid packet from the wrong port is dropped too.
	s.handlePacket(marshal(t, pcmuPacket(1, make([]byte, 160))), netip.MustParseAddrPort("127.0.0.1:40001"))
	if st := s.Stats(); st.Dropped != uint64(len(garbage))+1 || len(s.frames) != 0 {
		t.Errorf("wrong source: %+v, %d frames", st, len(s.frames))
	}
	// The same address written as IPv4-in-IPv6 is the right source.
	s.handlePacket(marshal(t, pcmuPacket(2, make([]byte, 160))), netip.MustParseAddrPort("[::ffff:127.0.0.1]:40000"))
	if len(s.frames) != 1 {
		t.Error("mapped IPv4 source not accepted")
	}
}

// Valid but unusual packets (CSRCs, header extension, padding) are decoded
// with exactly their payload.
func TestHandlePacketValidOddities(t *testing.T) {
	s := newTestStream(t, 0)
	payload := PCMU.Encode(nil, Tone(1000, FrameDuration, 0.5))
	want := PCMU.Decode(nil, payload)
	p := pcmuPacket(10, payload)
	p.CSRC = []uint32{1, 2, 3}
	p.Padding, p.PaddingSize = true, 7
	p.Extension, p.ExtensionProfile = true, rtp.ExtensionProfileOneByte
	if err := p.SetExtension(1, []byte{0xaa, 0xbb}); err != nil {
		t.Fatal(err)
	}
	s.handlePacket(marshal(t, p), testRemote)
	p2 := pcmuPacket(11, payload)
	p2.Extension, p2.ExtensionProfile = true, 0x1234 // RFC 3550 generic extension
	p2.Extensions = nil
	b := marshal(t, p2)
	s.handlePacket(b, testRemote)
	if st := s.Stats(); st.PacketsIn != 2 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	for i := range 2 {
		f := <-s.frames
		if !slicesEqual(f, want) {
			t.Errorf("frame %d differs from payload", i)
		}
	}
}

func TestSequenceHandling(t *testing.T) {
	s := newTestStream(t, 0)
	var played []uint16
	send := func(seqs ...uint16) {
		for _, q := range seqs {
			// Each payload carries its sequence number so we can see what played.
			s.handlePacket(marshal(t, pcmuPacket(q, PCMU.Encode(nil, []int16{int16(q & 0x1fff)}))), testRemote)
		}
	}
	// 160 one-sample packets make a frame; instead read the partial buffer.
	collect := func() {
		for _, x := range s.rx.frame {
			played = append(played, uint16(x))
		}
		s.rx.frame = s.rx.frame[:0]
	}
	send(65533, 65534, 65535, 0, 1) // wrap
	send(1, 0)                      // duplicate, late
	send(4)                         // gap of 2
	send(3)                         // late after the gap
	send(30000)                     // one stray jump: refused
	send(5)                         // stream continues
	send(40000, 40001)              // a confirmed jump: sender restarted
	collect()
	// G.711 rounding: compare decoded values of the expected sequence.
	var want []uint16
	for _, q := range []uint16{65533, 65534, 65535, 0, 1, 4, 5, 40001} {
		want = append(want, uint16(PCMU.Decode(nil, PCMU.Encode(nil, []int16{int16(q & 0x1fff)}))[0]))
	}
	if len(played) != len(want) {
		t.Fatalf("played %v, want %v", played, want)
	}
	for i := range want {
		if played[i] != want[i] {
			t.Fatalf("played %v, want %v", played, want)
		}
	}
	st := s.Stats()
	if st.PacketsLost != 2 || st.PacketsLate != 5 || st.PacketsIn != 13 {
		t.Errorf("stats %+v, want lost 2, late 5, in 13", st)
	}
	// New SSRC: resync without counting loss.
	p := pcmuPacket(9, []byte{0xff})
	p.SSRC = 99
	s.handlePacket(marshal(t, p), testRemote)
	if st := s.Stats(); st.PacketsLost != 2 || st.PacketsLate != 5 {
		t.Errorf("after SSRC change: %+v", st)
	}
}

func TestDTMFDedupeDirect(t *testing.T) {
	s := newTestStream(t, 101)
	seq := uint16(100)
	ev := func(ts uint32, event byte, end bool, dur uint16) {
		p := pcmuPacket(seq, []byte{event, 10, byte(dur >> 8), byte(dur)})
		p.PayloadType, p.Timestamp = 101, ts
		if end {
			p.Payload[1] |= 0x80
		}
		seq++
		s.handlePacket(marshal(t, p), testRemote)
	}
	ev(1000, 1, false, 160)
	ev(1000, 1, false, 320)
	ev(1000, 1, true, 480)
	ev(1000, 1, true, 480)
	ev(1000, 1, true, 480)
	ev(2000, 1, false, 160) // same digit again: a new event
	ev(2000, 1, false, 320) // its end packets are all lost
	ev(3000, 11, true, 800) // '#': only end packets arrived
	ev(3000, 11, true, 800)
	ev(4000, 16, false, 160) // flash: not a digit
	var got string
	for len(s.dtmf) > 0 {
		got += string((<-s.dtmf).Digit)
	}
	if got != "11#" || s.Stats().DTMFIn != 3 {
		t.Errorf("digits %q, DTMFIn %d; want \"11#\", 3", got, s.Stats().DTMFIn)
	}
}

func TestPtimeRechunk(t *testing.T) {
	s := newTestStream(t, 0)
	tone := Tone(700, 300*time.Millisecond, 0.5) // 2400 samples
	enc := PCMU.Encode(nil, tone)
	want := PCMU.Decode(nil, enc)
	seq := uint16(0)
	// ptime 30, then 10, then an odd size: frames stay 160 and nothing is lost.
	for _, size := range []int{240, 240, 240, 240, 80, 80, 80, 80, 7, 153, 240, 240, 240, 240} {
		s.handlePacket(marshal(t, pcmuPacket(seq, enc[:size])), testRemote)
		enc = enc[size:]
		seq++
	}
	if len(enc) != 0 {
		t.Fatalf("test bug: %d bytes left", len(enc))
	}
	var got []int16
	for len(s.frames) > 0 {
		f := <-s.frames
		if len(f) != FrameSamples {
			t.Fatalf("frame of %d samples", len(f))
		}
		got = append(got, f...)
	}
	if !slicesEqual(got, want) {
		t.Errorf("rechunked audio differs: %d samples vs %d", len(got), len(want))
	}
}

func TestFramesDropOldest(t *testing.T) {
	s := newTestStream(t, 0)
	for i := range framesBuffer + 5 {
		s.handlePacket(marshal(t, pcmuPacket(uint16(i), PCMU.Encode(nil, []int16{int16(i * 64)})[:1])), testRemote)
		s.rx.frame = s.rx.frame[:FrameSamples] // complete it by hand
		s.deliver(s.rx.frame)
		s.rx.frame = nil
	}
	if st := s.Stats(); st.FramesDropped != 5 {
		t.Errorf("FramesDropped %d, want 5", st.FramesDropped)
	}
	first := <-s.frames
	if want := PCMU.Decode(nil, PCMU.Encode(nil, []int16{5 * 64})); first[0] != want[0] {
		t.Errorf("oldest kept frame starts %d, want %d (frames 0-4 dropped)", first[0], want[0])
	}
}

func FuzzStreamPacket(f *testing.F) {
	for _, b := range garbage {
		f.Add(b)
	}
	f.Add(marshal(f, pcmuPacket(1, make([]byte, 160))))
	f.Add(marshal(f, pcmuPacket(2, make([]byte, 240))))
	f.Add([]byte{0x80, 101, 0, 3, 0, 0, 0, 9, 0, 0, 0, 7, 5, 0x8a, 0, 160})
	s := newTestStream(f, 101)
	f.Fuzz(func(t *testing.T, b []byte) {
		s.handlePacket(b, testRemote)
		for len(s.frames) > 0 {
			if f := <-s.frames; len(f) != FrameSamples {
				t.Fatalf("frame of %d samples", len(f))
			}
		}
		for len(s.dtmf) > 0 {
			<-s.dtmf
		}
	})
}

// BenchmarkReceivePath measures parse, checks and decode of one 20 ms PCMU
// packet. The one allocation per op is the owned frame handed to Frames.
func BenchmarkReceivePath(b *testing.B) {
	s := newTestStream(b, 101)
	pkt := marshal(b, pcmuPacket(0, PCMU.Encode(nil, Tone(1000, FrameDuration, 0.5))))
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for i := 0; b.Loop(); i++ {
		pkt[2], pkt[3] = byte(i>>8), byte(i)
		s.handlePacket(pkt, testRemote)
		<-s.frames
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
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewStream(StreamConfig{Conn: c, Remote: sink.LocalAddr().(*net.UDPAddr), Codec: PCMU})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.Enqueue(Tone(1000, time.Hour, 0.5))
	b.ReportAllocs()
	for b.Loop() {
		s.tick()
	}
	if s.Stats().PacketsOut == 0 {
		b.Fatal("nothing sent")
	}
}
