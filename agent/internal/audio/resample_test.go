package audio

import (
	"bytes"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
)

// resampleChunked feeds in through r in chunks of the given sizes (cycled),
// then flushes.
func resampleChunked(t *testing.T, in []int16, from, to int, sizes ...int) []int16 {
	t.Helper()
	r, err := NewResampler(from, to)
	if err != nil {
		t.Fatal(err)
	}
	var out []int16
	for i, c := 0, 0; i < len(in); c++ {
		n := min(sizes[c%len(sizes)], len(in)-i)
		out = r.Process(out, in[i:i+n])
		i += n
	}
	return r.Flush(out)
}

func rmsDB(x []int16) float64 { return 20 * math.Log10(media.RMS(x)/32768) }

func TestResamplerPassesToneAndKeepsLength(t *testing.T) {
	in := Tone(1000, 24000, time.Second, 0.5)
	out := resampleChunked(t, in, 24000, 8000, 1, 7, 480, 1001, 3)
	if len(out) != 8000 {
		t.Fatalf("got %d samples at 8 kHz from 1 s at 24 kHz, want 8000", len(out))
	}
	if f := media.DominantFrequency(out, 200, 3800, 10); math.Abs(f-1000) > 10 {
		t.Errorf("dominant frequency %.0f Hz, want 1000", f)
	}
	if l := media.ToneLevel(out, 1000); math.Abs(l-0.5) > 0.01 {
		t.Errorf("1 kHz level %.4f, want 0.5 (unity gain)", l)
	}
}

func TestResamplerChunkingDoesNotChangeOutput(t *testing.T) {
	in := slices.Concat(Tone(700, 24000, 300*time.Millisecond, 0.4), Tone(2500, 24000, 300*time.Millisecond, 0.3))
	whole := resampleChunked(t, in, 24000, 8000, len(in))
	for _, sizes := range [][]int{{1}, {2, 3}, {160, 961}, {4799}} {
		got := resampleChunked(t, in, 24000, 8000, sizes...)
		if !slices.Equal(got, whole) {
			t.Errorf("chunks %v: output differs from one-shot conversion", sizes)
		}
	}
}

// The frequency response as a caller hears it: the telephone band passes at
// unity, everything above 4 kHz (which would fold back into it) is gone.
func TestResamplerFrequencyResponse(t *testing.T) {
	cases := []struct {
		hz       float64
		minDB    float64 // output level relative to input, in dB
		maxDB    float64
		aliasesA float64 // where it would land at 8 kHz
	}{
		{hz: 300, minDB: -0.2, maxDB: 0.2},
		{hz: 1000, minDB: -0.2, maxDB: 0.2},
		{hz: 3000, minDB: -0.5, maxDB: 0.2},
		{hz: 3400, minDB: -1, maxDB: 0.2},
		{hz: 4500, minDB: math.Inf(-1), maxDB: -60, aliasesA: 3500},
		{hz: 6000, minDB: math.Inf(-1), maxDB: -40, aliasesA: 2000},
		{hz: 9000, minDB: math.Inf(-1), maxDB: -70, aliasesA: 1000},
	}
	for _, c := range cases {
		in := Tone(c.hz, 24000, 500*time.Millisecond, 0.5)
		out := resampleChunked(t, in, 24000, 8000, 480)
		// Skip the edges: the tone starts and stops abruptly.
		mid := out[400 : len(out)-400]
		gain := rmsDB(mid) - rmsDB(in) // -Inf when nothing at all comes through
		if gain < c.minDB || gain > c.maxDB {
			t.Errorf("%.0f Hz: gain %.1f dB, want %.1f..%.1f dB", c.hz, gain, c.minDB, c.maxDB)
		}
		if c.aliasesA > 0 {
			if l := media.ToneLevel(mid, c.aliasesA); l > 0.5*0.01 {
				t.Errorf("%.0f Hz aliases to %.0f Hz at level %.5f (> -40 dB)", c.hz, c.aliasesA, l)
			}
		}
		t.Logf("%5.0f Hz: %7.1f dB", c.hz, gain)
	}
}

// The filter's delay is removed, so a burst starts at the same time after
// conversion (audio timing feeds barge-in bookkeeping).
func TestResamplerIsTimeAligned(t *testing.T) {
	in := slices.Concat(make([]int16, 2400), Tone(1000, 24000, 200*time.Millisecond, 0.8)) // burst at 100 ms
	out := resampleChunked(t, in, 24000, 8000, 333)
	onset := slices.IndexFunc(out, func(s int16) bool { return s > 3000 || s < -3000 })
	if onset < 0 || math.Abs(float64(onset-800)) > 8 { // ±1 ms
		t.Errorf("burst onset at sample %d, want 800 (100 ms)", onset)
	}
}

func TestResamplerUpAndBack(t *testing.T) {
	in := media.Tone(1200, 400*time.Millisecond, 0.5)
	up := resampleChunked(t, in, 8000, 24000, 160)
	if len(up) != 3*len(in) {
		t.Fatalf("8k->24k gave %d samples, want %d", len(up), 3*len(in))
	}
	back := resampleChunked(t, up, 24000, 8000, 480)
	if l := media.ToneLevel(back[200:len(back)-200], 1200); math.Abs(l-0.5) > 0.01 {
		t.Errorf("round trip level %.4f, want 0.5", l)
	}
	// 16 kHz -> 8 kHz exercises a second ratio.
	b16 := resampleChunked(t, Tone(500, 16000, 200*time.Millisecond, 0.5), 16000, 8000, 320)
	if len(b16) != 1600 || math.Abs(media.ToneLevel(b16[100:1500], 500)-0.5) > 0.01 {
		t.Errorf("16k->8k: %d samples, level %.3f", len(b16), media.ToneLevel(b16[100:1500], 500))
	}
}

func TestResamplerRejectsBadRates(t *testing.T) {
	for _, r := range [][2]int{{0, 8000}, {24000, -1}, {2_000_000, 8000}} {
		if _, err := NewResampler(r[0], r[1]); err == nil {
			t.Errorf("NewResampler(%d, %d): no error", r[0], r[1])
		}
	}
}

func TestEncodeWAVReadsBack(t *testing.T) {
	in := media.Tone(440, 300*time.Millisecond, 0.3)
	got, err := media.ReadWAV(bytesReader(EncodeWAV(in, 8000)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, in) {
		t.Errorf("WAV round trip changed the audio (%d -> %d samples)", len(in), len(got))
	}
	// A 24 kHz file is read back (resampled) at 8 kHz with the same tone.
	got, err = media.ReadWAV(bytesReader(EncodeWAV(Tone(440, 24000, 300*time.Millisecond, 0.3), 24000)))
	if err != nil || len(got) != 2400 {
		t.Fatalf("24 kHz WAV: %d samples, err %v", len(got), err)
	}
}

func BenchmarkResample24kTo8k(b *testing.B) {
	in := Tone(1000, 24000, 20*time.Millisecond*3, 0.5) // 60 ms chunks
	r, _ := NewResampler(24000, 8000)
	out := make([]int16, 0, 1024)
	b.SetBytes(int64(len(in) * 2))
	for b.Loop() {
		out = r.Process(out[:0], in)
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
