package flow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// Transfers by REFER (RFC 3515). A phone in a bridged call asks us to hand
// the other party to someone else: we ring the target with connect's
// dialing, bridge the other party to it once it answers and release the
// phone that asked. The other party's audio keeps flowing meanwhile.

// Variables a transfer by REFER sets on the call.
const (
	// VarTransferMethod is how the last transfer was done: refer (a phone's
	// or the peer's REFER) or bridge.
	VarTransferMethod = "transfer.method"
	// VarTransferFrom and VarTransferTo are the record ids of the leg that
	// left and of the leg that took its place.
	VarTransferFrom = "transfer.from_call_id"
	VarTransferTo   = "transfer.to_call_id"
	// VarTransferReplaces is, after an attended transfer, the record id of
	// the transferor's call whose leg our caller was bridged to.
	VarTransferReplaces = "transfer.replaces_call_id"
)

// Transfer methods of the transfer action (TransferOption.Method).
const (
	TransferMethodBridge = "bridge" // we ring the target and bridge (default)
	TransferMethodRefer  = "refer"  // ask the peer to transfer (REFER), else bridge
	TransferMethodAuto   = "auto"   // REFER when the peer lists it in Allow, else bridge
)

// referRing bounds how long a REFER's target rings.
const referRing = DefaultRingTimeout

// referReq is a REFER that reached a bridged call.
type referReq struct {
	r    *sip.Refer
	from *bLeg // the callee leg that sent it; nil: the caller did
	// handover, set instead of r, asks this call to give its bridged leg
	// to another call (an attended transfer there replaces our caller).
	handover chan<- *bLeg
}

// referInbox passes REFERs from SIP's goroutines to the bridge loop. ch is
// set only while a bridge runs.
type referInbox struct {
	mu sync.Mutex
	ch chan referReq
}

func (x *referInbox) open() chan referReq {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ch = make(chan referReq, 4)
	return x.ch
}

// close stops taking REFERs and declines the ones not yet taken.
func (x *referInbox) close(c *Call) {
	x.mu.Lock()
	ch := x.ch
	x.ch = nil
	x.mu.Unlock()
	for {
		select {
		case q := <-ch:
			if q.handover != nil {
				q.handover <- nil
				continue
			}
			c.failRefer(q.r, 603, "Declined")
		default:
			return
		}
	}
}

// push hands q to the running bridge; false when none runs or it is busy.
func (x *referInbox) push(q referReq) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ch == nil {
		return false
	}
	select {
	case x.ch <- q:
		return true
	default:
		return false
	}
}

// callerRefer takes a REFER from the caller's phone (sip.Leg.OnRefer).
func (c *Call) callerRefer(r *sip.Refer) bool {
	if c.refers.push(referReq{r: r}) {
		return true
	}
	// Not bridged: nobody to hand over. Accept and report the failure, as
	// RFC 3515 lets the transfer fail after the 202.
	return c.goControl(func() {
		c.log.Info("refer: not bridged, nothing to transfer", "target", r.Target)
		c.failRefer(r, 603, "Declined")
	})
}

// failRefer reports a transfer that did not happen.
func (c *Call) failRefer(r *sip.Refer, code int, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := r.Notify(ctx, code, reason); err != nil {
		c.log.Info("refer: notify", "err", err)
	}
}

// referBridge is the REFER side of one bridge: the transfer ringing, and
// what the caller hears if the transferor left before it answered.
type referBridge struct {
	c       *Call
	p       connectPlan
	in      chan referReq
	results chan referResult
	pending *referReq
	cancel  context.CancelFunc // stops the ringing
	orphan  bool               // the transferor hung up: the caller waits alone
	stopMOH func()
}

// referResult is how the ringing of a REFER's target ended.
type referResult struct {
	q  referReq
	b  *bLeg
	de *sip.DialError
}

// openRefers makes the bridge of c and b take REFERs (from either party).
func (c *Call) openRefers(b *bLeg, p connectPlan) *referBridge {
	x := &referBridge{c: c, p: p, in: c.refers.open(), results: make(chan referResult, 1)}
	x.watch(b)
	return x
}

// watch takes REFERs from b's phone.
func (x *referBridge) watch(b *bLeg) {
	b.out.OnRefer(func(r *sip.Refer) bool { return x.c.refers.push(referReq{r: r, from: b}) })
}

