package media_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
)

// played is what a simulated replay of a trace produced.
type played struct {
	st     media.ReceiveStats
	audio  []int16 // every frame pulled, concatenated
	frames int
	digits []media.DTMFEvent
}

func play(t *testing.T, tr rtptest.Trace, cfg media.ReceiverConfig) played {
	t.Helper()
	var out played
	cfg.OnDTMF = func(ev media.DTMFEvent) { out.digits = append(out.digits, ev) }
	r := media.NewReceiver(cfg)
	out.frames = media.PlaySimulated(r, tr.Arrivals(), func(_ time.Time, f []int16) {
		if len(f) != media.FrameSamples {
			t.Fatalf("frame of %d samples", len(f))
		}
		out.audio = append(out.audio, f...)
	})
	out.st = r.Stats()
	t.Logf("stats %+v", out.st)
	return out
}

// frameLevels splits audio into 20 ms frames and measures the 1 kHz level
// of each.
func frameLevels(pcm []int16, hz float64) []float64 {
	var out []float64
	for i := 0; i+media.FrameSamples <= len(pcm); i += media.FrameSamples {
		out = append(out, media.ToneLevel(pcm[i:i+media.FrameSamples], hz))
	}
	return out
}

// toneGaps counts the frames without the 1 kHz tone, leaving out skip
// frames at the start (the initial delay) and five at the end (drain).
func toneGaps(pcm []int16, skip int) int {
	levels := frameLevels(pcm, 1000)
	gaps := 0
	for _, l := range levels[skip : len(levels)-5] {
		if l < 0.3 {
			gaps++
		}
	}
	return gaps
}

// firstSound is the index of the first non-zero sample.
func firstSound(pcm []int16) int {
	for i, v := range pcm {
		if v != 0 {
			return i
		}
	}
	return len(pcm)
}

func TestReceiverCleanTrace(t *testing.T) {
	for _, codec := range []media.Codec{media.PCMU, media.PCMA} {
		t.Run(codec.Name, func(t *testing.T) {
			tr := rtptest.Generate(rtptest.Profile{Seed: 1, Duration: 10 * time.Second, Codec: codec, BaseDelay: 30 * time.Millisecond})
			p := play(t, tr, media.ReceiverConfig{}) // codec detected from the payload type
			st := p.st
			if st.Packets != 500 || st.Lost != 0 || st.Late != 0 || st.Duplicates != 0 || st.Reordered != 0 ||
				st.ConcealedMS != 0 || st.Invalid != 0 || st.Resyncs != 0 {
				t.Errorf("clean trace: %+v", st)
			}
			if st.Codec.Name != codec.Name || st.PayloadType != codec.PayloadType || st.SSRC != 0x11223344 {
				t.Errorf("codec %v pt %d ssrc %#x", st.Codec, st.PayloadType, st.SSRC)
			}
			if st.DurationMS != 10000 || st.JitterMS > 0.01 {
				t.Errorf("duration %v, jitter %v", st.DurationMS, st.JitterMS)
			}
			// No jitter: the minimum delay is all that is added.
			if math.Abs(st.DelayMSMean-20) > 0.01 || math.Abs(st.DelayMSP95-20) > 1 {
				t.Errorf("delay mean %v p95 %v, want 20", st.DelayMSMean, st.DelayMSP95)
			}
			// The audio is the sender's, sample for sample, after the initial delay.
			var want []int16
			for n := range 80000 {
				want = append(want, rtptest.Tone1k(n))
			}
			want = codec.Decode(nil, codec.Encode(nil, want))
			// One frame of silence first: the 20 ms minimum delay.
			if !slices.Equal(p.audio[:160], make([]int16, 160)) {
				t.Error("the first frame is not silence")
			}
			if got := p.audio[160:]; len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
				t.Errorf("played audio differs from what was sent (%d samples)", len(got))
			}
		})
	}
}

