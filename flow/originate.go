package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/store"
)

// Limits of an originated call.
const (
	maxOriginateDuration = 24 * time.Hour
	maxMetadata          = 32
	maxCallerName        = 64
)

// VarContext is the variable an agent call's context lands in, for the
// agent's prompt ({{context}}) and the flow (${context}).
const VarContext = "context"

// metadataPrefix names the variables an originated call's metadata lands
// in: metadata {"crm_id": "42"} is ${metadata.crm_id}, and is kept on the
// call record with the other variables.
const metadataPrefix = "metadata."

var metadataKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// OriginateRequest is an outbound call to place: where to, as whom, and
// what runs once the callee answers (exactly one of FlowID, Actions,
// AgentID).
type OriginateRequest struct {
	// To is an extension number, a phone number (E.164 or digits) or a
	// sip:/sips: URI. Digits that name an extension ring its registered
	// phones; other numbers go out through the enabled trunks.
	To string
	// From is the caller id user (a trunk's own caller id wins);
	// CallerName the display name.
	From, CallerName string
	// Trunk, by name, restricts a phone number to that trunk.
	Trunk string

	FlowID string
	// Actions are an inline flow, validated like a saved one.
	Actions json.RawMessage
	// AgentID hands the answered call to that agent (ai_talk).
	AgentID string
	// Variables are set on the call before anything runs; an agent's
	// prompt and the flow read them.
	Variables map[string]string
	// Context is more for an agent to know about this call, as the
	// variable "context".
	Context string

	// MaxDuration ends the call that long after the answer (0: no limit
	// but the flow's own); RingTimeout bounds the ringing (0: 30 s).
	MaxDuration, RingTimeout time.Duration
	// Record records the call like Config.RecordAll does.
	Record bool
	// Metadata is the caller's own, kept as variables metadata.<key>.
	Metadata map[string]string
}

// RequestError is a field of an OriginateRequest the call cannot be placed
// with. Err is store.ErrNotFound when the field names something that does
// not exist (a flow, an agent, a trunk).
type RequestError struct {
	Field string // the API's name: to, flow_id, actions, variables.x...
	Msg   string
	Err   error
}

func (e *RequestError) Error() string { return e.Field + ": " + e.Msg }
func (e *RequestError) Unwrap() error { return e.Err }

// ErrOutboundUnavailable is returned when calls cannot be placed at all right now:
// no dialer (SIP) or the controller is shutting down.
var ErrOutboundUnavailable = errors.New("outbound calls are unavailable")

