package flow

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/providers"
	"github.com/voxbridge/voxbridge/store"
)

// Agents holds the agent definitions calls can be handed to.
type Agents struct {
	mu   sync.RWMutex
	defs map[string]agent.Definition
	// files maps the ids LoadDir loaded to their file: read-only over the
	// API. uses counts the ai_talk sessions running per id (see inuse.go).
	files map[string]string
	uses  map[string]int
}

// NewAgents returns an empty set of agents.
func NewAgents() *Agents { return &Agents{defs: map[string]agent.Definition{}} }

// Get returns an agent by id.
func (a *Agents) Get(id string) (agent.Definition, bool) {
	if a == nil {
		return agent.Definition{}, false
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	d, ok := a.defs[id]
	return d, ok
}

// Put adds or replaces an agent after validating it.
func (a *Agents) Put(d agent.Definition) error {
	if err := d.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.defs[d.ID] = d
	return nil
}

// IDs lists the agents, sorted.
func (a *Agents) IDs() []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	ids := make([]string, 0, len(a.defs))
	for id := range a.defs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// LoadDir loads every agent file (*.json, *.yaml, *.yml) in dir; one bad
// file refuses the whole load.
func (a *Agents) LoadDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("agents dir: %w", err)
	}
	loaded := map[string]agent.Definition{}
	paths := map[string]string{}
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".json" && ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		d, err := agent.LoadDefinition(path)
		if err != nil {
			return nil, err
		}
		if d.ID == "" {
			d.ID = strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))
		}
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if _, dup := loaded[d.ID]; dup {
			return nil, fmt.Errorf("%s: agent id %q defined twice", path, d.ID)
		}
		loaded[d.ID] = d
		paths[d.ID] = path
	}
	a.mu.Lock()
	maps.Copy(a.defs, loaded)
	a.pinFiles(paths)
	a.mu.Unlock()
	ids := make([]string, 0, len(loaded))
	for id := range loaded {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// AITalkOption hands the call to an agent until it ends the conversation,
// transfers or the caller hangs up.
type AITalkOption struct {
	AgentID      string            `json:"agent_id"`
	Greeting     string            `json:"greeting,omitempty"`  // replaces the agent's starting message
	Variables    map[string]string `json:"variables,omitempty"` // more {{variables}} for the prompt (values may use ${...})
	MaxDurationS int               `json:"max_duration_s,omitempty"`
	// FallbackTargetID runs when the agent's providers fail (after the
	// caller heard an apology); without it the flow goes on with the next
	// action.
	FallbackTargetID string `json:"fallback_target_id,omitempty"`
}

func init() { actionTypes["ai_talk"] = define(compileAITalk) }

func compileAITalk(o *AITalkOption) (step, error) {
	if o.AgentID == "" {
		return step{}, badField("agent_id", "required")
	}
	if o.MaxDurationS < 0 || o.MaxDurationS > 24*3600 {
		return step{}, badField("max_duration_s", "must be between 0 and 86400")
	}
	// The conversation's own limits bound it, not the action timeout.
	st := seq(-1, nil)
	if o.FallbackTargetID != "" {
		st.jumps = []string{o.FallbackTargetID}
	}
	st.exec = func(ctx context.Context, r *run) (string, error) {
		failed, err := r.c.aiTalk(ctx, o, o.FallbackTargetID != "" || r.hasNext())
		if failed {
			return o.FallbackTargetID, err
		}
		return "", err
	}
	return st, nil
}

// hasNext reports whether the flow does more than hang up after the
// current action. When all that follows is a hangup, the agent's own
// goodbye and hangup end the call the same way, only politely.
func (r *run) hasNext() bool {
	p := r.current
	if p == nil || r.depth > 1 {
		return true
	}
	next := p.successor(r.currentIndex)
	if next >= len(p.steps) {
		return p.flow.OnCompleteFlowID != ""
	}
	return p.steps[next].action.Type != "hangup"
}

// aiTalk runs one agent session on the call and leaves its results in
// agent.* variables. failed reports that the agent could not run or its
// providers failed: the caller has heard an apology, and the flow goes to
// the action's fallback. handBack: the flow has somewhere to go after a
// failure; else the agent says its goodbye and hangs up itself, as
// nothing would follow.
func (c *Call) aiTalk(ctx context.Context, o *AITalkOption, handBack bool) (failed bool, err error) {
	if !c.answered.Load() {
		return false, errNotAnswered
	}
	id := c.expand(o.AgentID)
	def, ok := c.ct.cfg.Agents.Get(id)
	if !ok {
		return true, c.agentUnavailable(ctx, fmt.Errorf("agent %q not found", id))
	}
	defer c.ct.cfg.Agents.use(id)()
	p, err := c.ct.providersFor(def)
	if err != nil {
		return true, c.agentUnavailable(ctx, fmt.Errorf("agent %s: providers: %w", id, err))
	}
	vars := c.vars()
	for k, v := range o.Variables {
		vars[k] = c.expand(v)
	}
	events := make(chan agent.Event, 256)
	// The session numbers its turns from 0; the call's numbering is shared
	// with earlier sessions and a live transcription.
	turnIdx := &agentTurns{c: c}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.recordAgentEvents(events) }()
	opt := agent.Options{
		Variables:   vars,
		Greeting:    c.expand(o.Greeting),
		MaxDuration: time.Duration(o.MaxDurationS) * time.Second,
		Logger:      c.log.With("agent_id", id),
		// After a provider failure and its apology the flow decides what
		// comes next (fallback_target_id, or the next action).
		ReturnOnFailure: handBack,
		OnEvent: func(e agent.Event) {
			// Turn and Latency are the event's own copies: renumbered here,
			// in the session's order, so indexes follow the conversation.
			if e.Turn != nil {
				e.Turn.Index = turnIdx.index(e.Turn.Index)
			}
			if e.Latency != nil {
				e.Latency.Turn = turnIdx.index(e.Latency.Turn)
			}
			select {
			case events <- e:
			default: // the record falls behind rather than the conversation
			}
		},
	}
	sess, err := agent.NewSession(def, p, &agentCall{c: c}, opt)
	if err != nil {
		close(events)
		wg.Wait()
		return true, c.agentUnavailable(ctx, fmt.Errorf("agent %s: %w", id, err))
	}
	c.setVar("agent.id", id)
	res, runErr := sess.Run(ctx)
	if res.Reason == agent.EndCanceled {
		select {
		case <-c.dlg.Done(): // the call's context ends with the caller's BYE
			res.Reason = agent.EndCallerHangup
		default:
		}
	}
	close(events)
	wg.Wait()
	for i := range res.Transcript {
		res.Transcript[i].Index = turnIdx.index(res.Transcript[i].Index)
	}
	for i := range res.Latency {
		res.Latency[i].Turn = turnIdx.index(res.Latency[i].Turn)
	}
	c.keepAgentResult(res)
	c.mu.Lock()
	pb := c.pendingBridge
	c.pendingBridge = nil
	c.mu.Unlock()
	if pb != nil {
		if res.Reason != agent.EndTransfer || ctx.Err() != nil {
			pb.b.end(store.ReasonNormal)
		} else {
			c.stream.Flush()
			c.log.Info("agent transfer: bridging", "target", res.TransferredTo)
			return false, c.bridge(ctx, pb.b, pb.p)
		}
	}
	if runErr != nil && ctx.Err() == nil {
		return true, c.agentUnavailable(ctx, fmt.Errorf("agent %s: %w", id, runErr))
	}
	// The failure is on the record (a warning and agent.failed_provider);
	// the action itself did what it should.
	return res.Reason == agent.EndProviderFailure, nil
}