// close ends the REFER side of the bridge: the ringing is cancelled (its
// leg ended), and late REFERs are declined.
func (x *referBridge) close() {
	x.c.refers.close(x.c)
	if x.cancel != nil {
		x.cancel()
		if res := <-x.results; res.b != nil {
			res.b.end(store.ReasonCancel)
		} else {
			x.c.failRefer(res.q.r, 487, "Request Terminated")
		}
	}
	if x.stopMOH != nil {
		x.stopMOH()
	}
}

// take starts the transfer q asks for, ringing in the background; the
// bridge goes on meanwhile. True means the bridge is over: its leg b was
// handed to another call.
func (x *referBridge) take(ctx context.Context, b *bLeg, q referReq) (stop bool) {
	c := x.c
	if q.handover != nil {
		return x.handOver(b, q.handover)
	}
	switch {
	case q.from == nil:
		// The caller's own leg is the call: it cannot leave and let the
		// call go on without it.
		c.log.Info("refer: from the caller, not supported while bridged", "target", q.r.Target)
		x.fail(q.r, 603, "Declined")
		return false
	case q.from != b:
		// A leg already transferred away, before its BYE.
		x.fail(q.r, 603, "Declined")
		return false
	case x.pending != nil:
		x.fail(q.r, 491, "Request Pending")
		return false
	}
	d, err := c.ct.dialer()
	if err != nil {
		x.fail(q.r, 503, "Service Unavailable")
		return false
	}
	rctx, cancel := context.WithCancel(ctx)
	x.pending, x.cancel = &q, cancel
	c.log.Info("refer: transferring", "target", q.r.Target, "from_b_call_id", q.from.rec.ID)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var (
			nb *bLeg
			de *sip.DialError
		)
		if q.r.Replaces != nil {
			nb, de = c.takeOver(rctx, q)
		} else {
			nb, de = c.ringReferTarget(rctx, d, q, x.p)
		}
		x.results <- referResult{q: q, b: nb, de: de}
	}()
	return false
}

// handOver gives b, this bridge's leg, to the call that asked (an attended
// transfer there), and hangs up our caller, whom that call replaced.
func (x *referBridge) handOver(b *bLeg, to chan<- *bLeg) bool {
	c := x.c
	if x.pending != nil {
		to <- nil // busy with a transfer of its own
		return false
	}
	to <- b
	c.setVar(VarTransferMethod, "replaced")
	c.setVar(VarTransferTo, b.rec.ID)
	c.log.Info("refer: leg handed over to an attended transfer", "b_call_id", b.rec.ID)
	if err := c.hangup(store.ReasonNormal); err != nil {
		c.log.Info("refer: hangup replaced caller", "err", err)
	}
	return true
}

// takeOver does an attended transfer (REFER with Replaces): the dialog the
// transferor names is its own call through us (it called the target);
// that call gives us its bridged leg, the target, which our caller is then
// bridged to. Only the transferor's own calls can be named.
func (c *Call) takeOver(ctx context.Context, q referReq) (*bLeg, *sip.DialError) {
	id := q.r.Replaces
	who := c.transferorIdentity(ctx, q.from)
	other := c.ct.callBySIPCallID(id.CallID)
	if other == nil || other == c {
		return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 481, Status: "Call/Transaction Does Not Exist",
			Err: fmt.Errorf("replaces %s: no such call", id.CallID)}
	}
	theirs := other.leg.Identity.Extension
	if who.Extension == nil || theirs == nil || theirs.Number != who.Extension.Number {
		return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 403, Status: "Forbidden",
			Err: fmt.Errorf("replaces %s: not a call of the transferor's", id.CallID)}
	}
	reply := make(chan *bLeg, 1)
	if !other.refers.push(referReq{handover: reply}) {
		return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 481, Status: "Call/Transaction Does Not Exist",
			Err: fmt.Errorf("replaces %s: that call is not bridged", id.CallID)}
	}
	t := time.NewTimer(storeTimeout)
	defer t.Stop()
	select {
	case b := <-reply:
		if b == nil {
			return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 491, Status: "Request Pending",
				Err: fmt.Errorf("replaces %s: that call is busy", id.CallID)}
		}
		c.setVar(VarTransferReplaces, other.ID())
		return b, nil
	case <-t.C:
	case <-ctx.Done():
	}
	// The other call may still answer: a leg it hands over now is ours to end.
	// It always answers: its inbox answers nil to what it leaves behind.
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if b := <-reply; b != nil {
			b.end(store.ReasonCancel)
		}
	}()
	return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 408, Status: "Request Timeout",
		Err: fmt.Errorf("replaces %s: no answer from that call", id.CallID)}
}