func badRequest(field, format string, args ...any) *RequestError {
	return &RequestError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// origination is what an originated call keeps of its request.
type origination struct {
	req  OriginateRequest
	dest ConnectDestination
	plan connectPlan
	// trunk is the one trunk a number may use (OriginateRequest.Trunk).
	trunk *store.Trunk
	dlg   *outDialog
	// won is the attempt that was answered; the call's media takes over
	// its socket. It has no record: the call's record is the INVITE's.
	won *bLeg
}

// recording reports whether the request asked for a recording.
func (o *origination) recording() bool { return o != nil && o.req.Record }

// takeConn hands the answered attempt's RTP socket (the one our offer
// named) to the call's stream.
func (o *origination) takeConn() *net.UDPConn {
	conn := o.won.conn
	o.won.conn = nil
	return conn
}

// Originate places an outbound call and returns its record (status
// dialing) at once; the dialing and, once answered, the flow run in the
// background, like an inbound call's. Request problems are *RequestError
// or, for inline actions, *ValidationError (index and field); ErrOutboundUnavailable
// when no call can be placed now.
func (ct *Controller) Originate(ctx context.Context, req OriginateRequest) (store.Call, error) {
	o, p, err := ct.checkOriginate(ctx, req)
	if err != nil {
		return store.Call{}, err
	}
	d, err := ct.dialer()
	if err != nil {
		return store.Call{}, fmt.Errorf("%w: %v", ErrOutboundUnavailable, err)
	}
	ct.mu.Lock()
	if ct.shutdown {
		ct.mu.Unlock()
		return store.Call{}, fmt.Errorf("%w: shutting down", ErrOutboundUnavailable)
	}
	ct.wg.Add(1)
	ct.mu.Unlock()

	c, err := newOutboundCall(ct, o)
	if err != nil {
		ct.wg.Done()
		return store.Call{}, err
	}
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	ct.mu.Lock()
	ct.calls[c.ID()] = c
	ct.mu.Unlock()
	go func() {
		defer ct.wg.Done()
		c.originate(d, p)
		ct.mu.Lock()
		delete(ct.calls, c.ID())
		ct.mu.Unlock()
	}()
	return rec, nil
}

// checkOriginate validates req and resolves what it names.
func (ct *Controller) checkOriginate(ctx context.Context, req OriginateRequest) (*origination, *program, error) {
	o := &origination{req: req}
	set := 0
	for _, b := range []bool{req.FlowID != "", len(req.Actions) > 0, req.AgentID != ""} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, nil, badRequest("flow_id", "set exactly one of flow_id, actions and agent_id (%d set)", set)
	}
	dest, err := ct.destinationOf(ctx, req.To)
	if err != nil {
		return nil, nil, err
	}
	o.dest = dest
	if req.From != "" && !callerIDRE.MatchString(req.From) {
		return nil, nil, badRequest("from", "must be 1 to 64 of letters, digits and +*#._~-")
	}
	if len(req.CallerName) > maxCallerName || strings.ContainsAny(req.CallerName, "\"\\") ||
		strings.IndexFunc(req.CallerName, unicode.IsControl) >= 0 {
		return nil, nil, badRequest("caller_name", "must be at most %d characters, without quotes, backslashes or control characters", maxCallerName)
	}
	if req.Trunk != "" {
		if dest.Type != DestNumber {
			return nil, nil, badRequest("trunk", "only a phone number goes out through a trunk; %q is an %s", req.To, dest.Type)
		}
		t, err := ct.cfg.Store.TrunkByName(ctx, req.Trunk)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, &RequestError{Field: "trunk", Msg: fmt.Sprintf("no trunk named %q", req.Trunk), Err: store.ErrNotFound}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("trunk %s: %w", req.Trunk, err)
		}
		if !t.Enabled {
			return nil, nil, badRequest("trunk", "trunk %q is disabled", req.Trunk)
		}
		o.trunk = t
	}
	if req.MaxDuration < 0 || req.MaxDuration > maxOriginateDuration {
		return nil, nil, badRequest("max_duration_s", "must be between 0 and %d", int(maxOriginateDuration/time.Second))
	}
	if req.RingTimeout < 0 || req.RingTimeout > maxRingTimeoutS*time.Second {
		return nil, nil, badRequest("ring_timeout_s", "must be between 0 and %d", maxRingTimeoutS)
	}
	for k, v := range req.Variables {
		switch {
		case k == "" || strings.ContainsAny(k, "${}") || len(k) > 64:
			return nil, nil, badRequest("variables", "name %q must be 1 to 64 characters without $, { or }", k)
		case strings.HasPrefix(k, "call.") || strings.HasPrefix(k, metadataPrefix) || k == VarContext:
			return nil, nil, badRequest("variables."+k, "reserved: call.* are the call's own, metadata.* and context have their own fields")
		case len(v) > maxVarValue:
			return nil, nil, badRequest("variables."+k, "longer than %d bytes", maxVarValue)
		}
	}
	if len(req.Context) > maxVarValue {
		return nil, nil, badRequest("context", "longer than %d bytes", maxVarValue)
	}
	if len(req.Metadata) > maxMetadata {
		return nil, nil, badRequest("metadata", "at most %d keys", maxMetadata)
	}
	for k, v := range req.Metadata {
		if !metadataKeyRE.MatchString(k) {
			return nil, nil, badRequest("metadata", "key %q must be 1 to 64 letters, digits, '_', '.' or '-'", k)
		}
		if len(v) > maxVarValue {
			return nil, nil, badRequest("metadata."+k, "longer than %d bytes", maxVarValue)
		}
	}
	if len(req.Variables)+len(req.Metadata)+16 > maxVars {
		return nil, nil, badRequest("variables", "too many variables and metadata keys (at most %d together)", maxVars-16)
	}
	o.plan = connectPlan{dests: []ConnectDestination{dest}, ring: RingAll, timeout: DefaultRingTimeout,
		callerID: req.From, relay: true, system: true}
	if req.RingTimeout > 0 {
		o.plan.timeout = req.RingTimeout
	}
	p, err := ct.originateProgram(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	return o, p, nil
}

