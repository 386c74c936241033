package media

import "time"

// Test hooks for the external tests.

func addLatenessForTest(h LatenessHistogram, d time.Duration) LatenessHistogram {
	h.Buckets[latenessBucket(d)]++
	h.Count++
	h.Max = max(h.Max, d)
	return h
}

// AddLateness is addLatenessForTest, exported to package media_test only.
var AddLateness = addLatenessForTest

// NewReceiverFullRing is NewReceiver with its ring allocated at full size
// from the start, as it was before the ring learned to grow: the reference
// a growing ring must sound exactly like.
func NewReceiverFullRing(cfg ReceiverConfig) *Receiver {
	r := NewReceiver(cfg)
	r.setRing(make([]int16, r.ringMax))
	return r
}

// RingLen is the jitter buffer ring's current size in samples.
func (r *Receiver) RingLen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ring)
}
