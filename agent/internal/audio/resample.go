// Package audio holds the small signal tools the provider clients share: a
// streaming polyphase resampler (providers that only speak 24 kHz PCM are
// brought to our 8 kHz once, with a real low-pass filter), WAV encoding for
// upload, and tone generation at any rate for fakes and tests.
package audio

import (
	"fmt"
	"math"
	"sync"
)

// Filter design for the resampler: a Kaiser-windowed sinc, flat to 85 % of
// the lower Nyquist rate (3.4 kHz at 8 kHz: the telephone band) and at least
// 70 dB down from that Nyquist rate on (4 kHz), so nothing folds back into
// the band we keep. 70 dB is far under G.711's own noise (~38 dB SNR).
const (
	stopbandDB    = 70.0  // attenuation from the lower Nyquist rate up
	cutoffRatio   = 0.925 // -6 dB point as a fraction of the lower Nyquist
	transitionRat = 0.15  // transition width as a fraction of the lower Nyquist
)

// filterBank is the polyphase decomposition of one prototype low-pass:
// phase p holds taps p, p+L, p+2L, ... reversed, so one output sample is a
// plain dot product with the last K input samples.
type filterBank struct {
	up, down int         // L and M after reducing by the gcd
	taps     int         // K: taps per phase
	phases   [][]float64 // L phases of K taps
	delay    int         // group delay in output samples, rounded
}

var banks sync.Map // [2]int{from, to} -> *filterBank

func bankFor(from, to int) *filterBank {
	key := [2]int{from, to}
	if b, ok := banks.Load(key); ok {
		return b.(*filterBank)
	}
	b, _ := banks.LoadOrStore(key, designBank(from, to))
	return b.(*filterBank)
}

func designBank(from, to int) *filterBank {
	g := gcd(from, to)
	up, down := to/g, from/g
	fs := float64(from) * float64(up) // rate the prototype runs at
	nyq := float64(min(from, to)) / 2
	fc := cutoffRatio * nyq
	df := transitionRat * nyq
	// Kaiser's estimates for length and beta (Oppenheim & Schafer 7.6).
	n := int(math.Ceil((stopbandDB-8)/(2.285*2*math.Pi*df/fs))) + 1
	k := (n + up - 1) / up
	n = k * up
	beta := 0.1102 * (stopbandDB - 8.7)
	i0b := besselI0(beta)
	h := make([]float64, n)
	mid := float64(n-1) / 2
	var sum float64
	for i := range h {
		t := float64(i) - mid
		x := 2 * fc / fs * t
		s := 1.0
		if x != 0 {
			s = math.Sin(math.Pi*x) / (math.Pi * x)
		}
		r := t / mid
		w := besselI0(beta*math.Sqrt(math.Max(0, 1-r*r))) / i0b
		h[i] = s * w
		sum += h[i]
	}
	// Unit gain at DC per phase: the zero-stuffed input carries 1/L of the
	// energy, so the whole filter sums to L.
	scale := float64(up) / sum
	phases := make([][]float64, up)
	for p := range phases {
		ph := make([]float64, k)
		for j := range k {
			ph[k-1-j] = h[p+j*up] * scale
		}
		phases[p] = ph
	}
	return &filterBank{
		up: up, down: down, taps: k, phases: phases,
		delay: int(math.Round(mid / float64(down))),
	}
}

func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 60; k++ {
		term *= (x / (2 * float64(k))) * (x / (2 * float64(k)))
		sum += term
		if term < sum*1e-14 {
			break
		}
	}
	return sum
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Resampler converts a stream of 16-bit mono PCM from one rate to another.
// It keeps its filter state between calls, so audio can be fed in chunks of
// any size (including odd ones) and the output is the same as if the whole
// stream had been converted at once. The filter's delay is removed: output
// sample j lines up with input time j/to. Not safe for concurrent use.
type Resampler struct {
	b       *filterBank
	buf     []float64 // history (taps-1 samples) followed by pending input, converted once
	pos     int64     // next output's position in upsampled units from buf[0]
	skip    int       // outputs still to drop to cancel the filter delay
	in, out int64     // samples consumed and produced, for Flush's length
	flushed bool
}

// NewResampler returns a resampler from rate from to rate to (Hz, both > 0).
func NewResampler(from, to int) (*Resampler, error) {
	if from <= 0 || to <= 0 {
		return nil, fmt.Errorf("audio: resample %d Hz -> %d Hz: rates must be positive", from, to)
	}
	if from > 1_000_000 || to > 1_000_000 {
		return nil, fmt.Errorf("audio: resample %d Hz -> %d Hz: rate out of range", from, to)
	}
	b := bankFor(from, to)
	r := &Resampler{b: b, skip: b.delay}
	r.buf = make([]float64, b.taps-1, 4096)
	r.pos = int64(b.taps-1) * int64(b.up)
	return r, nil
}

// Process appends the resampled form of in to dst and returns it. Output
// lags input by the filter's delay; Flush releases the rest.
func (r *Resampler) Process(dst []int16, in []int16) []int16 {
	if r.flushed {
		return dst
	}
	r.in += int64(len(in))
	for _, v := range in {
		r.buf = append(r.buf, float64(v))
	}
	return r.run(dst)
}

// Flush appends the output still held in the filter and ends the stream:
// in total the stream yields round(in*to/from) samples.
func (r *Resampler) Flush(dst []int16) []int16 {
	if r.flushed {
		return dst
	}
	want := (r.in*int64(r.b.up) + int64(r.b.down)/2) / int64(r.b.down)
	// Zeros push the tail through the filter; taps covers the delay.
	r.buf = append(r.buf, make([]float64, r.b.taps)...)
	dst = r.run(dst)
	if extra := r.out - want; extra > 0 {
		dst = dst[:len(dst)-int(extra)]
		r.out = want
	}
	r.flushed = true
	return dst
}

func (r *Resampler) run(dst []int16) []int16 {
	b := r.b
	k := b.taps
	up, down := int64(b.up), int64(b.down)
	for {
		i := int(r.pos / up) // newest input sample this output needs
		if i >= len(r.buf) {
			break
		}
		acc := dot(b.phases[r.pos%up], r.buf[i-k+1:i+1])
		r.pos += down
		if r.skip > 0 {
			r.skip--
			continue
		}
		dst = append(dst, clamp16(acc))
		r.out++
	}
	// Keep the last k-1 samples as history for the next call.
	if drop := len(r.buf) - (k - 1); drop > 0 {
		n := copy(r.buf, r.buf[drop:])
		r.buf = r.buf[:n]
		r.pos -= int64(drop) * up
	}
	return dst
}

// dot is the filter's inner loop, unrolled with four accumulators (it runs
// taps/3 times per 8 kHz sample of every stream while the agent speaks).
func dot(h, x []float64) float64 {
	x = x[:len(h)]
	var a0, a1, a2, a3 float64
	i := 0
	for ; i+4 <= len(h); i += 4 {
		a0 += h[i] * x[i]
		a1 += h[i+1] * x[i+1]
		a2 += h[i+2] * x[i+2]
		a3 += h[i+3] * x[i+3]
	}
	for ; i < len(h); i++ {
		a0 += h[i] * x[i]
	}
	return (a0 + a1) + (a2 + a3)
}

func clamp16(v float64) int16 {
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	}
	return int16(math.Round(v))
}