// destinationOf reads To: a URI as it is, digits naming an extension as
// that extension, anything else as a phone number.
func (ct *Controller) destinationOf(ctx context.Context, to string) (ConnectDestination, error) {
	to = strings.TrimSpace(to)
	if to == "" {
		return ConnectDestination{}, badRequest("to", "required")
	}
	d := ConnectDestination{Type: DestNumber, Target: to}
	switch {
	case strings.HasPrefix(to, "sip:") || strings.HasPrefix(to, "sips:"):
		d.Type = DestURI
	case isDialable(to):
		_, err := ct.cfg.Store.GetExtension(ctx, to)
		switch {
		case err == nil:
			d.Type = DestExtension
		case !errors.Is(err, store.ErrNotFound):
			return d, fmt.Errorf("extension %s: %w", to, err)
		}
	}
	if strings.Contains(to, "${") {
		return d, badRequest("to", "variables are not expanded here")
	}
	if err := destinationTargetErr(d); err != nil {
		return d, badRequest("to", "%v", err)
	}
	return d, nil
}

// originateProgram compiles what runs once the callee answers.
func (ct *Controller) originateProgram(ctx context.Context, req OriginateRequest) (*program, error) {
	switch {
	case req.FlowID != "":
		p, err := ct.lookup(ctx, req.FlowID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, &RequestError{Field: "flow_id", Msg: fmt.Sprintf("flow %q not found", req.FlowID), Err: store.ErrNotFound}
		}
		var ve *ValidationError
		if errors.As(err, &ve) {
			return nil, badRequest("flow_id", "flow %q cannot run: %v", req.FlowID, err)
		}
		if err != nil {
			return nil, fmt.Errorf("flow %s: %w", req.FlowID, err)
		}
		return p, nil
	case req.AgentID != "":
		if _, ok := ct.cfg.Agents.Get(req.AgentID); !ok {
			return nil, &RequestError{Field: "agent_id", Msg: fmt.Sprintf("agent %q not found", req.AgentID), Err: store.ErrNotFound}
		}
		opt, err := json.Marshal(AITalkOption{AgentID: req.AgentID})
		if err != nil {
			return nil, err
		}
		f := &Flow{ID: "agent:" + req.AgentID, Actions: []Action{
			{ID: "agent", Type: "ai_talk", Option: opt},
			{ID: "hangup", Type: "hangup"},
		}}
		return f.compile()
	}
	var actions []Action
	dec := json.NewDecoder(bytes.NewReader(req.Actions))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&actions); err != nil {
		return nil, badRequest("actions", "must be an array of actions ({type, option, id, next_id}): %v", err)
	}
	f := &Flow{ID: "inline", Actions: actions}
	return f.compile()
}

// newOutboundCall makes the record (status dialing) and the Call of an
// originated call. Its leg describes the call for the code that reads an
// inbound leg's fields; its dialog is o.dlg.
func newOutboundCall(ct *Controller, o *origination) (*Call, error) {
	ctx, cancel := context.WithCancel(context.Background())
	o.dlg = &outDialog{}
	toUser := o.dest.Target
	if o.dest.Type == DestURI {
		toUser = uriUser(o.dest.Target)
	}
	c := &Call{
		ct:         ct,
		leg:        &sip.Leg{FromUser: o.req.From, ToUser: toUser, To: o.req.To},
		dlg:        o.dlg,
		orig:       o,
		ctx:        ctx,
		cancel:     cancel,
		digits:     make(chan rune, 64),
		mediaUp:    make(chan struct{}),
		keyPressed: make(chan struct{}, 1),
		rec: store.Call{
			Direction:   store.DirectionOutgoing,
			Source:      o.req.From,
			Destination: o.req.To,
			Status:      store.StatusDialing,
		},
	}
	// Waits for the row, unlike an inbound call's: whoever asked for the
	// call (the API, a task) reads it next.
	sctx, scancel := context.WithTimeout(ctx, storeTimeout)
	defer scancel()
	if err := ct.cfg.Store.CreateCall(sctx, &c.rec); err != nil {
		cancel()
		return nil, fmt.Errorf("create call record: %w", err)
	}
	c.log = ct.log.With("call_id", c.rec.ID)
	c.variables = map[string]string{
		VarCallID:        c.rec.ID,
		VarCallFrom:      o.req.From,
		VarCallTo:        o.req.To,
		VarCallDirection: string(store.DirectionOutgoing),
		VarCallDigits:    "",
		"call.from_user": o.req.From,
		"call.to_user":   toUser,
	}
	for k, v := range o.req.Variables {
		c.variables[k] = v
	}
	if o.req.Context != "" {
		c.variables[VarContext] = o.req.Context
	}
	for k, v := range o.req.Metadata {
		c.variables[metadataPrefix+k] = v
	}
	c.log.Info("call outgoing", "to", o.req.To, "type", o.dest.Type, "from", o.req.From)
	c.publish(EventCallCreated, c.rec)
	return c, nil
}

