package flow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/media"
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
	// VarTransferFlow is the flow a REFER to one of our numbers sent the
	// caller to.
	VarTransferFlow = "transfer.flow_id"
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
			if q.from == nil {
				c.releaseCaller()
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
	// The caller may hang up as soon as it has the 202, before the bridge
	// takes the REFER: from here its leg ending no longer ends the call.
	c.callerKept.hold()
	if c.refers.push(referReq{r: r}) {
		return true
	}
	c.releaseCaller()
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
		res := <-x.results
		if res.b != nil {
			res.b.end(store.ReasonCancel)
		} else {
			x.c.failRefer(res.q.r, 487, "Request Terminated")
		}
		if res.q.from == nil {
			x.c.releaseCaller()
		}
	}
	if x.stopMOH != nil {
		x.stopMOH()
	}
}

// take starts the transfer q asks for, ringing in the background; the
// bridge goes on meanwhile. A non-nil result ends the bridge: errStop when
// its leg b was handed to another call, a *flowSwitch when the caller was
// sent to one of our flows.
func (x *referBridge) take(ctx context.Context, b *bLeg, q referReq) error {
	c := x.c
	if q.handover != nil {
		return x.handOver(b, q.handover)
	}
	ringing := false
	if q.from == nil {
		// Held since callerRefer; let go unless the target rings.
		defer func() {
			if !ringing {
				c.releaseCaller()
			}
		}()
	}
	switch {
	case q.from != nil && q.from != b:
		// A leg already transferred away, before its BYE.
		x.fail(q.r, 603, "Declined")
		return nil
	case x.pending != nil:
		x.fail(q.r, 491, "Request Pending")
		return nil
	}
	if q.r.Replaces == nil {
		p, err := c.referProgram(ctx, q)
		switch {
		case err != nil:
			c.log.Warn("refer: number lookup", "target", q.r.Target, "err", err)
			x.fail(q.r, 500, "Server Internal Error")
			return nil
		case p != nil && q.from == nil:
			// The callee has no flow of its own to run one in.
			c.log.Info("refer: from the caller to a flow, not supported", "target", q.r.Target, "flow_id", p.flow.ID)
			x.fail(q.r, 501, "Not Implemented")
			return nil
		case p != nil:
			return x.toFlow(b, q, p)
		}
	}
	d, err := c.ct.dialer()
	if err != nil {
		x.fail(q.r, 503, "Service Unavailable")
		return nil
	}
	rctx, cancel := context.WithCancel(ctx)
	x.pending, x.cancel, ringing = &q, cancel, true
	if q.from == nil {
		// The caller transfers the party it called: the call outlives
		// the caller's leg, unless the transfer fails.
		c.log.Info("refer: caller transferring", "target", q.r.Target, "b_call_id", b.rec.ID)
	} else {
		c.log.Info("refer: transferring", "target", q.r.Target, "from_b_call_id", q.from.rec.ID)
	}
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
	return nil
}