// callBySIPCallID finds the live call whose caller's dialog has this
// Call-ID.
func (ct *Controller) callBySIPCallID(id string) *Call {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for _, c := range ct.calls {
		if c.orig == nil && c.leg.CallID == id {
			return c
		}
	}
	return nil
}

// fail reports a failed transfer in the background (a NOTIFY takes a
// round trip the bridge must not wait for).
func (x *referBridge) fail(r *sip.Refer, code int, reason string) {
	x.c.wg.Add(1)
	go func() {
		defer x.c.wg.Done()
		x.c.failRefer(r, code, reason)
	}()
}

// referrerLeft is called when the transferor b hung up; true when a
// transfer it asked for is ringing, so the caller must wait for it (with
// music on hold) rather than be hung up.
func (x *referBridge) referrerLeft(b *bLeg) bool {
	if x.pending == nil || x.pending.from != b {
		return false
	}
	x.orphan = true
	b.end(store.ReasonNormal)
	x.stopMOH = x.c.startHold()
	return true
}

// done finishes a transfer whose ringing ended. It returns the leg now
// bridged to the caller (nil: keep the old one); stop means the call is
// over (the transferor left and the target did not answer).
func (x *referBridge) done(ctx context.Context, old *bLeg, res referResult) (next *bLeg, stop bool) {
	c := x.c
	x.pending, x.cancel = nil, nil
	if x.stopMOH != nil {
		x.stopMOH()
		x.stopMOH = nil
	}
	orphan := x.orphan
	x.orphan = false
	if res.b == nil {
		code, reason := res.de.Code, res.de.Status
		if code < 300 {
			code, reason = 503, "Service Unavailable"
		}
		c.log.Info("refer: target did not answer", "reason", res.de.Reason, "code", res.de.Code)
		c.setVar(VarTransferResult, string(res.de.Reason))
		x.fail(res.q.r, code, reason)
		if orphan {
			_, _, why := rejectFor(res.de)
			if err := c.hangup(why); err != nil {
				c.log.Warn("refer: hangup caller", "err", err)
			}
			return nil, true
		}
		return nil, false
	}
	nb := res.b
	// The leg's media lives until the leg ends (every way out of the
	// bridge ends it), not with this bridge: it may be handed over.
	if err := nb.startMedia(context.WithoutCancel(ctx)); err != nil {
		nb.end(store.ReasonFailed)
		c.setVar(VarTransferResult, string(store.ReasonFailed))
		x.fail(res.q.r, 500, "Server Internal Error")
		if orphan {
			_ = c.hangup(store.ReasonFailed)
			return nil, true
		}
		return nil, false
	}
	drainFrames(nb.stream.Frames())
	c.setVar(VarTransferResult, "answered")
	c.setVar(VarTransferMethod, "refer")
	c.setVar(VarTransferFrom, old.rec.ID)
	c.setVar(VarTransferTo, nb.rec.ID)
	c.setVar(VarConnectCallID, nb.rec.ID)
	c.log.Info("refer: transferred", "from_b_call_id", old.rec.ID, "to_b_call_id", nb.rec.ID)
	x.watch(nb)
	nb.update(func(r *store.Call) {
		r.Variables = map[string]string{"transferred_from": old.rec.ID, VarTransferMethod: "refer"}
	})
	if orphan {
		// The transferor left already (referrerLeft ended its leg).
		old.update(func(r *store.Call) {
			r.Variables = map[string]string{"transferred_to": nb.rec.ID, VarTransferMethod: "refer"}
		})
		return nb, false
	}
	// The transferor hears the outcome, then leaves: it is released here
	// in the background, so the caller's audio does not wait for it.
	r := res.q.r
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		nctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		err := r.Notify(nctx, 200, "OK")
		cancel()
		if err != nil {
			c.log.Info("refer: notify", "err", err)
		}
		old.update(func(r *store.Call) {
			if r.Variables == nil {
				r.Variables = map[string]string{}
			}
			r.Variables["transferred_to"] = nb.rec.ID
			r.Variables[VarTransferMethod] = "refer"
		})
		old.end(store.ReasonNormal)
	}()
	return nb, false
}

