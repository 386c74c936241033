package media_test

import (
	"context"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
)

// Generous: the assertions are about content and counts, never timing, so a
// loaded machine only makes the tests slower.
const wait = 10 * time.Second

func isTone(f []int16) bool {
	return media.ToneLevel(f, 1000) > 0.3 && media.ToneLevel(f, 400) < 0.05
}

func isSilent(f []int16) bool { return media.RMS(f) < 50 }

// nextFrame reads one frame or fails.
func nextFrame(t *testing.T, s *media.Stream) []int16 {
	t.Helper()
	return rtptest.Frames(t, s, 1, wait)
}

func TestToneAcrossLoopback(t *testing.T) {
	for _, codec := range []media.Codec{media.PCMU, media.PCMA} {
		t.Run(codec.Name, func(t *testing.T) {
			a, b := rtptest.Pair(t, codec, 101)
			tone := media.Tone(1000, 400*time.Millisecond, 0.5)
			outBefore := a.Stats().PacketsOut
			done := a.Enqueue(tone)

			// Skip the idle silence, then collect tone frames.
			var got []int16
			for i := 0; len(got) < 10*media.FrameSamples; i++ {
				if i > 500 {
					t.Fatal("no tone frames at B")
				}
				if f := nextFrame(t, b); isTone(f) {
					got = append(got, f...)
				}
			}
			if f := media.DominantFrequency(got, 300, 3400, 10); f != 1000 {
				t.Errorf("dominant frequency %v, want 1000", f)
			}
			select {
			case <-done:
			case <-time.After(wait):
				t.Fatal("Enqueue channel not closed after playout")
			}
			// Closed only after the last sample was on the wire: at least 20 packets.
			if sent := a.Stats().PacketsOut - outBefore; sent < uint64(len(tone)/media.FrameSamples) {
				t.Errorf("done after only %d packets", sent)
			}
			if st := b.Stats(); st.PacketsIn == 0 || st.BytesIn == 0 || st.Dropped != 0 {
				t.Errorf("B stats %+v", st)
			}
		})
	}
}

func TestFlushBargeIn(t *testing.T) {
	a, b := rtptest.Pair(t, media.PCMU, 0)
	done := a.Enqueue(media.Tone(1000, 5*time.Second, 0.5))
	for i := 0; ; i++ {
		if i > 500 {
			t.Fatal("tone never arrived")
		}
		if isTone(nextFrame(t, b)) {
			break
		}
	}
	a.Flush()
	select {
	case <-done:
	default:
		t.Fatal("Flush did not close the flushed chunk's channel")
	}
	if q := a.Queued(); q != 0 {
		t.Errorf("Queued after Flush = %v", q)
	}
	// Silence must follow within a few frames (in flight + B's channel), and
	// the remaining ~4.9 s of tone must never come.
	silent := 0
	for i := 0; silent < 25; i++ {
		if i > 100 {
			t.Fatal("no sustained silence after Flush")
		}
		f := nextFrame(t, b)
		if isSilent(f) {
			silent++
		} else if silent > 0 {
			t.Fatalf("tone resumed after %d silent frames", silent)
		}
	}
}

func TestIdleSendsSilence(t *testing.T) {
	sink := rtptest.Listen(t)
	s := rtptest.NewStream(t, rtptest.Listen(t), sink.LocalAddr().(*net.UDPAddr), media.PCMA, 0)
	var first rtp.Packet
	var prev rtp.Packet
	for i := range 10 {
		p := readRTP(t, sink)
		if len(p.Payload) != media.FrameSamples || p.PayloadType != 8 {
			t.Fatalf("packet %d: pt %d, %d bytes", i, p.PayloadType, len(p.Payload))
		}
		for _, x := range p.Payload {
			if x != 0xD5 {
				t.Fatalf("packet %d is not A-law silence: %#x", i, x)
			}
		}
		if i == 0 {
			first = p
			if !p.Marker {
				t.Error("no marker on first packet")
			}
		} else {
			if p.Marker || p.SSRC != first.SSRC || p.SequenceNumber != prev.SequenceNumber+1 || p.Timestamp != prev.Timestamp+160 {
				t.Fatalf("packet %d: %v after %v", i, p.Header, prev.Header)
			}
		}
		prev = p
	}
	// Counters move just after the write returns, so poll.
	rtptest.Eventually(t, wait, "PacketsOut >= 10", func() bool {
		st := s.Stats()
		return st.PacketsOut >= 10 && st.BytesOut >= 10*172
	})
}

