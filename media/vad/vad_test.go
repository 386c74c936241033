package vad_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/vad"
)

// segment is a stretch of speech on the audio timeline.
type segment struct{ start, end time.Duration }

func (s segment) String() string { return fmt.Sprintf("[%v–%v]", s.start, s.end) }

const frameDur = vad.FrameDuration

func dbfs(pcm []float64) float64 {
	var sum float64
	for _, x := range pcm {
		sum += x * x
	}
	if sum == 0 {
		return -120
	}
	return 10 * math.Log10(sum/float64(len(pcm))/(32768*32768))
}

// loadSpeech reads an espeak-ng recording and scales it so its active level
// (the RMS of frames within 30 dB of the loudest) is levelDBFS.
func loadSpeech(t testing.TB, name string, levelDBFS float64) []float64 {
	t.Helper()
	pcm, err := media.ReadWAVFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float64, len(pcm))
	for i, v := range pcm {
		x[i] = float64(v)
	}
	peak := -120.0
	for i := 0; i+vad.FrameSamples <= len(x); i += vad.FrameSamples {
		peak = max(peak, dbfs(x[i:i+vad.FrameSamples]))
	}
	var sum float64
	var n int
	for i := 0; i+vad.FrameSamples <= len(x); i += vad.FrameSamples {
		f := x[i : i+vad.FrameSamples]
		if dbfs(f) > peak-30 {
			for _, v := range f {
				sum += v * v
			}
			n += len(f)
		}
	}
	active := 10 * math.Log10(sum/float64(n)/(32768*32768))
	g := math.Pow(10, (levelDBFS-active)/20)
	for i := range x {
		x[i] *= g
	}
	return x
}

// truth finds speech in clean audio from its energy alone: frames above
// floorDBFS (-55 dBFS, 35 dB under the -20 dBFS active level the tests use,
// or the in-band level of the noise that will be added if that is higher:
// speech under the noise is not there to be found), with gaps shorter than the detector's hangover
// bridged and blips shorter than its minimum dropped — the segments an ideal
// detector with the same timing rules would report.
func truth(x []float64, floorDBFS float64, hangover, minSpeech time.Duration) []segment {
	var segs []segment
	in := false
	for i := 0; i+vad.FrameSamples <= len(x); i += vad.FrameSamples {
		at := time.Duration(i/vad.FrameSamples) * frameDur
		active := dbfs(x[i:i+vad.FrameSamples]) > floorDBFS
		switch {
		case active && !in:
			if n := len(segs); n > 0 && at-segs[n-1].end < hangover {
				segs[n-1].end = at + frameDur // bridge a short gap
			} else {
				segs = append(segs, segment{start: at, end: at + frameDur})
			}
			in = true
		case active:
			segs[len(segs)-1].end = at + frameDur
		default:
			in = false
		}
	}
	out := segs[:0]
	for _, s := range segs {
		if s.end-s.start >= minSpeech {
			out = append(out, s)
		}
	}
	return out
}

// inBandDBFS is the level of a noise as the detector hears it (after its
// telephone-band filter): hum is almost gone, pink noise loses its lows.
// It is read from the detector's own noise floor on the noise alone.
func inBandDBFS(kind noiseKind, levelDBFS float64) float64 {
	d := vad.New(vad.Config{})
	pcm := toPCM(noise(kind, 3*vad.SampleRate, levelDBFS, 7))
	for i := 0; i+vad.FrameSamples <= len(pcm); i += vad.FrameSamples {
		d.Process(pcm[i : i+vad.FrameSamples])
	}
	return d.NoiseFloorDBFS()
}

func toPCM(x []float64) []int16 {
	out := make([]int16, len(x))
	for i, v := range x {
		out[i] = int16(max(-32768, min(32767, math.Round(v))))
	}
	return out
}

// detect runs a detector over pcm and returns the segments it reported (an
// unfinished one ends at the end of the audio).
func detect(t testing.TB, d *vad.Detector, pcm []int16) []segment {
	t.Helper()
	var segs []segment
	for i := 0; i+vad.FrameSamples <= len(pcm); i += vad.FrameSamples {
		ev := d.Process(pcm[i : i+vad.FrameSamples])
		switch ev.Type {
		case vad.SpeechStart:
			segs = append(segs, segment{start: ev.At, end: -1})
		case vad.SpeechEnd:
			if len(segs) == 0 || segs[len(segs)-1].end != -1 {
				t.Fatalf("speech end at %v without a start", ev.At)
			}
			segs[len(segs)-1].end = ev.At
		}
	}
	if n := len(segs); n > 0 && segs[n-1].end == -1 {
		segs[n-1].end = d.Elapsed()
	}
	return segs
}