func TestReceiverRandomLoss(t *testing.T) {
	tr := rtptest.Generate(rtptest.Profile{Seed: 7, Duration: 20 * time.Second, Loss: 0.05, BaseDelay: 20 * time.Millisecond})
	if tr.Lost < 30 {
		t.Fatalf("test bug: only %d lost", tr.Lost)
	}
	p := play(t, tr, media.ReceiverConfig{Codec: media.PCMU})
	st := p.st
	if int(st.Lost) != tr.Lost || st.Late != 0 || st.Packets != uint64(tr.Sent-tr.Dropped) {
		t.Errorf("lost %d late %d packets %d; want lost %d, packets %d", st.Lost, st.Late, st.Packets, tr.Lost, tr.Sent-tr.Dropped)
	}
	// Every lost 20 ms is concealed, and nothing else is.
	if st.ConcealedMS != float64(20*tr.Lost) {
		t.Errorf("concealed %v ms, want %d", st.ConcealedMS, 20*tr.Lost)
	}
	// Concealment continues the tone: no frame of the call is silent.
	levels := frameLevels(p.audio[firstSound(p.audio):], 1000)
	for i, l := range levels[:len(levels)-5] {
		if l < 0.3 {
			t.Fatalf("frame %d has 1 kHz level %.2f: a gap instead of concealment", i, l)
		}
	}
}

func TestReceiverBurstLossFades(t *testing.T) {
	tr := rtptest.Generate(rtptest.Profile{Seed: 3, Duration: 4 * time.Second, BaseDelay: 20 * time.Millisecond,
		Bursts: []rtptest.Burst{{At: time.Second, Packets: 10}, {At: 2 * time.Second, Packets: 2}}})
	p := play(t, tr, media.ReceiverConfig{Codec: media.PCMU})
	st := p.st
	if st.Lost != 12 || st.ConcealedMS != 240 {
		t.Errorf("lost %d concealed %v, want 12 and 240", st.Lost, st.ConcealedMS)
	}
	// Find the 200 ms burst in the output: 10 ms of full-level tone, a fade,
	// then silence; then the tone comes back.
	audio := p.audio[firstSound(p.audio):]
	burst := audio[8000 : 8000+1600]
	if l := media.ToneLevel(burst[:80], 1000); l < 0.35 {
		t.Errorf("first 10 ms of concealment at level %.2f: not continuing the tone", l)
	}
	if r := media.RMS(burst[480:]); r > 1 {
		t.Errorf("concealment still at RMS %.1f after 60 ms: no fade-out", r)
	}
	if l := media.ToneLevel(burst[160:320], 1000); l < 0.05 || l > 0.45 {
		t.Errorf("level 20-40 ms into the loss %.2f: want fading", l)
	}
	if l := media.ToneLevel(audio[9600+80:9600+240], 1000); l < 0.4 {
		t.Errorf("tone after the burst at %.2f", l)
	}
}

// TestReceiverJitterOracle is the acceptance test: on a 40 ± 30 ms
// jitter trace with reordering, at most 1 % of packets are late, and the mean
// added delay is within 20 ms of the best fixed delay with the same late rate.
func TestReceiverJitterOracle(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		tr := rtptest.Generate(rtptest.Profile{Seed: seed, Duration: 60 * time.Second,
			BaseDelay: 40 * time.Millisecond, Jitter: 30 * time.Millisecond,
			Audio: rtptest.ToneBursts(1000, 1200*time.Millisecond, 800*time.Millisecond)})
		p := play(t, tr, media.ReceiverConfig{Codec: media.PCMU})
		st := p.st
		if st.Reordered < 100 {
			t.Errorf("seed %d: only %d reordered: not the trace the test wants", seed, st.Reordered)
		}
		lateRate := float64(st.Late) / float64(st.Packets)
		if lateRate > 0.01 {
			t.Errorf("seed %d: late rate %.3f%% > 1%%", seed, 100*lateRate)
		}
		d, wait := rtptest.FixedDelayOracle(tr.Arrivals(), lateRate)
		ours := time.Duration(st.DelayMSMean * float64(time.Millisecond))
		t.Logf("seed %d: late %.2f%%, mean added delay %v (p95 %.1f ms); oracle fixed delay %v waits %v on average; concealed %v ms",
			seed, 100*lateRate, ours.Round(10*time.Microsecond), st.DelayMSP95, d.Round(10*time.Microsecond), wait.Round(10*time.Microsecond), st.ConcealedMS)
		if diff := ours - wait; diff > 20*time.Millisecond || diff < -20*time.Millisecond {
			t.Errorf("seed %d: mean added delay %v vs oracle %v: more than 20 ms apart", seed, ours, wait)
		}
		if st.Lost != 0 || st.Duplicates != 0 {
			t.Errorf("seed %d: %+v", seed, st)
		}
	}
}

