package agent_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/agenttest"
	"github.com/voxbridge/voxbridge/agent/deepgram"
	"github.com/voxbridge/voxbridge/agent/elevenlabs"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/openai"
	"github.com/voxbridge/voxbridge/media"
)

// The conversation suite: scripted calls in testdata/conversations/*.json,
// each run against the real provider clients talking to the fakes of
// agent/fake at fixed latencies, on a fake call with a 20 ms clock. Each
// asserts the transcript and what the caller heard on the wire.
//
//	make conversations   (go test -race -count=1 -run TestConversations ./agent/)

// conversation is one scenario file.
type conversation struct {
	Name string `json:"name"`
	// Agent is merged over the suite's base definition.
	Agent json.RawMessage `json:"agent"`
	// Caller are the transcripts of the caller's utterances, in order;
	// audio that is mostly the agent's echo is transcribed as the agent's
	// words instead.
	Caller []string `json:"caller"`
	// Chat are the model's replies, in order (then "Okay.").
	Chat []chatStep `json:"chat"`
	// SpeechFails makes speech requests fail (HTTP 500): "always", or
	// "after_chat" (once the model has been asked anything); or
	// "hang_after_chat": hang without a byte.
	SpeechFails string `json:"speech_fails"`
	// TranscriptionFails makes every transcription fail (HTTP 500).
	TranscriptionFails bool `json:"transcription_fails"`
	// EchoDB returns the agent's audio to the caller's side, 100 ms late.
	EchoDB float64 `json:"echo_db"`
	// STTDropAfterMS drops the first Deepgram connection once this much
	// audio reached it.
	STTDropAfterMS int `json:"stt_drop_after_ms"`
	// ToolDelayMS is how long the suite's HTTP tool "lookup" takes.
	ToolDelayMS int `json:"tool_delay_ms"`
	// HandBack sets Options.ReturnOnFailure.
	HandBack bool `json:"hand_back"`
	// Kinds are the provider sets it runs with: "openai" (transcription,
	// chat and speech over HTTP; the default) and "deepgram-elevenlabs"
	// (streaming recognition and streaming-input synthesis over
	// websockets, chat from OpenAI).
	Kinds  []string `json:"kinds"`
	Steps  []step   `json:"steps"`
	Expect expect   `json:"expect"`
}

type chatStep struct {
	Text         string           `json:"text"`
	ToolCalls    []agent.ToolCall `json:"tool_calls"`
	Status       int              `json:"status"` // an HTTP error instead
	Hang         bool             `json:"hang"`
	FirstTokenMS int              `json:"first_token_ms"`
}

// step is one thing the caller does, or waits for.
type step struct {
	SayMS int    `json:"say_ms"` // speaks for this long
	Press string `json:"press"`  // presses keys
	// Wait: "agent_audio" (the next stretch of agent audio has played
	// AfterMS), "listening" (the agent waits for the caller), "ended"
	// (the session ended by itself), "turns" (Turns final turns).
	Wait    string `json:"wait"`
	AfterMS int    `json:"after_ms"`
	Turns   int    `json:"turns"`
	PauseMS int    `json:"pause_ms"`
}

type expect struct {
	// Transcript lists every turn as "role:kind:text"; a text ending in
	// "*" matches as a prefix.
	Transcript []string `json:"transcript"`
	Reason     string   `json:"reason"`
	// MaxDeadAirMS bounds the silence on the wire after the caller's
	// speech before the agent's next audio (or the end of the session).
	MaxDeadAirMS int `json:"max_dead_air_ms"`
	// BuiltinApology: the built-in apology was heard.
	BuiltinApology bool `json:"builtin_apology"`
	// HungUp: the session sent its own BYE.
	HungUp *bool `json:"hung_up"`
	// NoInterruption: no turn was cut short.
	NoInterruption bool `json:"no_interruption"`
	// FirstAudioWithinMS bounds the silence from the start of the call to
	// the agent's first audio.
	FirstAudioWithinMS int `json:"first_audio_within_ms"`
	// ToolsCompleted: every tool call got its real result (none was cut
	// off by the caller speaking).
	ToolsCompleted bool `json:"tools_completed"`
	// MaxBargeInStopMS bounds how long the agent's audio goes on once the
	// caller starts speaking over it (from the onset frame's start to the
	// end of the agent's last frame).
	MaxBargeInStopMS int `json:"max_barge_in_stop_ms"`
}