func TestWrongSourceDropped(t *testing.T) {
	_, b := rtptest.Pair(t, media.PCMU, 0) // the real peer sends only silence
	intruder := rtptest.NewPeer(t)
	intruder.To = b.LocalAddr()
	payload := media.PCMU.Encode(nil, media.Tone(1000, media.FrameDuration, 0.8))
	const n = 50
	for i := range n {
		intruder.Send(0, i == 0, uint32(i*160), payload)
	}
	rtptest.Eventually(t, wait, "intruder packets counted", func() bool { return b.Stats().Dropped >= n })
	// Everything handled so far came in order through one reader: none of it may be tone.
	for len(b.Frames()) > 0 {
		if f := <-b.Frames(); !isSilent(f) {
			t.Fatal("audio from the wrong source was delivered")
		}
	}
	if st := b.Stats(); st.Dropped != n {
		t.Errorf("Dropped = %d, want %d", st.Dropped, n)
	}
}

func TestDTMFAcrossLoopback(t *testing.T) {
	a, b := rtptest.Pair(t, media.PCMU, 101)
	a.Enqueue(media.Tone(1000, 2*time.Second, 0.5)) // audio pauses around the digits
	var dones []<-chan struct{}
	for _, d := range "5#" {
		done, err := a.SendDTMF(d, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		dones = append(dones, done)
	}
	for _, done := range dones {
		select {
		case <-done:
		case <-time.After(wait):
			t.Fatal("SendDTMF channel not closed")
		}
	}
	// A third digit sent after the first two (and their 3 end packets each)
	// completed: any duplicate of them would arrive before it.
	if _, err := a.SendDTMF('9', 0); err != nil {
		t.Fatal(err)
	}
	var got []rune
	for len(got) < 3 {
		select {
		case ev := <-b.DTMF():
			got = append(got, ev.Digit)
		case <-time.After(wait):
			t.Fatalf("got digits %q", string(got))
		}
	}
	if string(got) != "5#9" {
		t.Errorf("digits %q, want \"5#9\"", string(got))
	}
	if _, err := a.SendDTMF('x', time.Second); err == nil {
		t.Error("bad digit accepted")
	}
	if _, err := a.SendDTMF('1', 9*time.Second); err == nil {
		t.Error("9 s digit accepted")
	}
	// No telephone-event negotiated: refused.
	c, _ := rtptest.Pair(t, media.PCMU, 0)
	if _, err := c.SendDTMF('1', time.Second); err != media.ErrNoDTMF {
		t.Errorf("err = %v, want ErrNoDTMF", err)
	}
}

// TestDTMFWire checks the packets SendDTMF puts on the wire.
func TestDTMFWire(t *testing.T) {
	sink := rtptest.Listen(t)
	s := rtptest.NewStream(t, rtptest.Listen(t), sink.LocalAddr().(*net.UDPAddr), media.PCMU, 96)
	buf := make([]byte, 1500)
	sink.SetReadDeadline(time.Now().Add(wait))
	if _, err := sink.Read(buf); err != nil { // an audio packet first, for its SSRC
		t.Fatal(err)
	}
	audioSSRC := uint32(buf[8])<<24 | uint32(buf[9])<<16 | uint32(buf[10])<<8 | uint32(buf[11])
	done, err := s.SendDTMF('7', 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var events []rtp.Packet
	for len(events) < 8 {
		sink.SetReadDeadline(time.Now().Add(wait))
		n, err := sink.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
			t.Fatal(err)
		}
		if p.PayloadType == 96 {
			events = append(events, p)
		} else {
			if len(events) > 0 {
				t.Fatal("audio packet in the middle of the event")
			}
		}
	}
	<-done
	sink.SetReadDeadline(time.Now().Add(wait))
	n, err := sink.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if buf[1]&0x7f != 0 || buf[1]&0x80 == 0 || n != 172 {
		t.Errorf("packet after the event: % x..., want PCMU with marker", buf[:12])
	}
	for i, p := range events {
		dur := uint16(p.Payload[2])<<8 | uint16(p.Payload[3])
		end := p.Payload[1]&0x80 != 0
		wantDur := uint16(min(i+1, 5) * 160)
		if p.Payload[0] != 7 || dur != wantDur || end != (i >= 5) || p.Marker != (i == 0) ||
			p.Timestamp != events[0].Timestamp || p.SSRC != audioSSRC ||
			(i > 0 && p.SequenceNumber != events[i-1].SequenceNumber+1) {
			t.Errorf("event packet %d: %v payload %x", i, p.Header, p.Payload)
		}
	}
}

// TestDTMFRawPeer feeds hand-made RFC 4733 packets over UDP: retransmitted
// end packets, a lost start, lost end packets, and the same digit twice.
func TestDTMFRawPeer(t *testing.T) {
	peer := rtptest.NewPeer(t)
	b := rtptest.NewStream(t, rtptest.Listen(t), peer.Addr(), media.PCMU, 101)
	peer.To = b.LocalAddr()
	ev := func(ts uint32, e byte, marker, end bool, dur uint16) {
		peer.Send(101, marker, ts, rtptest.DTMFPayload(e, end, 10, dur))
	}
	// '1': complete, with 3 end packets.
	ev(1000, 1, true, false, 160)
	ev(1000, 1, false, false, 320)
	ev(1000, 1, false, true, 480)
	ev(1000, 1, false, true, 480)
	ev(1000, 1, false, true, 480)
	// '2': first packet lost (a sequence gap), one end packet lost.
	peer.Seq++
	ev(2000, 2, false, false, 320)
	ev(2000, 2, false, true, 480)
	ev(2000, 2, false, true, 480)
	// '2' end packet retransmitted with the same sequence number (RFC 2833 style).
	peer.Seq--
	ev(2000, 2, false, true, 480)
	// '3' twice: no end packets at all for the first.
	ev(3000, 3, true, false, 160)
	ev(3000, 3, false, false, 320)
	ev(4000, 3, true, false, 160)
	ev(4000, 3, false, true, 320)
	ev(4000, 3, false, true, 320)
	ev(4000, 3, false, true, 320)
	// Audio in between is fine, then '#' marks the end of the script.
	peer.Send(0, true, 5000, make([]byte, 160))
	ev(6000, 11, true, false, 160)
	ev(6000, 11, false, true, 160)

	var got strings.Builder
	for !strings.HasSuffix(got.String(), "#") {
		select {
		case e := <-b.DTMF():
			got.WriteRune(e.Digit)
		case <-time.After(wait):
			t.Fatalf("digits so far %q", got.String())
		}
	}
	if got.String() != "1233#" {
		t.Errorf("digits %q, want \"1233#\"", got.String())
	}
	st := b.Stats()
	if st.DTMFIn != 5 || st.PacketsLost != 1 || st.PacketsLate != 1 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestGarbageOverUDP sends malformed datagrams from the legitimate peer: each
// is counted as Dropped and the stream keeps working.
func TestGarbageOverUDP(t *testing.T) {
	peer := rtptest.NewPeer(t)
	b := rtptest.NewStream(t, rtptest.Listen(t), peer.Addr(), media.PCMU, 101)
	peer.To = b.LocalAddr()
	garbage := [][]byte{
		{},
		{0x80},
		{0x00, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff},       // version 0
		{0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff, 200},  // padding > payload
		{0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3, 4},       // 15 CSRCs, 1 present
		{0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xbe, 0xde, 9, 9}, // extension past the end
		{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff},            // unknown PT
		make([]byte, 4000), // oversized
	}
	for _, g := range garbage {
		peer.SendRaw(g)
	}
	tone := media.PCMU.Encode(nil, media.Tone(1000, media.FrameDuration, 0.5))
	peer.Send(0, true, 0, tone)
	for {
		if isTone(nextFrame(t, b)) {
			break
		}
	}
	if st := b.Stats(); st.Dropped != uint64(len(garbage)) || st.PacketsIn != 1 {
		t.Errorf("stats %+v, want %d dropped, 1 in", st, len(garbage))
	}
}

// TestPtime30OverUDP: 30 ms packets paced on the wire come out as 20 ms
// frames, sample for sample. The generous minimum delay keeps a loaded
// machine's sleep jitter from turning into concealment.
func TestPtime30OverUDP(t *testing.T) {
	peer := rtptest.NewPeer(t)
	b, err := media.NewStream(media.StreamConfig{Conn: rtptest.Listen(t), Remote: peer.Addr(), Codec: media.PCMU, MinDelay: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	b.Start(t.Context())
	peer.To = b.LocalAddr()
	enc := media.PCMU.Encode(nil, media.Tone(1000, 600*time.Millisecond, 0.5)) // 20 packets of 240
	want := media.PCMU.Decode(nil, enc)
	start := time.Now()
	for i := 0; i < len(enc); i += 240 {
		time.Sleep(time.Until(start.Add(time.Duration(i/240) * 30 * time.Millisecond)))
		peer.Send(0, i == 0, uint32(i), enc[i:i+240])
	}
	got := rtptest.Frames(t, b, 45, wait)
	i := slices.IndexFunc(got, func(v int16) bool { return v != 0 }) - 1 // the tone's first sample is 0
	if i < 0 || len(got)-i < len(want) || !slices.Equal(got[i:i+len(want)], want) {
		t.Errorf("audio lost or reordered in re-chunking (starts at %d; stats %+v)", i, b.Stats().Receive)
	}
}

func goroutinesSettle(t *testing.T, base int) {
	t.Helper()
	rtptest.Eventually(t, wait, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= base })
}

func TestNoLeaks(t *testing.T) {
	base := runtime.NumGoroutine()

	// Stopped by Close.
	a, b := rtptest.Listen(t), rtptest.Listen(t)
	s, err := media.NewStream(media.StreamConfig{Conn: a, Remote: b.LocalAddr().(*net.UDPAddr), Codec: media.PCMU, DTMFPayloadType: 101})
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	done := s.Enqueue(media.Tone(440, time.Minute, 0.5))
	dtmf, _ := s.SendDTMF('1', time.Second)
	dtmf2, _ := s.SendDTMF('2', time.Second)
	if runtime.NumGoroutine() <= base {
		t.Fatal("Start started no goroutines?")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	for _, c := range []<-chan struct{}{done, dtmf, dtmf2, s.Done(), s.Enqueue([]int16{1})} {
		select {
		case <-c:
		default:
			t.Fatal("a waiter channel is still open after Close")
		}
	}
	if _, ok := <-s.Frames(); ok {
		t.Error("Frames not closed")
	}
	if _, ok := <-s.DTMF(); ok {
		t.Error("DTMF not closed")
	}
	if _, err := s.SendDTMF('1', time.Second); err != media.ErrClosed {
		t.Errorf("SendDTMF after close: %v", err)
	}
	goroutinesSettle(t, base)

	// Stopped by its context.
	c := rtptest.Listen(t)
	s2, err := media.NewStream(media.StreamConfig{Conn: c, Remote: b.LocalAddr().(*net.UDPAddr), Codec: media.PCMU})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s2.Start(ctx)
	cancel()
	select {
	case <-s2.Done():
	case <-time.After(wait):
		t.Fatal("stream did not stop on context cancel")
	}
	goroutinesSettle(t, base)
	if _, err := c.WriteToUDP([]byte{1}, b.LocalAddr().(*net.UDPAddr)); err == nil {
		t.Error("socket still open after the stream stopped")
	}
	s2.Close()

	// Never started.
	s3, err := media.NewStream(media.StreamConfig{Conn: rtptest.Listen(t), Remote: b.LocalAddr().(*net.UDPAddr), Codec: media.PCMU})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
	s3.Start(context.Background()) // after Close: no-op
	goroutinesSettle(t, base)
}

func TestNewStreamValidation(t *testing.T) {
	c := rtptest.Listen(t)
	r := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	for name, cfg := range map[string]media.StreamConfig{
		"no conn":       {Remote: r, Codec: media.PCMU},
		"no remote":     {Conn: c, Codec: media.PCMU},
		"port 0":        {Conn: c, Remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, Codec: media.PCMU},
		"bad codec":     {Conn: c, Remote: r, Codec: media.Codec{Name: "G722", PayloadType: 9}},
		"dtmf pt clash": {Conn: c, Remote: r, Codec: media.Codec{Name: "PCMU", PayloadType: 101}, DTMFPayloadType: 101},
		"dtmf pt > 127": {Conn: c, Remote: r, Codec: media.PCMU, DTMFPayloadType: 200},
	} {
		if _, err := media.NewStream(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// readRTP reads one RTP packet from sink.
func readRTP(t *testing.T, sink *net.UDPConn) rtp.Packet {
	t.Helper()
	buf := make([]byte, 1500)
	sink.SetReadDeadline(time.Now().Add(wait))
	n, err := sink.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEnqueueStarted: started reports when the chunk's first packet was
// written, once; a chunk flushed before it started never reports.
func TestEnqueueStarted(t *testing.T) {
	sink := rtptest.Listen(t)
	s := rtptest.NewStream(t, rtptest.Listen(t), sink.LocalAddr().(*net.UDPAddr), media.PCMU, 0)
	before := time.Now()
	done1, started1 := s.EnqueueStarted(media.Tone(1000, 200*time.Millisecond, 0.5))
	done2, started2 := s.EnqueueStarted(media.Tone(1000, time.Minute, 0.5))
	var at time.Time
	select {
	case at = <-started1:
	case <-time.After(wait):
		t.Fatal("started never delivered")
	}
	if at.Before(before) {
		t.Errorf("started at %v, before the Enqueue at %v", at, before)
	}
	<-done1
	select {
	case at2 := <-started2:
		// After the first chunk's 10 packets: normally 200 ms later, less
		// if a loaded machine made the clock catch up in a burst.
		if !at2.After(at) {
			t.Errorf("second chunk started at %v, not after the first at %v", at2, at)
		}
	case <-time.After(wait):
		t.Fatal("second chunk never started")
	}
	// A chunk queued behind a long one and flushed: never started.
	_, started3 := s.EnqueueStarted(media.Tone(1000, time.Second, 0.5))
	s.Flush()
	<-done2
	select {
	case <-started3:
		t.Error("a chunk flushed before it played reported a start")
	case <-time.After(100 * time.Millisecond):
	}
	// Each start is delivered once.
	select {
	case <-started1:
		t.Error("started delivered twice")
	default:
	}
}

// TestFlushWithinOneFrame reads the wire: once Flush returns, at most the
// packet being built at that moment still carries the flushed audio.
func TestFlushWithinOneFrame(t *testing.T) {
	sink := rtptest.Listen(t)
	s := rtptest.NewStream(t, rtptest.Listen(t), sink.LocalAddr().(*net.UDPAddr), media.PCMU, 0)
	first := readRTP(t, sink)
	s.Enqueue(media.Tone(1000, time.Minute, 0.5))
	for i := 0; ; i++ {
		if i > 200 {
			t.Fatal("tone never sent")
		}
		if p := readRTP(t, sink); isTone(media.PCMU.Decode(nil, p.Payload)) {
			break
		}
	}
	time.Sleep(100 * time.Millisecond)
	s.Flush()
	sentAtFlush := s.Stats().PacketsOut // packets fully sent before Flush returned
	for range 60 {
		p := readRTP(t, sink)
		index := uint64(p.SequenceNumber - first.SequenceNumber) // 0-based count of packets sent
		tone := !isSilent(media.PCMU.Decode(nil, p.Payload))
		if tone && index > sentAtFlush {
			t.Fatalf("packet %d carries flushed audio; %d had been sent when Flush returned", index, sentAtFlush)
		}
	}
}

// TestPacingOnWire: one packet per 20 ms on an absolute schedule: sequence
// numbers are contiguous, timestamps advance by 160 per packet (or by whole
// packets more, if a long stall on a loaded machine was skipped), and media
// time follows the wall clock without drift.
func TestPacingOnWire(t *testing.T) {
	sink := rtptest.Listen(t)
	s := rtptest.NewStream(t, rtptest.Listen(t), sink.LocalAddr().(*net.UDPAddr), media.PCMU, 0)
	first := readRTP(t, sink)
	start := time.Now()
	prev := first
	const n = 150 // 3 s
	for range n {
		p := readRTP(t, sink)
		d := p.Timestamp - prev.Timestamp
		if p.SequenceNumber != prev.SequenceNumber+1 || d < 160 || d%160 != 0 {
			t.Fatalf("%v after %v", p.Header, prev.Header)
		}
		prev = p
	}
	el := time.Since(start)
	mediaTime := time.Duration(prev.Timestamp-first.Timestamp) * time.Second / media.SampleRate
	// Generous: the reader may lag on a loaded machine; a drifting clock
	// would be off by a growing amount.
	if diff := el - mediaTime; diff < -100*time.Millisecond || diff > 500*time.Millisecond {
		t.Errorf("%v of media time took %v of wall time", mediaTime, el)
	}
	st := s.Stats()
	t.Logf("send lateness p99 %.2f ms, max %.2f ms", st.SendLateP99MS, st.SendLateMaxMS)
	if st.SendLate.Count < n || st.SendLateMaxMS < st.SendLateP99MS {
		t.Errorf("lateness: %d packets, p99 %v max %v", st.SendLate.Count, st.SendLateP99MS, st.SendLateMaxMS)
	}
}

// rtcpPair returns two started streams with RTCP every 200 ms, either
// multiplexed on the RTP port or on RTP port + 1.
func rtcpPair(t *testing.T, mux bool) (a, b *media.Stream) {
	t.Helper()
	mk := func(conn, rtcpConn *net.UDPConn, remote *net.UDPAddr) *media.Stream {
		cfg := media.StreamConfig{Conn: conn, Remote: remote, Codec: media.PCMU, RTCPInterval: 200 * time.Millisecond}
		if mux {
			cfg.RTCPMux = true
		} else {
			cfg.RTCPConn = rtcpConn
		}
		s, err := media.NewStream(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		s.Start(t.Context())
		return s
	}
	ports := media.PortRange{Min: 30000, Max: 39999}
	ra, ca, err := ports.ListenPair(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	rb, cb, err := ports.ListenPair(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*net.UDPConn{ra, rb} {
		if c.LocalAddr().(*net.UDPAddr).Port%2 != 0 {
			t.Fatalf("RTP on odd port %v", c.LocalAddr())
		}
	}
	if ca.LocalAddr().(*net.UDPAddr).Port != ra.LocalAddr().(*net.UDPAddr).Port+1 {
		t.Fatalf("RTCP %v not next to RTP %v", ca.LocalAddr(), ra.LocalAddr())
	}
	if mux {
		ca.Close()
		cb.Close()
	}
	a = mk(ra, ca, rb.LocalAddr().(*net.UDPAddr))
	b = mk(rb, cb, ra.LocalAddr().(*net.UDPAddr))
	return a, b
}

// TestRTCPLoopback: both sides report, each learns the RTT and that the
// other lost nothing, the MOS of a clean loopback call is high, and Close
// says BYE.
func TestRTCPLoopback(t *testing.T) {
	for _, mux := range []bool{true, false} {
		t.Run(map[bool]string{true: "mux", false: "port+1"}[mux], func(t *testing.T) {
			a, b := rtcpPair(t, mux)
			a.Enqueue(media.Tone(1000, 3*time.Second, 0.5))
			rtptest.Eventually(t, wait, "reports with RTT both ways", func() bool {
				sa, sb := a.Stats(), b.Stats()
				return sa.RTCPReceived >= 3 && sb.RTCPReceived >= 3 && sa.RTTMS > 0 && sb.RTTMS > 0
			})
			for _, s := range []*media.Stream{a, b} {
				st := s.Stats()
				t.Logf("RTT %.3f ms, remote loss %v/%d, jitter %.2f ms, R %.1f, MOS %.2f, sent %d RTCP",
					st.RTTMS, st.RemoteLossFraction, st.RemoteLost, st.RemoteJitterMS, st.RFactor, st.MOS, st.RTCPSent)
				if st.RTTMS > 1000 || st.RemoteLost != 0 || st.RemoteLossFraction != 0 || st.Dropped != 0 {
					t.Errorf("%+v", st)
				}
				// The MOS is the E-model of the stream's own numbers (how
				// high depends on how loaded the machine is: late packets
				// count as lost).
				rs := st.Receive
				loss := float64(rs.Lost+rs.Late) / float64(rs.Packets+rs.Lost)
				delay := time.Duration((st.RTTMS/2 + rs.DelayMSMean) * float64(time.Millisecond))
				if _, mos := media.EModel(loss, delay+media.FrameDuration); st.MOS != mos || mos < 1 || mos > 4.5 {
					t.Errorf("MOS %v, want %v", st.MOS, mos)
				}
			}
			if a.Stats().RemoteBye {
				t.Error("BYE before anyone closed")
			}
			a.Close()
			rtptest.Eventually(t, wait, "BYE at B", func() bool { return b.Stats().RemoteBye })
		})
	}
}

func TestEModel(t *testing.T) {
	for _, c := range []struct {
		loss     float64
		delay    time.Duration
		min, max float64
	}{
		{0, 40 * time.Millisecond, 4.35, 4.45},   // clean: G.711's ceiling
		{0.01, 60 * time.Millisecond, 4.1, 4.3},  // 1 % loss
		{0.05, 60 * time.Millisecond, 3.7, 3.95}, // 5 % loss
		{0, 400 * time.Millisecond, 3.0, 3.6},    // long delay
		{0.3, 300 * time.Millisecond, 1.0, 1.6},  // unusable
		{-1, -time.Second, 4.35, 4.5},            // nonsense clamps
		{2, time.Hour, 1, 1},
	} {
		r, mos := media.EModel(c.loss, c.delay)
		if mos < c.min || mos > c.max {
			t.Errorf("loss %v delay %v: R %.1f MOS %.2f, want %.2f-%.2f", c.loss, c.delay, r, mos, c.min, c.max)
		}
	}
}

func TestNewStreamRTCPValidation(t *testing.T) {
	c, rc := rtptest.Listen(t), rtptest.Listen(t)
	r := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	for name, cfg := range map[string]media.StreamConfig{
		"mux and conn":      {Conn: c, Remote: r, Codec: media.PCMU, RTCPMux: true, RTCPConn: rc},
		"bad remote rtcp":   {Conn: c, Remote: r, Codec: media.PCMU, RTCPConn: rc, RemoteRTCP: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}},
		"no rtcp port":      {Conn: c, Remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 65535}, Codec: media.PCMU, RTCPConn: rc},
		"negative interval": {Conn: c, Remote: r, Codec: media.PCMU, RTCPMux: true, RTCPInterval: -time.Second},
		"delays inverted":   {Conn: c, Remote: r, Codec: media.PCMU, MinDelay: time.Second, MaxDelay: time.Millisecond},
	} {
		if _, err := media.NewStream(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestCloseDrainsJitterBuffer: audio that arrived but was still in the
// jitter buffer when the stream stopped (a BYE right after the last
// words) reaches Frames before it closes.
func TestCloseDrainsJitterBuffer(t *testing.T) {
	peer := rtptest.NewPeer(t)
	b, err := media.NewStream(media.StreamConfig{Conn: rtptest.Listen(t), Remote: peer.Addr(), Codec: media.PCMU, MinDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b.Start(t.Context())
	peer.To = b.LocalAddr()
	toneFrames := make(chan int)
	go func() { // read as frames come, so a slow start cannot fill the channel
		n := 0
		for f := range b.Frames() {
			if isTone(f) {
				n++
			}
		}
		toneFrames <- n
	}()
	enc := media.PCMU.Encode(nil, media.Tone(1000, 200*time.Millisecond, 0.5))
	for i := range 10 {
		peer.Send(0, i == 0, uint32(i*160), enc[i*160:(i+1)*160])
		time.Sleep(media.FrameDuration)
	}
	rtptest.Eventually(t, wait, "all 10 packets in", func() bool { return b.Stats().PacketsIn == 10 })
	b.Close() // at least 100 ms of the tone is still buffered
	if n := <-toneFrames; n != 10 {
		t.Errorf("%d of 10 tone frames delivered", n)
	}
}

// With Echo on, B's clock sends A's tone back to A (and B's Frames gets
// nothing); with it off again, A hears B's silence.
func TestEchoFromTheClock(t *testing.T) {
	a, b := rtptest.Pair(t, media.PCMU, 101)
	b.Echo(true)
	a.Enqueue(media.Tone(1000, 2*time.Second, 0.5))
	var got []int16
	for i := 0; len(got) < 20*media.FrameSamples; i++ {
		if i > 500 {
			t.Fatal("A never heard its tone echoed")
		}
		if f := nextFrame(t, a); isTone(f) {
			got = append(got, f...)
		}
	}
	if f := media.DominantFrequency(got, 300, 3400, 10); f != 1000 {
		t.Errorf("echo's dominant frequency %v, want 1000", f)
	}
	if n := len(b.Frames()); n != 0 {
		t.Errorf("B's Frames got %d frames while echoing", n)
	}
	if d := b.Stats().FramesDropped; d != 0 {
		t.Errorf("%d frames counted dropped while echoing", d)
	}
	b.Echo(false)
	a.Flush()
	silent := 0
	for i := 0; silent < 10; i++ {
		if i > 500 {
			t.Fatal("A still hears audio after the echo stopped")
		}
		if isSilent(nextFrame(t, a)) {
			silent++
		} else {
			silent = 0
		}
	}
}