// referProgram is the flow a Refer-To runs when it names one of our
// numbers that leads to a flow or an agent (nil otherwise): the caller
// leaves the bridge for it, rather than a call out through a trunk that
// would come back in.
func (c *Call) referProgram(ctx context.Context, q referReq) (*program, error) {
	n, err := c.ourNumber(ctx, q.r.User)
	if n == nil || err != nil || n.Kind == store.NumberToExtension {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return c.ct.numberProgram(sctx, c, n), nil
}

// ourNumber looks user up in our numbers; nil when it is none of them.
func (c *Call) ourNumber(ctx context.Context, user string) (*store.Number, error) {
	num, err := store.NormalizeNumber(user)
	if err != nil {
		return nil, nil
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	n, err := c.ct.cfg.Store.GetNumber(sctx, num)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return n, err
}

// toFlow ends the bridge by sending the caller to p: the transferor hears
// that it worked and is released in the background.
func (x *referBridge) toFlow(b *bLeg, q referReq, p *program) error {
	c := x.c
	c.setVar(VarTransferMethod, "refer")
	c.setVar(VarTransferResult, "answered")
	c.setVar(VarTransferFrom, b.rec.ID)
	c.setVar(VarTransferFlow, p.flow.ID)
	c.log.Info("refer: caller sent to a flow", "target", q.r.Target, "flow_id", p.flow.ID, "from_b_call_id", b.rec.ID)
	b.update(func(r *store.Call) {
		if r.Variables == nil {
			r.Variables = map[string]string{}
		}
		r.Variables[VarTransferFlow] = p.flow.ID
		r.Variables[VarTransferMethod] = "refer"
	})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		nctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		err := q.r.Notify(nctx, 200, "OK")
		cancel()
		if err != nil {
			c.log.Info("refer: notify", "err", err)
		}
		b.end(store.ReasonNormal)
	}()
	return &flowSwitch{p: p}
}

// handOver gives b, this bridge's leg, to the call that asked (an attended
// transfer there), and hangs up our caller, whom that call replaced.
func (x *referBridge) handOver(b *bLeg, to chan<- *bLeg) error {
	c := x.c
	if x.pending != nil {
		to <- nil // busy with a transfer of its own
		return nil
	}
	to <- b
	c.setVar(VarTransferMethod, "replaced")
	c.setVar(VarTransferTo, b.rec.ID)
	c.log.Info("refer: leg handed over to an attended transfer", "b_call_id", b.rec.ID)
	if err := c.hangup(store.ReasonNormal); err != nil {
		c.log.Info("refer: hangup replaced caller", "err", err)
	}
	return errStop
}

// takeOver does an attended transfer (REFER with Replaces): the dialog the
// transferor names is its own call through us (it called the target);
// that call gives us its bridged leg, the target, which our caller is then
// bridged to. Only the transferor's own calls can be named.
func (c *Call) takeOver(ctx context.Context, q referReq) (*bLeg, *sip.DialError) {
	id := q.r.Replaces
	who := c.referrer(ctx, q)
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
	x.stopMOH = x.c.startHold(x.c.stream)
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
	if res.q.from == nil {
		return x.callerDone(ctx, old, res)
	}
	if res.b == nil {
		x.unanswered(res)
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

// unanswered reports a transfer whose target did not answer to whoever
// asked for it, and on the call.
func (x *referBridge) unanswered(res referResult) {
	code, reason := res.de.Code, res.de.Status
	if code < 300 {
		code, reason = 503, "Service Unavailable"
	}
	x.c.log.Info("refer: target did not answer", "reason", res.de.Reason, "code", res.de.Code)
	x.c.setVar(VarTransferResult, string(res.de.Reason))
	x.fail(res.q.r, code, reason)
}

// callerKeep decides whether the caller's leg ending ends the call: not
// while a transfer the caller asked for is pending (phones often hang up
// right after the 202), nor after one succeeded.
type callerKeep struct {
	mu   sync.Mutex
	n    int // REFERs from the caller not yet failed
	gone bool
}

func (k *callerKeep) hold() {
	k.mu.Lock()
	k.n++
	k.mu.Unlock()
}

// release lets one REFER go; ended reports that the caller's leg ended
// while it was held and nothing else holds it: the call must end now.
func (k *callerKeep) release() (ended bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.n--
	return k.n == 0 && k.gone
}

// left is told that the caller's leg ended; true when the call goes on.
func (k *callerKeep) left() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gone = true
	return k.n > 0
}

// releaseCaller lets go of a REFER from the caller that will not transfer
// anything, ending the call if the caller left meanwhile.
func (c *Call) releaseCaller() {
	if c.callerKept.release() {
		c.cancel()
	}
}

// callerLeft is called when the caller hung up while the transfer it asked
// for rings: the callee b waits for the target with music on hold.
func (x *referBridge) callerLeft(b *bLeg) {
	x.orphan = true
	x.stopMOH = x.c.startHold(b.stream)
}

// callerDone finishes a transfer the caller asked for. On success the
// caller is released (NOTIFY 200, BYE) and b is returned with the target's
// leg, to be joined (joinLegs); the call goes on without its caller.
func (x *referBridge) callerDone(ctx context.Context, b *bLeg, res referResult) (nb *bLeg, stop bool) {
	c := x.c
	if res.b == nil {
		x.unanswered(res)
		if c.callerKept.release() {
			// The caller left meanwhile: nobody is left for b.
			_, _, why := rejectFor(res.de)
			b.end(why)
			return nil, true
		}
		return nil, false
	}
	nb = res.b
	if err := nb.startMedia(context.WithoutCancel(ctx)); err != nil {
		nb.end(store.ReasonFailed)
		c.setVar(VarTransferResult, string(store.ReasonFailed))
		x.fail(res.q.r, 500, "Server Internal Error")
		if c.callerKept.release() {
			b.end(store.ReasonFailed)
			return nil, true
		}
		return nil, false
	}
	drainFrames(nb.stream.Frames())
	c.setVar(VarTransferResult, "answered")
	c.setVar(VarTransferMethod, "refer")
	c.setVar(VarTransferFrom, c.ID())
	c.setVar(VarTransferTo, nb.rec.ID)
	c.log.Info("refer: caller transferred", "b_call_id", b.rec.ID, "to_b_call_id", nb.rec.ID)
	nb.update(func(r *store.Call) {
		r.Variables = map[string]string{"transferred_from": c.ID(), VarTransferMethod: "refer"}
	})
	// The caller hears the outcome, then leaves, in the background so the
	// joined parties do not wait for it.
	r := res.q.r
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		nctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		select {
		case <-c.dlg.Done(): // it left while the target rang
		default:
			if err := r.Notify(nctx, 200, "OK"); err != nil {
				c.log.Info("refer: notify", "err", err)
			}
		}
		if err := c.dlg.Hangup(nctx); err != nil && !errors.Is(err, sip.ErrLegEnded) {
			c.log.Info("refer: release caller", "err", err)
		}
		c.stream.Close()
	}()
	return nb, false
}

// joinLegs relays audio and DTMF between b and nb, the two parties left
// after the caller transferred one to the other, until either hangs up
// (which ends the other) or the call is stopped.
func (c *Call) joinLegs(ctx context.Context, b, nb *bLeg) error {
	type side struct {
		l      *bLeg
		frames <-chan []int16
		dtmf   <-chan media.DTMFEvent
		info   <-chan rune
	}
	s := [2]side{{l: b}, {l: nb}}
	for i := range s {
		st := s[i].l.stream
		s[i].frames, s[i].dtmf, s[i].info = st.Frames(), st.DTMF(), s[i].l.out.InfoDTMF()
	}
	relay := func(from int, f []int16) { relayFrame(s[1-from].l.stream, f) }
	digit := func(from int, d rune) {
		s[from].l.addDigit(d)
		c.relayDigit(s[1-from].l.stream, d, "joined leg")
	}
	var ended int
loop:
	for {
		select {
		case f, ok := <-s[0].frames:
			if !ok {
				s[0].frames = nil
				continue
			}
			relay(0, f)
		case f, ok := <-s[1].frames:
			if !ok {
				s[1].frames = nil
				continue
			}
			relay(1, f)
		case ev, ok := <-s[0].dtmf:
			if !ok {
				s[0].dtmf = nil
				continue
			}
			digit(0, ev.Digit)
		case ev, ok := <-s[1].dtmf:
			if !ok {
				s[1].dtmf = nil
				continue
			}
			digit(1, ev.Digit)
		case d := <-s[0].info:
			digit(0, d)
		case d := <-s[1].info:
			digit(1, d)
		case <-b.out.Done():
			ended = 0
			break loop
		case <-nb.out.Done():
			ended = 1
			break loop
		case <-ctx.Done():
			reason := c.endReason()
			b.end(reason)
			nb.end(reason)
			return ctx.Err()
		}
	}
	gone, other := s[ended].l, s[1-ended].l
	gone.end(store.ReasonNormal)
	other.end(store.ReasonNormal)
	c.setLocalReason(store.ReasonNormal)
	return errStop
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
	who := c.referrer(ctx, q)
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
	if n, err := c.ourNumber(ctx, user); err != nil {
		return ConnectDestination{}, who, &sip.DialError{Reason: store.ReasonFailed, Code: 500, Status: "Server Internal Error", Err: err}
	} else if n != nil && n.Kind == store.NumberToExtension {
		return ConnectDestination{Type: DestExtension, Target: n.Target}, who, nil
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

// referrer is who sent q: the caller, or the callee whose leg it came on.
func (c *Call) referrer(ctx context.Context, q referReq) sip.Identity {
	if q.from == nil {
		return c.leg.Identity
	}
	return c.transferorIdentity(ctx, q.from)
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
