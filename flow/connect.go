package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/store"
)

// Destination types of connect.
const (
	DestExtension = "extension" // ring every registered contact of an extension
	DestNumber    = "number"    // out through the enabled trunks, by priority
	DestURI       = "uri"       // a SIP URI, as it is
)

// Ring strategies of connect.
const (
	RingAll        = "all"
	RingSequential = "sequential"
)

// Connect limits.
const (
	DefaultRingTimeout = 30 * time.Second
	maxRingTimeoutS    = 600
	maxDestinations    = 20
	// maxBridge bounds one bridged call, as every action has a bound.
	maxBridge = 12 * time.Hour
	// maxBridgeQueue is the most audio one side may have queued for the
	// other; more means the two clocks drifted and the frame is dropped
	// rather than adding delay for the rest of the call.
	maxBridgeQueue = 120 * time.Millisecond
	// relayedDigit is how long a digit relayed between legs plays.
	relayedDigit = 160 * time.Millisecond
)

// Variables connect sets on the calling call.
const (
	VarConnectCallID  = "connect.call_id"  // the record id of the leg that answered
	VarConnectResult  = "connect.result"   // answered, busy, noanswer, failed, cancel
	VarConnectSIPCode = "connect.sip_code" // the final SIP status of a failed attempt
)

// ConnectDestination is one place connect rings.
type ConnectDestination struct {
	Type   string `json:"type"`   // extension, number or uri
	Target string `json:"target"` // extension number, phone number or SIP URI; variables allowed
}

// ConnectOption rings destinations and bridges the caller to the first that
// answers.
type ConnectOption struct {
	Destinations []ConnectDestination `json:"destinations"`
	// Ring is all (default: every destination at once, first answer wins)
	// or sequential (one after another, each for TimeoutS).
	Ring string `json:"ring,omitempty"`
	// TimeoutS is how long a destination rings (default 30).
	TimeoutS int `json:"timeout_s,omitempty"`
	// CallerID is the From user shown to the destination (default: the
	// caller's own).
	CallerID string `json:"caller_id,omitempty"`
	// EarlyMedia plays a ringing destination's early media (a 183 with
	// SDP, then its RTP before the answer) to the caller, who gets 183
	// with our SDP; false (default) leaves the caller with the 180 only.
	EarlyMedia bool `json:"early_media,omitempty"`
	// RelayHangupReason (default true) ends an unanswered caller with the
	// destination's failure (486 busy, 480 no answer, its error code) and
	// a bridged caller with the far side's hangup reason; false ends them
	// with 480 and reason dialout, or normal.
	RelayHangupReason *bool `json:"relay_hangup_reason,omitempty"`
}

var callerIDRE = regexp.MustCompile(`^[A-Za-z0-9+*#._~-]{1,64}$`)

// connectPlan is a validated ConnectOption.
type connectPlan struct {
	dests    []ConnectDestination
	ring     string
	timeout  time.Duration
	callerID string
	relay    bool
	// earlyMedia relays destinations' early media (earlymedia.go).
	earlyMedia bool
	// system: the operator chose the destinations (a flow), so a number
	// may go out through a trunk whoever the caller is. Routes of dialed
	// numbers leave it false: the caller's own right to call out decides.
	system bool
}

// connect joins the action table at init, like fetch_flow.
func init() { actionTypes["connect"] = define(compileConnect) }

func compileConnect(o *ConnectOption) (step, error) { return compileConnectFor(o, true) }

