package flow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/store"
)

// Live call actions: what the control API does to a running call. The
// flow runner owns the call's media; an action never consumes its audio or
// keys. Audio out goes through the stream's own thread-safe queue, mute and
// hold through the stream's gate (applied by its clock), and anything that
// waits (speech, digits, hangup) runs on a goroutine the call owns. A
// transfer replaces the flow: its runner cancels the flow and bridges on
// the call's own goroutine.

// Call action names.
const (
	ActionHangup         = "hangup"
	ActionTransfer       = "transfer"
	ActionTalk           = "talk"
	ActionPlay           = "play"
	ActionDTMF           = "dtmf"
	ActionMute           = "mute"
	ActionUnmute         = "unmute"
	ActionHold           = "hold"
	ActionUnhold         = "unhold"
	ActionRecordingStart = "recording_start"
	ActionRecordingStop  = "recording_stop"
)

// Errors of CallAction, besides ErrCallNotFound and *ActionError.
var (
	// ErrCallNotLive: the call has ended, is ending, or is not answered
	// yet (only hangup works on a ringing call).
	ErrCallNotLive = errors.New("call is not live and answered")
	// ErrConflict: the action does not fit the call's state (unhold when
	// not held, a second transfer, stopping a recording that is not
	// running…).
	ErrConflict = errors.New("action conflicts with the call's state")
	// ErrActionUnavailable: the server is not set up for the action (no dialer
	// for a transfer, no agent with a voice for talk).
	ErrActionUnavailable = errors.New("action unavailable on this server")
)

// ActionError is a bad field of a call action.
type ActionError struct{ Field, Msg string }

func (e *ActionError) Error() string { return e.Field + ": " + e.Msg }

