package media

import (
	"math"
	"testing"
	"time"
)

// TestPLCContinuesTone: after 500 ms of a steady 250 Hz tone (period 32
// samples, so its pitch lag of 64 is in range), concealment continues it
// in phase for the first 10 ms, fades by 60 ms, and a cross-fade brings the
// real signal back without a jump.
func TestPLCContinuesTone(t *testing.T) {
	tone := Tone(250, time.Second, 0.5)
	var p plc
	for i := 0; i < 4000; i += FrameSamples { // many frames: the history ring wraps
		p.record(tone[i : i+FrameSamples])
	}
	got := make([]int16, 480)
	p.conceal(got[:100]) // two calls: a stretch spans frames
	p.conceal(got[100:])
	if p.pitch%32 != 0 {
		t.Errorf("pitch %d, want a multiple of the 32-sample period", p.pitch)
	}
	var maxErr float64
	for i := range 80 {
		maxErr = max(maxErr, math.Abs(float64(got[i])-float64(tone[4000+i])))
	}
	if maxErr > 0.02*32768 {
		t.Errorf("first 10 ms of concealment off the true continuation by %.0f", maxErr)
	}
	if l := ToneLevel(got[160:240], 250); l < 0.2 || l > 0.45 {
		t.Errorf("level 20-30 ms in: %.2f, want fading", l)
	}
	tail := make([]int16, 100)
	p.conceal(tail)
	if RMS(tail) != 0 {
		t.Error("not silent after 60 ms")
	}
	// Real audio returns: the first samples blend in from silence.
	back := make([]int16, FrameSamples)
	copy(back, tone[:FrameSamples])
	back[0] = 16000
	p.real(back)
	if back[0] != 0 || p.active {
		t.Errorf("after a faded-out stretch the real signal should fade in from 0 (got %d), and the stretch end", back[0])
	}
}
