package flow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// Transfer modes.
const (
	TransferBlind = "blind"
	TransferWarm  = "warm"
)

// VarTransferResult is how a transfer went: answered, busy, noanswer,
// failed (or cancel).
const VarTransferResult = "transfer.result"

// TransferOption hands the caller to another destination.
type TransferOption struct {
	Destination ConnectDestination `json:"destination"`
	// Mode is blind (default): the caller is bridged to the destination
	// as soon as it answers, and the flow ends with that bridge. Warm: the
	// caller hears music on hold while the destination rings, the
	// destination hears Announce first, then the two are bridged; when
	// the destination does not answer, the caller comes off hold and the
	// flow goes on with ${transfer.result}.
	Mode string `json:"mode,omitempty"`
	// TimeoutS is how long the destination rings (default 30).
	TimeoutS int `json:"timeout_s,omitempty"`
	// Announce (warm only) is spoken to the destination before the bridge,
	// e.g. "Transferring ${call.from_user} about their order"; variables
	// allowed. AgentID names the agent whose voice speaks it.
	Announce string `json:"announce,omitempty"`
	AgentID  string `json:"agent_id,omitempty"`
	// Method (blind only) is bridge (default: we ring the destination and
	// stay in the media path), refer (a call from a trunk to a number:
	// first ask the carrier to transfer it by REFER, bridging if it
	// refuses) or auto (refer only when the carrier lists REFER in Allow).
	Method string `json:"method,omitempty"`
}

func init() { actionTypes["transfer"] = define(compileTransfer) }

func compileTransfer(o *TransferOption) (step, error) {
	if err := checkDestination(o.Destination); err != nil {
		return step{}, badField("destination."+err.field, "%s", err.msg)
	}
	if o.TimeoutS < 0 || o.TimeoutS > maxRingTimeoutS {
		return step{}, badField("timeout_s", "must be between 0 and %d", maxRingTimeoutS)
	}
	// The flow's operator chose the destination: it may use a trunk
	// whoever the caller is. We stay in the media path (no REFER), so the
	// call keeps its record, recording and limits.
	p := connectPlan{dests: []ConnectDestination{o.Destination}, ring: RingAll, timeout: DefaultRingTimeout, relay: true, system: true}
	if o.TimeoutS > 0 {
		p.timeout = time.Duration(o.TimeoutS) * time.Second
	}
	switch o.Method {
	case "", TransferMethodBridge, TransferMethodRefer, TransferMethodAuto:
	default:
		return step{}, badField("method", "must be bridge, refer or auto, not %q", o.Method)
	}
	if o.Method != "" && o.Method != TransferMethodBridge && o.Mode == TransferWarm {
		return step{}, badField("method", "a warm transfer is always bridged")
	}
	switch o.Mode {
	case "", TransferBlind:
		if o.Announce != "" || o.AgentID != "" {
			return step{}, badField("announce", "only a warm transfer announces the caller")
		}
		// A one-destination connect that ends the flow once bridged.
		return seq(p.timeout+maxBridge, func(ctx context.Context, r *run) (string, error) {
			if o.Method == TransferMethodRefer || o.Method == TransferMethodAuto {
				if r.c.referTransfer(ctx, p, o.Method) { // refer.go
					return "", errStop
				}
			}
			err := r.c.connect(ctx, p)
			if res, ok := r.c.getVar(VarConnectResult); ok {
				r.c.setVar(VarTransferResult, res)
			}
			return "", err
		}), nil
	case TransferWarm:
	default:
		return step{}, badField("mode", "must be blind or warm, not %q", o.Mode)
	}
	var ann *TalkOption
	switch {
	case strings.TrimSpace(o.Announce) != "" && o.AgentID == "":
		return step{}, badField("agent_id", "required with announce: the agent whose voice speaks it")
	case len(o.Announce) > maxTalkText:
		return step{}, badField("announce", "longer than %d bytes", maxTalkText)
	case strings.TrimSpace(o.Announce) != "":
		ann = &TalkOption{Text: o.Announce, AgentID: o.AgentID}
	case o.AgentID != "":
		return step{}, badField("announce", "required with agent_id")
	}
	return seq(p.timeout+talkTimeout+maxBridge, func(ctx context.Context, r *run) (string, error) {
		return "", r.c.warmTransfer(ctx, p, ann)
	}), nil
}