func actionErr(field, format string, args ...any) error {
	return &ActionError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// asActionError turns the flow's own option checks into ActionErrors.
func asActionError(err error) error {
	var fe *fieldError
	if errors.As(err, &fe) {
		return &ActionError{Field: fe.field, Msg: fe.msg}
	}
	return err
}

// CallAction is one action on a live call; which fields count depends on
// Action.
type CallAction struct {
	Action string
	// hangup: a free-text note kept in the variable hangup.api_reason; the
	// record's reason is always "api".
	Reason string
	// transfer: To is a number, extension or sip: URI; Mode is blind.
	To, Mode string
	// talk: AgentID picks the voice (default: the agent "default", or the
	// only agent configured).
	Text, Language, Voice, AgentID string
	// play: WAV files on the server and http(s) URLs of WAV files, played
	// in that order Loop times (default 1).
	Files, URLs []string
	Loop        int
	// dtmf: RFC 4733 digits, each DurationMS long (default 100).
	Digits     string
	DurationMS int
	// mute, unmute: in (we stop hearing the caller), out (the caller
	// hears silence from us) or both (default).
	Direction string
	// recording_start: Stereo (default true), MaxDurationS, Beep.
	Stereo       *bool
	MaxDurationS int
	Beep         bool
}

// CallControlState is a live call's control state after an action.
type CallControlState struct {
	CallID      string `json:"call_id"`
	Action      string `json:"action"`
	Status      string `json:"status"` // accepted
	MutedIn     bool   `json:"muted_in"`
	MutedOut    bool   `json:"muted_out"`
	OnHold      bool   `json:"on_hold"`
	RecordingID string `json:"recording_id,omitempty"`
}

// Limits of call actions.
const (
	maxPlaySources  = 20
	maxHangupReason = 256
	apiDTMFGap      = 100 * time.Millisecond
)

// callControl is the part of a Call the API's actions change.
type callControl struct {
	mu     sync.Mutex
	closed bool // the call is finishing: nothing new may start
	// flowCancel stops the running flow (nil when none runs); takeover
	// then runs in its place on the runner's goroutine.
	flowCancel   context.CancelFunc
	takeover     func(ctx context.Context) error
	transferring bool
	// recording is the recording the API started, run by its own run;
	// recordingBusy is set from the request that starts it until it stops.
	recording     *run
	recordingBusy bool
	// holdMu serialises the hold re-INVITEs; holdSignaled is what the
	// held party was last told (apiHold).
	holdMu       sync.Mutex
	holdSignaled bool
}

// close marks the call finishing; finish calls it before waiting for the
// call's goroutines, so none can start after.
func (cc *callControl) close() {
	cc.mu.Lock()
	cc.closed = true
	cc.mu.Unlock()
}

// goControl runs f on a goroutine the call owns (finish waits for it);
// false when the call is finishing.
func (c *Call) goControl(f func()) bool {
	c.ctl.mu.Lock()
	defer c.ctl.mu.Unlock()
	if c.ctl.closed || c.ctx.Err() != nil {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// runControlled runs the flow so that a transfer from the API can replace
// it: the transfer cancels the flow's context and its bridge runs here,
// on the runner's goroutine, once the flow has let go of the media.
func (c *Call) runControlled(runFlow func(ctx context.Context) error) error {
	fctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	c.ctl.mu.Lock()
	c.ctl.flowCancel = cancel
	c.ctl.mu.Unlock()
	err := runFlow(fctx)
	c.ctl.mu.Lock()
	c.ctl.flowCancel = nil
	next := c.ctl.takeover
	c.ctl.takeover = nil
	c.ctl.mu.Unlock()
	if next == nil {
		return err
	}
	return next(c.ctx)
}

// liveCall finds a call by id: ErrCallNotFound when no record has that id,
// ErrCallNotLive when it exists but is not running here.
func (ct *Controller) liveCall(ctx context.Context, id string) (*Call, error) {
	ct.mu.Lock()
	c := ct.calls[id]
	ct.mu.Unlock()
	if c != nil {
		return c, nil
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if _, err := ct.cfg.Store.GetCall(sctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrCallNotFound
		}
		return nil, fmt.Errorf("call %s: %w", id, err)
	}
	return nil, ErrCallNotLive
}

// CallAction applies a to the live call callID. Actions that take time
// (speech, audio, digits, a transfer's ringing, hangup) are started and
// run on the call's own goroutines; errors after the start are warnings on
// the call's record. Errors: ErrCallNotFound, ErrCallNotLive, ErrConflict,
// ErrActionUnavailable, *ActionError.
func (ct *Controller) CallAction(ctx context.Context, callID string, a CallAction) (CallControlState, error) {
	c, err := ct.liveCall(ctx, callID)
	if err != nil {
		return CallControlState{}, err
	}
	if c.ctx.Err() != nil {
		return CallControlState{}, ErrCallNotLive
	}
	if a.Action != ActionHangup && !c.answered.Load() {
		return CallControlState{}, ErrCallNotLive
	}
	switch a.Action {
	case ActionHangup:
		err = c.apiHangup(a)
	case ActionTransfer:
		err = c.apiTransfer(a)
	case ActionTalk:
		err = c.apiTalk(a)
	case ActionPlay:
		err = c.apiPlay(a)
	case ActionDTMF:
		err = c.apiDTMF(a)
	case ActionMute, ActionUnmute:
		err = c.apiMute(a)
	case ActionHold, ActionUnhold:
		err = c.apiHold(a.Action == ActionHold)
	case ActionRecordingStart:
		err = c.apiRecordingStart(a)
	case ActionRecordingStop:
		err = c.apiRecordingStop(ctx)
	default:
		err = actionErr("action", "unknown action %q", a.Action)
	}
	if err != nil {
		return CallControlState{}, err
	}
	c.log.Info("api call action", "action", a.Action)
	return c.controlState(a.Action), nil
}

func (c *Call) controlState(action string) CallControlState {
	st := CallControlState{CallID: c.ID(), Action: action, Status: "accepted"}
	if c.answered.Load() {
		st.MutedIn, st.MutedOut = c.stream.Muted()
		st.OnHold = c.stream.PeerHeld()
	}
	c.ctl.mu.Lock()
	if r := c.ctl.recording; r != nil && r.recording != nil {
		st.RecordingID = r.recording.id
	}
	c.ctl.mu.Unlock()
	return st
}

func (c *Call) apiHangup(a CallAction) error {
	if len(a.Reason) > maxHangupReason {
		return actionErr("reason", "longer than %d bytes", maxHangupReason)
	}
	if a.Reason != "" {
		c.setVar("hangup.api_reason", a.Reason)
	}
	if !c.goControl(func() { c.stop(store.ReasonAPI) }) {
		return ErrCallNotLive
	}
	return nil
}

// apiTransfer rings the target while the flow goes on; when it answers,
// the flow is cancelled and the caller bridged to it (a blind transfer, as
// the transfer action does). If nobody answers, the flow was never
// interrupted; the failure is a warning and connect.result.
func (c *Call) apiTransfer(a CallAction) error {
	to := strings.TrimSpace(a.To)
	if _, err := c.ct.destinationOf(c.ctx, to); err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			return actionErr(re.Field, "%s", re.Msg)
		}
		return err
	}
	switch a.Mode {
	case "", TransferBlind:
	default:
		return actionErr("mode", "must be blind, not %q", a.Mode)
	}
	if _, err := c.ct.dialer(); err != nil {
		return fmt.Errorf("%w: %v", ErrActionUnavailable, err)
	}
	c.ctl.mu.Lock()
	if c.ctl.transferring {
		c.ctl.mu.Unlock()
		return fmt.Errorf("%w: a transfer is already ringing", ErrConflict)
	}
	if c.ctl.flowCancel == nil {
		c.ctl.mu.Unlock()
		return fmt.Errorf("%w: the call's flow has ended", ErrCallNotLive)
	}
	c.ctl.transferring = true
	c.ctl.mu.Unlock()
	ok := c.goControl(func() {
		defer func() {
			c.ctl.mu.Lock()
			c.ctl.transferring = false
			c.ctl.mu.Unlock()
		}()
		c.log.Info("api transfer: ringing", "to", to)
		if err := (&agentCall{c: c}).Transfer(c.ctx, agent.TransferRequest{Target: to}); err != nil {
			if c.ctx.Err() == nil {
				c.warn("transfer: " + err.Error())
				c.log.Info("api transfer failed", "to", to, "err", err)
			}
			return
		}
		c.mu.Lock()
		pb := c.pendingBridge
		c.pendingBridge = nil
		c.mu.Unlock()
		if pb == nil {
			return // an agent's conversation ended at that moment and bridged it
		}
		c.ctl.mu.Lock()
		cancel := c.ctl.flowCancel
		if cancel != nil {
			c.ctl.takeover = func(ctx context.Context) error {
				c.stream.Flush()
				c.log.Info("api transfer: bridging", "to", to)
				return c.bridge(ctx, pb.b, pb.p)
			}
		}
		c.ctl.mu.Unlock()
		if cancel == nil {
			pb.b.end(store.ReasonNormal) // the flow ended while it rang
			return
		}
		cancel()
	})
	if !ok {
		c.ctl.mu.Lock()
		c.ctl.transferring = false
		c.ctl.mu.Unlock()
		return ErrCallNotLive
	}
	return nil
}

// talkAgent picks the agent whose voice speaks for the API.
func (c *Call) talkAgent(id string) (string, error) {
	agents := c.ct.cfg.Agents
	if id != "" {
		def, ok := agents.Get(id)
		switch {
		case !ok:
			return "", actionErr("agent_id", "no agent %q", id)
		case def.TTS == nil:
			return "", actionErr("agent_id", "agent %q has no tts provider", id)
		}
		return id, nil
	}
	if def, ok := agents.Get("default"); ok && def.TTS != nil {
		return "default", nil
	}
	var voiced []string
	for _, id := range agents.IDs() {
		if def, ok := agents.Get(id); ok && def.TTS != nil {
			voiced = append(voiced, id)
		}
	}
	switch len(voiced) {
	case 0:
		return "", fmt.Errorf("%w: no agent with a tts provider is configured", ErrActionUnavailable)
	case 1:
		return voiced[0], nil
	}
	return "", actionErr("agent_id", "required: %d agents have a voice (%s)", len(voiced), strings.Join(voiced, ", "))
}

func (c *Call) apiTalk(a CallAction) error {
	if strings.TrimSpace(a.Text) == "" {
		return actionErr("text", "required")
	}
	if len(a.Text) > maxTalkText {
		return actionErr("text", "longer than %d bytes", maxTalkText)
	}
	id, err := c.talkAgent(a.AgentID)
	if err != nil {
		return err
	}
	o := &TalkOption{Text: a.Text, AgentID: id, Voice: a.Voice, Language: a.Language}
	if !c.goControl(func() {
		ctx, cancel := context.WithTimeout(c.ctx, talkTimeout)
		defer cancel()
		pcm, err := c.talkAudio(ctx, o)
		if err != nil {
			if c.ctx.Err() == nil {
				c.warn("api talk: " + err.Error())
			}
			return
		}
		c.stream.Enqueue(pcm)
	}) {
		return ErrCallNotLive
	}
	return nil
}

func (c *Call) apiPlay(a CallAction) error {
	sources := append(append([]string(nil), a.Files...), a.URLs...)
	if len(sources) == 0 {
		return actionErr("urls", "one of urls or files is required")
	}
	if len(sources) > maxPlaySources {
		return actionErr("urls", "more than %d sources", maxPlaySources)
	}
	for i, f := range a.Files {
		if strings.HasPrefix(f, "http://") || strings.HasPrefix(f, "https://") {
			return actionErr(fmt.Sprintf("files[%d]", i), "is a URL; put it in urls")
		}
		if err := checkAudioSource(f); err != nil {
			return actionErr(fmt.Sprintf("files[%d]", i), "%v", err)
		}
	}
	for i, u := range a.URLs {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return actionErr(fmt.Sprintf("urls[%d]", i), "must be an http:// or https:// URL")
		}
	}
	if a.Loop < 0 || a.Loop > maxLoops {
		return actionErr("loop", "must be between 1 and %d", maxLoops)
	}
	loops := max(a.Loop, 1)
	if !c.goControl(func() {
		var pcm []int16
		for _, src := range sources {
			p, err := c.ct.audio.load(c.ctx, src)
			if err != nil {
				if c.ctx.Err() == nil {
					c.warn("api play: " + err.Error())
				}
				return
			}
			pcm = append(pcm, p...)
		}
		for range loops {
			c.stream.Enqueue(pcm)
		}
	}) {
		return ErrCallNotLive
	}
	return nil
}