// ringReferTarget rings a REFER's target with connect's dialing, on behalf
// of the transferor: a number goes out through a trunk only when the
// transferor itself may call out.
func (c *Call) ringReferTarget(ctx context.Context, d Dialer, q referReq, p connectPlan) (*bLeg, *sip.DialError) {
	dst, who, derr := c.referDestination(ctx, q)
	if derr != nil {
		return nil, derr
	}
	plan := connectPlan{dests: []ConnectDestination{dst}, ring: RingAll, timeout: referRing, relay: p.relay}
	attempts, derr := c.attemptsFor(ctx, dst, plan)
	if derr != nil {
		return nil, derr
	}
	for i := range attempts {
		attempts[i].req.Caller, attempts[i].req.System = who, false
	}
	won, errs := c.ringAll(ctx, d, attempts)
	if won == nil {
		return nil, worstFailure(errs)
	}
	return won, nil
}

// referDestination reads a Refer-To as connect's destination: one of our
// extensions, else a number (through a trunk), else the URI itself when it
// names another host. who is the transferor, whose rights apply.
func (c *Call) referDestination(ctx context.Context, q referReq) (ConnectDestination, sip.Identity, *sip.DialError) {
	who := c.leg.Identity
	if q.from != nil {
		who = c.transferorIdentity(ctx, q.from)
	}
	user := q.r.User
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if isDialable(user) && len(user) <= 20 {
		if _, err := c.ct.cfg.Store.GetExtension(sctx, user); err == nil {
			return ConnectDestination{Type: DestExtension, Target: user}, who, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return ConnectDestination{}, who, &sip.DialError{Reason: store.ReasonFailed, Code: 500, Status: "Server Internal Error", Err: err}
		}
	}
	if _, err := store.NormalizeNumber(user); err == nil && user != "" {
		return ConnectDestination{Type: DestNumber, Target: user}, who, nil
	}
	target := q.r.Target
	if !who.MayUseTrunks() {
		// Only who may call out may have us call anywhere on the internet.
		return ConnectDestination{}, who, &sip.DialError{Reason: store.ReasonFailed, Code: 403, Status: "Forbidden",
			Err: fmt.Errorf("refer-to %s: the transferor may not call out", target)}
	}
	if strings.HasPrefix(target, "sip:") || strings.HasPrefix(target, "sips:") {
		if c.ct.cfg.MediaIP.String() == uriHost(target) {
			// One of our own names that is neither an extension nor a number.
			return ConnectDestination{}, who, &sip.DialError{Reason: store.ReasonFailed, Code: 404, Status: "Not Found",
				Err: fmt.Errorf("refer-to %s: no such extension or number", target)}
		}
		return ConnectDestination{Type: DestURI, Target: target}, who, nil
	}
	return ConnectDestination{}, who, &sip.DialError{Reason: store.ReasonFailed, Code: 400, Status: "Bad Refer-To",
		Err: fmt.Errorf("refer-to %q", target)}
}