func TestReceiverSSRCChange(t *testing.T) {
	tr := rtptest.Generate(rtptest.Profile{Seed: 4, Duration: 6 * time.Second, BaseDelay: 20 * time.Millisecond,
		Jitter: 5 * time.Millisecond, SSRCChangeAt: 3 * time.Second})
	p := play(t, tr, media.ReceiverConfig{Codec: media.PCMU})
	st := p.st
	if st.SSRCChanges != 1 || st.SSRC != 0x11223344^0x5a5a5a5a || st.Lost != 0 || st.Late != 0 || st.Packets != 300 {
		t.Errorf("%+v", st)
	}
	// The new source plays on: the tone runs through the change, give or
	// take the frame or two around the splice.
	if gaps := toneGaps(p.audio, 5); gaps > 2 {
		t.Errorf("%d frames without the tone around the SSRC change", gaps)
	}
	if st.DurationMS < 5950 || st.DurationMS > 6100 {
		t.Errorf("duration %v ms", st.DurationMS)
	}
}

func TestReceiverSilenceSuppression(t *testing.T) {
	for _, cn := range []bool{false, true} {
		t.Run(map[bool]string{false: "no CN", true: "CN"}[cn], func(t *testing.T) {
			tr := rtptest.Generate(rtptest.Profile{Seed: 5, Duration: 8 * time.Second, BaseDelay: 30 * time.Millisecond,
				Jitter: 10 * time.Millisecond, ComfortNoise: cn,
				Silences: []rtptest.Span{{From: 2 * time.Second, To: 3500 * time.Millisecond}, {From: 5 * time.Second, To: 6 * time.Second}}})
			p := play(t, tr, media.ReceiverConfig{Codec: media.PCMU})
			st := p.st
			// Gaps in the timestamps with consecutive sequence numbers are not loss.
			if st.Lost != 0 || st.Late != 0 || st.ConcealedMS != 0 || int(st.Packets) != tr.Sent {
				t.Errorf("%+v (sent %d)", st, tr.Sent)
			}
			// The silences are quiet (comfort noise at -70 dBov is RMS ~10),
			// the talk spurts are the tone.
			levels := frameLevels(p.audio, 1000)
			var quiet, tone int
			for i := 0; i+media.FrameSamples <= len(p.audio); i += media.FrameSamples {
				switch r := media.RMS(p.audio[i : i+media.FrameSamples]); {
				case r < 20:
					quiet++
				case levels[i/media.FrameSamples] > 0.4:
					tone++
				}
			}
			if quiet < 120 || tone < 270 {
				t.Errorf("%d quiet and %d tone frames; want about 125 and 275", quiet, tone)
			}
		})
	}
}

func TestReceiverDTMF(t *testing.T) {
	tr := rtptest.Generate(rtptest.Profile{Seed: 6, Duration: 6 * time.Second, BaseDelay: 20 * time.Millisecond, Jitter: 15 * time.Millisecond,
		Digits: []rtptest.Digit{
			{At: time.Second, Digit: '1', Duration: 100 * time.Millisecond},
			{At: 2 * time.Second, Digit: '2', Duration: 240 * time.Millisecond},
			{At: 3 * time.Second, Digit: '#', Duration: 100 * time.Millisecond},
			{At: 3500 * time.Millisecond, Digit: '#', Duration: 120 * time.Millisecond},
		}})
	p := play(t, tr, media.ReceiverConfig{Codec: media.PCMU, DTMFPayloadType: 101})
	st := p.st
	if st.DTMF != "12##" || st.DTMFEvents != 4 || len(p.digits) != 4 || tr.Digits != "12##" {
		t.Errorf("digits %q (%d events, %d callbacks), want \"12##\"", st.DTMF, st.DTMFEvents, len(p.digits))
	}
	// Audio pauses while a digit plays: not loss, not concealment.
	if st.Lost != 0 || st.ConcealedMS != 0 || int(st.Packets) != tr.Sent {
		t.Errorf("%+v", st)
	}
	for i, ev := range p.digits {
		if ev.At.IsZero() || ev.Duration > 50*time.Millisecond {
			t.Errorf("digit %d: %+v", i, ev)
		}
	}
}

