package siptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Sipfrag is the status line a NOTIFY about a REFER carries.
type Sipfrag struct {
	Code   int
	Reason string
	// State is the Subscription-State header ("active;expires=60",
	// "terminated;reason=noresource").
	State string
}

// referState is a call's REFER bookkeeping: the NOTIFYs it received.
type referState struct {
	mu       sync.Mutex
	notifies []Sipfrag
	changed  chan struct{} // closed and replaced on every NOTIFY
}

var refers sync.Map // *Call → *referState

func (c *Call) refers() *referState {
	v, _ := refers.LoadOrStore(c, &referState{changed: make(chan struct{})})
	return v.(*referState)
}

// ReferOptions shape one REFER the phone sends.
type ReferOptions struct {
	// Replaces makes it an attended transfer: the dialog of another call
	// of this phone (see ReplacesOf) that the target's call replaces.
	Replaces string
}

// ReplacesOf is the Replaces value naming c's dialog, as this phone sees
// it: its Call-ID, the remote tag as to-tag, our tag as from-tag.
func ReplacesOf(c *Call) (string, error) {
	var local, remote string
	switch d := c.dlg.(type) {
	case *sipgo.DialogClientSession:
		local, _ = d.InviteRequest.From().Params.Get("tag")
		remote, _ = d.InviteResponse.To().Params.Get("tag")
	case *sipgo.DialogServerSession:
		remote, _ = d.InviteRequest.From().Params.Get("tag")
		if d.InviteResponse != nil {
			local, _ = d.InviteResponse.To().Params.Get("tag")
		}
	}
	if local == "" || remote == "" {
		return "", errors.New("phone: call has no established dialog")
	}
	return c.callID + ";to-tag=" + remote + ";from-tag=" + local, nil
}

// Refer sends REFER on the call asking the other side to call target (a
// SIP URI) and returns the final status of the REFER itself (202 when it
// was accepted); the progress arrives as NOTIFYs (see Notifies).
func (c *Call) Refer(ctx context.Context, target string, opt ReferOptions) (int, error) {
	d, ok := c.dlg.(inDialog)
	if !ok {
		return 0, errors.New("phone: dialog cannot send requests")
	}
	uri, err := c.target()
	if err != nil {
		return 0, err
	}
	c.refers() // NOTIFYs may beat the 202
	referTo := target
	if opt.Replaces != "" {
		referTo += "?Replaces=" + url.QueryEscape(opt.Replaces)
	}
	req := sip.NewRequest(sip.REFER, uri)
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+referTo+">"))
	if c.phone != nil {
		req.AppendHeader(sip.HeaderClone(&c.phone.contact))
	}
	tx, err := d.TransactionRequest(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("phone: refer: %w", err)
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res.StatusCode, nil
		case <-tx.Done():
			return 0, fmt.Errorf("phone: refer: %w", errors.Join(tx.Err(), errors.New("no final response")))
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Notifies returns the REFER NOTIFYs the call received, in order.
func (c *Call) Notifies() []Sipfrag {
	r := c.refers()
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Sipfrag(nil), r.notifies...)
}

// WaitFinalNotify waits for a NOTIFY with a final sipfrag status (200 and
// above) and returns it.
func (c *Call) WaitFinalNotify(ctx context.Context) (Sipfrag, error) {
	r := c.refers()
	for {
		r.mu.Lock()
		for _, n := range r.notifies {
			if n.Code >= 200 {
				r.mu.Unlock()
				return n, nil
			}
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Sipfrag{}, fmt.Errorf("phone: no final NOTIFY: %w", ctx.Err())
		}
	}
}

// onNotify records a NOTIFY about a REFER the phone sent.
func (p *Phone) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	respond := func(code int, reason string) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
	}
	c := p.callByID(req.CallID().Value())
	if c == nil {
		respond(481, "Call/Transaction Does Not Exist")
		return
	}
	frag, err := parseSipfrag(req.Body())
	if err != nil {
		respond(400, "Bad Sipfrag")
		return
	}
	if h := req.GetHeader("Subscription-State"); h != nil {
		frag.State = h.Value()
	}
	respond(200, "OK")
	r := c.refers()
	r.mu.Lock()
	r.notifies = append(r.notifies, frag)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func parseSipfrag(body []byte) (Sipfrag, error) {
	line, _, _ := bytes.Cut(body, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return Sipfrag{}, fmt.Errorf("sipfrag %q: no status line", line)
	}
	code, err := strconv.Atoi(f[1])
	if err != nil {
		return Sipfrag{}, fmt.Errorf("sipfrag %q: %w", line, err)
	}
	return Sipfrag{Code: code, Reason: strings.Join(f[2:], " ")}, nil
}

