package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// Dialer places outbound legs and finds where an extension is registered;
// *sip.Server is one. The controller needs it for connect and for routing
// calls to extensions and trunks.
type Dialer interface {
	Dial(ctx context.Context, r sip.DialRequest) (*sip.OutLeg, error)
	Contacts(ctx context.Context, extension string) ([]store.Registration, error)
}

// SetDialer sets the dialer after construction: the SIP server that dials
// is built with the controller's HandleInbound, so it exists only later.
func (ct *Controller) SetDialer(d Dialer) {
	ct.mu.Lock()
	ct.cfg.Dialer = d
	ct.mu.Unlock()
}

func (ct *Controller) dialer() (Dialer, error) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.cfg.Dialer == nil {
		return nil, errors.New("no dialer configured: outbound calls are unavailable")
	}
	return ct.cfg.Dialer, nil
}

// routeDialed picks the program for what an inbound call dialed: a number
// in the numbers table, another extension, or the outside world through a
// trunk. nil means the server's default flow.
func (ct *Controller) routeDialed(c *Call) *program {
	user := c.leg.ToUser
	if user == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, storeTimeout)
	defer cancel()
	id := c.leg.Identity
	num, numErr := store.NormalizeNumber(user)
	if numErr == nil {
		if p := ct.routeNumber(ctx, c, num); p != nil {
			return p
		}
	}
	if id.Trunk != nil {
		return nil // a carrier's calls reach numbers (above) or the default flow
	}
	var ext *store.Extension
	err := store.ErrNotFound
	if isDialable(user) {
		ext, err = ct.cfg.Store.GetExtension(ctx, user)
	}
	switch {
	case err == nil:
		return bridgeProgram("route:extension:"+ext.Number, ConnectDestination{Type: DestExtension, Target: ext.Number}, false)
	case !errors.Is(err, store.ErrNotFound):
		c.log.Error("route: extension lookup", "user", user, "err", err)
		c.warn(fmt.Sprintf("route: extension lookup %s: %v", user, err))
		return nil
	}
	if id.Extension == nil || numErr != nil {
		return nil // anonymous callers reach the default flow (the echo test)
	}
	if !id.MayUseTrunks() {
		c.log.Info("route: extension may not call out", "extension", id.Extension.Number, "dialed", user)
		return rejectProgram("route:forbidden", 403, "Forbidden")
	}
	return bridgeProgram("route:trunk", ConnectDestination{Type: DestNumber, Target: num}, false)
}

// routeNumber looks the dialed number up in the numbers table.
func (ct *Controller) routeNumber(ctx context.Context, c *Call, num string) *program {
	n, err := ct.cfg.Store.GetNumber(ctx, num)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			c.log.Error("route: number lookup", "number", num, "err", err)
			c.warn(fmt.Sprintf("route: number lookup %s: %v", num, err))
		}
		return nil
	}
	// A number tied to a trunk is that trunk's DID; from elsewhere it is
	// just digits.
	if n.TrunkID != "" && (c.leg.Identity.Trunk == nil || c.leg.Identity.Trunk.ID != n.TrunkID) {
		return nil
	}
	return ct.numberProgram(ctx, c, n)
}

// numberProgram is what a call to our number n runs; nil for the default
// flow (the number's flow or agent is missing: a warning on the call).
func (ct *Controller) numberProgram(ctx context.Context, c *Call, n *store.Number) *program {
	num := n.Number
	switch n.Kind {
	case store.NumberToFlow:
		p, err := ct.lookup(ctx, n.Target)
		if err != nil {
			c.log.Error("route: number's flow unavailable", "number", num, "flow_id", n.Target, "err", err)
			c.warn(fmt.Sprintf("number %s: flow %s: %v", num, n.Target, err))
			return nil
		}
		return p
	case store.NumberToExtension:
		return bridgeProgram("route:number:"+num, ConnectDestination{Type: DestExtension, Target: n.Target}, false)
	case store.NumberToAgent:
		if _, ok := ct.cfg.Agents.Get(n.Target); !ok {
			c.warn(fmt.Sprintf("number %s: agent %s not found; running the default flow", num, n.Target))
			return nil
		}
		p, err := numberAgentProgram(num, n.Target)
		if err != nil {
			c.warn(fmt.Sprintf("number %s: agent %s: %v", num, n.Target, err))
			return nil
		}
		return p
	}
	return nil
}

// bridgeProgram is the one-action flow a routed call runs, so the record
// of what ran shows the connect. system says the operator (not the caller)
// chose the destination.
func bridgeProgram(id string, d ConnectDestination, system bool) *program {
	raw, _ := json.Marshal(ConnectOption{Destinations: []ConnectDestination{d}})
	a := Action{ID: "connect", Type: "connect", Option: raw}
	o := ConnectOption{Destinations: []ConnectDestination{d}}
	st, err := compileConnectFor(&o, system)
	if err != nil {
		// Route-built destinations come from the store's own checks; a
		// refused one is answered as unreachable rather than a crash.
		return rejectProgram(id, 404, "Not Found")
	}
	st.action = a
	return &program{flow: &Flow{ID: id, Actions: []Action{a}}, steps: []step{st}, index: map[string]int{"connect": 0}}
}

// rejectProgram refuses the call with a final response; routes use it for
// calls the caller is not allowed to make.
func rejectProgram(id string, code int, reason string) *program {
	a := Action{ID: "reject", Type: "reject", Option: json.RawMessage(fmt.Sprintf(`{"code":%d}`, code))}
	st := step{action: a, timeout: 10 * time.Second, exec: func(ctx context.Context, r *run) (string, error) {
		r.c.setLocalReason(store.ReasonFailed)
		if err := r.c.leg.Reject(code, reason); err != nil && !errors.Is(err, sip.ErrLegEnded) {
			return "", err
		}
		return "", errStop
	}}
	return &program{flow: &Flow{ID: id, Actions: []Action{a}}, steps: []step{st}, index: map[string]int{"reject": 0}}
}

// isDialable reports whether s looks like an extension number (digits).
func isDialable(s string) bool {
	if s == "" {
		return false
	}
	return strings.Trim(s, "0123456789") == ""
}
