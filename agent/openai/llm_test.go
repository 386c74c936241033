package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/internal/testutil"
	"github.com/voxbridge/voxbridge/agent/openai"
)

func newLLM(t *testing.T, f *fake.OpenAI, cfg openai.Config) *openai.LLM {
	t.Helper()
	cfg.BaseURL = f.URL
	if cfg.APIKey == "" {
		cfg.APIKey = testKey
	}
	l, err := openai.NewLLM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// collect reads events until the channel closes.
func collect(t *testing.T, ch <-chan agent.LLMEvent) []agent.LLMEvent {
	t.Helper()
	evs, _ := testutil.Receive(t, ch, nil)
	return evs
}

func userTurn(text string) agent.LLMRequest {
	return agent.LLMRequest{Messages: []agent.Message{
		{Role: agent.RoleSystem, Content: "You are a phone agent."},
		{Role: agent.RoleUser, Content: text},
	}}
}

func TestLLMStreamsTextInOrder(t *testing.T) {
	noLeaks(t)
	reply := "Hello there, how can I help you today?"
	f := fake.NewOpenAI(t, fake.OpenAIScript{APIKey: testKey, Chat: []fake.ChatReply{{Text: reply}}})
	ch, err := newLLM(t, f, openai.Config{Model: "gpt-test"}).Stream(context.Background(), userTurn("hi"))
	if err != nil {
		t.Fatal(err)
	}
	evs := collect(t, ch)
	var text strings.Builder
	for _, ev := range evs {
		if ev.Err != nil || ev.ToolCall != nil {
			t.Fatalf("unexpected event %+v", ev)
		}
		text.WriteString(ev.Text)
	}
	if text.String() != reply {
		t.Errorf("streamed text %q, want %q", text.String(), reply)
	}
	if len(evs) < len(fake.SplitTokens(reply)) {
		t.Errorf("got %d events, want one per streamed delta (%d)", len(evs), len(fake.SplitTokens(reply)))
	}
	if last := evs[len(evs)-1]; last.FinishReason != "stop" {
		t.Errorf("last event finish reason %q, want stop", last.FinishReason)
	}
	got := f.ChatRequests()
	if len(got) != 1 || got[0].Model != "gpt-test" || !got[0].Stream || got[0].LastUserText() != "hi" {
		t.Errorf("server saw %+v", got)
	}
}

func TestLLMAssemblesToolCalls(t *testing.T) {
	noLeaks(t)
	calls := []agent.ToolCall{
		{ID: "call_a", Name: "transfer_call", Arguments: `{"target":"sales","warm":true}`},
		{ID: "call_b", Name: "set_variable", Arguments: `{"key":"reason","value":"billing question, with \"quotes\""}`},
	}
	f := fake.NewOpenAI(t, fake.OpenAIScript{Chat: []fake.ChatReply{{Text: "One moment.", ToolCalls: calls}}})
	ch, err := newLLM(t, f, openai.Config{}).Stream(context.Background(), userTurn("sales please"))
	if err != nil {
		t.Fatal(err)
	}
	evs := collect(t, ch)
	var text string
	var got []agent.ToolCall
	for i, ev := range evs {
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		if ev.ToolCall != nil {
			got = append(got, *ev.ToolCall)
		} else if len(got) > 0 && ev.Text != "" {
			t.Errorf("event %d: text after tool calls", i)
		}
		text += ev.Text
	}
	if text != "One moment." {
		t.Errorf("text %q", text)
	}
	if len(got) != 2 || got[0] != calls[0] || got[1] != calls[1] {
		t.Fatalf("tool calls %+v, want %+v", got, calls)
	}
	for _, c := range got {
		if !json.Valid([]byte(c.Arguments)) {
			t.Errorf("arguments of %s are not whole JSON: %s", c.Name, c.Arguments)
		}
	}
	if evs[len(evs)-1].FinishReason != "tool_calls" || evs[len(evs)-1].ToolCall == nil {
		t.Errorf("last event %+v, want the last tool call with finish reason tool_calls", evs[len(evs)-1])
	}
}

// The history, tools and sampling settings reach the server as the API
// defines them (the fake decodes the real wire format).
func TestLLMSendsHistoryAndTools(t *testing.T) {
	noLeaks(t)
	f := fake.NewOpenAI(t, fake.OpenAIScript{Chat: []fake.ChatReply{{Text: "Done."}}})
	zero := 0.0
	req := agent.LLMRequest{
		Messages: []agent.Message{
			{Role: agent.RoleSystem, Content: "Be brief."},
			{Role: agent.RoleUser, Content: "Put me through to sales."},
			{Role: agent.RoleAssistant, Content: "", ToolCalls: []agent.ToolCall{{ID: "call_1", Name: "transfer_call", Arguments: `{"target":"sales"}`}}},
			{Role: agent.RoleTool, ToolCallID: "call_1", Content: `{"ok":true}`},
			{Role: agent.RoleTool, ToolCallID: "call_1", Content: ""},
		},
		Tools: []agent.Tool{
			{Name: "transfer_call", Description: "Transfer the caller", Parameters: json.RawMessage(`{"type":"object","properties":{"target":{"type":"string"}},"required":["target"]}`)},
			{Name: "end_call", Description: "Hang up"},
		},
		Temperature: &zero,
		MaxTokens:   150,
	}
	ch, err := newLLM(t, f, openai.Config{}).Stream(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range collect(t, ch) {
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
	}
	got := f.ChatRequests()[0]
	if len(got.Messages) != 5 {
		t.Fatalf("server saw %d messages, want 5", len(got.Messages))
	}
	if m := got.Messages[2]; m.Role != agent.RoleAssistant || len(m.ToolCalls) != 1 || m.ToolCalls[0] != req.Messages[2].ToolCalls[0] {
		t.Errorf("assistant tool-call message arrived as %+v", m)
	}
	if m := got.Messages[3]; m.Role != agent.RoleTool || m.ToolCallID != "call_1" || m.Content != `{"ok":true}` {
		t.Errorf("tool result arrived as %+v", m)
	}
	if got.Messages[4].Content == "" {
		t.Error("empty tool result was sent without content (the API rejects that)")
	}
	if len(got.Tools) != 2 || got.Tools[0].Name != "transfer_call" || !strings.Contains(string(got.Tools[0].Parameters), `"required":["target"]`) {
		t.Errorf("tools arrived as %+v", got.Tools)
	}
	if !json.Valid(got.Tools[1].Parameters) {
		t.Errorf("tool without parameters sent %q", got.Tools[1].Parameters)
	}
	if got.Temperature == nil || *got.Temperature > 1e-6 {
		t.Errorf("temperature 0 arrived as %v", got.Temperature)
	}
	if got.MaxTokens != 150 {
		t.Errorf("max tokens %d, want 150", got.MaxTokens)
	}
}

func TestLLMFailuresArriveAsErrorEvents(t *testing.T) {
	cases := []struct {
		name      string
		script    fake.OpenAIScript
		key       string
		status    int
		temporary bool
		wantText  bool // some text arrived before the failure
		contains  string
	}{
		{name: "HTTP 500", script: fake.OpenAIScript{Chat: []fake.ChatReply{{Fault: fake.OpenAIFault{Status: 500, Message: "The server had an error"}}}},
			status: 500, temporary: true, contains: "The server had an error"},
		{name: "HTTP 429", script: fake.OpenAIScript{Chat: []fake.ChatReply{{Fault: fake.OpenAIFault{Status: 429, Message: "Rate limit reached"}}}},
			status: 429, temporary: true},
		{name: "wrong key echoed back", script: fake.OpenAIScript{APIKey: "sk-the-right-one", Chat: []fake.ChatReply{{Text: "hi"}}},
			status: 401, contains: "[redacted]"},
		{name: "hang before reply", script: fake.OpenAIScript{Chat: []fake.ChatReply{{Text: "never", Fault: fake.OpenAIFault{Hang: true}}}},
			temporary: true, contains: "no data from the server"},
		{name: "hang mid-stream", script: fake.OpenAIScript{Chat: []fake.ChatReply{{Text: "Let me check that for you.", Fault: fake.OpenAIFault{Hang: true, After: 3}}}},
			temporary: true, wantText: true, contains: "no data from the server"},
		{name: "drop mid-stream", script: fake.OpenAIScript{Chat: []fake.ChatReply{{Text: "Let me check that for you.", Fault: fake.OpenAIFault{Drop: true, After: 3}}}},
			temporary: true, wantText: true},
		{name: "drop before reply", script: fake.OpenAIScript{Chat: []fake.ChatReply{{Text: "x", Fault: fake.OpenAIFault{Drop: true}}}},
			temporary: true},
		{name: "error event mid-stream", script: fake.OpenAIScript{Chat: []fake.ChatReply{{Text: "Let me check that for you.", Fault: fake.OpenAIFault{StreamError: "model overloaded", After: 3}}}},
			temporary: true, wantText: true, contains: "model overloaded"},
		{name: "unscripted request", script: fake.OpenAIScript{}, status: 500, temporary: true, contains: "no chat reply scripted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noLeaks(t)
			f := fake.NewOpenAI(t, c.script)
			ch, err := newLLM(t, f, openai.Config{Timeout: 500 * time.Millisecond}).Stream(context.Background(), userTurn("hello"))
			if err != nil {
				t.Fatal(err)
			}
			evs := collect(t, ch)
			if len(evs) == 0 || evs[len(evs)-1].Err == nil {
				t.Fatalf("stream ended without an error event: %+v", evs)
			}
			last := evs[len(evs)-1].Err
			t.Logf("error: %v", last)
			noKey(t, last)
			var e *openai.Error
			if !errors.As(last, &e) {
				t.Fatalf("error %T is not *openai.Error", last)
			}
			if e.StatusCode != c.status || e.Temporary() != c.temporary {
				t.Errorf("status %d temporary %v, want %d %v", e.StatusCode, e.Temporary(), c.status, c.temporary)
			}
			if c.contains != "" && !strings.Contains(last.Error(), c.contains) {
				t.Errorf("error %q does not mention %q", last, c.contains)
			}
			if gotText := len(evs) > 1; gotText != c.wantText {
				t.Errorf("text before the error: %v, want %v", gotText, c.wantText)
			}
		})
	}
}

// Cancelling mid-stream ends the channel without an error, aborts the HTTP
// request (the server sees the client go) and leaves no goroutine.
func TestLLMCancelMidStream(t *testing.T) {
	noLeaks(t)
	long := strings.Repeat("This reply goes on and on. ", 40)
	f := fake.NewOpenAI(t, fake.OpenAIScript{Chat: []fake.ChatReply{{Text: long, TokenGap: 20 * time.Millisecond}}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := newLLM(t, f, openai.Config{}).Stream(ctx, userTurn("talk"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if ev := testutil.Next(t, ch); ev.Err != nil {
			t.Fatal(ev.Err)
		}
	}
	cancel()
	for ev := range ch { // must close; events already buffered may drain
		if ev.Err != nil {
			t.Errorf("error event after cancel: %v", ev.Err)
		}
	}
	testutil.Eventually(t, "server did not see the request aborted", func() bool { return f.ChatRequests()[0].Aborted })
}

func TestLLMRejectsBadInput(t *testing.T) {
	if _, err := openai.NewLLM(openai.Config{BaseURL: "ftp://example"}); err == nil {
		t.Error("ftp base URL accepted")
	}
	if _, err := openai.NewLLM(openai.Config{APIKey: testKey, BaseURL: "http://user:" + testKey + "@[::1"}); err == nil {
		t.Error("malformed base URL accepted")
	} else {
		noKey(t, err)
	}
	f := fake.NewOpenAI(t, fake.OpenAIScript{})
	l := newLLM(t, f, openai.Config{})
	for name, req := range map[string]agent.LLMRequest{
		"no messages":  {},
		"unknown role": {Messages: []agent.Message{{Role: "narrator", Content: "x"}}},
		"bad schema":   {Messages: []agent.Message{{Role: agent.RoleUser, Content: "x"}}, Tools: []agent.Tool{{Name: "t", Parameters: json.RawMessage(`{`)}}},
	} {
		if _, err := l.Stream(context.Background(), req); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := len(f.ChatRequests()); n != 0 {
		t.Errorf("invalid requests reached the server %d times", n)
	}
}