// TestReceiverDTMFEdgeCases feeds hand-made RFC 4733 packets: retransmitted
// and lost end packets, a lost first packet, the same key twice, reordered
// packets of an earlier event, and a non-digit event.
func TestReceiverDTMFEdgeCases(t *testing.T) {
	var got []rune
	r := media.NewReceiver(media.ReceiverConfig{Codec: media.PCMU, DTMFPayloadType: 101,
		OnDTMF: func(ev media.DTMFEvent) { got = append(got, ev.Digit) }})
	peer := rtptest.NewPeer(t)
	at := time.Unix(1000, 0)
	send := func(b []byte) {
		if err := r.Push(b, at); err != nil {
			t.Fatal(err)
		}
		at = at.Add(20 * time.Millisecond)
	}
	ev := func(ts uint32, code byte, marker, end bool, dur uint16) {
		send(peer.Packet(101, marker, ts, rtptest.DTMFPayload(code, end, 10, dur)))
	}
	ev(1000, 1, true, false, 160) // '1' complete, 3 end packets
	ev(1000, 1, false, false, 320)
	ev(1000, 1, false, true, 480)
	ev(1000, 1, false, true, 480)
	ev(1000, 1, false, true, 480)
	peer.Seq++                     // '2': first packet lost
	ev(2000, 2, false, false, 320) //
	ev(2000, 2, false, true, 480)  // one end packet only
	ev(3000, 3, true, false, 160)  // '3' twice, the first with no end packets in order
	ev(3000, 3, false, false, 320)
	held := peer.Seq // this end packet of the first '3' will arrive late
	peer.Seq++
	ev(4000, 3, true, false, 160)
	ev(4000, 3, false, true, 320)
	next := peer.Seq
	peer.Seq = held
	ev(3000, 3, false, true, 480) // reordered: must not make another digit
	peer.Seq = next
	ev(5000, 16, true, false, 160) // flash: not a digit
	ev(6000, 11, true, true, 800)  // '#': only an end packet arrived
	if string(got) != "1233#" {
		t.Errorf("digits %q, want \"1233#\"", string(got))
	}
	st := r.Stats()
	if st.DTMF != "1233#" || st.Lost != 1 || st.Duplicates != 0 || st.Reordered != 1 {
		t.Errorf("%+v", st)
	}
}

func TestReceiverDuplicates(t *testing.T) {
	tr := rtptest.Generate(rtptest.Profile{Seed: 8, Duration: 5 * time.Second, BaseDelay: 20 * time.Millisecond, Duplicate: 0.1})
	p := play(t, tr, media.ReceiverConfig{Codec: media.PCMU})
	if int(p.st.Duplicates) != tr.Duplicates || tr.Duplicates < 10 || p.st.Lost != 0 || p.st.ConcealedMS != 0 ||
		int(p.st.Packets) != tr.Sent+tr.Duplicates {
		t.Errorf("%+v; %d duplicates sent", p.st, tr.Duplicates)
	}
}