func (c *Call) apiDTMF(a CallAction) error {
	digits := strings.ToUpper(a.Digits)
	if digits == "" {
		return actionErr("digits", "required")
	}
	if err := checkDigits(digits); err != nil {
		return actionErr("digits", "%v", err)
	}
	dur, err := msOption("duration_ms", a.DurationMS, 100, 100, 5000)
	if err != nil {
		return asActionError(err)
	}
	if c.dlg.Media().DTMFPayloadType == 0 {
		return fmt.Errorf("%w: the caller did not offer telephone-event (RFC 4733)", ErrConflict)
	}
	if !c.goControl(func() {
		if err := c.sendDigits(c.ctx, digits, dur, apiDTMFGap); err != nil && c.ctx.Err() == nil {
			c.warn("api dtmf: " + err.Error())
		}
	}) {
		return ErrCallNotLive
	}
	return nil
}

func (c *Call) apiMute(a CallAction) error {
	in, out := false, false
	switch a.Direction {
	case "", "both":
		in, out = true, true
	case "in":
		in = true
	case "out":
		out = true
	default:
		return actionErr("direction", "must be in, out or both, not %q", a.Direction)
	}
	c.ctl.mu.Lock()
	defer c.ctl.mu.Unlock()
	curIn, curOut := c.stream.Muted()
	if a.Action == ActionMute {
		curIn, curOut = curIn || in, curOut || out
	} else {
		curIn, curOut = curIn && !in, curOut && !out
	}
	c.stream.SetMute(curIn, curOut)
	c.setVar("call.muted", muteName(curIn, curOut))
	return nil
}