type noiseKind int

const (
	white noiseKind = iota
	pink
	hum50
	hum60
)

func (k noiseKind) String() string { return [...]string{"white", "pink", "hum50", "hum60"}[k] }

// noise returns n samples of the given kind at levelDBFS (RMS).
func noise(kind noiseKind, n int, levelDBFS float64, seed uint64) []float64 {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	x := make([]float64, n)
	switch kind {
	case white:
		for i := range x {
			x[i] = r.NormFloat64()
		}
	case pink:
		// Paul Kellet's economy pink filter: -3 dB/octave within 0.05 dB
		// across the band.
		var b0, b1, b2 float64
		for i := range x {
			w := r.NormFloat64()
			b0 = 0.99765*b0 + w*0.0990460
			b1 = 0.96300*b1 + w*0.2965164
			b2 = 0.57000*b2 + w*1.0526913
			x[i] = b0 + b1 + b2 + w*0.1848
		}
	case hum50, hum60:
		// Mains hum as it reaches a phone line: the fundamental with the
		// second and third harmonics 6 and 12 dB down.
		f := 50.0
		if kind == hum60 {
			f = 60
		}
		for i := range x {
			ph := 2 * math.Pi * f * float64(i) / vad.SampleRate
			x[i] = math.Sin(ph) + 0.5*math.Sin(2*ph+0.3) + 0.25*math.Sin(3*ph+1.1)
		}
	}
	g := math.Pow(10, (levelDBFS-dbfs(x))/20)
	for i := range x {
		x[i] *= g
	}
	return x
}

// scene is lead-in noise, then the speech with the noise continuing under
// it, then a noisy tail.
func scene(speech []float64, kind noiseKind, noiseDBFS float64, leadIn, tail time.Duration) (mixed []int16, offset time.Duration) {
	lead := int(int64(leadIn) * vad.SampleRate / int64(time.Second))
	total := lead + len(speech) + int(int64(tail)*vad.SampleRate/int64(time.Second))
	x := make([]float64, total)
	copy(x[lead:], speech)
	if kind >= 0 {
		nz := noise(kind, total, noiseDBFS, 42)
		for i := range x {
			x[i] += nz[i]
		}
	}
	return toPCM(x), leadIn
}

func TestSegmentsMatchTruth(t *testing.T) {
	const speechDBFS = -20
	cfg := vad.Config{}
	hangover, minSpeech := 200*time.Millisecond, 60*time.Millisecond // the defaults
	const tolerance = 60 * time.Millisecond

	cases := []struct {
		file  string
		kind  noiseKind
		snrDB float64 // speech active level over noise RMS; <0: no noise
		tol   time.Duration
	}{
		{"s1.wav", -1, -1, tolerance},
		{"s2.wav", -1, -1, tolerance},
		{"s1.wav", white, 30, tolerance},
		{"s2.wav", white, 30, tolerance},
		{"s1.wav", white, 20, tolerance},
		{"s2.wav", white, 20, tolerance},
		{"s1.wav", white, 10, tolerance},
		// At 10 dB the fading /z/ of "please" (-31 to -41 dBFS) is under
		// white noise at -30 dBFS: no detector can place that end within
		// 60 ms, so only the count and a looser bound are checked.
		{"s2.wav", white, 10, 160 * time.Millisecond},
		{"s1.wav", pink, 30, tolerance},
		{"s2.wav", pink, 20, tolerance},
		{"s1.wav", pink, 20, tolerance},
		{"s1.wav", pink, 10, tolerance},
		{"s2.wav", pink, 10, tolerance},
		{"s1.wav", hum50, 10, tolerance},
		{"s2.wav", hum60, 10, tolerance},
		{"s1.wav", hum60, 0, tolerance},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%s/%v/snr%v", tc.file, tc.kind, tc.snrDB)
		if tc.snrDB < 0 {
			name = tc.file + "/clean"
		}
		t.Run(name, func(t *testing.T) {
			speech := loadSpeech(t, tc.file, speechDBFS)
			floor := -55.0
			if tc.snrDB >= 0 {
				floor = max(floor, inBandDBFS(tc.kind, speechDBFS-tc.snrDB))
			}
			want := truth(speech, floor, hangover, minSpeech)
			if len(want) < 2 {
				t.Fatalf("truth has %d segments; the recording should have pauses", len(want))
			}
			pcm, off := scene(speech, tc.kind, speechDBFS-tc.snrDB, time.Second, time.Second)
			got := detect(t, vad.New(cfg), pcm)
			for i := range got {
				got[i].start -= off
				got[i].end -= off
			}
			if len(got) != len(want) {
				t.Fatalf("found %d segments %v, want %d %v", len(got), got, len(want), want)
			}
			var worst time.Duration
			for i := range want {
				for _, e := range []time.Duration{got[i].start - want[i].start, got[i].end - want[i].end} {
					worst = max(worst, e.Abs())
				}
			}
			t.Logf("segments %v, truth %v, worst edge error %v", got, want, worst)
			if worst > tc.tol {
				t.Errorf("an edge is %v from the truth (tolerance %v)", worst, tc.tol)
			}
		})
	}
}

