package sip

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
)

// earlyAnswer is the SDP answer a 183 carried: the 200 repeats it exactly.
type earlyAnswer struct {
	local sdp.Local
	body  []byte
}

// Progress sends 183 Session Progress with our SDP answer naming
// mediaAddr:mediaPort, so the caller plays what we send before the call is
// answered (a callee's early media, relayed). It is not sent reliably (no
// 100rel): RFC 3261 §13.2.1 lets an unreliable provisional response carry
// the answer as long as the 2xx carries that exact answer, which Answer
// then does, whatever address it is given. Calling it again resends the
// same answer.
func (l *Leg) Progress(mediaAddr netip.Addr, mediaPort int) error {
	if l.NegotiateErr != nil {
		return fmt.Errorf("progress %s: %w", l.CallID, l.NegotiateErr)
	}
	l.mu.Lock()
	if l.finalSent || l.ended {
		l.mu.Unlock()
		return fmt.Errorf("progress %s: %w", l.CallID, ErrLegEnded)
	}
	if l.early == nil {
		local, body := l.answerFor(mediaAddr, mediaPort)
		l.early = &earlyAnswer{local: local, body: body}
	}
	body := l.early.body
	l.mu.Unlock()
	if err := l.dlg.Respond(183, "Session Progress", body, sip.NewHeader("Content-Type", "application/sdp")); err != nil {
		return fmt.Errorf("progress %s: %w", l.CallID, err)
	}
	return nil
}

// answerFor is our SDP answer with media at mediaAddr:mediaPort: the
// negotiated codec and, when offered, telephone-event. Once a 183 carried
// an answer, it is that one. l.mu must be held.
func (l *Leg) answerFor(mediaAddr netip.Addr, mediaPort int) (sdp.Local, []byte) {
	if l.early != nil {
		return l.early.local, l.early.body
	}
	n := l.Negotiated
	local := sdp.Local{
		Address:         mediaAddr,
		Port:            mediaPort,
		SessionID:       rand.Uint64N(1 << 62),
		Version:         1,
		Codecs:          []sdp.Codec{n.Codec},
		DTMFPayloadType: n.DTMFPayloadType,
		Ptime:           20,
		Direction:       n.LocalDirection,
		RTCPMux:         n.RTCPMux,
	}
	return local, sdp.Build(local)
}