func compileConnectFor(o *ConnectOption, system bool) (step, error) {
	if len(o.Destinations) == 0 || len(o.Destinations) > maxDestinations {
		return step{}, badField("destinations", "must list 1 to %d destinations", maxDestinations)
	}
	for i, d := range o.Destinations {
		if err := checkDestination(d); err != nil {
			return step{}, badField(fmt.Sprintf("destinations[%d].%s", i, err.field), "%s", err.msg)
		}
	}
	p := connectPlan{dests: o.Destinations, ring: o.Ring, callerID: o.CallerID, system: system,
		relay: o.RelayHangupReason == nil || *o.RelayHangupReason, earlyMedia: o.EarlyMedia}
	switch o.Ring {
	case "":
		p.ring = RingAll
	case RingAll, RingSequential:
	default:
		return step{}, badField("ring", "must be all or sequential, not %q", o.Ring)
	}
	if o.TimeoutS < 0 || o.TimeoutS > maxRingTimeoutS {
		return step{}, badField("timeout_s", "must be between 0 and %d", maxRingTimeoutS)
	}
	p.timeout = DefaultRingTimeout
	if o.TimeoutS > 0 {
		p.timeout = time.Duration(o.TimeoutS) * time.Second
	}
	if o.CallerID != "" && !strings.Contains(o.CallerID, "${") && !callerIDRE.MatchString(o.CallerID) {
		return step{}, badField("caller_id", "must be 1 to 64 of letters, digits and +*#._~-")
	}
	ringing := p.timeout
	if p.ring == RingSequential {
		ringing *= time.Duration(len(p.dests))
	}
	return seq(ringing+maxBridge, func(ctx context.Context, r *run) (string, error) {
		return "", r.c.connect(ctx, p)
	}), nil
}

func checkDestination(d ConnectDestination) *fieldError {
	if d.Target == "" {
		return &fieldError{field: "target", msg: "empty"}
	}
	if strings.Contains(d.Target, "${") {
		if d.Type != DestExtension && d.Type != DestNumber && d.Type != DestURI {
			return &fieldError{field: "type", msg: fmt.Sprintf("must be extension, number or uri, not %q", d.Type)}
		}
		return nil // checked when it runs, with the variables known
	}
	if err := destinationTargetErr(d); err != nil {
		return &fieldError{field: "target", msg: err.Error()}
	}
	switch d.Type {
	case DestExtension, DestNumber, DestURI:
		return nil
	}
	return &fieldError{field: "type", msg: fmt.Sprintf("must be extension, number or uri, not %q", d.Type)}
}

// destinationTargetErr checks a target with its variables substituted.
func destinationTargetErr(d ConnectDestination) error {
	switch d.Type {
	case DestExtension:
		if !isDialable(d.Target) || len(d.Target) > 20 {
			return fmt.Errorf("extension %q must be 1 to 20 digits", d.Target)
		}
	case DestNumber:
		if _, err := store.NormalizeNumber(d.Target); err != nil {
			return err
		}
	case DestURI:
		if !strings.HasPrefix(d.Target, "sip:") && !strings.HasPrefix(d.Target, "sips:") {
			return fmt.Errorf("URI %q must start with sip: or sips:", d.Target)
		}
		if host := uriHost(d.Target); host == "" {
			return fmt.Errorf("URI %q has no host", d.Target)
		}
	}
	return nil
}

// dialAttempt is one INVITE connect sends.
type dialAttempt struct {
	req         sip.DialRequest
	destination string // for the record
	mediaHost   string // where the callee probably is, to pick our media address
	// early, when set, gets the leg once its early media runs
	// (earlymedia.go).
	early *earlyRelay
	// callRecord: the attempt gets no record of its own, because the
	// call's record tells its story (an originated call's INVITEs).
	callRecord bool
}

