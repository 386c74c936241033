package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voxbridge/voxbridge/media/vad"
)

// Call is what a session needs from a live call; flow implements it over the
// call's media stream and SIP legs. Every method but Hangup and Transfer is
// called from the session's loop and must not block.
type Call interface {
	// Frames delivers the caller's audio, 20 ms per frame; closed when the
	// call's media ends.
	Frames() <-chan []int16
	// EnqueueStarted queues agent audio for playout. done closes when the
	// chunk has been sent, flushed, or the call ended; started delivers
	// (once, buffered) the wall time the first RTP packet carrying the
	// chunk was sent, and never fires for a chunk flushed before that.
	EnqueueStarted(pcm []int16) (done <-chan struct{}, started <-chan time.Time)
	// Flush drops all queued agent audio at once (barge-in).
	Flush()
	// SendDTMF sends digits to the far end (RFC 4733).
	SendDTMF(digits string) error
	// Digits delivers keys the caller pressed.
	Digits() <-chan rune
	// Hangup ends the call (BYE) with one of the EndReason values.
	Hangup(reason string) error
	// Transfer hands the call over as t asks and returns once that
	// succeeded or failed.
	Transfer(ctx context.Context, t TransferRequest) error
	// SetVariable stores a call variable for the flow's later actions.
	SetVariable(key, value string)
}

// Providers are the clients a session uses. A pipeline session needs STT,
// LLM and TTS; a realtime session needs Realtime (and uses TTS, when set,
// for the greeting and canned phrases). LLM also serves post-call analysis.
type Providers struct {
	STT      STT
	LLM      LLM
	TTS      TTS
	Realtime Realtime
}

// UtteranceSTT is implemented by recognizers that transcribe whole
// utterances rather than a continuous stream (OpenAI's
// /audio/transcriptions). The session writes them only the caller's speech
// as cut by the local VAD, with prerollFrames of audio before each start,
// and Finalizes each utterance; continuous recognizers get every frame.
type UtteranceSTT interface {
	STT
	UtteranceBased() bool
}

// prerollFrames of audio before the VAD's start go with an utterance: the
// detector confirms speech a few frames after it began.
const prerollFrames = 15

// Options are per-call settings of a session.
type Options struct {
	// Variables fill {{name}} in the prompt and messages.
	Variables map[string]string
	// Greeting, when set, replaces the definition's starting message.
	Greeting string
	// MaxDuration, when > 0, replaces the definition's max_duration_s.
	MaxDuration time.Duration
	// OnEvent receives live events from the session's goroutine; it must
	// return quickly (hand them to a buffered channel or a bus).
	OnEvent func(Event)
	// Cache holds rendered phrases across sessions (nil: DefaultCache).
	Cache *AudioCache
	// HTTPClient runs HTTP tools (nil: http.DefaultClient).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Now is the session's clock (nil: time.Now). Tests share a fake clock
	// with their fake call so latency rows are exact.
	Now func() time.Time
	// Retries is how many times a failed provider is retried before the
	// fallback (default 2, so three attempts; -1 for none). For the LLM it
	// replaces the default of 1 but not the definition's llm.retries.
	Retries int
	// LLMTimeout bounds the wait for each next LLM event, and for any
	// provider's Start (default 10 s); it also caps the default wait for
	// the first token (the definition's llm.first_token_timeout_ms, when
	// set, is used as is). TTSTimeout bounds the
	// wait for the first audio after text was flushed (default 4 s; not
	// retried: the wait filler, then the apology, cover the silence).
	// STTFinalTimeout bounds the wait for a final transcript after the
	// caller stopped (default 2 s); a recognizer that misses it with nothing
	// at all for a turn is restarted, and counts as failing.
	LLMTimeout, TTSTimeout, STTFinalTimeout time.Duration
	// SkipAnalysis leaves the post-call analysis to the caller of Analyze.
	SkipAnalysis bool
	// ReturnOnFailure: after a provider failure and its apology, Run
	// returns (Reason provider_failure) instead of saying goodbye and
	// hanging up, so the caller's flow decides where the call goes next.
	// The definition's fallback.transfer_to, when set, still runs first.
	ReturnOnFailure bool
	// VAD tunes the local voice activity detector.
	VAD vad.Config
}

