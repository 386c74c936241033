package siptest

import "context"

// DialEarlyMedia calls uri like Dial, and plays early media as a phone
// does: the call's media starts on the first provisional response that
// carries an SDP answer (183 Session Progress) and goes on after the 200.
// The 200 must repeat the early SDP answer exactly (RFC 3261 §13.2.1), or
// the call fails. It returns the audio heard before the 200 apart; Heard
// has all of it.
func (p *Phone) DialEarlyMedia(ctx context.Context, uri string, opt DialOptions) (*Call, []int16, error) {
	return p.dial(ctx, uri, opt, true)
}