// uriUser is the user part of a SIP URI, "" when it has none.
func uriUser(uri string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(uri, "sips:"), "sip:")
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[:i]
	}
	return ""
}

// originate dials, then runs p on the answered call; it returns when the
// call has ended and its record is final.
func (c *Call) originate(d Dialer, p *program) {
	o := c.orig
	attempts, derr := c.attemptsFor(c.ctx, o.dest, o.plan)
	if derr == nil && o.trunk != nil {
		for i := range attempts {
			attempts[i].req.Trunks = []store.Trunk{*o.trunk}
			attempts[i].mediaHost = o.trunk.Host
		}
	}
	for i := range attempts {
		// One call, one record: its INVITEs (several when an extension
		// has several phones) are told by the call's own record, not
		// records of their own that would list and count it again.
		attempts[i].callRecord = true
		if o.req.CallerName != "" {
			attempts[i].req.From.Name = o.req.CallerName
		}
	}
	if derr != nil {
		c.dialFailed(derr)
		return
	}
	ring := &ringRelay{c: c, done: make(chan struct{})}
	won, errs := c.ringAll(c.ctx, progressDialer{Dialer: d, onProgress: ring.progress}, attempts)
	ring.stop()
	if won == nil {
		c.dialFailed(worstFailure(errs))
		return
	}
	o.won = won
	out := won.out
	// The leg's description is complete before answer makes the call
	// visible as answered to other goroutines.
	c.leg.CallID, c.leg.From, c.leg.To = out.CallID, out.From, out.To
	c.leg.Source, c.leg.Transport, c.leg.Negotiated = out.Source, out.Transport, out.Negotiated
	o.dlg.set(out)
	c.update(func(r *store.Call) { r.SIPCallID, r.SourceAddr = out.CallID, out.Source })
	c.log.Info("call answered by the callee", "sip_call_id", out.CallID, "source", out.Source)
	defer func() {
		c.mu.Lock()
		reason := c.localReason
		c.mu.Unlock()
		won.end(reason) // its socket, if answer did not take it
	}()
	if err := c.answer(c.ctx); err != nil {
		c.log.Error("originate: media", "err", err)
		c.warn("answer: " + err.Error())
		c.setLocalReason(store.ReasonFailed)
		c.finish()
		return
	}
	if o.req.MaxDuration > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			t := time.NewTimer(o.req.MaxDuration)
			defer t.Stop()
			select {
			case <-t.C:
				c.log.Info("originate: max duration reached", "max_duration", o.req.MaxDuration)
				c.stop(store.ReasonTimeout)
			case <-c.ctx.Done():
			}
		}()
	}
	c.run(p)
}

// dialFailed ends a call nobody answered and finalises its record with
// why: the callee's answer (busy, no answer, its error) or ours.
func (c *Call) dialFailed(de *sip.DialError) {
	c.cancel()
	c.wg.Wait()
	vars := c.vars()
	c.mu.Lock()
	local := c.localReason
	c.mu.Unlock()
	// Remote: the callee answered with a final error. Local: we gave up
	// (ring timeout, a hangup over the API, shutdown) or could not send.
	by, reason := store.HangupByRemote, de.Reason
	switch {
	case local != "":
		by, reason = store.HangupByLocal, local
	case de.Code == 0 || de.Code == 487 || de.Err != nil:
		by = store.HangupByLocal
	}
	c.update(func(r *store.Call) {
		r.Status, r.TMHangup = store.StatusHangup, now()
		r.HangupBy, r.HangupReason, r.SIPCode = by, reason, de.Code
		r.Variables = vars
	})
	c.mu.Lock()
	final := c.rec
	c.mu.Unlock()
	c.publish(EventCallHangup, final)
	c.log.Info("call not answered", "hangup_by", by, "reason", reason, "code", de.Code, "err", de)
}

