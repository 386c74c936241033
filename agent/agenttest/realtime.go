package agenttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/agent"
)

// RealtimeTurn is one scripted exchange of the fake speech-to-speech model:
// what it transcribes of the caller's next stretch of speech, and how it
// answers (text spoken as TTS-like tones, then tool calls).
type RealtimeTurn struct {
	UserText  string
	Reply     string
	ToolCalls []agent.ToolCall
}

// Realtime is a fake speech-to-speech model with server VAD: each stretch
// of loud caller audio takes the next Turn; it reports speech started and
// stopped, the transcript, then streams the reply AudioAfter later. A tool
// result or CreateResponse makes it speak AfterTool (or Greeting) next.
// Truncate stops the item being sent and is recorded.
type Realtime struct {
	Turns      []RealtimeTurn
	Greeting   string
	AfterTool  []string
	AudioAfter time.Duration
	Voice      TTS // how replies sound

	mu          sync.Mutex
	next        int
	nextAfter   int
	opts        []agent.RealtimeOptions
	truncations []Truncation
	toolResults []ToolResult
}

// Truncation records a Truncate call.
type Truncation struct {
	ItemID string
	Played time.Duration
}

// ToolResult records a SendToolResult call.
type ToolResult struct{ CallID, Output string }

// Options returns the options of every session started.
func (r *Realtime) Options() []agent.RealtimeOptions {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.opts)
}

// Truncations returns every Truncate call.
func (r *Realtime) Truncations() []Truncation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.truncations)
}

// ToolResults returns every tool result sent.
func (r *Realtime) ToolResults() []ToolResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.toolResults)
}

// Start implements agent.Realtime.
func (r *Realtime) Start(ctx context.Context, opt agent.RealtimeOptions) (agent.RealtimeSession, error) {
	r.mu.Lock()
	r.opts = append(r.opts, opt)
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	s := &rtSession{rt: r, ctx: ctx, cancel: cancel, in: make(chan rtIn, 512), events: make(chan agent.RealtimeEvent, 64)}
	go s.run()
	return s, nil
}

type rtIn struct {
	frame    []int16
	respond  string
	tools    []agent.ToolCall
	truncate string
}

type rtSession struct {
	rt     *Realtime
	ctx    context.Context
	cancel context.CancelFunc
	in     chan rtIn
	events chan agent.RealtimeEvent
	items  int
}

func (s *rtSession) put(in rtIn) error {
	select {
	case s.in <- in:
		return nil
	case <-s.ctx.Done():
		return errors.New("fake realtime: closed")
	}
}

func (s *rtSession) WriteAudio(f agent.Frame) error { return s.put(rtIn{frame: f}) }
func (s *rtSession) Events() <-chan agent.RealtimeEvent {
	return s.events
}

func (s *rtSession) SendToolResult(callID, output string) error {
	s.rt.mu.Lock()
	s.rt.toolResults = append(s.rt.toolResults, ToolResult{callID, output})
	reply := ""
	if s.rt.nextAfter < len(s.rt.AfterTool) {
		reply = s.rt.AfterTool[s.rt.nextAfter]
		s.rt.nextAfter++
	}
	s.rt.mu.Unlock()
	if reply == "" {
		return nil
	}
	return s.put(rtIn{respond: reply})
}

func (s *rtSession) Truncate(itemID string, played time.Duration) error {
	s.rt.mu.Lock()
	s.rt.truncations = append(s.rt.truncations, Truncation{itemID, played})
	s.rt.mu.Unlock()
	return s.put(rtIn{truncate: itemID})
}

func (s *rtSession) CreateResponse() error {
	if s.rt.Greeting == "" {
		return nil
	}
	return s.put(rtIn{respond: s.rt.Greeting})
}

func (s *rtSession) Close() error {
	s.cancel()
	return nil
}

func (s *rtSession) emit(ev agent.RealtimeEvent) bool {
	select {
	case s.events <- ev:
		return true
	case <-s.ctx.Done():
		return false
	}
}

func (s *rtSession) run() {
	defer close(s.events)
	var speaking bool
	var quiet time.Duration
	var turn RealtimeTurn
	var have bool
	// A reply is sent in pieces between inputs so a Truncate can stop it.
	var pending []agent.RealtimeEvent
	var pendingAt time.Time
	truncated := map[string]bool{}
	for {
		var in rtIn
		var tick <-chan time.Time
		if len(pending) > 0 {
			tick = time.After(max(0, time.Until(pendingAt)))
		}
		select {
		case <-s.ctx.Done():
			return
		case in = <-s.in:
		case <-tick:
			ev := pending[0]
			pending = pending[1:]
			if ev.ItemID != "" && truncated[ev.ItemID] && (ev.Type == agent.RealtimeAudio || ev.Type == agent.RealtimeAgentText) {
				continue
			}
			if !s.emit(ev) {
				return
			}
			continue
		}
		switch {
		case in.truncate != "":
			truncated[in.truncate] = true
		case in.respond != "":
			pending = append(pending, s.reply(in.respond, nil)...)
			pendingAt = time.Now().Add(s.rt.AudioAfter)
		case in.frame != nil:
			if rms(in.frame) > 300 {
				quiet = 0
				if !speaking {
					speaking = true
					s.rt.mu.Lock()
					have = s.rt.next < len(s.rt.Turns)
					if have {
						turn = s.rt.Turns[s.rt.next]
						s.rt.next++
					}
					s.rt.mu.Unlock()
					if !s.emit(agent.RealtimeEvent{Type: agent.RealtimeSpeechStarted}) {
						return
					}
				}
				continue
			}
			if !speaking {
				continue
			}
			quiet += frameDur
			if quiet < 200*time.Millisecond {
				continue
			}
			speaking = false
			if !s.emit(agent.RealtimeEvent{Type: agent.RealtimeSpeechStopped}) {
				return
			}
			if !have {
				continue
			}
			if !s.emit(agent.RealtimeEvent{Type: agent.RealtimeUserText, Text: turn.UserText}) {
				return
			}
			pending = append(pending, s.reply(turn.Reply, turn.ToolCalls)...)
			pendingAt = time.Now().Add(s.rt.AudioAfter)
		}
	}
}

// reply builds the events of one response.
func (s *rtSession) reply(text string, tools []agent.ToolCall) []agent.RealtimeEvent {
	s.items++
	id := fmt.Sprintf("item_%d", s.items)
	var evs []agent.RealtimeEvent
	if strings.TrimSpace(text) != "" {
		pcm, _ := s.rt.Voice.Render(text)
		n := samples(100 * time.Millisecond)
		for i := 0; i < len(pcm); i += n {
			evs = append(evs, agent.RealtimeEvent{Type: agent.RealtimeAudio, ItemID: id, Audio: pcm[i:min(i+n, len(pcm))]})
		}
		evs = append(evs, agent.RealtimeEvent{Type: agent.RealtimeAgentText, ItemID: id, Text: text})
	}
	for _, tc := range tools {
		tc := tc
		evs = append(evs, agent.RealtimeEvent{Type: agent.RealtimeToolCall, ToolCall: &tc})
	}
	return append(evs, agent.RealtimeEvent{Type: agent.RealtimeResponseDone})
}