// agentUnavailable is an ai_talk that could not start a conversation: the
// caller hears the apology built into the binary rather than silence, and
// err goes on the record as the action's error.
func (c *Call) agentUnavailable(ctx context.Context, err error) error {
	c.log.Error("ai_talk: no conversation", "err", err)
	if perr := c.play(ctx, agent.BuiltinApology()); perr != nil && ctx.Err() == nil {
		c.log.Warn("ai_talk: apology not played", "err", perr)
	}
	return err
}

// keepAgentResult stores the final transcript and latency rows and sets the
// agent.* variables the flow's next actions may use.
func (c *Call) keepAgentResult(res agent.Result) {
	for _, t := range res.Transcript {
		c.putTurn(t)
	}
	for _, l := range res.Latency {
		c.putLatency(l)
	}
	c.setVar("agent.reason", string(res.Reason))
	if res.TransferredTo != "" {
		c.setVar("agent.transferred_to", res.TransferredTo)
	}
	if res.Failure != nil {
		c.setVar("agent.failed_provider", res.Failure.Provider)
		c.warn("agent provider failed: " + res.Failure.Error())
	}
	for k, v := range res.Variables {
		c.setVar(k, v)
	}
	if s := res.Summary; s.Turns > 0 {
		c.setVar("agent.voice_to_voice_p50_ms", strconv.FormatInt(s.VoiceToVoiceP50.Milliseconds(), 10))
		c.setVar("agent.voice_to_voice_p95_ms", strconv.FormatInt(s.VoiceToVoiceP95.Milliseconds(), 10))
	}
	if a := res.Analysis; a != nil {
		c.setVar("agent.summary", a.Summary)
		if a.Success != nil {
			c.setVar("agent.success", strconv.FormatBool(*a.Success))
		}
		for k, v := range webhookVars(a.Fields) {
			c.setVar("agent."+k, v)
		}
	}
}