// connect rings p's destinations and bridges the caller to the first that
// answers. It answers an unanswered caller only then, and rejects it when
// nobody answers.
func (c *Call) connect(ctx context.Context, p connectPlan) error {
	d, err := c.ct.dialer()
	if err != nil {
		return c.connectFailed(&sip.DialError{Reason: store.ReasonFailed, Code: 503, Status: "Service Unavailable", Err: err}, p)
	}
	groups := [][]ConnectDestination{p.dests}
	if p.ring == RingSequential {
		groups = groups[:0]
		for _, dst := range p.dests {
			groups = append(groups, []ConnectDestination{dst})
		}
	}
	var early *earlyRelay
	if p.earlyMedia {
		early = newEarlyRelay()
	}
	var last *sip.DialError
	for _, g := range groups {
		var attempts []dialAttempt
		var errs []*sip.DialError
		for _, dst := range g {
			as, derr := c.attemptsFor(ctx, dst, p)
			if derr != nil {
				errs = append(errs, derr)
			}
			for i := range as {
				as[i].early = early
			}
			attempts = append(attempts, as...)
		}
		if len(attempts) > 0 {
			won, derr := c.ringAll(ctx, d, attempts)
			if won != nil {
				return c.bridge(ctx, won, p)
			}
			errs = append(errs, derr...)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = worstFailure(errs)
		c.log.Info("connect: no answer", "destinations", fmt.Sprint(g), "err", last)
	}
	return c.connectFailed(last, p)
}

// worstFailure picks the failure an unanswered ring-all reports: busy if
// anyone was busy, else no answer, else the last error.
func worstFailure(errs []*sip.DialError) *sip.DialError {
	var pick *sip.DialError
	rank := func(e *sip.DialError) int {
		switch e.Reason {
		case store.ReasonBusy:
			return 3
		case store.ReasonNoAnswer:
			return 2
		}
		return 1
	}
	for _, e := range errs {
		if pick == nil || rank(e) >= rank(pick) {
			pick = e
		}
	}
	if pick == nil {
		pick = &sip.DialError{Reason: store.ReasonFailed, Code: 503, Status: "Service Unavailable", Err: errors.New("no destination")}
	}
	return pick
}

// attemptsFor turns one destination into the INVITEs to send.
func (c *Call) attemptsFor(ctx context.Context, dst ConnectDestination, p connectPlan) ([]dialAttempt, *sip.DialError) {
	dst.Target = c.expand(dst.Target)
	if err := destinationTargetErr(dst); err != nil {
		return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 484, Status: "Address Incomplete", Err: err}
	}
	from := sip.CallerID{User: c.leg.FromUser}
	if ext := c.leg.Identity.Extension; ext != nil {
		from.Name = ext.DisplayName
	}
	if p.callerID != "" {
		from = sip.CallerID{User: c.expand(p.callerID)}
	}
	base := sip.DialRequest{Caller: c.leg.Identity, System: p.system, From: from, RingTimeout: p.timeout}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	switch dst.Type {
	case DestExtension:
		ext, err := c.ct.cfg.Store.GetExtension(sctx, dst.Target)
		if errors.Is(err, store.ErrNotFound) {
			return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 404, Status: "Not Found", Err: fmt.Errorf("extension %s: %w", dst.Target, err)}
		}
		if err != nil {
			return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 500, Status: "Server Internal Error", Err: err}
		}
		d, err := c.ct.dialer()
		if err != nil {
			return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 503, Status: "Service Unavailable", Err: err}
		}
		var regs []store.Registration
		if ext.Enabled {
			if regs, err = d.Contacts(sctx, ext.Number); err != nil {
				return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 500, Status: "Server Internal Error", Err: err}
			}
		}
		if len(regs) == 0 {
			return nil, &sip.DialError{Reason: store.ReasonNoAnswer, Code: 480, Status: "Temporarily Unavailable",
				Err: fmt.Errorf("extension %s has no registered contact", ext.Number)}
		}
		out := make([]dialAttempt, 0, len(regs))
		for i := range regs {
			r := base
			r.Binding = &regs[i]
			out = append(out, dialAttempt{req: r, destination: regs[i].Contact, mediaHost: regs[i].SourceAddr})
		}
		return out, nil
	case DestNumber:
		num, _ := store.NormalizeNumber(dst.Target)
		trunks, err := c.ct.cfg.Store.EnabledTrunks(sctx)
		if err != nil {
			return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 500, Status: "Server Internal Error", Err: err}
		}
		if len(trunks) == 0 {
			return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 503, Status: "Service Unavailable", Err: errors.New("no enabled trunk")}
		}
		r := base
		r.Number, r.Trunks = num, trunks
		return []dialAttempt{{req: r, destination: num, mediaHost: trunks[0].Host}}, nil
	}
	r := base
	r.URI = dst.Target
	return []dialAttempt{{req: r, destination: dst.Target, mediaHost: uriHost(dst.Target)}}, nil
}

