package agenttest

import (
	"hash/fnv"
	"math"
	"strings"
	"time"
)

func samples(d time.Duration) int { return int(int64(d) * sampleRate / int64(time.Second)) }

// Speech returns d of a voiced, speech-like signal (a 140 Hz glottal
// harmonic series up to 3.4 kHz with a slow syllabic swell) at about
// -20 dBFS. The local VAD takes it for speech from its first frame to its
// last, so tests know exactly where the caller started and stopped; d is
// rounded down to whole frames.
func Speech(d time.Duration) []int16 {
	n := samples(d) / frameSamples * frameSamples
	out := make([]int16, n)
	const f0 = 140.0
	const ramp = sampleRate / 100
	for i := range out {
		t := float64(i) / sampleRate
		var v float64
		for k := 1; float64(k)*f0 < 3400; k++ {
			v += math.Sin(2*math.Pi*f0*float64(k)*t+float64(k)*0.7) / float64(k)
		}
		// Syllables: a 4 Hz swell between 60 % and 100 %, never silent.
		env := 0.8 + 0.2*math.Sin(2*math.Pi*4*t)
		// 10 ms raised-cosine edges, as a voice has: an abrupt start or
		// stop is a click, not speech.
		if edge := min(i, n-1-i); edge < ramp {
			env *= 0.5 - 0.5*math.Cos(math.Pi*float64(edge)/ramp)
		}
		out[i] = int16(v * env * 2600)
	}
	return out
}

// Silence returns d of digital silence.
func Silence(d time.Duration) []int16 { return make([]int16, samples(d)) }

// ToneFor is the frequency the fake TTS uses for a word: 400–1600 Hz in
// 25 Hz steps, fixed per word, so tests can tell which words were played.
func ToneFor(word string) float64 {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(word)))
	return 400 + 25*float64(h.Sum32()%49)
}

// rms is the root-mean-square level of pcm.
func rms(pcm []int16) float64 {
	if len(pcm) == 0 {
		return 0
	}
	var s float64
	for _, x := range pcm {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s / float64(len(pcm)))
}

// Active returns, per 20 ms frame of pcm, whether it carries sound (RMS
// above 200, about -44 dBFS).
func Active(pcm []int16) []bool {
	out := make([]bool, len(pcm)/frameSamples)
	for i := range out {
		out[i] = rms(pcm[i*frameSamples:(i+1)*frameSamples]) > 200
	}
	return out
}

// Spans returns the runs of active frames as [start, end) frame indexes,
// joining runs separated by fewer than gap inactive frames.
func Spans(active []bool, gap int) [][2]int {
	var spans [][2]int
	for i, a := range active {
		if !a {
			continue
		}
		if n := len(spans); n > 0 && i-spans[n-1][1] < gap {
			spans[n-1][1] = i + 1
			continue
		}
		spans = append(spans, [2]int{i, i + 1})
	}
	return spans
}