func muteName(in, out bool) string {
	switch {
	case in && out:
		return "both"
	case in:
		return "in"
	case out:
		return "out"
	}
	return "none"
}

func (c *Call) apiHold(hold bool) error {
	if err := c.holdMusic(hold); err != nil {
		return err
	}
	if d, ok := c.dlg.(holdSignaler); ok {
		c.goControl(func() { c.signalHold(d) }) // takes c.ctl.mu itself
	}
	return nil
}

// holdMusic starts or stops the music hold on our media.
func (c *Call) holdMusic(hold bool) error {
	c.ctl.mu.Lock()
	defer c.ctl.mu.Unlock()
	switch held := c.stream.PeerHeld(); {
	case hold && held:
		return fmt.Errorf("%w: the call is already on hold", ErrConflict)
	case !hold && !held:
		return fmt.Errorf("%w: the call is not on hold", ErrConflict)
	case hold:
		c.stream.HoldPeer(musicOnHold())
	default:
		c.stream.UnholdPeer()
	}
	c.setVar("call.on_hold", fmt.Sprint(hold))
	return nil
}

// holdSignaler is a dialog that can tell its peer it is held: *sip.Leg,
// and an originated call's outDialog.
type holdSignaler interface {
	Hold(ctx context.Context) error
	Resume(ctx context.Context) error
}

