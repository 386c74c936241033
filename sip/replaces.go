package sip

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// ReplacesID names a dialog to replace (RFC 3891): its Call-ID and the two
// tags, as the Replaces header or a Refer-To's ?Replaces= carries them.
type ReplacesID struct {
	CallID  string
	ToTag   string
	FromTag string
	// EarlyOnly: replace only a dialog that is not yet answered.
	EarlyOnly bool
}

// String renders id as a Replaces header value.
func (id ReplacesID) String() string {
	s := id.CallID + ";to-tag=" + id.ToTag + ";from-tag=" + id.FromTag
	if id.EarlyOnly {
		s += ";early-only"
	}
	return s
}

// ParseReplaces reads a Replaces header value.
func ParseReplaces(v string) (ReplacesID, error) {
	parts := strings.Split(strings.TrimSpace(v), ";")
	id := ReplacesID{CallID: strings.TrimSpace(parts[0])}
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "to-tag":
			id.ToTag = strings.TrimSpace(val)
		case "from-tag":
			id.FromTag = strings.TrimSpace(val)
		case "early-only":
			id.EarlyOnly = true
		}
	}
	if id.CallID == "" || id.ToTag == "" || id.FromTag == "" {
		return ReplacesID{}, fmt.Errorf("replaces %q: needs a Call-ID, to-tag and from-tag", truncate(v, 120))
	}
	return id, nil
}

// ErrNoDialog is returned when a Replaces names no dialog of ours.
var ErrNoDialog = errors.New("no such dialog")

// FindDialog returns the live leg (a *Leg or an *OutLeg) that id names. The
// tags are matched either way round: a transferor names the dialog as it
// sees it, which is the reverse of how we see it.
func (s *Server) FindDialog(id ReplacesID) (Dialog, error) {
	for _, key := range []string{
		sip.DialogIDMake(id.CallID, id.ToTag, id.FromTag),
		sip.DialogIDMake(id.CallID, id.FromTag, id.ToTag),
	} {
		if v, ok := s.legs.Load(key); ok {
			return v.(*Leg), nil
		}
		if v, ok := s.outLegs.Load(key); ok {
			return v.(*OutLeg), nil
		}
	}
	return nil, fmt.Errorf("replaces %s: %w", id.CallID, ErrNoDialog)
}

// Replaces returns the Replaces header of the INVITE that made l, nil when
// it has none: this call takes the place of that dialog's party.
func (l *Leg) Replaces() (*ReplacesID, error) {
	h := l.dlg.InviteRequest.GetHeader("Replaces")
	if h == nil {
		return nil, nil
	}
	id, err := ParseReplaces(h.Value())
	if err != nil {
		return nil, err
	}
	return &id, nil
}
