package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
)

// SupportedCodecs are the audio codecs we answer with, in our preference
// order (the offer's order decides among them).
var SupportedCodecs = []sdp.Codec{sdp.PCMU, sdp.PCMA}

// EndBy says which side ended a leg.
type EndBy string

const (
	EndLocal  EndBy = "local"
	EndRemote EndBy = "remote"
)

// EndCause says how a leg ended.
type EndCause string

const (
	CauseBye       EndCause = "bye"       // a BYE from either side
	CauseCancel    EndCause = "cancel"    // CANCEL before answer
	CauseRejected  EndCause = "rejected"  // we answered with a final error
	CauseNoAck     EndCause = "no_ack"    // our 2xx was never acknowledged
	CauseTransport EndCause = "transport" // the transaction failed on the wire
)

// EndInfo describes how a leg ended.
type EndInfo struct {
	By    EndBy
	Cause EndCause
	Code  int // final SIP status involved, if any
}

// Leg is one inbound call's dialog, from INVITE to its end.
type Leg struct {
	CallID    string
	From      string // From URI
	To        string // To URI
	FromUser  string
	ToUser    string
	Source    string // transport address the INVITE came from
	Transport string

	Offer        *sdp.Session
	Negotiated   sdp.Negotiated
	NegotiateErr error // set when the offer has no usable audio: reject with 488

	// Identity is who the call comes from: an authenticated extension, a
	// trunk, or neither (anonymous, when the server allows it).
	Identity

	srv *Server
	dlg *sipgo.DialogServerSession
	tx  sip.ServerTransaction

	mu        sync.Mutex
	answered  bool
	finalSent bool
	answerSDP []byte
	ended     bool
	info      EndInfo

	final     chan struct{} // closed once the INVITE has its final response
	finalOnce sync.Once
	done      chan struct{} // closed when the leg has ended
	dtmf      chan rune     // digits from SIP INFO

	sess session // re-INVITE, UPDATE, hold, session timer (reinvite.go)

	early *earlyAnswer // the answer a 183 carried (earlymedia.go); the 200 repeats it

	refer referHooks // REFER in and out (refer.go)

	// cancelTo is what the INVITE transaction's CANCEL hook reaches the leg
	// by; end clears it so the lingering transaction does not keep the leg.
	cancelTo *atomic.Pointer[Leg]
}

func newLeg(s *Server, req *sip.Request, dlg *sipgo.DialogServerSession, tx sip.ServerTransaction,
	offer *sdp.Session, neg sdp.Negotiated, negErr error) *Leg {
	l := &Leg{
		CallID:       callID(req),
		Source:       req.Source(),
		Transport:    req.Transport(),
		Offer:        offer,
		Negotiated:   neg,
		NegotiateErr: negErr,
		srv:          s,
		dlg:          dlg,
		tx:           tx,
		final:        make(chan struct{}),
		done:         make(chan struct{}),
		dtmf:         make(chan rune, 32),
	}
	if h := req.From(); h != nil {
		l.From = h.Address.String()
		l.FromUser = h.Address.User
	}
	if h := req.To(); h != nil {
		l.To = h.Address.String()
		l.ToUser = h.Address.User
	}
	if l.ToUser == "" {
		l.ToUser = req.Recipient.User
	}
	return l
}

// readOffer validates an initial INVITE's body. A non-zero code means the
// INVITE must be refused with it; a negotiation failure is returned apart so
// the caller can record the refused call.
func readOffer(req *sip.Request) (offer *sdp.Session, neg sdp.Negotiated, negErr error, code int, reason string) {
	body := req.Body()
	if len(body) == 0 {
		return nil, neg, nil, 488, "SDP Offer Required"
	}
	if h := req.ContentType(); h != nil {
		ct := strings.ToLower(strings.TrimSpace(strings.SplitN(h.Value(), ";", 2)[0]))
		if ct != "application/sdp" {
			return nil, neg, nil, 415, "Unsupported Media Type"
		}
	}
	offer, err := sdp.Parse(body)
	if err != nil {
		return nil, neg, nil, 400, "Malformed SDP"
	}
	neg, negErr = sdp.Negotiate(offer, SupportedCodecs)
	if errors.Is(negErr, sdp.ErrMalformed) {
		return nil, neg, nil, 400, "Malformed SDP" // its only codec of ours is unreadable
	}
	return offer, neg, negErr, 0, ""
}

// SIPCallID is the dialog's Call-ID.
func (l *Leg) SIPCallID() string { return l.CallID }

// Media is the remote media in force: negotiated from the caller's offer,
// then changed by re-INVITEs and UPDATEs.
func (l *Leg) Media() sdp.Negotiated { return l.sess.media(l.Negotiated) }