func TestNoiseOnlyIsNotSpeech(t *testing.T) {
	const n = 10 * vad.SampleRate // 10 s each
	for _, kind := range []noiseKind{white, pink, hum50, hum60} {
		for _, level := range []float64{-55, -45, -35, -25, -20} {
			t.Run(fmt.Sprintf("%v/%vdBFS", kind, level), func(t *testing.T) {
				for seed := range uint64(5) {
					pcm := toPCM(noise(kind, n, level, seed*31+uint64(kind)))
					if got := detect(t, vad.New(vad.Config{}), pcm); len(got) != 0 {
						t.Errorf("seed %d: found speech in %v noise at %v dBFS: %v", seed, kind, level, got)
					}
				}
			})
		}
	}
	t.Run("digital silence", func(t *testing.T) {
		if got := detect(t, vad.New(vad.Config{}), make([]int16, n)); len(got) != 0 {
			t.Errorf("found speech in silence: %v", got)
		}
	})
	t.Run("noise level steps up", func(t *testing.T) {
		// A line that gets 25 dB noisier mid-call is still not speech.
		x := append(noise(white, n/2, -55, 1), noise(pink, n/2, -30, 2)...)
		if got := detect(t, vad.New(vad.Config{}), toPCM(x)); len(got) != 0 {
			t.Errorf("found speech: %v", got)
		}
	})
}

func TestStationaryToneDoesNotHoldSpeech(t *testing.T) {
	// A dial tone (350 + 440 Hz) at -13 dBFS after a second of quiet line:
	// periodic and loud, so it may pass for the start of speech, but it is
	// stationary, so it cannot stay speech, and once learnt it does not
	// come back.
	const n = 10 * vad.SampleRate
	x := noise(white, n, -60, 3)
	for i := vad.SampleRate; i < n; i++ {
		ph := 2 * math.Pi * float64(i) / vad.SampleRate
		x[i] += 0.2 * 32767 * (math.Sin(350*ph) + math.Sin(440*ph)) / 2
	}
	got := detect(t, vad.New(vad.Config{}), toPCM(x))
	if len(got) > 1 || len(got) == 1 && got[0].end > 2100*time.Millisecond {
		t.Errorf("segments %v; want at most one, ended within 1.1 s of the tone's start", got)
	}
}

func TestThresholdsAreConfigurable(t *testing.T) {
	// Quiet speech at -45 dBFS on a clean line: found with the defaults,
	// ignored when the absolute minimum is raised above it.
	speech := loadSpeech(t, "s1.wav", -45)
	pcm, _ := scene(speech, -1, 0, 500*time.Millisecond, 500*time.Millisecond)
	if got := detect(t, vad.New(vad.Config{}), pcm); len(got) == 0 {
		t.Fatal("quiet speech not found with default thresholds")
	}
	if got := detect(t, vad.New(vad.Config{MinLevelDBFS: -30}), pcm); len(got) != 0 {
		t.Errorf("MinLevelDBFS -30 still found %v", got)
	}
	// A long hangover bridges every pause of the recording into one segment.
	loud := loadSpeech(t, "s1.wav", -20)
	pcm, _ = scene(loud, -1, 0, 500*time.Millisecond, 2*time.Second)
	short := detect(t, vad.New(vad.Config{}), pcm)
	long := detect(t, vad.New(vad.Config{Hangover: 1500 * time.Millisecond}), pcm)
	if len(short) < 2 || len(long) != 1 {
		t.Errorf("hangover 200ms gave %d segments, 1500ms gave %d; want ≥2 and 1", len(short), len(long))
	}
}