// EndReason says why a conversation ended.
type EndReason string

const (
	EndCallerHangup    EndReason = "caller_hangup"    // the call's media ended
	EndCanceled        EndReason = "canceled"         // Run's context ended
	EndAgentHangup     EndReason = "agent_hangup"     // end_call tool or a DTMF rule
	EndTransfer        EndReason = "transfer"         // handed to another party
	EndSilenceTimeout  EndReason = "silence_timeout"  // the caller said nothing for too long
	EndMaxDuration     EndReason = "max_duration"     // the call hit its time limit
	EndProviderFailure EndReason = "provider_failure" // a provider failed for good (see Result.Failure)
)

// ProviderFailure records a provider that failed after its retries.
type ProviderFailure struct {
	Provider string    `json:"provider"` // stt, llm, tts or realtime
	Kind     string    `json:"kind"`     // start, error, timeout or closed
	Attempts int       `json:"attempts"`
	Err      string    `json:"error"`
	At       time.Time `json:"at"`
}

func (f *ProviderFailure) Error() string {
	return fmt.Sprintf("%s %s after %d attempts: %s", f.Provider, f.Kind, f.Attempts, f.Err)
}

// Turn is one entry of the transcript.
type Turn struct {
	Index       int              `json:"index"`
	Role        string           `json:"role"` // user or assistant
	Kind        string           `json:"kind"` // see the Kind constants
	Text        string           `json:"text"`
	Start       time.Time        `json:"start,omitzero"`
	End         time.Time        `json:"end,omitzero"`
	Interrupted bool             `json:"interrupted,omitempty"`
	ToolCalls   []ToolCallRecord `json:"tool_calls,omitempty"`
	// Final is false while the turn may still change (published live).
	Final bool `json:"final"`
}

// Kinds of turns.
const (
	KindSpeech   = "speech"   // the caller spoke
	KindDTMF     = "dtmf"     // the caller pressed keys
	KindGreeting = "greeting" // the starting message
	KindReply    = "reply"    // the model's reply
	KindFiller   = "filler"   // said while a tool ran
	KindReminder = "reminder" // the idle reminder
	KindGoodbye  = "goodbye"  // said before hanging up
	KindApology  = "apology"  // said after a provider failure
)

// EventType says what an Event reports.
type EventType string

const (
	EventState    EventType = "state"     // State changed
	EventPartial  EventType = "partial"   // Text: the caller's words so far in this turn
	EventTurn     EventType = "turn"      // Turn added or updated (upsert by Turn.Index)
	EventLatency  EventType = "latency"   // Latency of an agent turn
	EventToolCall EventType = "tool_call" // Tool finished
	EventBargeIn  EventType = "barge_in"  // caller speech over the agent (Text: "pause" at its onset, "flush" once long enough to interrupt, "resume" or "confirmed")
	EventFailure  EventType = "provider_failure"
)

// Event is one live update from a session.
type Event struct {
	Type    EventType        `json:"type"`
	At      time.Time        `json:"at"`
	State   State            `json:"state,omitempty"`
	Text    string           `json:"text,omitempty"`
	Turn    *Turn            `json:"turn,omitempty"`
	Latency *TurnLatency     `json:"latency,omitempty"`
	Tool    *ToolCallRecord  `json:"tool,omitempty"`
	Failure *ProviderFailure `json:"failure,omitempty"`
}

// Result is what a conversation produced.
type Result struct {
	Reason EndReason `json:"reason"`
	// TransferredTo is the target the call went to (Reason transfer).
	TransferredTo string           `json:"transferred_to,omitempty"`
	Failure       *ProviderFailure `json:"failure,omitempty"`
	Transcript    []Turn           `json:"transcript"`
	// Messages is the conversation as the model saw it.
	Messages  []Message         `json:"messages"`
	Latency   []TurnLatency     `json:"latency"`
	Summary   LatencySummary    `json:"latency_summary"`
	Variables map[string]string `json:"variables,omitempty"` // set by set_variable
	Analysis  *Analysis         `json:"analysis,omitempty"`
	Start     time.Time         `json:"start"`
	End       time.Time         `json:"end"`
}