// TestReceiverClockDrift is the drift test: a sender whose clock
// runs 100 ppm fast or slow against ours, on a clean path, for 60 s of
// simulated time (and 10 minutes, to see the correction happen): no stall,
// no unbounded growth, at most 0.5 % concealment.
func TestReceiverClockDrift(t *testing.T) {
	for _, c := range []struct {
		ppm float64
		d   time.Duration
	}{{100, time.Minute}, {-100, time.Minute}, {100, 10 * time.Minute}, {-100, 10 * time.Minute}} {
		t.Run(fmt.Sprintf("%+.0fppm/%v", c.ppm, c.d), func(t *testing.T) {
			tr := rtptest.Generate(rtptest.Profile{Seed: 9, Duration: c.d, BaseDelay: 30 * time.Millisecond, Jitter: 2 * time.Millisecond, DriftPPM: c.ppm})
			r := media.NewReceiver(media.ReceiverConfig{Codec: media.PCMU})
			var maxBuf float64
			toneFrames, frames := 0, 0
			media.PlaySimulated(r, tr.Arrivals(), func(_ time.Time, f []int16) {
				frames++
				if media.ToneLevel(f, 1000) > 0.3 {
					toneFrames++
				}
				maxBuf = max(maxBuf, r.Stats().BufferedMS)
			})
			st := r.Stats()
			t.Logf("%+v; max buffered %.1f ms; %d of %d frames tone", st, maxBuf, toneFrames, frames)
			total := float64(tr.Sent) * 20
			if st.ConcealedMS > 0.005*total {
				t.Errorf("concealed %.0f ms of %.0f: more than 0.5 %%", st.ConcealedMS, total)
			}
			if st.Late != 0 || st.Lost != 0 {
				t.Errorf("late %d lost %d on a clean path", st.Late, st.Lost)
			}
			// No stall: all but the first and last few frames carry the tone.
			if toneFrames < tr.Sent-tr.Sent/200-10 {
				t.Errorf("only %d of %d packets' worth of frames carried the tone", toneFrames, tr.Sent)
			}
			// No unbounded growth: the buffer stays near its target.
			if maxBuf > st.TargetDelayMS+100 {
				t.Errorf("buffer grew to %.1f ms (target %.1f)", maxBuf, st.TargetDelayMS)
			}
		})
	}
}

// TestReceiverPtime re-chunks packets of other sizes into 20 ms frames
// without losing, repeating or reordering a sample.
func TestReceiverPtime(t *testing.T) {
	for _, ptime := range []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond} {
		t.Run(ptime.String(), func(t *testing.T) {
			tr := rtptest.Generate(rtptest.Profile{Seed: 10, Duration: 3 * time.Second, Ptime: ptime, BaseDelay: 20 * time.Millisecond, Jitter: 3 * time.Millisecond})
			p := play(t, tr, media.ReceiverConfig{Codec: media.PCMU})
			if p.st.Lost != 0 || p.st.Late != 0 || p.st.ConcealedMS != 0 {
				t.Errorf("%+v", p.st)
			}
			var want []int16
			for n := range 24000 {
				want = append(want, rtptest.Tone1k(n))
			}
			want = media.PCMU.Decode(nil, media.PCMU.Encode(nil, want))
			// Find the start: the first sample of the tone is 0, the second is not.
			i := slices.IndexFunc(p.audio, func(v int16) bool { return v != 0 }) - 1
			if got := p.audio[i:]; len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
				t.Errorf("played audio differs from what was sent")
			}
		})
	}
}

// TestReceiverSequenceWrap crosses the 16-bit sequence and 32-bit
// timestamp wraps on a clean path: nothing lost, nothing resynced.
func TestReceiverSequenceWrap(t *testing.T) {
	tr := rtptest.Generate(rtptest.Profile{Seed: 11, Duration: 4 * time.Second, BaseDelay: 20 * time.Millisecond,
		Seq: 65500, TS: math.MaxUint32 - 160*50, Loss: 0.02})
	p := play(t, tr, media.ReceiverConfig{Codec: media.PCMU})
	if int(p.st.Lost) != tr.Lost || p.st.Resyncs != 0 || p.st.Late != 0 || p.st.ConcealedMS != float64(20*tr.Lost) {
		t.Errorf("%+v; want %d lost", p.st, tr.Lost)
	}
}