// ringAll sends every attempt at once and returns the first leg that
// answers; the others are cancelled (or hung up, if they answered too).
// With no answer it returns every attempt's failure.
func (c *Call) ringAll(ctx context.Context, d Dialer, attempts []dialAttempt) (*bLeg, []*sip.DialError) {
	rctx, cancel := context.WithCancel(ctx)
	results := make(chan dialResult, len(attempts))
	early := earlyRelayOf(attempts)
	defer early.stop() // before the bridge reads the winner's frames
	for _, a := range attempts {
		go func() {
			b, err := c.dialLeg(rctx, d, a)
			results <- dialResult{b, err}
		}()
	}
	var errs []*sip.DialError
	for left := len(attempts); left > 0; left-- {
		res := c.nextResult(ctx, results, early)
		if res.b == nil {
			errs = append(errs, res.err)
			continue
		}
		// First answer wins: cancel the rest and let them end in the
		// background, so the bridge does not wait for their 487s.
		cancel()
		if left > 1 {
			c.wg.Add(1)
			go func(left int) {
				defer c.wg.Done()
				for ; left > 0; left-- {
					if r := <-results; r.b != nil {
						r.b.end(store.ReasonCancel) // answered too late
					}
				}
			}(left - 1)
		}
		return res.b, nil
	}
	cancel()
	return nil, errs
}

// dialResult is how one attempt of ringAll ended.
type dialResult struct {
	b   *bLeg
	err *sip.DialError
}

// bLeg is an outgoing leg connect placed, with its own call record; or
// one INVITE of an originated call, whose record is the call's.
type bLeg struct {
	c      *Call // the call it was placed for
	log    *slog.Logger
	conn   *net.UDPConn
	out    *sip.OutLeg
	stream *media.Stream
	wg     sync.WaitGroup // record writes started from OnProgress
	// own: rec is b's own record. Otherwise b writes no record and
	// publishes nothing: its call's record and events cover it.
	own bool
	// mediaMu orders setting stream against the peer's media changes
	// (mediachange.go), which may come before the stream exists.
	mediaMu sync.Mutex

	mu  sync.Mutex // held across a record write, so writes land in order
	rec store.Call
}

// update changes b's record, writes it and returns a copy.
func (b *bLeg) update(f func(r *store.Call)) store.Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.rec)
	if err := b.c.ct.cfg.Store.QueueUpdateCall(&b.rec); err != nil {
		b.log.Error("update call record", "err", err)
	}
	return b.rec
}

// dialLeg places one attempt with a record of its own, linked to c, unless
// the attempt is one of c's own (a.callRecord). It returns the answered
// leg, or why it failed (its record then is final).
func (c *Call) dialLeg(ctx context.Context, d Dialer, a dialAttempt) (*bLeg, *sip.DialError) {
	if a.callRecord {
		return c.dialOn(ctx, d, a, &bLeg{c: c, log: c.log})
	}
	b := &bLeg{c: c, own: true, rec: store.Call{
		Direction:    store.DirectionOutgoing,
		Source:       c.rec.Source,
		Destination:  a.destination,
		Status:       store.StatusDialing,
		MasterCallID: c.ID(),
	}}
	if err := c.ct.cfg.Store.QueueCreateCall(&b.rec); err != nil {
		return nil, &sip.DialError{Reason: store.ReasonFailed, Code: 500, Status: "Server Internal Error", Err: fmt.Errorf("create call record: %w", err)}
	}
	b.log = c.log.With("b_call_id", b.rec.ID)
	c.ct.cfg.Bus.Publish(EventCallCreated, b.rec.ID, b.rec)
	return c.dialOn(ctx, d, a, b)
}