// transferorIdentity is who the callee b is: the extension whose contact
// was dialed (its To names it). A carrier we called is nobody: like its own
// calls to us, its REFERs do not reach our trunks.
func (c *Call) transferorIdentity(ctx context.Context, b *bLeg) sip.Identity {
	if b.out.Trunk != nil {
		return sip.Identity{}
	}
	ext := uriUser(b.out.To)
	if ext == "" {
		return sip.Identity{}
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	e, err := c.ct.cfg.Store.GetExtension(sctx, ext)
	if err != nil {
		return sip.Identity{}
	}
	return sip.Identity{Extension: e}
}

// referTransfer asks the caller's peer (a trunk) to transfer the call to
// p's number itself by REFER; done is true when it did (the call is then
// over). With method auto the peer must list REFER in its Allow.
func (c *Call) referTransfer(ctx context.Context, p connectPlan, method string) (done bool) {
	dst := p.dests[0]
	dst.Target = c.expand(dst.Target)
	t := c.leg.Identity.Trunk
	why := ""
	switch {
	case c.orig != nil || t == nil:
		why = "not a call from a trunk"
	case dst.Type != DestNumber:
		why = "not a transfer to a number"
	case !c.answered.Load():
		why = "not answered"
	case method == TransferMethodAuto && !c.leg.SupportsRefer():
		why = "the carrier does not list REFER in Allow"
	}
	if why != "" {
		c.log.Info("transfer: bridging, not asking the peer", "why", why)
		return false
	}
	num, err := sip.FormatNumber(t, dst.Target)
	if err != nil {
		c.log.Info("transfer: refer not possible", "err", err)
		return false
	}
	target := "sip:" + num + "@" + t.Host
	rctx, cancel := context.WithTimeout(ctx, referRing+10*time.Second)
	defer cancel()
	res, err := c.leg.Refer(rctx, target)
	if err != nil || !res.Transferred() {
		c.log.Info("transfer: refer refused, bridging", "target", target, "code", res.Code, "final", res.FinalCode, "err", err)
		c.setVar(VarTransferMethod, TransferMethodBridge)
		return false
	}
	c.log.Info("transfer: peer transferred the call", "target", target)
	c.setVar(VarTransferResult, "answered")
	c.setVar(VarTransferMethod, TransferMethodRefer)
	if err := c.hangup(store.ReasonNormal); err != nil {
		c.log.Debug("transfer: hangup after refer", "err", err)
	}
	return true
}

// replacesProgram is what an INVITE with a Replaces header (RFC 3891)
// runs instead of its route: nil when it has none.
func (c *Call) replacesProgram() *program {
	if c.orig != nil {
		return nil
	}
	id, err := c.leg.Replaces()
	if err != nil {
		c.log.Info("replaces: unreadable", "err", err)
		return rejectProgram("route:replaces", 400, "Bad Replaces")
	}
	if id == nil {
		return nil
	}
	a := Action{ID: "replaces", Type: "connect"}
	st := step{action: a, timeout: maxBridge, exec: func(ctx context.Context, r *run) (string, error) {
		return "", r.c.replaceCall(ctx, *id)
	}}
	return &program{flow: &Flow{ID: "route:replaces", Actions: []Action{a}}, steps: []step{st}, index: map[string]int{"replaces": 0}}
}

// replaceCall takes the place of the caller of the bridged call id names:
// that call hands us its other party and hangs up its caller, and we
// answer and bridge. Only the same extension may replace its own call
// (e.g. moving it to another phone).
func (c *Call) replaceCall(ctx context.Context, id sip.ReplacesID) error {
	reject := func(code int, reason string, err error) error {
		c.log.Info("replaces: refused", "code", code, "err", err)
		c.setLocalReason(store.ReasonFailed)
		if rerr := c.leg.Reject(code, reason); rerr != nil && !errors.Is(rerr, sip.ErrLegEnded) {
			return rerr
		}
		return errStop
	}
	other := c.ct.callBySIPCallID(id.CallID)
	if other == nil || other == c {
		return reject(481, "Call/Transaction Does Not Exist", fmt.Errorf("replaces %s: no such call", id.CallID))
	}
	ours, theirs := c.leg.Identity.Extension, other.leg.Identity.Extension
	if ours == nil || theirs == nil || ours.Number != theirs.Number {
		return reject(403, "Forbidden", fmt.Errorf("replaces %s: not a call of this extension", id.CallID))
	}
	if id.EarlyOnly && other.answered.Load() {
		return reject(486, "Busy Here", fmt.Errorf("replaces %s: early-only, but answered", id.CallID))
	}
	reply := make(chan *bLeg, 1)
	if !other.refers.push(referReq{handover: reply}) {
		return reject(481, "Call/Transaction Does Not Exist", fmt.Errorf("replaces %s: that call is not bridged", id.CallID))
	}
	var b *bLeg
	select {
	case b = <-reply:
	case <-ctx.Done():
		c.wg.Add(1)
		go func() { // its inbox always answers
			defer c.wg.Done()
			if b := <-reply; b != nil {
				b.end(store.ReasonCancel)
			}
		}()
		return ctx.Err()
	}
	if b == nil {
		return reject(491, "Request Pending", fmt.Errorf("replaces %s: that call is busy", id.CallID))
	}
	c.setVar(VarTransferMethod, "replaces")
	c.setVar(VarTransferReplaces, other.ID())
	c.log.Info("replaces: took over", "replaced_call_id", other.ID(), "b_call_id", b.rec.ID)
	return c.bridge(ctx, b, connectPlan{ring: RingAll, timeout: referRing, relay: true})
}