func TestSpeechDurationAndReset(t *testing.T) {
	d := vad.New(vad.Config{})
	speech := toPCM(loadSpeech(t, "s2.wav", -20))
	var start time.Duration = -1
	for i := 0; i+vad.FrameSamples <= len(speech); i += vad.FrameSamples {
		ev := d.Process(speech[i : i+vad.FrameSamples])
		if ev.Type == vad.SpeechStart {
			start = ev.At
		}
		if d.Speaking() {
			if got, want := d.SpeechDuration(), d.Elapsed()-start; got != want {
				t.Fatalf("SpeechDuration %v, want %v", got, want)
			}
			break
		}
	}
	if start < 0 {
		t.Fatal("no speech found")
	}
	d.Reset()
	if d.Speaking() || d.Elapsed() != 0 || d.SpeechDuration() != 0 {
		t.Errorf("after Reset: speaking %v elapsed %v", d.Speaking(), d.Elapsed())
	}
}

func TestProcessAllocatesNothing(t *testing.T) {
	d := vad.New(vad.Config{})
	speech := toPCM(loadSpeech(t, "s1.wav", -20))
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		if i+vad.FrameSamples > len(speech) {
			i = 0
		}
		d.Process(speech[i : i+vad.FrameSamples])
		i += vad.FrameSamples
	})
	if allocs != 0 {
		t.Errorf("Process allocates %v per frame", allocs)
	}
}

func BenchmarkProcess(b *testing.B) {
	for _, tc := range []struct {
		name string
		pcm  []int16
	}{
		{"speech", toPCM(loadSpeech(b, "s1.wav", -20))},
		{"silence", make([]int16, vad.SampleRate)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			d := vad.New(vad.Config{})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i+vad.FrameSamples > len(tc.pcm) {
					i = 0
				}
				d.Process(tc.pcm[i : i+vad.FrameSamples])
				i += vad.FrameSamples
			}
		})
	}
}

// LastActive marks where speech really stopped: during the hangover it
// stays at the end of the last active frame while Elapsed runs on, and the
// segment's end is reported there.
func TestLastActiveExcludesHangover(t *testing.T) {
	d := vad.New(vad.Config{})
	speech := toPCM(loadSpeech(t, "s2.wav", -20))
	pcm := append(make([]int16, 8*vad.FrameSamples), speech...)
	pcm = append(pcm, make([]int16, 25*vad.FrameSamples)...) // 500 ms: past any hangover
	var ends int
	var prev time.Duration
	var inHangover time.Duration // longest stretch of Elapsed past LastActive while speaking
	for i := 0; i+vad.FrameSamples <= len(pcm); i += vad.FrameSamples {
		ev := d.Process(pcm[i : i+vad.FrameSamples])
		la := d.LastActive()
		if la > d.Elapsed() {
			t.Fatalf("LastActive %v is after Elapsed %v", la, d.Elapsed())
		}
		switch {
		case ev.Type == vad.SpeechEnd:
			ends++
			if ev.At != la {
				t.Errorf("segment ended at %v but LastActive says %v", ev.At, la)
			}
		case d.Speaking():
			if ev.Type != vad.SpeechStart && la < prev {
				t.Fatalf("LastActive went back from %v to %v inside a segment", prev, la)
			}
			inHangover = max(inHangover, d.Elapsed()-la)
		}
		prev = la
	}
	if ends == 0 {
		t.Fatal("no speech segment ended")
	}
	// The default hangover is 200 ms: the last frames before an end are
	// that far past the last active one.
	if inHangover < 160*time.Millisecond || inHangover >= 200*time.Millisecond {
		t.Errorf("speech ran %v past LastActive before ending, want the hangover (just under 200ms)", inHangover)
	}
}