// dialOn places attempt a as b: its media socket, the INVITE and, when b
// has its own record, the record's ringing, answer or failure.
func (c *Call) dialOn(ctx context.Context, d Dialer, a dialAttempt, b *bLeg) (*bLeg, *sip.DialError) {
	conn, err := c.ct.cfg.Ports.Listen(c.ct.cfg.BindIP)
	if err != nil {
		return nil, b.failed(&sip.DialError{Reason: store.ReasonFailed, Code: 503, Status: "Service Unavailable", Err: fmt.Errorf("rtp port: %w", err)})
	}
	b.conn = conn
	r := a.req
	r.Offer = sdp.Build(sdp.Local{
		Address:         c.ct.mediaIPFor(hostAddr(a.mediaHost)),
		Port:            conn.LocalAddr().(*net.UDPAddr).Port,
		SessionID:       rand.Uint64N(1 << 62),
		Version:         1,
		Codecs:          []sdp.Codec{sdp.PCMU, sdp.PCMA},
		DTMFPayloadType: 101,
		Ptime:           20,
	})
	var ringing, early sync.Once
	r.OnProgress = func(pr sip.Progress) {
		if a.early != nil && pr.EarlyMedia != nil {
			// Started here, on Dial's goroutine, so the first packets are
			// not lost; the runner relays them (earlymedia.go).
			early.Do(func() { b.startEarlyMedia(*pr.EarlyMedia, a.early) })
		}
		if !b.own {
			return
		}
		// Dial must not block here: the record write runs apart, and
		// Dial's return waits for it so later writes come after.
		ringing.Do(func() {
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.update(func(r *store.Call) { r.Status, r.TMRinging = store.StatusRinging, now() })
				c.ct.cfg.Bus.Publish(EventCallRinging, b.rec.ID, nil)
			}()
		})
	}
	b.log.Info("connect: dialing", "destination", a.destination)
	out, err := d.Dial(ctx, r)
	b.wg.Wait()
	if err != nil {
		var de *sip.DialError
		if !errors.As(err, &de) {
			de = &sip.DialError{Reason: store.ReasonFailed, Err: err}
		}
		return nil, b.failed(de)
	}
	b.out = out
	if !b.own {
		return b, nil
	}
	out.OnMediaChange(b.onMediaChange) // mediachange.go
	b.update(func(r *store.Call) {
		r.SIPCallID = out.CallID
		r.Status, r.TMProgressing = store.StatusProgressing, now()
		r.Codec = out.Negotiated.Codec.Name
	})
	c.ct.cfg.Bus.Publish(EventCallAnswered, b.rec.ID, map[string]any{"codec": out.Negotiated.Codec.Name})
	return b, nil
}

// failed closes an attempt that never connected and finalises its record.
func (b *bLeg) failed(de *sip.DialError) *sip.DialError {
	if b.conn != nil {
		b.conn.Close()
	}
	if b.stream != nil {
		b.stream.Close() // its early media
	}
	b.log.Info("connect: attempt failed", "reason", de.Reason, "code", de.Code, "err", de)
	if !b.own {
		return de // the call's record gets the worst failure of all
	}
	// Remote: the callee answered with a final error. Local: we gave up
	// (ring timeout, cancel) or could not send at all.
	by := store.HangupByRemote
	if de.Code == 0 || de.Code == 487 || de.Err != nil {
		by = store.HangupByLocal
	}
	final := b.update(func(r *store.Call) {
		r.Status, r.TMHangup = store.StatusHangup, now()
		r.HangupBy, r.HangupReason, r.SIPCode = by, de.Reason, de.Code
	})
	b.c.ct.cfg.Bus.Publish(EventCallHangup, final.ID, final)
	return de
}

// startMedia opens b's stream toward the address its answer named.
func (b *bLeg) startMedia(ctx context.Context) error {
	if b.stream != nil {
		// Started early, for a warm transfer's announcement or early
		// media (earlymedia.go): follow the answer, and any re-INVITE
		// since.
		b.mediaMu.Lock()
		defer b.mediaMu.Unlock()
		return followMedia(b.stream, b.out.Media())
	}
	// Media, not Negotiated: the callee may have re-INVITEd since.
	return b.openStream(ctx, b.out.Media())
}

// openStream opens b's stream toward the address n names.
func (b *bLeg) openStream(ctx context.Context, n sdp.Negotiated) error {
	codec, err := media.CodecByName(n.Codec.Name, n.Codec.PayloadType)
	if err != nil {
		return err
	}
	st, err := media.NewStream(media.StreamConfig{
		Conn:            b.conn,
		Remote:          net.UDPAddrFromAddrPort(n.RemoteAddr),
		Codec:           codec,
		DTMFPayloadType: n.DTMFPayloadType,
		Logger:          b.log,
	})
	if err != nil {
		return err
	}
	b.conn = nil // the stream owns it now
	st.SetRemoteHold(peerHolds(n))
	b.mediaMu.Lock()
	b.stream = st
	b.mediaMu.Unlock()
	st.Start(ctx)
	return nil
}