// contentWordsOf counts the words of text that are not backchannels.
func contentWordsOf(text string) int {
	n := 0
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return r == ' ' || r == ',' || r == '.' || r == '?' || r == '!' }) {
		if !slices.Contains(agent.DefaultBackchannels, w) {
			n++
		}
	}
	return n
}

func TestConversations(t *testing.T) {
	files, err := filepath.Glob("../testdata/conversations/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var c conversation
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		// One at a time: each is a call on the wall clock, and the suite
		// asserts timelines.
		kinds := c.Kinds
		if len(kinds) == 0 {
			kinds = []string{"openai"}
		}
		for _, kind := range kinds {
			t.Run(strings.TrimSuffix(filepath.Base(file), ".json")+"/"+kind, func(t *testing.T) {
				runConversation(t, c, kind)
			})
		}
	}
}

func runConversation(t *testing.T, c conversation, kind string) {
	def := baseDef()
	if len(c.Agent) > 0 {
		if err := json.Unmarshal(c.Agent, &def); err != nil {
			t.Fatalf("agent: %v", err)
		}
	}
	if c.ToolDelayMS > 0 {
		tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(time.Duration(c.ToolDelayMS) * time.Millisecond):
			case <-r.Context().Done():
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status":"shipped","eta":"tomorrow"}`))
		}))
		t.Cleanup(tool.Close)
		def.HTTPTools = append(def.HTTPTools, agent.HTTPTool{Name: "lookup", Description: "Look up an order.", URL: tool.URL,
			Parameters: agent.JSONSchema(`{"type":"object","properties":{"order":{"type":"string"}}}`)})
	}
	var f *fake.OpenAI
	var mu sync.Mutex // the fake answers requests concurrently
	caller := 0
	script := fake.OpenAIScript{
		Latency: issueLatency,
		TranscriptFunc: func(req fake.TranscriptionRequest) fake.TranscriptReply {
			if c.TranscriptionFails {
				return fake.TranscriptReply{Fault: fake.OpenAIFault{Status: 500, Message: "transcription is down"}}
			}
			if echoOnly(req.Audio) {
				// The agent's own voice: transcribed as what it says.
				if sp := f.Spoken(); len(sp) > 0 {
					return fake.TranscriptReply{Text: sp[len(sp)-1]}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			text := ""
			if caller < len(c.Caller) {
				text = c.Caller[caller]
			}
			caller++
			return fake.TranscriptReply{Text: text}
		},
		ChatFunc: func(fake.ChatRequest) fake.ChatReply { return fake.ChatReply{Text: "Okay."} },
	}
	for _, s := range c.Chat {
		r := fake.ChatReply{Text: s.Text, ToolCalls: s.ToolCalls, FirstToken: time.Duration(s.FirstTokenMS) * time.Millisecond}
		if s.Status != 0 {
			r.Fault = fake.OpenAIFault{Status: s.Status, Message: "the model is down"}
		}
		if s.Hang {
			r.Fault = fake.OpenAIFault{Hang: true}
		}
		script.Chat = append(script.Chat, r)
	}
	switch c.SpeechFails {
	case "":
	case "always", "after_chat", "hang_after_chat":
		script.SpeechFunc = func(fake.SpeechRequest) fake.SpeechReply {
			switch {
			case c.SpeechFails == "always" || c.SpeechFails == "after_chat" && len(f.ChatRequests()) > 0:
				return fake.SpeechReply{Fault: fake.OpenAIFault{Status: 500, Message: "speech is down"}}
			case c.SpeechFails == "hang_after_chat" && len(f.ChatRequests()) > 0:
				return fake.SpeechReply{Fault: fake.OpenAIFault{Hang: true}}
			}
			return fake.SpeechReply{}
		}
	default:
		t.Fatalf("speech_fails %q", c.SpeechFails)
	}
	f = fake.NewOpenAI(t, script)
	cfg := openai.Config{BaseURL: f.URL, Timeout: 3 * time.Second}
	stt, _ := openai.NewSTT(cfg)
	llm, _ := openai.NewLLM(cfg)
	tts, _ := openai.NewTTS(cfg)
	h := newHarness(t, def)
	h.providers = &agent.Providers{STT: stt, LLM: llm, TTS: tts}
	switch kind {
	case "openai":
	case "deepgram-elevenlabs":
		dgo := fake.DeepgramOptions{Utterances: c.Caller, Latency: issueLatency.Transcribe}
		if c.STTDropAfterMS > 0 {
			dgo.Failure = fake.DeepgramFailure{DropAfter: time.Duration(c.STTDropAfterMS) * time.Millisecond, Connections: 1}
		}
		dg := fake.NewDeepgram(t, dgo)
		el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{ToneHz: fake.OpenAISpeechToneHz, FirstAudioLatency: issueLatency.SpeechFirstAudio})
		dstt, err := deepgram.New(deepgram.Config{BaseURL: dg.URL(), APIKey: "dg-key"})
		if err != nil {
			t.Fatal(err)
		}
		etts, err := elevenlabs.New(elevenlabs.Config{BaseURL: el.URL(), APIKey: "el-key", Voice: "v1"})
		if err != nil {
			t.Fatal(err)
		}
		h.providers.STT, h.providers.TTS = dstt, etts
		if c.STTDropAfterMS > 0 {
			t.Cleanup(func() {
				if n := len(dg.Sessions()); n < 2 {
					t.Errorf("%d recognizer connections: the drop never happened", n)
				}
			})
		}
	default:
		t.Fatalf("provider kind %q", kind)
	}
	h.opt.ReturnOnFailure = c.HandBack
	if os.Getenv("CONVERSATION_LOG") != "" {
		h.opt.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h.opt.LLMTimeout = 3 * time.Second
	if c.EchoDB < 0 {
		h.call.Echo(c.EchoDB, 100*time.Millisecond)
	}
	h.start()
	t.Cleanup(func() {
		if t.Failed() {
			for i, r := range f.ChatRequests() {
				t.Logf("chat request %d: %d messages, last user %q, aborted %v", i, len(r.Messages), r.LastUserText(), r.Aborted)
			}
			for i, r := range f.SpeechRequests() {
				t.Logf("speech request %d: %q, aborted %v", i, r.Input, r.Aborted)
			}
		}
	})

	ended := false
	for i, s := range c.Steps {
		switch {
		case s.SayMS > 0:
			_, last := h.call.Say(agenttest.Speech(time.Duration(s.SayMS) * time.Millisecond))
			h.waitFor(fmt.Sprintf("step %d: the speech to be sent", i), func() bool { return h.call.Tick() >= last })
		case s.Press != "":
			h.call.Press(s.Press)
		case s.PauseMS > 0:
			until := h.call.Now().Add(time.Duration(s.PauseMS) * time.Millisecond)
			h.waitFor("the pause", func() bool { return !h.call.Now().Before(until) })
		case s.Wait == "agent_audio":
			n := len(h.call.FirstPackets())
			start := h.agentStarted(n)
			h.waitFor("agent audio playing", func() bool { return h.call.Now().Sub(start) >= time.Duration(s.AfterMS)*time.Millisecond })
		case s.Wait == "listening":
			h.waitListening()
		case s.Wait == "turns":
			h.waitFinalTurns(s.Turns)
		case s.Wait == "ended":
			h.result()
			ended = true
		default:
			t.Fatalf("step %d: nothing to do: %+v", i, s)
		}
	}
	var res agent.Result
	if ended {
		res = h.result()
	} else {
		res = h.hangup()
	}
	checkConversation(t, h, c, res)
}

// echoOnly reports whether audio is mostly the agent's voice (the fake's
// 440 Hz tone) rather than the caller's.
func echoOnly(pcm []int16) bool {
	return len(pcm) > 0 && media.ToneLevel(pcm, fake.OpenAISpeechToneHz) > 2*media.RMS(pcm)/32768
}

func checkConversation(t *testing.T, h *harness, c conversation, res agent.Result) {
	t.Helper()
	got := textsOf(res.Transcript)
	ok := len(got) == len(c.Expect.Transcript)
	for i := 0; ok && i < len(got); i++ {
		w := c.Expect.Transcript[i]
		if p, prefix := strings.CutSuffix(w, "*"); prefix {
			ok = strings.HasPrefix(got[i], p)
		} else {
			ok = got[i] == w
		}
	}
	if !ok {
		t.Errorf("transcript:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(c.Expect.Transcript, "\n  "))
	}
	// No caller utterance lost: every scripted one is a user turn.
	for _, said := range c.Caller {
		if contentWordsOf(said) == 0 {
			continue // a backchannel is not a turn
		}
		if !slices.ContainsFunc(res.Transcript, func(tt agent.Turn) bool { return tt.Role == agent.RoleUser && tt.Text == said }) {
			t.Errorf("the caller's %q is not in the transcript", said)
		}
	}
	if c.Expect.Reason != "" && string(res.Reason) != c.Expect.Reason {
		t.Errorf("reason %q, want %q", res.Reason, c.Expect.Reason)
	}
	if w := c.Expect.HungUp; w != nil {
		if _, hung := h.call.HangupReason(); hung != *w {
			t.Errorf("hung up %v, want %v", hung, *w)
		}
	}
	if c.Expect.NoInterruption {
		for _, tt := range res.Transcript {
			if tt.Interrupted {
				t.Errorf("turn %d was interrupted: %q", tt.Index, tt.Text)
			}
		}
	}
	if c.Expect.ToolsCompleted {
		for _, tt := range res.Transcript {
			for _, tc := range tt.ToolCalls {
				if tc.Error != "" {
					t.Errorf("tool %s: %s", tc.Name, tc.Error)
				}
			}
		}
	}
	out, _ := h.call.Outbound()
	if c.Expect.BuiltinApology && builtinAt(out) < 0 {
		t.Error("the built-in apology was not heard")
	}
	if m := c.Expect.FirstAudioWithinMS; m > 0 {
		first := slices.Index(agenttest.Active(out), true)
		if first < 0 || time.Duration(first)*20*time.Millisecond > time.Duration(m)*time.Millisecond {
			t.Errorf("first agent audio at frame %d, want within %d ms", first, m)
		}
	}
	if res.Summary.Turns > 0 {
		t.Logf("voice-to-voice p50 %v over %d turns", res.Summary.VoiceToVoiceP50, res.Summary.Turns)
	}
	for _, stop := range bargeInStops(agenttest.Active(out), h.call.CallerActive()) {
		t.Logf("barge-in: the agent stopped %v after the caller's onset", stop)
		if m := c.Expect.MaxBargeInStopMS; m > 0 && stop > time.Duration(m)*time.Millisecond {
			t.Errorf("the agent went on %v over the caller, want at most %d ms", stop, m)
		}
	}
	dead := deadAir(agenttest.Active(out), h.call.CallerActive())
	t.Logf("longest dead air after the caller spoke: %v", dead)
	if m := c.Expect.MaxDeadAirMS; m > 0 && dead > time.Duration(m)*time.Millisecond {
		t.Errorf("the caller waited %v in silence, want at most %d ms", dead, m)
	}
}

// deadAir is the longest run of frames, from the end of a stretch of the
// caller's speech, with neither agent audio nor caller speech: how long
// the caller waited for the agent. A run cut by the end of the call counts.
func deadAir(agentOn, callerOn []bool) time.Duration {
	longest, run, waiting := 0, 0, false
	for i := range min(len(agentOn), len(callerOn)) {
		switch {
		case callerOn[i]:
			waiting, run = true, 0
		case agentOn[i]:
			waiting, run = false, 0
		case waiting:
			run++
			longest = max(longest, run)
		}
	}
	return time.Duration(longest) * 20 * time.Millisecond
}

// bargeInStops measures, for every onset of the caller's speech over agent
// audio, how long the agent's audio went on: from the start of the onset
// frame to the end of the agent's last frame before a pause of 100 ms.
func bargeInStops(agentOn, callerOn []bool) []time.Duration {
	var out []time.Duration
	n := min(len(agentOn), len(callerOn))
	for i := 1; i < n; i++ {
		if !callerOn[i] || callerOn[i-1] || !agentOn[i] {
			continue
		}
		last := i
		for j := i; j < n && j-last < 5; j++ {
			if agentOn[j] {
				last = j
			}
		}
		out = append(out, time.Duration(last-i+1)*20*time.Millisecond)
	}
	return out
}