// recordAgentEvents stores final turns and latency rows as they happen and
// publishes the live ones.
func (c *Call) recordAgentEvents(events <-chan agent.Event) {
	for e := range events {
		switch e.Type {
		case agent.EventPartial:
			c.publish(EventTranscriptPart, map[string]string{"role": agent.RoleUser, "text": e.Text})
		case agent.EventTurn:
			if e.Turn != nil && e.Turn.Final {
				c.putTurn(*e.Turn)
				c.publish(EventTranscriptFinal, e.Turn)
			}
		case agent.EventLatency:
			if e.Latency != nil {
				c.putLatency(*e.Latency)
				c.publish(EventAgentTurn, e.Latency)
			}
		}
	}
}

func (c *Call) putTurn(t agent.Turn) {
	tools, _ := json.Marshal(t.ToolCalls)
	row := store.TranscriptTurn{CallID: c.ID(), Index: t.Index, Role: t.Role, Kind: t.Kind, Text: t.Text,
		Interrupted: t.Interrupted, ToolCalls: tools}
	if !t.Start.IsZero() {
		s := t.Start.UTC()
		row.TMStart = &s
	}
	if !t.End.IsZero() {
		e := t.End.UTC()
		row.TMEnd = &e
	}
	c.ct.cfg.Store.QueueTranscriptTurn(&row)
}

func (c *Call) putLatency(l agent.TurnLatency) {
	b, err := json.Marshal(l)
	if err != nil {
		c.log.Error("store turn latency", "err", err)
		return
	}
	c.ct.cfg.Store.QueueTurnLatency(c.ID(), l.Turn, b)
}

// providersFor builds the provider clients an agent needs.
func (ct *Controller) providersFor(def agent.Definition) (agent.Providers, error) {
	if ct.cfg.NewProviders != nil {
		return ct.cfg.NewProviders(def)
	}
	return BuildProviders(def)
}

// BuildProviders makes the clients an agent's definition names.
func BuildProviders(def agent.Definition) (agent.Providers, error) {
	var p agent.Providers
	var err error
	build := func(cfg *agent.ProviderConfig, f func(agent.ProviderConfig) error) {
		if err == nil && cfg != nil {
			err = f(*cfg)
		}
	}
	build(def.STT, func(c agent.ProviderConfig) (e error) { p.STT, e = providers.NewSTT(c); return })
	build(def.LLM, func(c agent.ProviderConfig) (e error) { p.LLM, e = providers.NewLLM(c); return })
	build(def.TTS, func(c agent.ProviderConfig) (e error) { p.TTS, e = providers.NewTTS(c); return })
	build(def.Realtime, func(c agent.ProviderConfig) (e error) { p.Realtime, e = providers.NewRealtime(c); return })
	return p, err
}

