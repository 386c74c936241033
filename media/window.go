package media

import "math"

// delayWindow keeps the transit times (arrival minus media time) of the
// last len(ring) audio packets, both in arrival order (to know which one
// leaves) and sorted (so the minimum and any percentile are one lookup).
// Insert and remove are a binary search and a memmove of at most 2 KB:
// cheaper than a histogram with forgetting, and exact. Values are kept in
// microseconds in 32 bits (±35 minutes of transit drift) to halve the
// memory each stream touches; the interface is in nanoseconds.
type delayWindow struct {
	ring   []int32 // arrival order, circular
	sorted []int32 // the same values, ascending; len is the fill level
	head   int     // next ring slot to write
}

func newDelayWindow(n int) delayWindow {
	return delayWindow{ring: make([]int32, n), sorted: make([]int32, 0, n)}
}

func (w *delayWindow) len() int { return len(w.sorted) }

func (w *delayWindow) reset() {
	w.sorted = w.sorted[:0]
	w.head = 0
}

// add records x (ns), evicting the oldest value once the window is full.
func (w *delayWindow) add(ns int64) {
	x := int32(max(math.MinInt32, min(math.MaxInt32, floorDiv(ns, 1000))))
	if len(w.sorted) == len(w.ring) {
		old := w.ring[w.head]
		i := w.search(old)
		copy(w.sorted[i:], w.sorted[i+1:])
		w.sorted = w.sorted[:len(w.sorted)-1]
	}
	w.ring[w.head] = x
	w.head = (w.head + 1) % len(w.ring)
	i := w.search(x)
	w.sorted = w.sorted[:len(w.sorted)+1]
	copy(w.sorted[i+1:], w.sorted[i:])
	w.sorted[i] = x
}

// search returns the first index whose value is >= x.
func (w *delayWindow) search(x int32) int {
	lo, hi := 0, len(w.sorted)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if w.sorted[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func (w *delayWindow) min() int64 { return int64(w.sorted[0]) * 1000 }

// quantile returns the smallest value with at least q of the window at or
// below it (nearest rank). The window must not be empty.
func (w *delayWindow) quantile(q float64) int64 {
	n := len(w.sorted)
	k := int(q*float64(n)+0.999999) - 1
	return int64(w.sorted[max(0, min(n-1, k))]) * 1000
}