// end hangs b up (when it is still up), stops its media and finalises its
// record; local is the reason when we end it.
func (b *bLeg) end(local store.HangupReason) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	select {
	case <-b.out.Done():
	default:
		if err := b.out.Hangup(ctx); err != nil {
			b.log.Warn("connect: hangup", "err", err)
		}
	}
	if b.stream != nil {
		b.stream.Close()
	}
	if b.conn != nil {
		b.conn.Close()
	}
	if !b.own {
		return // the call's record has the end (originate.go)
	}
	by, reason, code := hangupOf(b.out.EndInfo(), local)
	final := b.update(func(r *store.Call) {
		r.Status, r.TMHangup = store.StatusHangup, now()
		r.HangupBy, r.HangupReason, r.SIPCode = by, reason, code
		if b.stream != nil {
			st := b.stream.Stats()
			r.RTPPacketsIn, r.RTPPacketsOut, r.RTPPacketsLost = st.PacketsIn, st.PacketsOut, st.PacketsLost
		}
	})
	b.c.ct.cfg.Bus.Publish(EventCallHangup, final.ID, final)
	b.log.Info("connect: leg ended", "hangup_by", by, "reason", reason)
}

// bridge relays audio and DTMF between the caller and b until either side
// hangs up, which ends the other.
func (c *Call) bridge(ctx context.Context, b *bLeg, p connectPlan) error {
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// b's media lives until b ends (every way out of the bridge ends it),
	// not with this bridge: a REFER with Replaces may hand b over (refer.go).
	if err := b.startMedia(context.WithoutCancel(bctx)); err != nil {
		b.end(store.ReasonFailed)
		return fmt.Errorf("connect: media: %w", err)
	}
	if !c.answered.Load() {
		if err := c.answer(ctx); err != nil {
			b.end(store.ReasonCancel)
			return err
		}
	}
	c.setVar(VarConnectCallID, b.rec.ID)
	c.setVar(VarConnectResult, "answered")
	c.captureLeg(b)
	c.log.Info("connect: bridged", "b_call_id", b.rec.ID, "b_codec", b.out.Negotiated.Codec.Name)

	a := c.stream
	// Audio and keys from before the bridge are not for the callee (nor
	// what a warm transfer's target said during its announcement for the
	// caller).
	drainFrames(a.Frames())
	drainFrames(b.stream.Frames())
	for len(c.digits) > 0 {
		<-c.digits
	}
	aFrames, bFrames := a.Frames(), b.stream.Frames()
	bDTMF, bInfo, bDone := b.stream.DTMF(), b.out.InfoDTMF(), b.out.Done()
	// aDone watches the caller's leg while a transfer it asked for rings:
	// the call then outlives it (refer.go).
	var aDone <-chan struct{}
	// REFERs from either phone hand the caller to another leg (refer.go).
	xfer := c.openRefers(b, p)
	defer xfer.close()
	bDigit := func(d rune) {
		b.addDigit(d)
		c.relayDigit(a, d, "caller")
	}
	for {
		select {
		case f, ok := <-aFrames:
			if !ok {
				aFrames = nil
				continue
			}
			relayFrame(b.stream, f)
		case f, ok := <-bFrames:
			if !ok {
				bFrames = nil
				continue
			}
			relayFrame(a, f)
		case d := <-c.digits:
			c.relayDigit(b.stream, d, "callee")
		case ev, ok := <-bDTMF:
			if !ok {
				bDTMF = nil
				continue
			}
			bDigit(ev.Digit)
		case d := <-bInfo:
			bDigit(d)
		case q := <-xfer.in:
			if err := xfer.take(ctx, b, q); err != nil {
				return err // b was handed over, or the caller goes to a flow
			}
			if xfer.pending != nil && xfer.pending.from == nil {
				aDone = c.dlg.Done()
			}
		case <-aDone:
			// The caller left after asking for the transfer: b waits for
			// the target with music on hold.
			aDone, aFrames = nil, nil
			xfer.callerLeft(b)
		case res := <-xfer.results:
			aDone = nil
			nb, stop := xfer.done(ctx, b, res)
			if stop {
				return errStop
			}
			if nb != nil {
				c.captureLeg(nb)
			}
			if nb != nil && res.q.from == nil {
				xfer.close()
				return c.joinLegs(ctx, b, nb)
			}
			if nb != nil {
				b = nb
				bFrames, bDTMF, bInfo, bDone = b.stream.Frames(), b.stream.DTMF(), b.out.InfoDTMF(), b.out.Done()
			}
		case <-bDone:
			if xfer.referrerLeft(b) {
				// It transferred the caller and left: the caller waits
				// for the target with music on hold.
				bFrames, bDTMF, bInfo, bDone = nil, nil, nil, nil
				continue
			}
			// The far side hung up: so does the caller, with its reason.
			b.end(store.ReasonNormal)
			_, reason, _ := hangupOf(b.out.EndInfo(), store.ReasonNormal)
			if !p.relay {
				reason = store.ReasonNormal
			}
			if err := c.hangup(reason); err != nil {
				c.log.Warn("connect: hangup caller", "err", err)
			}
			return errStop
		case <-ctx.Done():
			// The caller hung up (or the server is stopping): end the far side.
			b.end(c.endReason())
			return ctx.Err()
		}
	}
}