// Session runs one conversation on one call. Create it with NewSession and
// call Run once.
type Session struct {
	def     Definition // with defaults
	p       Providers
	call    Call
	opt     Options
	log     *slog.Logger
	now     func() time.Time
	cache   *AudioCache
	http    *http.Client
	retries int
	vars    map[string]string
	// The LLM's own bounds (from the definition): the wait for the first
	// token of an attempt, and its retries.
	llmFirstToken time.Duration
	llmRetries    int

	ran    atomic.Bool
	ctx    context.Context // ends when Run returns
	cancel context.CancelFunc
	inbox  chan func()
	wg     sync.WaitGroup

	// Everything below belongs to the loop goroutine.
	vad        *vad.Detector
	utterances bool      // the STT takes VAD-cut utterances (UtteranceSTT)
	feeding    bool      // an utterance is being written to it
	preroll    [][]int16 // the last frames before speech, for the next utterance
	frameAt    time.Time // wall time of the last frame
	frames     int64
	segIgnored bool // the current VAD segment is echo or out of turn
	// segStart and segEnd are the last VAD segment's bounds, ignored or
	// not: a transcript that comes with no turn open is timed by them.
	segStart, segEnd time.Time

	state     State
	start     time.Time
	history   []Message
	turns     []Turn
	latency   []TurnLatency
	setVars   map[string]string
	failure   *ProviderFailure
	reason    EndReason
	transfer  string
	done      bool
	nextID    int64
	fillerIdx int

	stt     *sttConn
	rt      *rtSession
	user    *userTurn
	reply   *replyTurn
	queued  *queuedTurn // a caller turn waiting for reply's tools
	barge   *bargeIn
	playing []*speech
	// recentSpeech is what the agent said last, to tell its echo from the
	// caller in transcripts that come late.
	recentSpeech []spokenText
	// agentSince is when the current stretch of agent audio started (for
	// the echo guard); zero when the agent is silent.
	agentSince time.Time
	ending     *ending
	// apology is the apology the TTS is rendering, replaced by the
	// built-in one unless it has audio by apologyAt.
	apology   *speech
	apologyAt time.Time

	waitingSince time.Time // since when we wait for the caller (idle and silence timers)
	reminders    int
	lastReminder bool // the agent's last words were an idle reminder
	maxDurAt     time.Time
	dtmfBuf      strings.Builder
	dtmfAt       time.Time
}

