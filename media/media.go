// Package media carries call audio: G.711 over RTP with a 20 ms send clock,
// an adaptive jitter buffer, RTCP, RFC 4733 DTMF, stereo call recording,
// WAV files, and small signal helpers.
//
// Internal audio is always 8 kHz, 16-bit, mono, in 20 ms frames of 160
// samples; G.711 encoding happens only at the RTP edge.
//
// A Stream is one call leg's RTP: its reader pushes inbound packets into a
// Receiver (the jitter buffer), and its clock, every 20 ms on an absolute
// schedule, sends one packet from the playout queue and pulls one frame of
// playout for Frames (and the Recorder). The Receiver works on any clock,
// so `voxbridge replay` runs captures through the same code in simulated
// time (PlaySimulated).
package media

import (
	"errors"
	"time"
)

// The internal audio format.
const (
	SampleRate    = 8000
	FrameSamples  = 160                   // 20 ms at 8 kHz
	FrameDuration = 20 * time.Millisecond // one RTP packet per frame
)

var (
	// ErrClosed is returned by operations on a stream that has stopped.
	ErrClosed = errors.New("media: stream closed")
	// ErrNoDTMF is returned by SendDTMF when telephone-event was not negotiated.
	ErrNoDTMF = errors.New("media: telephone-event not negotiated")
)

// samplesFor converts a duration to a sample count at SampleRate, rounding down.
func samplesFor(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(int64(d) * SampleRate / int64(time.Second))
}