// ReferPlan says how the phone (playing a carrier) answers a REFER.
type ReferPlan struct {
	// Reject answers the REFER with this status (e.g. 603) instead of 202.
	Reject int
	// FinalCode is the final sipfrag status NOTIFYed after the 100 (default
	// 200); FinalDelay waits before it, as a real transfer rings.
	FinalCode  int
	FinalDelay time.Duration
	// Hangup ends the call with BYE after a 2xx final NOTIFY, as a carrier
	// that took the call over does.
	Hangup bool
}

// referPlans holds each phone's REFER plan and the targets it was asked
// to call.
type referPlans struct {
	mu      sync.Mutex
	plan    func(*sip.Request) ReferPlan
	targets []string
}

var phoneRefers sync.Map // *Phone → *referPlans

func (p *Phone) referPlans() *referPlans {
	v, _ := phoneRefers.LoadOrStore(p, &referPlans{})
	return v.(*referPlans)
}

// OnRefer makes the phone accept REFERs as plan says; without one it
// declines them with 603.
func (p *Phone) OnRefer(plan func(*sip.Request) ReferPlan) {
	r := p.referPlans()
	r.mu.Lock()
	r.plan = plan
	r.mu.Unlock()
}

// ReferTargets returns the Refer-To values of the REFERs the phone got.
func (p *Phone) ReferTargets() []string {
	r := p.referPlans()
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.targets...)
}

// onRefer answers a REFER and, when it accepts it, reports the "transfer"
// with NOTIFYs in the background (the phone's WaitGroup owns them).
func (p *Phone) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	respond := func(code int, reason string) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
	}
	c := p.callByID(req.CallID().Value())
	if c == nil {
		respond(481, "Call/Transaction Does Not Exist")
		return
	}
	r := p.referPlans()
	r.mu.Lock()
	if h := req.GetHeader("Refer-To"); h != nil {
		r.targets = append(r.targets, h.Value())
	}
	plan := r.plan
	r.mu.Unlock()
	var pl ReferPlan
	if plan == nil {
		pl.Reject = 603
	} else {
		pl = plan(req)
	}
	if pl.Reject != 0 {
		respond(pl.Reject, "Declined")
		return
	}
	d, ok := c.dlg.(inDialog)
	uri, err := c.target()
	if !ok || err != nil {
		respond(500, "Server Internal Error")
		return
	}
	respond(202, "Accepted")
	if pl.FinalCode == 0 {
		pl.FinalCode = 200
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		defer cancel()
		notify := func(code int, reason, state string) {
			n := sip.NewRequest(sip.NOTIFY, uri)
			n.AppendHeader(sip.NewHeader("Event", "refer"))
			n.AppendHeader(sip.NewHeader("Subscription-State", state))
			n.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
			n.AppendHeader(sip.HeaderClone(&p.contact))
			n.SetBody(fmt.Appendf(nil, "SIP/2.0 %d %s\r\n", code, reason))
			tx, err := d.TransactionRequest(ctx, n)
			if err != nil {
				return
			}
			defer tx.Terminate()
			select {
			case <-tx.Responses():
			case <-tx.Done():
			case <-ctx.Done():
			}
		}
		notify(100, "Trying", "active;expires=60")
		if pl.FinalDelay > 0 {
			select {
			case <-time.After(pl.FinalDelay):
			case <-ctx.Done():
				return
			}
		}
		reason := "OK"
		if pl.FinalCode >= 300 {
			reason = "Failed"
		}
		notify(pl.FinalCode, reason, "terminated;reason=noresource")
		if pl.Hangup && pl.FinalCode < 300 {
			_ = c.Hangup(ctx)
		}
	}()
}
