package rtptest

import (
	"slices"
	"time"

	"github.com/voxbridge/voxbridge/media"
)

// FixedDelayOracle answers, for a stream of audio packets from one source
// with continuous timestamps, what the best fixed playout delay could do:
// knowing the whole trace, it plays every packet at its media time plus the
// fastest packet's transit plus D. It returns the smallest D with at most
// lateRate of the packets late, and the mean time a packet then waits
// between arrival and playout.
func FixedDelayOracle(arrivals []media.Arrival, lateRate float64) (d, meanWait time.Duration) {
	if len(arrivals) == 0 {
		return 0, 0
	}
	ts := func(b []byte) uint32 { return uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]) }
	first := ts(arrivals[0].Data)
	rel := make([]time.Duration, len(arrivals))
	for i, a := range arrivals {
		mediaTime := time.Duration(int64(int32(ts(a.Data)-first))) * time.Second / media.SampleRate
		rel[i] = a.At.Sub(arrivals[0].At) - mediaTime
	}
	base := slices.Min(rel)
	for i := range rel {
		rel[i] -= base
	}
	sorted := slices.Clone(rel)
	slices.Sort(sorted)
	// Late iff rel > D: the smallest D with at most lateRate late leaves
	// floor(lateRate*n) packets above it.
	allowed := int(lateRate * float64(len(sorted)))
	d = sorted[len(sorted)-1-min(allowed, len(sorted)-1)]
	var sum time.Duration
	var n int
	for _, x := range rel {
		if x <= d {
			sum += d - x
			n++
		}
	}
	return d, sum / time.Duration(n)
}
