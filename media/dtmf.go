package media

import "time"

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
