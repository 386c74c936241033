package media

import (
	"math"
	"sync"
)

// Windowed-sinc resampling (J. O. Smith's bandlimited interpolation): each
// output sample is a sum of input samples weighted by a Kaiser-windowed sinc
// low-pass whose cutoff sits just under the lower of the two Nyquist rates.
// The sinc is tabulated finely once and interpolated, so any rate pair works
// with one small table.
const (
	sincZeros  = 32   // zero crossings each side: ~640 Hz transition band at 8 kHz
	sincRes    = 512  // table points per zero crossing
	kaiserBeta = 8.0  // ~80 dB stopband
	lpCutoff   = 0.92 // of the lower Nyquist: 3680 Hz when going to 8 kHz
)

var sincTable = sync.OnceValue(func() []float64 {
	t := make([]float64, sincZeros*sincRes+2) // +2: the last interpolation reads idx+1
	i0b := besselI0(kaiserBeta)
	for i := range sincZeros * sincRes {
		x := float64(i) / sincRes
		y := x / sincZeros
		w := besselI0(kaiserBeta*math.Sqrt(1-y*y)) / i0b
		s := 1.0
		if x != 0 {
			s = math.Sin(math.Pi*x) / (math.Pi * x)
		}
		t[i] = s * w
	}
	return t
})

func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 50; k++ {
		term *= (x / (2 * float64(k))) * (x / (2 * float64(k)))
		sum += term
		if term < sum*1e-12 {
			break
		}
	}
	return sum
}

// resample converts in from rate from to rate to (both > 0).
func resample(in []int16, from, to int) []int16 {
	if from == to || len(in) == 0 {
		return in
	}
	g := lpCutoff * math.Min(1, float64(to)/float64(from)) // cutoff as a fraction of the input Nyquist
	k := int(math.Ceil(sincZeros / g))                     // filter half-width in input samples
	taps := 2*k + 2                                        // inputs i0-k .. i0+k+1 around position i0+frac
	tab := sincTable()
	coef := func(d float64) float64 {
		x := math.Abs(d) * g * sincRes
		if x >= float64(len(tab)-2) {
			return 0
		}
		n := int(x)
		return g * (tab[n] + (x-float64(n))*(tab[n+1]-tab[n]))
	}
	// The fractional position of output j repeats every `phases` outputs;
	// for the usual rates (44.1k: 80, 48k: 1) precompute one filter per phase
	// so the inner loop is a plain dot product.
	out := make([]int16, int64(len(in))*int64(to)/int64(from))
	gg := gcd(from, to)
	phases := to / gg
	var bank [][]float64
	if phases <= len(out) && phases*taps <= 1<<20 { // only when it pays off
		bank = make([][]float64, phases)
		for p := range bank {
			frac := float64(p) / float64(phases)
			bank[p] = make([]float64, taps)
			for t := range taps {
				bank[p][t] = coef(float64(k-t) + frac)
			}
		}
	}
	for j := range out {
		// Exact integer position so long files do not drift.
		num := int64(j) * int64(from)
		i0 := int(num / int64(to))
		rem := int(num % int64(to))
		base := i0 - k
		var acc float64
		if bank != nil {
			h := bank[rem/gg]
			if base >= 0 && base+taps <= len(in) {
				for t, x := range in[base : base+taps] {
					acc += float64(x) * h[t]
				}
			} else {
				for t := max(0, -base); t < taps && base+t < len(in); t++ {
					acc += float64(in[base+t]) * h[t]
				}
			}
		} else {
			frac := float64(rem) / float64(to)
			for i := max(0, base); i < min(len(in), base+taps); i++ {
				acc += float64(in[i]) * coef(float64(i0-i)+frac)
			}
		}
		out[j] = clamp16(acc)
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
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