// Ringing sends 180 Ringing.
func (l *Leg) Ringing() error {
	return l.provisional(180, "Ringing")
}

func (l *Leg) provisional(code int, reason string) error {
	l.mu.Lock()
	done := l.finalSent || l.ended
	l.mu.Unlock()
	if done {
		return fmt.Errorf("%d on %s: %w", code, l.CallID, ErrLegEnded)
	}
	return l.dlg.Respond(code, reason, nil)
}

// ErrLegEnded is returned when acting on a leg that has already ended.
var ErrLegEnded = errors.New("leg ended")

// Answer sends 200 OK with an SDP answer naming our media address and
// waits for the ACK. The answer carries the negotiated codec and, when
// offered, telephone-event.
func (l *Leg) Answer(mediaAddr netip.Addr, mediaPort int) error {
	if l.NegotiateErr != nil {
		return fmt.Errorf("answer %s: %w", l.CallID, l.NegotiateErr)
	}
	l.mu.Lock()
	if l.finalSent || l.ended {
		l.mu.Unlock()
		return fmt.Errorf("answer %s: %w", l.CallID, ErrLegEnded)
	}
	l.finalSent = true
	local, body := l.answerFor(mediaAddr, mediaPort) // the 183's, if one went out (earlymedia.go)
	l.answerSDP = body
	l.mu.Unlock()

	res, deal := l.sdpResponse(body)
	err := l.dlg.WriteResponse(res)
	l.finalOnce.Do(func() { close(l.final) })
	if err != nil {
		l.end(EndRemote, CauseTransport, 0)
		return fmt.Errorf("answer %s: %w", l.CallID, err)
	}
	if l.dlg.LoadState() != sip.DialogStateConfirmed {
		// sipgo gives up after 64*T1 without an ACK but reports no error.
		l.end(EndRemote, CauseNoAck, 0)
		return fmt.Errorf("answer %s: no ACK", l.CallID)
	}
	l.mu.Lock()
	ended := l.ended
	l.answered = !ended
	l.mu.Unlock()
	if ended {
		return fmt.Errorf("answer %s: %w", l.CallID, ErrLegEnded)
	}
	l.startSession(local, body, deal)
	return nil
}

// Reject ends an unanswered leg with a final error response.
func (l *Leg) Reject(code int, reason string) error {
	l.mu.Lock()
	if l.finalSent || l.ended {
		l.mu.Unlock()
		return fmt.Errorf("reject %s: %w", l.CallID, ErrLegEnded)
	}
	l.finalSent = true
	l.mu.Unlock()
	err := l.dlg.Respond(code, reason, nil)
	l.end(EndLocal, CauseRejected, code)
	l.finalOnce.Do(func() { close(l.final) })
	if err != nil {
		return fmt.Errorf("reject %s: %w", l.CallID, err)
	}
	return nil
}

// Hangup ends the leg from our side: BYE when answered, 480 before.
func (l *Leg) Hangup(ctx context.Context) error {
	l.mu.Lock()
	answered, ended, finalSent := l.answered, l.ended, l.finalSent
	l.mu.Unlock()
	if ended {
		return nil
	}
	if !finalSent {
		return l.Reject(480, "Temporarily Unavailable")
	}
	if !answered {
		// The 2xx is out but unacknowledged; Answer ends the leg when it
		// gives up waiting.
		l.end(EndLocal, CauseBye, 0)
		return nil
	}
	err := l.dlg.Bye(ctx)
	l.end(EndLocal, CauseBye, 0)
	if err != nil {
		return fmt.Errorf("bye %s: %w", l.CallID, err)
	}
	return nil
}

// end records how the leg ended; only the first call counts.
func (l *Leg) end(by EndBy, cause EndCause, code int) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	l.info = EndInfo{By: by, Cause: cause, Code: code}
	l.mu.Unlock()
	l.srv.legs.Delete(l.dlg.ID)
	l.srv.liveLegs.Add(-1)
	if l.cancelTo != nil {
		l.cancelTo.Store(nil)
	}
	l.dlg.Close()
	close(l.done)
}

// Done is closed when the leg has ended.
func (l *Leg) Done() <-chan struct{} { return l.done }

// EndInfo reports how the leg ended; valid after Done is closed.
func (l *Leg) EndInfo() EndInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info
}

// InfoDTMF delivers digits received as SIP INFO.
func (l *Leg) InfoDTMF() <-chan rune { return l.dtmf }

func (l *Leg) pushInfoDTMF(d rune) {
	select {
	case l.dtmf <- d:
	default: // a consumer that stopped reading loses digits, not the server
	}
}

// finalStarted reports whether a final response has been (or is being) sent.
func (l *Leg) finalStarted() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.finalSent
}