// TestReceiverTimestampJump: the sender's timestamp leaps 10 s ahead with
// the sequence continuing. The timeline re-anchors instead of waiting 10 s
// or calling everything early.
func TestReceiverTimestampJump(t *testing.T) {
	tr := rtptest.Generate(rtptest.Profile{Seed: 12, Duration: 4 * time.Second, BaseDelay: 20 * time.Millisecond,
		TSJumpAt: 2 * time.Second, TSJump: 80000})
	p := play(t, tr, media.ReceiverConfig{Codec: media.PCMU})
	st := p.st
	if st.Resyncs != 1 || st.Lost != 0 || st.Late != 0 || st.Discarded != 0 {
		t.Errorf("%+v", st)
	}
	frames := len(p.audio) / media.FrameSamples
	if gaps := toneGaps(p.audio, 2); gaps > 2 || frames > 215 {
		t.Errorf("%d frames without tone in %d: the jump was not bridged", gaps, frames)
	}
}

func TestReceiverRejects(t *testing.T) {
	r := media.NewReceiver(media.ReceiverConfig{Codec: media.PCMU, DTMFPayloadType: 101})
	at := time.Unix(0, 0)
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":        {nil, media.ErrNotRTP},
		"short":        {[]byte{0x80, 0, 0, 1}, media.ErrNotRTP},
		"version 1":    {[]byte{0x40, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff}, media.ErrNotRTP},
		"rtcp":         {[]byte{0x81, 201, 0, 7, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0}, media.ErrRTCPPacket},
		"padding":      {[]byte{0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 200}, media.ErrBadRTP},
		"csrc":         {[]byte{0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3, 4}, media.ErrBadRTP},
		"unknown pt":   {[]byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff}, media.ErrUnknownPayloadType},
		"pcma on pcmu": {[]byte{0x80, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xff}, media.ErrUnknownPayloadType},
		"short dtmf":   {[]byte{0x80, 101, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 0x80}, media.ErrBadRTP},
		"huge payload": {append([]byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7}, make([]byte, 3000)...), media.ErrBadRTP},
	} {
		if err := r.Push(c.b, at); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", name, err, c.want)
		}
	}
	if st := r.Stats(); st.Invalid != 10 || st.Packets != 0 {
		t.Errorf("%+v", st)
	}
	// Before any packet, Pull is silence.
	if f := r.Pull(at); len(f) != media.FrameSamples || media.RMS(f) != 0 {
		t.Error("Pull before any packet is not a silent frame")
	}
}

// TestReceiverSteadyStateAllocs: Push and Pull allocate nothing per packet.
func TestReceiverSteadyStateAllocs(t *testing.T) {
	r := media.NewReceiver(media.ReceiverConfig{Codec: media.PCMU, DTMFPayloadType: 101})
	peer := rtptest.NewPeer(t)
	payload := media.PCMU.Encode(nil, media.Tone(1000, media.FrameDuration, 0.5))
	pkts := make([][]byte, 1000)
	for i := range pkts {
		pkts[i] = peer.Packet(0, i == 0, uint32(i*160), payload)
	}
	at := time.Unix(0, 0)
	i := 0
	step := func() {
		r.Push(pkts[i%len(pkts)], at)
		r.Pull(at)
		at = at.Add(media.FrameDuration)
		i++
	}
	for range 600 { // fill the delay window
		step()
	}
	if n := testing.AllocsPerRun(300, step); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

func BenchmarkReceiverPushPull(b *testing.B) {
	r := media.NewReceiver(media.ReceiverConfig{Codec: media.PCMU, DTMFPayloadType: 101})
	pkt := rtptest.NewPeer(b).Packet(0, false, 0, media.PCMU.Encode(nil, media.Tone(1000, media.FrameDuration, 0.5)))
	at := time.Unix(0, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for i := 0; b.Loop(); i++ {
		pkt[2], pkt[3] = byte(i>>8), byte(i)
		ts := uint32(i * 160)
		pkt[4], pkt[5], pkt[6], pkt[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		r.Push(pkt, at)
		r.Pull(at)
		at = at.Add(media.FrameDuration)
	}
	if st := r.Stats(); st.Late+st.Lost+st.Invalid != 0 {
		b.Fatalf("%+v", st)
	}
}