// warmTransfer holds the caller while the destination rings and hears the
// announcement, then bridges them; when the destination cannot take the
// call the caller comes off hold and the flow continues.
func (c *Call) warmTransfer(ctx context.Context, p connectPlan, ann *TalkOption) error {
	if err := c.answer(ctx); err != nil {
		return err
	}
	b, de := c.transferLeg(ctx, ctx, p, true, ann)
	if b == nil {
		c.setVar(VarConnectResult, string(de.Reason))
		c.setVar(VarConnectSIPCode, fmt.Sprint(de.Code))
		c.log.Info("warm transfer: not taken", "reason", de.Reason, "code", de.Code, "err", de)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return nil // back to the flow, off hold
	}
	return c.bridge(ctx, b, p)
}

// transferLeg rings p's destination for a transfer and returns the
// answered leg, or why there is none; it sets ${transfer.result} either way.
// Warm holds the caller with music meanwhile and speaks ann (if any) to the
// destination before returning. The leg dials on dialCtx: an agent's
// transfer outlives the tool call that rings it.
func (c *Call) transferLeg(ctx, dialCtx context.Context, p connectPlan, warm bool, ann *TalkOption) (*bLeg, *sip.DialError) {
	b, de := c.transferLegOnHold(ctx, dialCtx, p, warm, ann)
	res := "answered"
	if de != nil {
		res = string(de.Reason)
	}
	c.setVar(VarTransferResult, res)
	return b, de
}

func (c *Call) transferLegOnHold(ctx, dialCtx context.Context, p connectPlan, warm bool, ann *TalkOption) (*bLeg, *sip.DialError) {
	failed := func(err error) *sip.DialError {
		return &sip.DialError{Reason: store.ReasonFailed, Code: 503, Status: "Service Unavailable", Err: err}
	}
	d, err := c.ct.dialer()
	if err != nil {
		return nil, failed(err)
	}
	var announce []int16
	if ann != nil {
		// Rendered before ringing: the destination should not wait for it.
		if announce, err = c.talkAudio(ctx, ann); err != nil {
			return nil, failed(fmt.Errorf("announce: %w", err))
		}
	}
	if warm && c.stream != nil {
		defer c.startHold(c.stream)()
	}
	attempts, derr := c.attemptsFor(ctx, p.dests[0], p)
	if derr != nil {
		return nil, derr
	}
	won, errs := c.ringAll(dialCtx, d, attempts)
	if won == nil {
		return nil, worstFailure(errs)
	}
	if len(announce) == 0 {
		return won, nil
	}
	if err := won.startMedia(dialCtx); err != nil {
		won.end(store.ReasonFailed)
		return nil, failed(fmt.Errorf("media: %w", err))
	}
	select {
	case <-won.stream.Enqueue(announce):
		drainFrames(won.stream.Frames()) // what the destination said meanwhile was not for the caller
		return won, nil
	case <-won.out.Done():
		won.end(store.ReasonNormal)
		return nil, &sip.DialError{Reason: store.ReasonFailed, Status: "hung up during the announcement", Err: errors.New("destination hung up during the announcement")}
	case <-ctx.Done():
		won.end(store.ReasonCancel)
		return nil, &sip.DialError{Reason: store.ReasonCancel, Code: 487, Status: "Request Terminated", Err: ctx.Err()}
	}
}

// startHold plays music on hold on st (the caller's stream, or a bridged
// leg's whose other party left) until the returned stop is
// called (which flushes it).
func (c *Call) startHold(st *media.Stream) (stop func()) {
	hctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	moh := musicOnHold()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(done)
		// Two loops queued at all times, so the music never pauses while
		// the next one is queued.
		next := st.Enqueue(moh)
		for {
			select {
			case <-st.Done():
				return // Enqueue would answer at once: do not spin
			default:
			}
			playing := next
			next = st.Enqueue(moh)
			select {
			case <-playing:
			case <-hctx.Done():
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
		st.Flush()
	}
}