// relayFrame queues f, heard on one side of a bridge, on the other side's
// stream to, unless to is already maxBridgeQueue behind (then it is
// dropped: a bridge must not build up delay).
func relayFrame(to *media.Stream, f []int16) {
	if to.Queued() < maxBridgeQueue {
		to.Enqueue(f)
	}
}

// relayDigit sends a digit pressed on one side of a bridge to the other
// side's stream to (dir names that side in the log).
func (c *Call) relayDigit(to *media.Stream, d rune, dir string) {
	if _, err := to.SendDTMF(d, relayedDigit); err != nil {
		c.log.Warn("connect: dtmf not relayed", "digit", string(d), "to", dir, "err", err)
	}
}

// addDigit keeps a digit b's phone pressed on b's record.
func (b *bLeg) addDigit(d rune) {
	b.mu.Lock()
	b.rec.DTMF += string(d)
	b.mu.Unlock()
}

func drainFrames(ch <-chan []int16) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// connectFailed ends connect when nobody answered: an unanswered caller is
// rejected with the reason; an answered one continues its flow.
func (c *Call) connectFailed(de *sip.DialError, p connectPlan) error {
	c.setVar(VarConnectResult, string(de.Reason))
	c.setVar(VarConnectSIPCode, strconv.Itoa(de.Code))
	if c.answered.Load() {
		return de
	}
	code, status, reason := 480, "Temporarily Unavailable", store.ReasonDialout
	if p.relay {
		code, status, reason = rejectFor(de)
	}
	c.setLocalReason(reason)
	if err := c.leg.Reject(code, status); err != nil && !errors.Is(err, sip.ErrLegEnded) {
		return err
	}
	return errStop
}

// rejectFor maps why a destination did not answer to what the caller hears.
func rejectFor(de *sip.DialError) (int, string, store.HangupReason) {
	switch de.Reason {
	case store.ReasonBusy:
		return 486, "Busy Here", store.ReasonBusy
	case store.ReasonNoAnswer:
		return 480, "Temporarily Unavailable", store.ReasonNoAnswer
	case store.ReasonCancel:
		return 487, "Request Terminated", store.ReasonCancel
	}
	if de.Code >= 400 && de.Code <= 699 && de.Status != "" {
		return de.Code, de.Status, store.ReasonFailed
	}
	return 503, "Service Unavailable", store.ReasonFailed
}

// uriHost returns the host of a sip: or sips: URI, "" if there is none.
func uriHost(uri string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(uri, "sips:"), "sip:")
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, ";?>"); i >= 0 {
		s = s[:i]
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return strings.Trim(s, "[]")
}

// hostAddr parses "ip", "ip:port" or "[v6]:port"; the zero Addr otherwise.
func hostAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr()
	}
	a, _ := netip.ParseAddr(strings.Trim(s, "[]"))
	return a
}
