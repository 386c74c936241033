package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// A caller talks to the built-in agent over a real SIP call; the providers
// are fakes that speak Deepgram's, OpenAI's and ElevenLabs' real wire
// protocols. The caller hears the greeting and the reply (the TTS fake's
// 600 Hz), the LLM hears the caller's words, and the transcript and latency
// rows are stored on the call.
func TestAgentConversationOverSIP(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{APIKey: "dg-key", Utterances: []string{"I would like to book a table for two."}})
	oai := fake.NewOpenAI(t, fake.OpenAIScript{APIKey: "oai-key", Chat: []fake.ChatReply{
		{Text: "Of course. What time would you like?"},
	}})
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{APIKey: "el-key", ToneHz: 600, PerChar: 15 * time.Millisecond})

	def := agent.Definition{
		ID:              "booking",
		Name:            "Booking",
		SystemPrompt:    "You take bookings for {{restaurant}}.",
		StartingMessage: "Hello, how can I help?",
		STT:             &agent.ProviderConfig{Provider: "deepgram", BaseURL: dg.URL(), APIKey: "dg-key"},
		LLM:             &agent.ProviderConfig{Provider: "openai", BaseURL: oai.URL, APIKey: "oai-key", Model: "gpt-4o-mini"},
		TTS:             &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: el.URL(), APIKey: "el-key"},
		Tools:           []string{"end_call"},
	}
	agents := flow.NewAgents()
	if err := agents.Put(def); err != nil {
		t.Fatal(err)
	}
	f := mustFlow(t, `{"id":"agent","actions":[{"type":"answer"},
	  {"type":"ai_talk","option":{"agent_id":"booking","variables":{"restaurant":"Chez ${call.to_user}"}}},
	  {"type":"hangup"}]}`)
	inst, _ := testServerWith(t, instanceOptions{flow: f, agents: agents}, nil)
	call := dialTest(t, inst)

	// The greeting: the TTS fake's tone.
	waitFor(t, "the greeting", 15*time.Second, func() bool { return len(toneSequence(call.Heard(), 600)) > 0 })
	speech, err := media.ReadWAVFile("../../media/vad/testdata/s1.wav")
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the greeting to finish, then speak.
	waitFor(t, "the greeting to end", 15*time.Second, func() bool {
		h := call.Heard()
		return len(h) > media.SampleRate && media.ToneLevel(h[len(h)-media.SampleRate/2:], 600) < 0.05
	})
	mark := call.HeardLen()
	<-call.Play(speech)
	// The reply: the tone again, after the caller spoke.
	waitFor(t, "the agent's reply", 20*time.Second, func() bool {
		return len(toneSequence(call.Heard()[mark:], 600)) > 0
	})
	if reqs := oai.ChatRequests(); len(reqs) == 0 || !strings.Contains(reqs[0].LastUserText(), "book a table") {
		t.Fatalf("the LLM did not hear the caller: %+v", reqs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	time.Sleep(500 * time.Millisecond)
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := callRecord(t, inst, call.CallID())
	var transcript []store.TranscriptTurn
	waitFor(t, "the stored transcript", 10*time.Second, func() bool {
		turns, err := inst.db.ListTranscript(ctx, rec.ID)
		transcript = turns
		return err == nil && len(turns) >= 3
	})
	var text []string
	for _, tt := range transcript {
		text = append(text, tt.Role+": "+tt.Text)
	}
	joined := strings.Join(text, "\n")
	for _, want := range []string{"assistant: Hello, how can I help?", "user: I would like to book a table for two.", "assistant: Of course. What time would you like?"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("transcript lacks %q:\n%s", want, joined)
		}
	}
	rows, err := inst.db.ListTurnLatency(ctx, rec.ID)
	if err != nil || len(rows) == 0 {
		t.Fatalf("no latency rows: %v", err)
	}
	var lat struct {
		V2V float64 `json:"voice_to_voice_ms"`
	}
	json.Unmarshal(rows[len(rows)-1], &lat)
	if lat.V2V <= 0 || lat.V2V > 10000 {
		t.Fatalf("voice-to-voice %.0f ms in %s", lat.V2V, rows[len(rows)-1])
	}
	if rec.Variables["agent.reason"] != string(agent.EndCallerHangup) {
		t.Fatalf("agent.reason = %q", rec.Variables["agent.reason"])
	}
}

// With only an OpenAI key (or a base URL) in the environment, the default
// agent and its flow are valid, and with neither there is no default agent.
func TestDefaultAgent(t *testing.T) {
	if _, ok := defaultAgent(func(string) string { return "" }); ok {
		t.Fatal("default agent without any provider configured")
	}
	for _, env := range []map[string]string{
		{envOpenAIKey: "sk-test-0123456789"},
		{envOpenAIBase: "http://127.0.0.1:11434/v1"},
	} {
		def, ok := defaultAgent(func(k string) string { return env[k] })
		if !ok {
			t.Fatalf("no default agent with %v", env)
		}
		if err := def.Validate(); err != nil {
			t.Fatalf("default agent with %v: %v", env, err)
		}
		if k := env[envOpenAIKey]; k != "" {
			t.Setenv(envOpenAIKey, k) // the clients read the key from there
			if _, err := flow.BuildProviders(def); err != nil {
				t.Fatalf("providers: %v", err)
			}
		}
	}
	if err := defaultAgentFlow().Validate(); err != nil {
		t.Fatal(err)
	}
}

