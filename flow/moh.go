package flow

import (
	"math"
	"sync"

	"github.com/voxbridge/voxbridge/media"
)

// mohChords are the loop's chords (Hz). No note sits near 440 Hz or 1 kHz,
// the test tones callers' audio is checked with, so music on hold is never
// mistaken for a bridged party's tone.
var mohChords = [][]float64{
	{261.63, 329.63, 392.00}, // C major
	{246.94, 329.63, 392.00}, // E minor
	{196.00, 246.94, 293.66}, // G major
	{261.63, 349.23, 392.00}, // C sus4
}

const (
	mohChordSamples = media.SampleRate * 3 / 2 // 1.5 s per chord
	mohFadeSamples  = media.SampleRate / 5     // 200 ms swell in and out
	mohAmplitude    = 0.18                     // of full scale, all notes together: soft
)

var mohOnce = sync.OnceValue(synthMusicOnHold)

// musicOnHold returns a 6 s loop of soft chords at 8 kHz, synthesized once.
// It starts and ends near silence, so it repeats without a click. Callers
// must not modify it.
func musicOnHold() []int16 { return mohOnce() }

func synthMusicOnHold() []int16 {
	out := make([]int16, 0, len(mohChords)*mohChordSamples)
	for _, chord := range mohChords {
		for i := range mohChordSamples {
			// Raised-cosine swell at both ends of each chord.
			env := 1.0
			if i < mohFadeSamples {
				env = 0.5 - 0.5*math.Cos(math.Pi*float64(i)/mohFadeSamples)
			} else if left := mohChordSamples - 1 - i; left < mohFadeSamples {
				env = 0.5 - 0.5*math.Cos(math.Pi*float64(left)/mohFadeSamples)
			}
			var v float64
			for _, f := range chord {
				v += math.Sin(2 * math.Pi * f * float64(i) / media.SampleRate)
			}
			out = append(out, int16(math.Round(env*mohAmplitude*math.MaxInt16*v/float64(len(chord)))))
		}
	}
	return out
}