// NewSession prepares a conversation; nothing runs until Run.
func NewSession(def Definition, p Providers, call Call, opt Options) (*Session, error) {
	if call == nil {
		return nil, errors.New("agent: session needs a call")
	}
	if err := def.Validate(); err != nil {
		return nil, err
	}
	if def.Realtime != nil {
		if p.Realtime == nil {
			return nil, errors.New("agent: the definition uses a realtime model but no Realtime provider was given")
		}
	} else if p.STT == nil || p.LLM == nil || p.TTS == nil {
		return nil, errors.New("agent: a pipeline session needs STT, LLM and TTS providers")
	}
	s := &Session{
		def:     def.WithDefaults(),
		p:       p,
		call:    call,
		opt:     opt,
		log:     opt.Logger,
		now:     opt.Now,
		cache:   opt.Cache,
		http:    opt.HTTPClient,
		retries: opt.Retries,
		inbox:   make(chan func(), 256),
		setVars: map[string]string{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("agent", def.ID)
	if s.now == nil {
		s.now = time.Now
	}
	if s.cache == nil {
		s.cache = DefaultCache
	}
	if s.http == nil {
		s.http = http.DefaultClient
	}
	switch {
	case s.retries < 0:
		s.retries = 0
	case s.retries == 0:
		s.retries = 2
	}
	if s.opt.LLMTimeout <= 0 {
		s.opt.LLMTimeout = 10 * time.Second
	}
	if s.opt.TTSTimeout <= 0 {
		s.opt.TTSTimeout = 4 * time.Second
	}
	if s.opt.STTFinalTimeout <= 0 {
		s.opt.STTFinalTimeout = 2 * time.Second
	}
	s.llmFirstToken = min(DefaultLLMFirstToken, s.opt.LLMTimeout)
	s.llmRetries = DefaultLLMRetries
	if opt.Retries != 0 {
		s.llmRetries = s.retries
	}
	if c := def.LLM; c != nil {
		if c.FirstTokenTimeoutMS > 0 {
			s.llmFirstToken = time.Duration(c.FirstTokenTimeoutMS) * time.Millisecond
		}
		if c.Retries != 0 {
			s.llmRetries = max(0, c.Retries)
		}
	}
	s.vars = maps.Clone(opt.Variables)
	if s.vars == nil {
		s.vars = map[string]string{}
	}
	s.vad = vad.New(opt.VAD)
	if u, ok := p.STT.(UtteranceSTT); ok && u.UtteranceBased() {
		s.utterances = true
	}
	return s, nil
}

// Run holds the conversation until it ends (end_call, transfer, timeout,
// provider failure, the caller hanging up, or ctx) and returns its record.
// The error is non-nil only when the session could not run at all; a
// provider failure is reported in Result.Failure. Every goroutine the
// session started has ended when Run returns.
func (s *Session) Run(ctx context.Context) (Result, error) {
	if !s.ran.CompareAndSwap(false, true) {
		return Result{}, errors.New("agent: Run called twice")
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.start = s.now()
	s.waitingSince = s.start
	maxDur := s.opt.MaxDuration
	if maxDur <= 0 && s.def.MaxDurationS > 0 {
		maxDur = time.Duration(s.def.MaxDurationS) * time.Second
	}
	if maxDur > 0 {
		s.maxDurAt = s.start.Add(maxDur)
	}

	prompt, missing := s.def.BuildSystemPrompt(s.vars)
	if len(missing) > 0 {
		s.log.Warn("agent prompt variables without a value", "names", missing)
	}
	greeting := s.opt.Greeting
	if greeting == "" {
		greeting = s.def.StartingMessage
	}
	greeting, _ = Render(greeting, s.vars)

	if s.def.Realtime != nil {
		s.startRealtime(prompt, greeting)
	} else {
		s.history = []Message{{Role: RoleSystem, Content: prompt}}
		s.stt = s.startSTT()
		if greeting != "" {
			s.say(KindGreeting, greeting)
		}
	}
	// The apology must be playable when a provider has just failed, so it
	// is rendered now while they still work.
	if s.p.TTS != nil {
		s.prerender(s.def.Fallback.Apology)
		// So is the wait filler: it covers a TTS that stalls on a reply.
		if s.rt == nil && s.def.FillerAfterMS >= 0 {
			s.prerender(s.waitFillerText())
		}
	}
	s.updateState()

	s.loop(ctx)

	s.cancel()
	s.wg.Wait()
	return s.result(ctx), nil
}

func (s *Session) result(ctx context.Context) Result {
	end := s.now()
	for i := range s.turns {
		if !s.turns[i].Final {
			s.turns[i].Final = true
			if s.turns[i].End.IsZero() {
				s.turns[i].End = end
			}
		}
	}
	res := Result{
		Reason:        s.reason,
		TransferredTo: s.transfer,
		Failure:       s.failure,
		Transcript:    slices.Clone(s.turns),
		Messages:      slices.Clone(s.history),
		Latency:       slices.Clone(s.latency),
		Summary:       SummarizeLatency(s.latency),
		Start:         s.start,
		End:           end,
	}
	if len(s.setVars) > 0 {
		res.Variables = maps.Clone(s.setVars)
	}
	if pc := s.def.PostCall; pc != nil && !s.opt.SkipAnalysis && s.p.LLM != nil && len(res.Transcript) > 0 {
		// The call is over, and its context with it: the analysis gets its
		// own bounded one.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		a, err := Analyze(actx, s.p.LLM, *pc, res.Transcript)
		cancel()
		if err != nil {
			s.log.Warn("post-call analysis failed", "err", err)
			a = &Analysis{Error: err.Error()}
		}
		res.Analysis = a
	}
	return res
}

// post hands fn to the loop; it gives up when ctx (a worker's) ends, so a
// worker never outlives the session waiting on a loop that has stopped.
func (s *Session) post(ctx context.Context, fn func()) bool {
	select {
	case s.inbox <- fn:
		return true
	case <-ctx.Done():
		return false
	}
}

// goWorker runs fn on a goroutine owned by the session.
func (s *Session) goWorker(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

func (s *Session) newID() int64 {
	s.nextID++
	return s.nextID
}

func (s *Session) emit(ev Event) {
	if s.opt.OnEvent == nil {
		return
	}
	if ev.At.IsZero() {
		ev.At = s.now()
	}
	s.opt.OnEvent(ev)
}

// loop is the session's only mutator of conversation state. It always
// drains the call's frames: nothing it calls may block.
func (s *Session) loop(ctx context.Context) {
	frames := s.call.Frames()
	digits := s.call.Digits()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for !s.done {
		s.armTimer(timer)
		startedCh, doneCh := s.playoutChans()
		select {
		case <-ctx.Done():
			s.stop(EndCanceled)
			return
		case f, ok := <-frames:
			if !ok {
				s.stop(EndCallerHangup)
				return
			}
			s.onFrame(f)
		case d, ok := <-digits:
			if !ok {
				digits = nil
				continue
			}
			s.onDigit(d)
		case fn := <-s.inbox:
			fn()
		case t, ok := <-startedCh:
			s.onChunkStarted(t, ok)
		case <-doneCh:
			s.onChunkDone()
		case <-timer.C:
		}
		if !s.done {
			s.checkTimers(s.now())
			s.updateState()
		}
	}
}

// stop ends the loop because the call or the context ended under us.
func (s *Session) stop(reason EndReason) {
	if s.reason == "" {
		if s.ending != nil && s.ending.hangingUp {
			// Our own BYE went out and the call ended: that is our reason.
			reason = s.ending.reason
		}
		s.reason = reason
	}
	s.cancelReply()
	s.setState(StateEnded)
	s.done = true
}

// finish ends the conversation with reason once our last action is done.
func (s *Session) finish(reason EndReason) {
	if s.reason == "" {
		s.reason = reason
	}
	if s.reply != nil {
		s.closeReply(s.reply, false)
	}
	s.setState(StateEnded)
	s.done = true
}

// onFrame runs for every inbound frame: time it, feed the STT (or realtime
// model) and the VAD, and act on speech boundaries.
func (s *Session) onFrame(f []int16) {
	now := s.now()
	// A frame arrived when it was read or, if the loop is reading a backlog,
	// 20 ms after the one before: the earlier of the two is exact once any
	// backlog is drained. A long gap (no audio, or a stall) resynchronises.
	if next := s.frameAt.Add(vad.FrameDuration); s.frames > 0 && now.Sub(next) <= 200*time.Millisecond {
		s.frameAt = now
		if next.Before(now) {
			s.frameAt = next
		}
	} else {
		s.frameAt = now
	}
	s.frames++
	if s.stt != nil && !s.utterances {
		s.stt.write(f)
	}
	if s.rt != nil {
		s.rt.write(f)
	}
	ev := s.vad.Process(f)
	if s.utterances {
		// The frame goes out before the boundary is handled, so an
		// utterance's last frame precedes its Finalize.
		if s.feeding {
			s.stt.write(f)
		} else {
			s.preroll = append(s.preroll, f)
			if len(s.preroll) > prerollFrames {
				s.preroll = slices.Delete(s.preroll, 0, 1)
			}
		}
	}
	at := s.frameAt.Add(-(s.vad.Elapsed() - ev.At))
	switch ev.Type {
	case vad.SpeechStart:
		s.segStart, s.segEnd = at, time.Time{}
		s.onSpeechStart(at)
		// Segments set aside for turn-taking (the echo guard, an ending)
		// are transcribed all the same: the caller may be talking, and
		// their words are judged when they come (onLateFinal).
		if s.utterances && s.failure == nil {
			for _, p := range s.preroll {
				s.stt.write(p)
			}
			s.feeding = true
		}
		s.preroll = s.preroll[:0]
	case vad.SpeechEnd:
		s.segEnd = at
		if s.feeding {
			s.stt.finalize()
		}
		s.onSpeechEnd(at)
		s.feeding = false
	}
	if s.vad.Speaking() {
		s.onSpeaking(s.frameAt)
	}
}

// deadlines returns every pending timer of the loop.
func (s *Session) deadlines() []time.Time {
	d := []time.Time{s.maxDurAt, s.dtmfAt, s.apologyAt}
	if u := s.user; u != nil {
		d = append(d, u.deadline(s))
	}
	d = append(d, s.resumeDeadline())
	if r := s.reply; r != nil {
		d = append(d, r.fillerAt)
	}
	d = append(d, s.idleDeadlines()...)
	return d
}

func (s *Session) armTimer(t *time.Timer) {
	var next time.Time
	for _, d := range s.deadlines() {
		if !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	if next.IsZero() {
		t.Reset(time.Hour)
		return
	}
	// At least a millisecond: a fake clock that moves in frame steps must
	// not make this spin.
	t.Reset(max(time.Millisecond, next.Sub(s.now())))
}

func due(deadline, now time.Time) bool { return !deadline.IsZero() && !now.Before(deadline) }

func (s *Session) checkTimers(now time.Time) {
	if s.ending == nil && due(s.maxDurAt, now) {
		s.maxDurAt = time.Time{}
		s.log.Info("agent max duration reached")
		s.endCall(EndMaxDuration, s.def.GoodbyeMessage, true)
		return
	}
	if due(s.dtmfAt, now) {
		s.flushDigits()
	}
	if r := s.reply; r != nil && due(r.fillerAt, now) {
		s.onFillerDue(r)
	}
	if due(s.apologyAt, now) {
		if sp := s.apology; sp != nil && len(sp.pcm) == 0 {
			s.useBuiltinApology(sp)
		}
		s.apology, s.apologyAt = nil, time.Time{}
	}
	if due(s.resumeDeadline(), now) {
		s.maybeResume()
	}
	s.checkEndpoint(now)
	s.checkIdle(now)
}

// idleDeadlines are the idle reminder and silence timeout, which run only
// while we wait for the caller.
func (s *Session) idleDeadlines() []time.Time {
	if !s.waitingForCaller() {
		return nil
	}
	var d []time.Time
	if s.def.IdleReminderS > 0 {
		d = append(d, s.waitingSince.Add(time.Duration(s.def.IdleReminderS*(s.reminders+1))*time.Second))
	}
	if s.def.SilenceTimeoutS > 0 {
		d = append(d, s.waitingSince.Add(time.Duration(s.def.SilenceTimeoutS)*time.Second))
	}
	return d
}

func (s *Session) waitingForCaller() bool {
	return s.ending == nil && s.user == nil && s.reply == nil && len(s.playing) == 0 && !s.vad.Speaking() &&
		s.dtmfBuf.Len() == 0 && (s.rt == nil || !s.rt.responding)
}

func (s *Session) checkIdle(now time.Time) {
	if !s.waitingForCaller() {
		return
	}
	if s.def.SilenceTimeoutS > 0 && due(s.waitingSince.Add(time.Duration(s.def.SilenceTimeoutS)*time.Second), now) {
		s.log.Info("agent silence timeout")
		s.endCall(EndSilenceTimeout, s.def.GoodbyeMessage, false)
		return
	}
	if s.def.IdleReminderS > 0 && due(s.waitingSince.Add(time.Duration(s.def.IdleReminderS*(s.reminders+1))*time.Second), now) {
		s.reminders++
		s.say(KindReminder, s.def.IdleReminderText)
	}
}

// callerActive restarts the idle and silence timers.
func (s *Session) callerActive(at time.Time) {
	s.reminders = 0
	s.waitingSince = at
}

func (s *Session) setState(st State) {
	if st == s.state {
		return
	}
	s.log.Debug("agent state", "from", s.state, "to", st)
	s.state = st
	s.emit(Event{Type: EventState, State: st})
}

// updateState derives the turn-taking state from what is in progress.
func (s *Session) updateState() {
	switch {
	case s.done:
		s.setState(StateEnded)
	case s.user != nil && !s.user.tentative && (s.user.speaking || !s.user.committed):
		s.setState(StateCallerSpeaking)
	case s.agentAudible() || s.barge != nil && s.barge.flushed && !s.barge.committed:
		// Paused at the caller's onset, the agent still holds the turn.
		s.setState(StateAgentSpeaking)
	case s.reply != nil || s.ending != nil:
		s.setState(StateThinking)
	default:
		s.setState(StateListening)
	}
}

// ending is the last thing the agent does: say goodbye and hang up, or
// transfer. It runs once all agent audio has played.
type ending struct {
	reason    EndReason
	target    TransferTarget
	summary   string // the model's words for a warm transfer's target
	transfer  bool
	hangingUp bool
	started   bool
	// toolCall, when the transfer came from the model, is where a failed
	// transfer is reported back.
	toolCall *pendingTool
	fallback bool // the transfer is the failure fallback
	// handBack: no hangup; Run returns to its caller (ReturnOnFailure).
	handBack bool
}

// endCall says goodbye (unless text is empty) and hangs up with reason.
// interrupt stops what the agent is saying first.
func (s *Session) endCall(reason EndReason, goodbye string, interrupt bool) {
	if s.ending != nil && s.ending.started {
		return
	}
	if interrupt {
		s.interruptAgent(false)
	}
	s.cancelReply()
	s.dropUserTurn()
	s.ending = &ending{reason: reason}
	if goodbye != "" {
		s.say(KindGoodbye, goodbye)
	}
	s.runEnding()
}

// transferTo hands the call over once the agent has finished speaking.
func (s *Session) transferTo(t TransferTarget, summary string, tool *pendingTool, fallback bool) {
	if s.ending != nil && s.ending.started {
		return
	}
	s.dropUserTurn()
	s.ending = &ending{reason: EndTransfer, target: t, summary: summary, transfer: true, toolCall: tool, fallback: fallback}
	s.runEnding()
}

// runEnding starts the ending's action when nothing is left to play.
func (s *Session) runEnding() {
	e := s.ending
	if e == nil || e.started || len(s.playing) > 0 || s.rt != nil && s.rt.responding {
		return
	}
	e.started = true
	if e.handBack {
		s.finish(e.reason)
		return
	}
	if e.transfer {
		req := TransferRequest{Target: e.target.Target, Warm: e.target.Warm}
		if req.Warm {
			req.Summary = e.summary
		}
		s.goWorker(func() {
			err := s.call.Transfer(s.ctx, req)
			s.post(s.ctx, func() { s.onTransferDone(e, err) })
		})
		return
	}
	e.hangingUp = true
	reason := e.reason
	s.goWorker(func() {
		err := s.call.Hangup(string(reason))
		s.post(s.ctx, func() {
			if err != nil {
				s.log.Warn("agent hangup failed", "err", err)
			}
			s.finish(reason)
		})
	})
}

func (s *Session) onTransferDone(e *ending, err error) {
	if s.ending != e {
		return
	}
	if err == nil {
		s.transfer = e.target.Name
		if e.toolCall != nil {
			s.completeTool(e.toolCall, toolResult(map[string]any{"ok": true, "transferred_to": e.target.Name}), nil)
		}
		s.finish(EndTransfer)
		return
	}
	s.log.Warn("agent transfer failed", "target", e.target.Name, "err", err)
	s.ending = nil
	switch {
	case e.toolCall != nil:
		// The model hears that it failed and tells the caller.
		s.completeTool(e.toolCall, toolError("the transfer to %s failed: %v", e.target.Name, err), err)
	case e.fallback && s.opt.ReturnOnFailure:
		s.handBack()
	case e.fallback:
		s.endCall(EndProviderFailure, s.def.Fallback.Goodbye, false)
	default:
		s.endCall(EndAgentHangup, s.def.GoodbyeMessage, false)
	}
}

// fail handles a provider that failed for good: the apology, then the
// fallback (a transfer, or goodbye and hangup).
func (s *Session) fail(f *ProviderFailure) {
	if s.failure != nil || s.done {
		return
	}
	f.At = s.now()
	s.failure = f
	s.log.Error("agent provider failed", "provider", f.Provider, "kind", f.Kind, "attempts", f.Attempts, "err", f.Err)
	s.emit(Event{Type: EventFailure, Failure: f})
	if s.ending != nil && s.ending.started {
		return
	}
	s.interruptAgent(false)
	s.cancelReply()
	s.dropUserTurn()
	s.ending = nil
	if s.stt != nil && f.Provider != "stt" {
		// Keep listening is pointless now; the call is being wound down.
		s.stt.stop()
	}
	s.apologize(f)
	if name := s.def.Fallback.TransferTo; name != "" {
		if t, ok := s.def.TransferTarget(name); ok {
			s.transferTo(t, "", nil, true)
			return
		}
	}
	if s.opt.ReturnOnFailure {
		s.handBack()
		return
	}
	goodbye := s.def.Fallback.Goodbye
	if f.Provider == "tts" {
		if _, ok := s.cache.Get(s.cacheKey(goodbye)); !ok {
			goodbye = ""
		}
	}
	s.endCall(EndProviderFailure, goodbye, false)
}

// handBack ends the conversation without hanging up once the agent has
// finished speaking: the caller's flow goes on.
func (s *Session) handBack() {
	s.ending = &ending{reason: EndProviderFailure, handBack: true}
	s.runEnding()
}

// apologyWait bounds the silence before the apology: a TTS that has not
// started it by then is passed over for the built-in prompt.
const apologyWait = time.Second

// apologize says the fallback apology so that a failure is never dead air:
// pre-rendered in the agent's voice when it could be, rendered now when the
// TTS still works (the built-in prompt stands in if it fails or is slow),
// else the prompt built into the binary.
func (s *Session) apologize(f *ProviderFailure) {
	text := s.def.Fallback.Apology
	if pcm, ok := s.cache.Get(s.cacheKey(text)); ok {
		s.playCanned(KindApology, text, pcm)
		return
	}
	if f.Provider == "tts" || s.p.TTS == nil {
		s.playCanned(KindApology, BuiltinApologyText, BuiltinApology())
		return
	}
	sp := s.sayWith(KindApology, text, true)
	if sp != nil && !sp.complete {
		s.apology = sp
		s.apologyAt = s.now().Add(apologyWait)
	}
}

// useBuiltinApology replaces an apology the TTS has not voiced with the
// built-in one.
func (s *Session) useBuiltinApology(sp *speech) {
	if s.apology == sp {
		s.apology, s.apologyAt = nil, time.Time{}
	}
	if sp.stopTTS != nil {
		sp.stopTTS()
	}
	if sp.enq > 0 || sp.flushed || !slices.Contains(s.playing, sp) {
		// Some of it was voiced: it stands as it is.
		sp.complete = true
		s.pump()
		return
	}
	sp.pcm, sp.sharedPCM, sp.words, sp.complete = BuiltinApology(), true, nil, true
	sp.text.Reset()
	sp.text.WriteString(BuiltinApologyText)
	if sp.turn >= 0 {
		s.turns[sp.turn].Text = BuiltinApologyText
		s.publishTurn(sp.turn)
	}
	s.log.Info("agent apology: the built-in prompt stands in for the TTS")
	s.pump()
}