// The agent transfers to an allowed extension on request (the caller ends
// up bridged to it, hearing its tone), and a target the caller talks it into
// that is not on the list is refused: the LLM is told, nothing is dialed.
func TestAgentTransfer(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{Utterances: []string{"Put me through to the CEO.", "Then sales, please."}})
	oai := fake.NewOpenAI(t, fake.OpenAIScript{Chat: []fake.ChatReply{
		{Text: "Connecting you.", ToolCalls: []agent.ToolCall{{Name: "transfer_call", Arguments: `{"target":"ceo"}`}}},
		{Text: "Sorry, I can only transfer you to sales."},
		{Text: "Transferring you to sales.", ToolCalls: []agent.ToolCall{{Name: "transfer_call", Arguments: `{"target":"sales"}`}}},
		{Text: "You are through."},
	}})
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{ToneHz: 600, PerChar: 10 * time.Millisecond})
	def := agent.Definition{
		ID: "desk", Name: "Desk", SystemPrompt: "You route calls.",
		StartingMessage: "Hello.",
		STT:             &agent.ProviderConfig{Provider: "deepgram", BaseURL: dg.URL(), APIKey: "k"},
		LLM:             &agent.ProviderConfig{Provider: "openai", BaseURL: oai.URL, APIKey: "k", Model: "m"},
		TTS:             &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: el.URL(), APIKey: "k"},
		Tools:           []string{"transfer_call", "end_call"},
		TransferTargets: []agent.TransferTarget{{Name: "sales", Target: "1002"}},
	}
	agents := flow.NewAgents()
	if err := agents.Put(def); err != nil {
		t.Fatal(err)
	}
	f := mustFlow(t, `{"id":"desk","actions":[{"type":"answer"},{"type":"ai_talk","option":{"agent_id":"desk"}},{"type":"hangup"}]}`)
	inst, cfg := testServerWith(t, instanceOptions{flow: f, agents: agents}, nil)
	ext := store.Extension{Number: "1002", Enabled: true}
	if err := ext.SetPassword(cfg.SIPRealm, extPass); err != nil {
		t.Fatal(err)
	}
	if err := inst.db.CreateExtension(context.Background(), &ext); err != nil {
		t.Fatal(err)
	}
	sales := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: 1400})

	caller := dialTest(t, inst)
	speech, err := media.ReadWAVFile("../../media/vad/testdata/s1.wav")
	if err != nil {
		t.Fatal(err)
	}
	quiet := func() bool {
		h := caller.Heard()
		return len(h) > media.SampleRate && media.ToneLevel(h[len(h)-media.SampleRate/2:], 600) < 0.05
	}
	waitFor(t, "the greeting", 15*time.Second, func() bool { return len(toneSequence(caller.Heard(), 600)) > 0 })
	waitFor(t, "the greeting to end", 15*time.Second, quiet)
	<-caller.Play(speech) // "the CEO": refused
	waitFor(t, "the refusal", 20*time.Second, func() bool { return len(oai.ChatRequests()) >= 2 })
	waitFor(t, "the agent to finish speaking", 15*time.Second, quiet)
	<-caller.Play(speech) // "sales": allowed
	bc := answeredCall(t, sales)
	hears(t, "the caller, bridged to sales", caller, 1400)
	bc.Play(media.Tone(700, 3*time.Second, 0.5))
	_ = bc

	reqs := oai.ChatRequests()
	refused := false
	for _, r := range reqs {
		for _, m := range r.Messages {
			if m.Role == agent.RoleTool && strings.Contains(strings.ToLower(m.Content), "ceo") {
				refused = true
			}
		}
	}
	if !refused {
		t.Fatalf("the LLM was not told the transfer to ceo was refused: %+v", reqs)
	}
	if n := len(sales.Invites()); n != 1 {
		t.Fatalf("sales got %d INVITEs, want exactly 1 (ceo must never be dialed)", n)
	}
	if err := bc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, caller)
	rec := callRecord(t, inst, caller.CallID())
	if rec.Variables["agent.reason"] != string(agent.EndTransfer) || rec.Variables["connect.call_id"] == "" {
		t.Fatalf("record variables: %v", rec.Variables)
	}
}

// talk speaks text with an agent's TTS; the second time the same text is
// said it comes from the cache, without asking the provider again.
func TestTalkAction(t *testing.T) {
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{ToneHz: 600, PerChar: 20 * time.Millisecond})
	agents := flow.NewAgents()
	if err := agents.Put(agent.Definition{ID: "voice", Name: "Voice", SystemPrompt: "-",
		STT: &agent.ProviderConfig{Provider: "deepgram", APIKey: "unused-here"},
		LLM: &agent.ProviderConfig{Provider: "openai", APIKey: "unused-here"},
		TTS: &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: el.URL(), APIKey: "k"}}); err != nil {
		t.Fatal(err)
	}
	f := mustFlow(t, `{"id":"talk","actions":[{"type":"answer"},
	  {"type":"talk","option":{"text":"Hello ${call.to_user}, thanks for calling.","agent_id":"voice"}},
	  {"type":"sleep","option":{"duration_ms":500}},
	  {"type":"talk","option":{"text":"Hello ${call.to_user}, thanks for calling.","agent_id":"voice"}},
	  {"type":"hangup"}]}`)
	inst, _ := testServerWith(t, instanceOptions{flow: f, agents: agents}, nil)
	call := dialTest(t, inst)
	waitDone(t, call)
	if got := toneSequence(call.Heard(), 600); len(got) != 2 {
		t.Fatalf("heard the spoken text %d times, want 2", len(got))
	}
	if n := len(el.Sessions()); n != 1 {
		t.Fatalf("the TTS was asked %d times for the same text, want 1 (cached)", n)
	}
	if texts := el.Sessions()[0]; !strings.Contains(fmt.Sprint(texts), "Hello flow, thanks for calling.") {
		t.Fatalf("the TTS got %v", texts)
	}
}
