package sip

import (
	"context"

	"github.com/voxbridge/voxbridge/sip/sdp"
)

// Dialog is what the flow needs from a call leg in either direction: an
// inbound Leg or an OutLeg we placed.
type Dialog interface {
	SIPCallID() string
	// Media is the negotiated remote media: address, codec, DTMF type.
	Media() sdp.Negotiated
	// Done is closed when the dialog has ended, by either side.
	Done() <-chan struct{}
	// EndInfo says how it ended; valid after Done is closed.
	EndInfo() EndInfo
	// Hangup ends the dialog from our side (BYE once established).
	Hangup(ctx context.Context) error
	// InfoDTMF delivers digits received as SIP INFO.
	InfoDTMF() <-chan rune
}

var (
	_ Dialog = (*Leg)(nil)
	_ Dialog = (*OutLeg)(nil)
)