// holdSignalTimeout bounds one hold re-INVITE, glare retries included.
const holdSignalTimeout = 40 * time.Second

// signalHold tells the held party by re-INVITE (sendonly on hold, sendrecv
// on unhold) so its phone shows it. The music already plays: a peer that
// refuses keeps its music hold, and the call gets a warning. Actions in a
// quick row converge on the last one's state.
func (c *Call) signalHold(d holdSignaler) {
	c.ctl.holdMu.Lock()
	defer c.ctl.holdMu.Unlock()
	want := c.stream.PeerHeld()
	if want == c.ctl.holdSignaled {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, holdSignalTimeout)
	defer cancel()
	op, signal := "hold", d.Hold
	if !want {
		op, signal = "resume", d.Resume
	}
	if err := signal(ctx); err != nil {
		if c.ctx.Err() != nil {
			return // the call ended meanwhile
		}
		c.log.Info("api hold: re-INVITE refused", "op", op, "err", err)
		c.warn(fmt.Sprintf("api %s: the re-INVITE failed (the music hold stands): %v", op, err))
		c.update(func(*store.Call) {}) // the warning is on the record now
		return
	}
	c.ctl.holdSignaled = want
}

// apiRecordingStart starts a recording the way recording_start does
// (without its end-on-key and end-on-silence modes, which need the flow's
// attention), on a run of its own.
func (c *Call) apiRecordingStart(a CallAction) error {
	o := &RecordingStartOption{Stereo: a.Stereo, MaxDurationS: a.MaxDurationS, Beep: a.Beep}
	if _, err := compileRecordingStart(o); err != nil {
		return asActionError(err)
	}
	p := recordingPlan{stereo: o.Stereo == nil || *o.Stereo, maxDur: DefaultMaxRecording, beep: o.Beep}
	if o.MaxDurationS > 0 {
		p.maxDur = time.Duration(o.MaxDurationS) * time.Second
	}
	c.ctl.mu.Lock()
	busy := c.ctl.recordingBusy || c.stream.Recording() != nil
	c.ctl.recordingBusy = true
	c.ctl.mu.Unlock()
	if busy {
		return fmt.Errorf("%w: a recording is already running; stop it first", ErrConflict)
	}
	rn := &run{c: c}
	errc := make(chan error, 1)
	if !c.goControl(func() { _, err := rn.startRecording(c.ctx, p); errc <- err }) {
		errc <- ErrCallNotLive
	}
	// Bounded (a beep, a file, a row): waited for even if the client
	// leaves, so a started recording is always tracked.
	err := <-errc
	c.ctl.mu.Lock()
	if err == nil {
		c.ctl.recording = rn // its fields are settled: startRecording returned
	} else {
		c.ctl.recordingBusy = false
	}
	c.ctl.mu.Unlock()
	switch {
	case err == nil:
		return nil
	case c.ctx.Err() != nil, errors.Is(err, ErrCallNotLive):
		return ErrCallNotLive
	}
	return fmt.Errorf("recording: %w", err)
}

func (c *Call) apiRecordingStop(ctx context.Context) error {
	c.ctl.mu.Lock()
	rn := c.ctl.recording
	running := rn != nil && rn.recording != nil
	if running {
		select {
		case <-rn.recording.done: // it ended on its own (max duration)
			running = false
		default:
		}
	}
	if rn != nil {
		c.ctl.recording, c.ctl.recordingBusy = nil, false
	}
	c.ctl.mu.Unlock()
	if !running {
		return fmt.Errorf("%w: no recording started over the API is running", ErrConflict)
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return rn.stopRecording(ctx)
}
