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