// agentCall is the agent's view of a call.
type agentCall struct{ c *Call }

func (a *agentCall) Frames() <-chan []int16 { return a.c.stream.Frames() }

func (a *agentCall) EnqueueStarted(pcm []int16) (<-chan struct{}, <-chan time.Time) {
	return a.c.stream.EnqueueStarted(pcm)
}

func (a *agentCall) Flush() { a.c.stream.Flush() }

func (a *agentCall) SendDTMF(digits string) error {
	digits = strings.ToUpper(digits)
	if err := checkDigits(digits); err != nil {
		return err
	}
	// Sent in the background: the session's loop must not block.
	a.c.wg.Add(1)
	go func() {
		defer a.c.wg.Done()
		if err := a.c.sendDigits(a.c.ctx, digits, 100*time.Millisecond, 100*time.Millisecond); err != nil && a.c.ctx.Err() == nil {
			a.c.log.Warn("agent dtmf", "err", err)
		}
	}()
	return nil
}

func (a *agentCall) Digits() <-chan rune { return a.c.digits }

func (a *agentCall) Hangup(reason string) error {
	return a.c.hangup(store.ReasonNormal)
}

// Transfer rings target; when it answers, the conversation ends and the
// caller is bridged to it. Warm is the flow's warm transfer: the caller
// hears music on hold while it rings, and the target hears who is being
// transferred (in the agent's voice) first. The agent only offers targets
// its definition allows.
func (a *agentCall) Transfer(ctx context.Context, t agent.TransferRequest) error {
	c := a.c
	warm := t.Warm
	dst, err := c.ct.destinationOf(ctx, t.Target)
	if err != nil {
		return err
	}
	// The operator listed the target in the agent's definition: it may use
	// a trunk whoever the caller is.
	p := connectPlan{dests: []ConnectDestination{dst}, ring: RingAll, timeout: DefaultRingTimeout, relay: true, system: true}
	// The B leg outlives this tool call, so it dials on the call's context.
	won, derr := c.transferLeg(ctx, c.ctx, p, warm, a.announcement(warm, t.Summary))
	if won == nil {
		return derr
	}
	c.mu.Lock()
	c.pendingBridge = &pendingBridge{b: won, p: p}
	c.mu.Unlock()
	return nil
}

// agentAnnouncement is what a warm transfer's target hears first when the
// model wrote no summary.
const agentAnnouncement = "Transferred call from ${call.from_user}."

// VarTransferSummary is the summary the agent gave a warm transfer's target.
const VarTransferSummary = "transfer.summary"

// announcement is a warm transfer's announcement in the agent's voice: the
// model's summary, else agentAnnouncement. nil when the transfer is blind
// or the agent has no voice of its own (a speech-to-speech agent).
func (a *agentCall) announcement(warm bool, summary string) *TalkOption {
	id, _ := a.c.getVar("agent.id")
	if def, ok := a.c.ct.cfg.Agents.Get(id); !warm || !ok || def.TTS == nil {
		return nil
	}
	if summary == "" {
		return &TalkOption{Text: agentAnnouncement, AgentID: id}
	}
	// Spoken through a variable: expansion is one pass, so whatever the
	// model wrote is said as written, never expanded.
	a.c.setVar(VarTransferSummary, summary)
	return &TalkOption{Text: "${" + VarTransferSummary + "}", AgentID: id}
}

// pendingBridge is a transfer target that answered while the agent talked;
// ai_talk bridges the caller to it once the conversation has ended.
type pendingBridge struct {
	b *bLeg
	p connectPlan
}

func (a *agentCall) SetVariable(key, value string) { a.c.setVar(key, value) }