// progressDialer tells the originated call about its attempts' progress
// (180, 183) besides what connect's dialing does with it.
type progressDialer struct {
	Dialer
	onProgress func()
}

func (p progressDialer) Dial(ctx context.Context, r sip.DialRequest) (*sip.OutLeg, error) {
	inner := r.OnProgress
	r.OnProgress = func(pr sip.Progress) {
		if inner != nil {
			inner(pr)
		}
		p.onProgress()
	}
	return p.Dialer.Dial(ctx, r)
}

// ringRelay marks the call ringing on the first progress of any attempt.
// The record write runs apart (Dial must not block in OnProgress), and
// stop waits for it so that ringing is written before answered.
type ringRelay struct {
	c       *Call
	mu      sync.Mutex
	started bool
	stopped bool
	done    chan struct{}
}

func (r *ringRelay) progress() {
	r.mu.Lock()
	start := !r.started && !r.stopped
	r.started = r.started || start
	r.mu.Unlock()
	if !start {
		return
	}
	go func() {
		defer close(r.done)
		r.c.update(func(rec *store.Call) { rec.Status, rec.TMRinging = store.StatusRinging, now() })
		r.c.publish(EventCallRinging, nil)
	}()
}

// stop ignores later progress (a losing attempt's) and waits for the
// ringing write, when there was one.
func (r *ringRelay) stop() {
	r.mu.Lock()
	r.stopped = true
	started := r.started
	r.mu.Unlock()
	if started {
		<-r.done
	}
}

// outDialog is an originated call's dialog. Until the callee answers there
// is none: hanging up then is cancelling the call's context, which stops
// the dialing. Done is the answered leg's; before the answer it is nil (a
// channel that never fires), so callers must not keep it across the answer.
type outDialog struct {
	mu       sync.Mutex
	out      *sip.OutLeg
	onChange func(sip.MediaChange)
}

func (d *outDialog) set(out *sip.OutLeg) {
	d.mu.Lock()
	d.out = out
	f := d.onChange
	d.mu.Unlock()
	if f != nil {
		out.OnMediaChange(f)
	}
}

// OnMediaChange has the answered leg report the callee's re-INVITEs and
// UPDATEs (and our Hold/Resume) to f, like an inbound leg's.
func (d *outDialog) OnMediaChange(f func(sip.MediaChange)) {
	d.mu.Lock()
	d.onChange = f
	l := d.out
	d.mu.Unlock()
	if l != nil {
		l.OnMediaChange(f)
	}
}

// errNoDialog: hold before the callee answered.
var errNoDialog = errors.New("the callee has not answered")

// Hold puts the callee on hold by re-INVITE (sendonly).
func (d *outDialog) Hold(ctx context.Context) error {
	if l := d.leg(); l != nil {
		return l.Hold(ctx)
	}
	return errNoDialog
}

// Resume takes the callee off hold by re-INVITE (sendrecv).
func (d *outDialog) Resume(ctx context.Context) error {
	if l := d.leg(); l != nil {
		return l.Resume(ctx)
	}
	return errNoDialog
}

func (d *outDialog) leg() *sip.OutLeg {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out
}

func (d *outDialog) SIPCallID() string {
	if l := d.leg(); l != nil {
		return l.CallID
	}
	return ""
}

func (d *outDialog) Media() sdp.Negotiated {
	if l := d.leg(); l != nil {
		return l.Media()
	}
	return sdp.Negotiated{}
}

func (d *outDialog) Done() <-chan struct{} {
	if l := d.leg(); l != nil {
		return l.Done()
	}
	return nil
}

func (d *outDialog) EndInfo() sip.EndInfo {
	if l := d.leg(); l != nil {
		return l.EndInfo()
	}
	return sip.EndInfo{By: sip.EndLocal}
}

func (d *outDialog) Hangup(ctx context.Context) error {
	if l := d.leg(); l != nil {
		return l.Hangup(ctx)
	}
	return nil
}

func (d *outDialog) InfoDTMF() <-chan rune {
	if l := d.leg(); l != nil {
		return l.InfoDTMF()
	}
	return nil
}

var _ sip.Dialog = (*outDialog)(nil)
