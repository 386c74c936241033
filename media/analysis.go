package media

import (
	"math"
	"time"
)

// Tone returns a sine at freqHz lasting d; amplitude is 0..1 of full scale.
func Tone(freqHz float64, d time.Duration, amplitude float64) []int16 {
	amp := math.Max(0, math.Min(1, amplitude)) * math.MaxInt16
	out := make([]int16, samplesFor(d))
	w := 2 * math.Pi * freqHz / SampleRate
	for i := range out {
		out[i] = int16(math.Round(amp * math.Sin(w*float64(i))))
	}
	return out
}

// Silence returns d of digital silence.
func Silence(d time.Duration) []int16 { return make([]int16, samplesFor(d)) }

// RMS is the root-mean-square level, 0..32768.
func RMS(pcm []int16) float64 {
	if len(pcm) == 0 {
		return 0
	}
	var sum float64
	for _, x := range pcm {
		v := float64(x)
		sum += v * v
	}
	return math.Sqrt(sum / float64(len(pcm)))
}

// ToneLevel measures the amplitude of freqHz in pcm with a Hann-windowed
// Goertzel filter: a full-scale sine at freqHz gives ~1.0, other frequencies
// (a few bins away) ~0. The window keeps leakage from strong tones elsewhere
// low, which matters for beep detection over speech.
func ToneLevel(pcm []int16, freqHz float64) float64 {
	xw, sumW := hann(pcm)
	return goertzelLevel(xw, sumW, freqHz)
}

// DominantFrequency scans [minHz, maxHz] in steps of stepHz and returns the
// frequency with the highest ToneLevel (0 for empty input or a bad range).
// The scan is capped at 10000 steps.
func DominantFrequency(pcm []int16, minHz, maxHz, stepHz float64) float64 {
	if len(pcm) == 0 || !(stepHz > 0) || !(maxHz >= minHz) {
		return 0
	}
	if (maxHz-minHz)/stepHz > 10000 {
		stepHz = (maxHz - minHz) / 10000
	}
	xw, sumW := hann(pcm)
	best, bestLevel := 0.0, -1.0
	for i := 0; ; i++ {
		f := minHz + float64(i)*stepHz
		if f > maxHz {
			break
		}
		if l := goertzelLevel(xw, sumW, f); l > bestLevel {
			best, bestLevel = f, l
		}
	}
	return best
}

func hann(pcm []int16) ([]float64, float64) {
	n := len(pcm)
	xw := make([]float64, n)
	var sumW float64
	for i, x := range pcm {
		w := 1.0
		if n > 1 {
			w = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(n-1))
		}
		xw[i] = float64(x) * w
		sumW += w
	}
	return xw, sumW
}

// goertzelLevel returns 2|X(f)|/(sum(w)*32768): the amplitude of a windowed
// sine at f as a fraction of full scale. Works for any f, not just bin centres.
func goertzelLevel(xw []float64, sumW, freqHz float64) float64 {
	if sumW == 0 {
		return 0
	}
	coeff := 2 * math.Cos(2*math.Pi*freqHz/SampleRate)
	var s1, s2 float64
	for _, x := range xw {
		s1, s2 = x+coeff*s1-s2, s1
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * math.Sqrt(math.Max(power, 0)) / (sumW * 32768)
}
