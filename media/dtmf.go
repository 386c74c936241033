package media

import (
	"math"
	"time"
)

// DTMFEvent is one received digit.
type DTMFEvent struct {
	Digit rune
	// Duration is the event duration known when the digit was emitted. Events
	// are emitted on their first packet, for low latency, so this is usually
	// 0-20 ms rather than the final length of the key press.
	Duration time.Duration
	At       time.Time // when the first packet of the event arrived
}

const dtmfDigits = "0123456789*#ABCD" // RFC 4733 events 0-15, in order

func digitEvent(d rune) (byte, bool) {
	if d >= 'a' && d <= 'd' {
		d -= 'a' - 'A'
	}
	for i, c := range dtmfDigits {
		if c == d {
			return byte(i), true
		}
	}
	return 0, false
}

func eventDigit(ev byte) (rune, bool) {
	if int(ev) < len(dtmfDigits) {
		return rune(dtmfDigits[ev]), true
	}
	return 0, false // flash and tone events: not digits
}

// dtmfFreqs are the row and column frequencies of each RFC 4733 event 0-15.
var dtmfFreqs = [16][2]float64{
	{941, 1336}, {697, 1209}, {697, 1336}, {697, 1477}, // 0 1 2 3
	{770, 1209}, {770, 1336}, {770, 1477}, {852, 1209}, // 4 5 6 7
	{852, 1336}, {852, 1477}, {941, 1209}, {941, 1477}, // 8 9 * #
	{697, 1633}, {770, 1633}, {852, 1633}, {941, 1633}, // A B C D
}

// dtmfTone writes the dual tone of event starting at sample offset of the
// key press (so consecutive frames join up); a negative offset, or an event
// that is not a digit, is silence. It stands in for an outbound RFC 4733
// event in recordings.
func dtmfTone(dst []int16, event byte, offset int) {
	if offset < 0 || int(event) >= len(dtmfFreqs) {
		clear(dst)
		return
	}
	f := dtmfFreqs[event]
	const amp = 0.25 * math.MaxInt16
	for i := range dst {
		t := float64(offset+i) / SampleRate
		dst[i] = int16(amp * (math.Sin(2*math.Pi*f[0]*t) + math.Sin(2*math.Pi*f[1]*t)))
	}
}
