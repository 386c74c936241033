package agenttest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/agent"
)

// Reply is one scripted LLM answer.
type Reply struct {
	Text      string
	ToolCalls []agent.ToolCall
	// Err fails the request itself; StreamErr fails the stream after Text.
	Err, StreamErr error
	// Hang never answers (until the request is cancelled).
	Hang bool
}

// LLM is a scripted model. Each request takes the next Reply of Script, or
// asks Respond when it is set. Text streams word by word: the first
// FirstToken after the request, the rest TokenEvery apart; tool calls
// follow the text. Every request is recorded.
type LLM struct {
	Script     []Reply
	Respond    func(req agent.LLMRequest) Reply
	FirstToken time.Duration
	TokenEvery time.Duration

	mu       sync.Mutex
	next     int
	requests []agent.LLMRequest
	canceled int
}

// Requests returns every request made so far.
func (l *LLM) Requests() []agent.LLMRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.requests)
}

// Canceled reports how many streams were cancelled before they finished.
func (l *LLM) Canceled() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.canceled
}

// LastUserText is the content of the last user message of a request.
func LastUserText(req agent.LLMRequest) string {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == agent.RoleUser {
			return req.Messages[i].Content
		}
	}
	return ""
}

// Stream implements agent.LLM.
func (l *LLM) Stream(ctx context.Context, req agent.LLMRequest) (<-chan agent.LLMEvent, error) {
	l.mu.Lock()
	req.Messages = slices.Clone(req.Messages)
	l.requests = append(l.requests, req)
	var r Reply
	switch {
	case l.Respond != nil:
		l.mu.Unlock()
		r = l.Respond(req)
		l.mu.Lock()
	case l.next < len(l.Script):
		r = l.Script[l.next]
		l.next++
	default:
		l.mu.Unlock()
		return nil, errors.New("fake llm: no scripted reply left")
	}
	l.mu.Unlock()
	if r.Err != nil {
		return nil, r.Err
	}
	ch := make(chan agent.LLMEvent)
	go func() {
		defer close(ch)
		send := func(ev agent.LLMEvent) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				l.mu.Lock()
				l.canceled++
				l.mu.Unlock()
				return false
			}
		}
		wait := func(d time.Duration) bool {
			if d <= 0 {
				return ctx.Err() == nil
			}
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return true
			case <-ctx.Done():
				l.mu.Lock()
				l.canceled++
				l.mu.Unlock()
				return false
			}
		}
		if r.Hang {
			<-ctx.Done()
			return
		}
		if !wait(l.FirstToken) {
			return
		}
		words := strings.SplitAfter(r.Text, " ")
		for i, w := range words {
			if w == "" {
				continue
			}
			if i > 0 && !wait(l.TokenEvery) {
				return
			}
			if !send(agent.LLMEvent{Text: w}) {
				return
			}
		}
		for _, tc := range r.ToolCalls {
			tc := tc
			if !send(agent.LLMEvent{ToolCall: &tc}) {
				return
			}
		}
		if r.StreamErr != nil {
			send(agent.LLMEvent{Err: r.StreamErr})
			return
		}
		reason := "stop"
		if len(r.ToolCalls) > 0 {
			reason = "tool_calls"
		}
		send(agent.LLMEvent{FinishReason: reason})
	}()
	return ch, nil
}
