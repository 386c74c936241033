package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/voxbridge/voxbridge/agent"
)

// LLM streams chat completions (POST {base}/chat/completions, stream=true).
type LLM struct {
	cfg    Config
	client *goopenai.Client
}

var _ agent.LLM = (*LLM)(nil)

// NewLLM returns a chat-completions client.
func NewLLM(cfg Config) (*LLM, error) {
	c, err := cfg.client()
	if err != nil {
		return nil, err
	}
	return &LLM{cfg: cfg, client: c}, nil
}

// eventBuffer lets a burst of deltas through without waiting on the reader.
const eventBuffer = 64

// Stream starts a completion. Connection and HTTP errors, as well as a
// stream that ends before the model finished, arrive as an event with Err;
// the channel then closes. Cancelling ctx aborts the request and closes the
// channel without an error event.
func (l *LLM) Stream(ctx context.Context, req agent.LLMRequest) (<-chan agent.LLMEvent, error) {
	creq, err := l.request(req)
	if err != nil {
		return nil, err
	}
	ch := make(chan agent.LLMEvent, eventBuffer)
	go l.run(ctx, creq, ch)
	return ch, nil
}

func (l *LLM) request(req agent.LLMRequest) (goopenai.ChatCompletionRequest, error) {
	if len(req.Messages) == 0 {
		return goopenai.ChatCompletionRequest{}, errors.New("openai chat: no messages")
	}
	cr := goopenai.ChatCompletionRequest{Model: l.cfg.model(DefaultLLMModel), Stream: true}
	for i, m := range req.Messages {
		switch m.Role {
		case agent.RoleSystem, agent.RoleUser, agent.RoleAssistant, agent.RoleTool:
		default:
			return cr, fmt.Errorf("openai chat: message %d: unknown role %q", i, m.Role)
		}
		msg := goopenai.ChatCompletionMessage{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
		if m.Role == agent.RoleTool && m.Content == "" {
			// The API rejects a tool message without content; an empty
			// result still has to answer its call.
			msg.Content = "(no output)"
		}
		for _, tc := range m.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, goopenai.ToolCall{
				ID: tc.ID, Type: goopenai.ToolTypeFunction,
				Function: goopenai.FunctionCall{Name: tc.Name, Arguments: tc.Arguments},
			})
		}
		cr.Messages = append(cr.Messages, msg)
	}
	for _, t := range req.Tools {
		if t.Name == "" {
			return cr, errors.New("openai chat: a tool has no name")
		}
		params := t.Parameters
		if len(params) == 0 {
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		} else if !json.Valid(params) {
			return cr, fmt.Errorf("openai chat: tool %q: parameters are not valid JSON", t.Name)
		}
		cr.Tools = append(cr.Tools, goopenai.Tool{Type: goopenai.ToolTypeFunction, Function: &goopenai.FunctionDefinition{
			Name: t.Name, Description: t.Description, Parameters: params,
		}})
	}
	if req.Temperature != nil {
		// go-openai drops a zero temperature (omitempty), which would mean
		// the server default of 1; the smallest float32 is 0 in effect.
		cr.Temperature = float32(*req.Temperature)
		if cr.Temperature == 0 {
			cr.Temperature = math.SmallestNonzeroFloat32
		}
	}
	if req.MaxTokens > 0 {
		if reasoningModel(cr.Model) {
			cr.MaxCompletionTokens = req.MaxTokens // these reject max_tokens
		} else {
			cr.MaxTokens = req.MaxTokens // what most compatible servers understand
		}
	}
	return cr, nil
}

func reasoningModel(m string) bool {
	for _, p := range []string{"o1", "o3", "o4", "gpt-5"} {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	return false
}

func (l *LLM) run(ctx context.Context, creq goopenai.ChatCompletionRequest, ch chan<- agent.LLMEvent) {
	defer close(ch)
	send := func(ev agent.LLMEvent) bool {
		select {
		case ch <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	fail := func(err error) {
		if ctx.Err() != nil {
			return // the caller cancelled; it is not waiting for a reason
		}
		send(agent.LLMEvent{Err: wrapErr("chat", l.cfg.APIKey, err)})
	}
	wd := newWatchdog(ctx, l.cfg.timeout())
	defer wd.stop()
	stream, err := l.client.CreateChatCompletionStream(wd.ctx, creq)
	if err != nil {
		fail(wd.explain(err))
		return
	}
	defer stream.Close()
	var calls toolCallAssembler
	for {
		resp, err := stream.Recv()
		wd.kick()
		err = wd.explain(err)
		if errors.Is(err, io.EOF) {
			// A clean end without a finish_reason is a cut stream: servers
			// always name why they stopped in the last choice.
			fail(errors.New("stream ended before the reply finished"))
			return
		}
		if err != nil {
			fail(err)
			return
		}
		if len(resp.Choices) == 0 {
			continue // e.g. a usage-only chunk
		}
		choice := resp.Choices[0]
		if choice.Delta.Content != "" && !send(agent.LLMEvent{Text: choice.Delta.Content}) {
			return
		}
		for _, d := range choice.Delta.ToolCalls {
			calls.add(d)
		}
		if choice.FinishReason == "" {
			continue
		}
		done, err := calls.complete()
		if err != nil {
			fail(err)
			return
		}
		if len(done) == 0 {
			send(agent.LLMEvent{FinishReason: string(choice.FinishReason)})
			return
		}
		for i := range done {
			ev := agent.LLMEvent{ToolCall: &done[i]}
			if i == len(done)-1 {
				ev.FinishReason = string(choice.FinishReason)
			}
			if !send(ev) {
				return
			}
		}
		return
	}
}

// toolCallAssembler joins streamed tool-call deltas into whole calls. The
// API sends the id and name once, then the arguments in pieces, all keyed by
// index; servers that omit the index send one call at a time, each starting
// with its id.
type toolCallAssembler struct {
	calls []agent.ToolCall
	index map[int]int // delta index -> position in calls
}

func (a *toolCallAssembler) add(d goopenai.ToolCall) {
	pos := -1
	if d.Index != nil {
		if a.index == nil {
			a.index = map[int]int{}
		}
		p, ok := a.index[*d.Index]
		if !ok {
			p = len(a.calls)
			a.index[*d.Index] = p
			a.calls = append(a.calls, agent.ToolCall{})
		}
		pos = p
	} else {
		last := len(a.calls) - 1
		if last < 0 || (d.ID != "" && a.calls[last].ID != "" && d.ID != a.calls[last].ID) {
			a.calls = append(a.calls, agent.ToolCall{})
			last++
		}
		pos = last
	}
	c := &a.calls[pos]
	if d.ID != "" {
		c.ID = d.ID
	}
	if d.Function.Name != "" {
		c.Name = d.Function.Name
	}
	c.Arguments += d.Function.Arguments
}

// complete returns the calls in the order they started, giving ids to calls
// that lack one (some local servers) so results can be matched.
func (a *toolCallAssembler) complete() ([]agent.ToolCall, error) {
	for i := range a.calls {
		c := &a.calls[i]
		if c.Name == "" {
			return nil, fmt.Errorf("tool call %d has no function name", i)
		}
		if c.ID == "" {
			c.ID = fmt.Sprintf("call_%d", i)
		}
		if strings.TrimSpace(c.Arguments) == "" {
			c.Arguments = "{}"
		}
	}
	return a.calls, nil
}
