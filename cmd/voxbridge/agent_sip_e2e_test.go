package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/agenttest"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// The fake voice speaks each kind of phrase at its own pitch, so what the
// caller hears says what the agent said: replies at 600 Hz, the filler
// ("One moment.") at 750 Hz, the apology at 900 Hz, goodbyes at 1200 Hz.
const (
	replyHz   = 600
	fillerHz  = 750
	apologyHz = 900
	goodbyeHz = 1200
)

func agentVoice(text string) []int16 {
	hz := float64(replyHz)
	switch {
	case strings.Contains(text, "sorry"):
		hz = apologyHz
	case strings.Contains(text, "Goodbye"):
		hz = goodbyeHz
	case strings.Contains(text, "moment"): // agent.DefaultFiller
		hz = fillerHz
	}
	return media.Tone(hz, time.Duration(len(text))*40*time.Millisecond, 0.5)
}

// Long enough (about 6 s of the fake voice) to be talked over.
const longReply = "We have a seasonal menu with fresh fish, slow roasted lamb, three vegetarian dishes, " +
	"homemade pasta and a cheese board, and for dessert there is a chocolate tart."

// sipVoices makes each agent's voice its own: rendered phrases are cached
// per process by text and voice, and a phrase another test's agent cached
// would play at that test's pitch.
var sipVoices atomic.Int64

type sipAgent struct {
	voice string
	inst  *instance
	dg    *fake.Deepgram
	oai   *fake.OpenAI
	el    *fake.ElevenLabs
}

// startSIPAgent serves a flow that answers and hands the call to an agent
// whose providers are fakes started here with these options.
func startSIPAgent(t *testing.T, dgOpt fake.DeepgramOptions, script fake.OpenAIScript) *sipAgent {
	t.Helper()
	return startSIPAgentWith(t, dgOpt, script, "", nil)
}

// startSIPAgentWith is startSIPAgent with another flow (its JSON; "" for
// answer, ai_talk desk, hangup) and changes to the agent's definition.
func startSIPAgentWith(t *testing.T, dgOpt fake.DeepgramOptions, script fake.OpenAIScript, flowJSON string, change func(*agent.Definition)) *sipAgent {
	t.Helper()
	a := &sipAgent{
		voice: fmt.Sprintf("sipe2evoice%d", sipVoices.Add(1)),
		dg:    fake.NewDeepgram(t, dgOpt),
		oai:   fake.NewOpenAI(t, script),
		el:    fake.NewElevenLabs(t, fake.ElevenLabsOptions{Synth: agentVoice}),
	}
	def := agent.Definition{
		ID: "desk", Name: "Desk", SystemPrompt: "You answer questions about the restaurant.",
		StartingMessage: "Hello.",
		STT:             &agent.ProviderConfig{Provider: "deepgram", BaseURL: a.dg.URL(), APIKey: "k"},
		LLM:             &agent.ProviderConfig{Provider: "openai", BaseURL: a.oai.URL, APIKey: "k", Model: "m"},
		TTS:             &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: a.el.URL(), APIKey: "k", Voice: a.voice},
		Fallback:        agent.Fallback{Goodbye: "Goodbye."},
	}
	if change != nil {
		change(&def)
	}
	agents := flow.NewAgents()
	if err := agents.Put(def); err != nil {
		t.Fatal(err)
	}
	if flowJSON == "" {
		flowJSON = `{"id":"desk","actions":[{"type":"answer"},{"type":"ai_talk","option":{"agent_id":"desk"}},{"type":"hangup"}]}`
	}
	f := mustFlow(t, flowJSON)
	a.inst, _ = testServerWith(t, instanceOptions{flow: f, agents: agents}, nil)
	return a
}

func espeakWAV(t *testing.T, name string) []int16 {
	t.Helper()
	pcm, err := media.ReadWAVFile("../../media/vad/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return pcm
}

// levelAt is the level of hz in the heard audio from..to (offsets from
// sample mark).
func levelAt(heard []int16, mark int, from, to time.Duration, hz float64) float64 {
	a := mark + int(from*media.SampleRate/time.Second)
	b := min(len(heard), mark+int(to*media.SampleRate/time.Second))
	if a < 0 || a >= b {
		return 0
	}
	return media.ToneLevel(heard[a:b], hz)
}

// quietAfter waits until the agent has been silent at hz for half a second.
func quietAfter(t *testing.T, call *siptest.Call, hz float64) {
	t.Helper()
	waitFor(t, "the agent to finish speaking", 20*time.Second, func() bool {
		h := call.Heard()
		return len(h) > media.SampleRate && media.ToneLevel(h[len(h)-media.SampleRate/2:], hz) < 0.05
	})
}

// greeted dials the agent and waits for its greeting to end.
func greeted(t *testing.T, a *sipAgent) *siptest.Call {
	t.Helper()
	call := dialTest(t, a.inst)
	waitFor(t, "the greeting", 15*time.Second, func() bool { return len(toneSequence(call.Heard(), replyHz)) > 0 })
	quietAfter(t, call, replyHz)
	return call
}

// replyStarts waits for the agent's voice after sample mark and returns
// where it began.
func replyStarts(t *testing.T, call *siptest.Call, mark int, hz float64) int {
	t.Helper()
	start := -1
	waitFor(t, "the agent's reply", 20*time.Second, func() bool {
		h := call.Heard()
		for i := mark; i+toneWindow <= len(h); i += media.FrameSamples {
			if media.ToneLevel(h[i:i+toneWindow], hz) > toneMinPeak {
				start = i
				return true
			}
		}
		return false
	})
	return start
}

func transcriptOf(t *testing.T, a *sipAgent, call *siptest.Call) []store.TranscriptTurn {
	t.Helper()
	rec := callRecord(t, a.inst, call.CallID())
	turns, err := a.inst.db.ListTranscript(bctx(t), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	return turns
}

// noAgentGoroutines fails t if, within a generous wait, goroutines of the
// agent or its provider clients are still running (the fakes' servers live
// until the test ends and are not counted).
func noAgentGoroutines(t *testing.T) {
	t.Helper()
	noGoroutines(t, "agent", 10*time.Second, "voxbridge/agent/fake.",
		"voxbridge/agent.", "voxbridge/agent/deepgram.", "voxbridge/agent/elevenlabs.", "voxbridge/agent/openai.")
}

// The caller talks over a long answer: the agent's voice stops at the
// phone while the caller is still speaking, the stored reply is marked
// interrupted and holds only the start of the answer (what was heard),
// and the model's next request carries that same cut text.
func TestAgentBargeInOverSIP(t *testing.T) {
	a := startSIPAgent(t, fake.DeepgramOptions{Utterances: []string{"Tell me about the menu.", "Stop, can I change my booking?"}},
		fake.OpenAIScript{Chat: []fake.ChatReply{{Text: longReply}, {Text: "Of course."}}})
	call := greeted(t, a)
	<-call.Play(agenttest.Speech(1500 * time.Millisecond))
	start := replyStarts(t, call, call.HeardLen(), replyHz)
	waitFor(t, "1.5 s of the answer", 20*time.Second, func() bool { return call.HeardLen() >= start+3*media.SampleRate/2 })

	barge := call.HeardLen()
	const speechEnd = 2 * time.Second
	<-call.Play(agenttest.Speech(speechEnd))
	heard := call.Heard()
	before := levelAt(heard, barge, -time.Second, 0, replyHz)
	// Stopped within the first 800 ms of the caller's speech, and silent
	// for the rest of it.
	during := levelAt(heard, barge, 800*time.Millisecond, speechEnd, replyHz)
	if before < 0.2 || during > 0.05 {
		t.Fatalf("the agent's voice: level %.2f before the caller spoke, %.2f while the caller spoke (want it stopped)", before, during)
	}
	next := replyStarts(t, call, barge+int(speechEnd*media.SampleRate/time.Second), replyHz) // "Of course."
	waitFor(t, "the next answer to play", 10*time.Second, func() bool { return call.HeardLen() > next+media.SampleRate })
	quietAfter(t, call, replyHz)
	if err := call.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	var cut *store.TranscriptTurn
	turns := transcriptOf(t, a, call)
	for i, tt := range turns {
		if tt.Role == agent.RoleAssistant && tt.Kind == agent.KindReply && tt.Index == 2 {
			cut = &turns[i] // greeting, question, answer
		}
	}
	if cut == nil || !cut.Interrupted || cut.Text == "" || !strings.HasPrefix(longReply, cut.Text) || len(cut.Text) > len(longReply)*3/4 {
		t.Fatalf("the interrupted answer is stored as %+v, want a start of %q", cut, longReply)
	}
	reqs := a.oai.ChatRequests()
	if len(reqs) < 2 {
		t.Fatalf("%d LLM requests, want the caller's interruption to reach it", len(reqs))
	}
	i := slices.IndexFunc(reqs[1].Messages, func(m agent.Message) bool {
		return m.Role == agent.RoleAssistant && strings.HasPrefix(longReply, m.Content)
	})
	if i < 0 || reqs[1].Messages[i].Content != cut.Text {
		t.Fatalf("the model's history after the interruption: %+v, want the heard part %q", reqs[1].Messages, cut.Text)
	}
	noAgentGoroutines(t)
}

// A short "uh-huh" while the agent talks is a backchannel: it does not
// take the turn. The agent pauses at its onset (that is what makes a real
// interruption stop fast) and resumes where it paused when it ends, so the
// answer reaches the caller whole (all of its audio is heard) with one
// short pause, it is stored whole and not interrupted, and the model is
// not asked to answer "uh-huh".
func TestAgentBackchannelOverSIP(t *testing.T) {
	a := startSIPAgent(t, fake.DeepgramOptions{Utterances: []string{"Tell me about the menu.", "uh-huh"}},
		fake.OpenAIScript{Chat: []fake.ChatReply{{Text: longReply}}, ChatFunc: func(fake.ChatRequest) fake.ChatReply {
			return fake.ChatReply{Text: "Anything else?"}
		}})
	call := greeted(t, a)
	<-call.Play(agenttest.Speech(1500 * time.Millisecond))
	start := replyStarts(t, call, call.HeardLen(), replyHz)
	waitFor(t, "1.5 s of the answer", 20*time.Second, func() bool { return call.HeardLen() >= start+3*media.SampleRate/2 })

	bc := call.HeardLen()
	<-call.Play(agenttest.Speech(240 * time.Millisecond))
	// The answer's length is what the TTS sent for it, once its stream has
	// ended (the agent's resume does not ask again).
	var want time.Duration
	waitFor(t, "the answer's audio to be synthesized", 20*time.Second, func() bool {
		want = 0
		for _, es := range a.el.Sessions() {
			if strings.Contains(es.Text(), "seasonal") {
				select {
				case <-es.Done():
				default:
					return false // still sending
				}
				want += es.SentAudio()
			}
		}
		return want > 0
	})
	waitFor(t, "the rest of the answer", 30*time.Second, func() bool {
		return call.HeardLen() >= start+int((want+3*time.Second)*media.SampleRate/time.Second)
	})
	quietAfter(t, call, replyHz)
	heard := call.Heard()
	voiced, longestGap, gap := 0, 0, 0
	for i := start; i+toneWindow <= len(heard); i += toneWindow {
		if media.ToneLevel(heard[i:i+toneWindow], replyHz) > toneMinPeak {
			voiced++
			longestGap = max(longestGap, gap)
			gap = 0
		} else {
			gap++
		}
	}
	got := time.Duration(voiced) * 100 * time.Millisecond
	t.Logf("the answer: %v of %v heard; longest pause %v (the backchannel came %.1f s in)",
		got, want, time.Duration(longestGap)*100*time.Millisecond, float64(bc-start)/media.SampleRate)
	if got < want*9/10 {
		t.Fatalf("the caller heard %v of the %v answer: the backchannel cut it", got, want)
	}
	// The pause a caller hears is their own "uh-huh" (240 ms), less the
	// VAD's 60 ms to confirm speech, plus its 200 ms hangover before the
	// speech counts as over: about 400 ms, which the talker does not
	// perceive as a gap since they were speaking through most of it. 600 ms
	// allows for the 100 ms windows measured here and the answer's own
	// word gaps; committing the interruption would leave the 1.5 s resume
	// delay, or at least the wait for the transcript.
	if pause := time.Duration(longestGap) * 100 * time.Millisecond; pause > 600*time.Millisecond {
		t.Fatalf("the answer paused for %v at the backchannel", pause)
	}
	if err := call.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	whole := false
	for _, tt := range transcriptOf(t, a, call) {
		if tt.Role == agent.RoleAssistant && tt.Interrupted {
			t.Fatalf("a backchannel interrupted the agent: %+v", tt)
		}
		whole = whole || tt.Role == agent.RoleAssistant && tt.Text == longReply
	}
	if !whole {
		t.Fatal("the answer is not stored whole")
	}
	if reqs := a.oai.ChatRequests(); len(reqs) != 1 {
		t.Fatalf("%d LLM requests, want 1: the backchannel must not start a turn (last: %q)", len(reqs), reqs[len(reqs)-1].LastUserText())
	}
	noAgentGoroutines(t)
}

// Provider failures over a real call: the LLM answering 500, the LLM
// hanging, the STT websocket dropping, the TTS websocket dropping in the
// middle of a reply. Each time the caller hears the apology (pre-rendered,
// so it plays even when the TTS is what failed), the agent hangs up, and
// the record says which provider failed; nothing of the agent is left
// running. A hanging LLM is covered by the filler first, and the silence
// before the apology is bounded by llm.first_token_timeout_ms × (retries+1).
func TestAgentProviderFailuresOverSIP(t *testing.T) {
	for _, tc := range []struct {
		name     string
		provider string
		dg       fake.DeepgramOptions
		chat     func(fake.ChatRequest) fake.ChatReply
		// speak: the caller asks something (to reach the LLM or the TTS).
		speak   bool
		breakEL bool // the TTS drops its connections from the caller's question on
		goodbye bool // the goodbye follows the apology (the TTS still works)
		wait    time.Duration
		// firstTokenMS sets llm.first_token_timeout_ms (retries stay at
		// their default, 1); with it the filler must come before the
		// apology, within the bound.
		firstTokenMS int
	}{
		{name: "llm 500", provider: "llm", speak: true, goodbye: true, wait: 30 * time.Second,
			chat: func(fake.ChatRequest) fake.ChatReply {
				return fake.ChatReply{Fault: fake.OpenAIFault{Status: 500, Message: "The server had an error"}}
			}},
		// Two attempts of a 2 s first-token timeout.
		{name: "llm hangs", provider: "llm", speak: true, goodbye: true, wait: 30 * time.Second, firstTokenMS: 2000,
			chat: func(fake.ChatRequest) fake.ChatReply { return fake.ChatReply{Fault: fake.OpenAIFault{Hang: true}} }},
		{name: "stt drops", provider: "stt", goodbye: true, wait: 45 * time.Second,
			dg: fake.DeepgramOptions{Failure: fake.DeepgramFailure{DropAfter: 2 * time.Second}}},
		{name: "tts drops", provider: "tts", speak: true, breakEL: true, wait: 45 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.dg.Utterances = []string{"Tell me about the menu."}
			chat := tc.chat
			if chat == nil {
				chat = func(fake.ChatRequest) fake.ChatReply { return fake.ChatReply{Text: longReply} }
			}
			a := startSIPAgentWith(t, tc.dg, fake.OpenAIScript{ChatFunc: chat}, "", func(d *agent.Definition) {
				d.LLM.FirstTokenTimeoutMS = tc.firstTokenMS
			})
			call := dialTest(t, a.inst)
			mark := 0 // what the caller hears from the question on
			if tc.speak {
				waitFor(t, "the greeting", 15*time.Second, func() bool { return len(toneSequence(call.Heard(), replyHz)) > 0 })
				quietAfter(t, call, replyHz)
				if tc.breakEL {
					// The apology is rendered at the start, while the TTS works.
					waitFor(t, "the apology to be rendered", 15*time.Second, func() bool {
						tts := &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: a.el.URL(), Voice: a.voice}
						_, ok := agent.DefaultCache.Get(agent.PhraseKey(tts, agent.DefaultApology, "", ""))
						return ok
					})
					a.el.SetFailure(fake.ElevenLabsFailure{DropAfterChunks: 1})
				}
				mark = call.HeardLen()
				<-call.Play(espeakWAV(t, "s1.wav"))
			}
			questionEnd := call.HeardLen() - mark
			select {
			case <-call.Done():
			case <-time.After(tc.wait):
				t.Fatalf("the agent did not hang up within %v of the failure", tc.wait)
			}
			heard := call.Heard()[mark:]
			got := toneSequence(heard, replyHz, fillerHz, apologyHz, goodbyeHz)
			if !slices.Contains(got, apologyHz) || tc.goodbye != slices.Contains(got, goodbyeHz) {
				t.Fatalf("the caller heard tones %v (reply %d, apology %d, goodbye %d Hz), want the apology (and goodbye: %v)",
					got, replyHz, apologyHz, goodbyeHz, tc.goodbye)
			}
			if tc.firstTokenMS > 0 {
				if f := slices.Index(got, fillerHz); f < 0 || f > slices.Index(got, apologyHz) {
					t.Fatalf("the caller heard tones %v, want the filler (%d Hz) before the apology (%d Hz)", got, fillerHz, apologyHz)
				}
				// The question's end to the apology: two attempts of the
				// timeout, plus the transcript, the endpoint and the network.
				apology := replyStarts(t, call, mark+questionEnd, apologyHz) - mark - questionEnd
				silence := time.Duration(apology) * time.Second / media.SampleRate
				t.Logf("the caller's question to the apology: %v", silence)
				if bound := 2*time.Duration(tc.firstTokenMS)*time.Millisecond + 2*time.Second; silence > bound {
					t.Fatalf("%v between the question and the apology, want at most %v", silence, bound)
				}
			}
			if !call.RemoteHungUp() {
				t.Fatal("the call did not end with the agent's BYE")
			}
			rec := callRecord(t, a.inst, call.CallID())
			if rec.Variables["agent.reason"] != string(agent.EndProviderFailure) || rec.Variables["agent.failed_provider"] != tc.provider {
				t.Fatalf("record variables %v, want agent.reason %s and agent.failed_provider %s", rec.Variables, agent.EndProviderFailure, tc.provider)
			}
			if !slices.ContainsFunc(rec.Warnings, func(w string) bool { return strings.Contains(w, "agent provider failed: "+tc.provider) }) {
				t.Fatalf("record warnings %q name no %s failure", rec.Warnings, tc.provider)
			}
			var apology bool
			turns, err := a.inst.db.ListTranscript(context.Background(), rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, tt := range turns {
				apology = apology || tt.Kind == agent.KindApology
			}
			if !apology {
				t.Fatalf("no apology turn in the transcript: %+v", turns)
			}
			noAgentGoroutines(t)
		})
	}
}

// A live transcription started before ai_talk and the agent write the same
// call's transcript: every turn of both is kept, each under its own index
// (they once both counted from 0 and overwrote each other).
func TestAgentTurnsBesideTranscriptionOverSIP(t *testing.T) {
	const question = "Tell me about the menu."
	a := startSIPAgentWith(t, fake.DeepgramOptions{Utterances: []string{question}},
		fake.OpenAIScript{ChatFunc: func(fake.ChatRequest) fake.ChatReply { return fake.ChatReply{Text: "Of course."} }},
		`{"id":"desk","actions":[{"type":"answer"},
		  {"type":"transcribe_start","option":{"agent_id":"desk","direction":"in"}},
		  {"type":"ai_talk","option":{"agent_id":"desk"}},{"type":"hangup"}]}`, nil)
	call := greeted(t, a)
	mark := call.HeardLen()
	<-call.Play(agenttest.Speech(1500 * time.Millisecond))
	replyStarts(t, call, mark, replyHz)
	// The agent's greeting, the caller's turn and the answer; and the
	// transcription's own turn for the caller. Turns that collide share an
	// index and overwrite each other, so with a collision these are never
	// all stored.
	var turns []store.TranscriptTurn
	has := func(role, kind, text string, n int) bool {
		got := 0
		for _, tt := range turns {
			if tt.Role == role && tt.Kind == kind && tt.Text == text {
				got++
			}
		}
		return got >= n
	}
	callID := answeredCallID(t, a.inst)
	complete := func() bool {
		var err error
		if turns, err = a.inst.db.ListTranscript(bctx(t), callID); err != nil {
			t.Fatal(err)
		}
		return has(agent.RoleAssistant, agent.KindGreeting, "Hello.", 1) && has(agent.RoleUser, agent.KindSpeech, question, 2) &&
			has(agent.RoleAssistant, agent.KindReply, "Of course.", 1)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !complete() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if !complete() {
		var rows []string
		for _, tt := range turns {
			rows = append(rows, fmt.Sprintf("%d %s/%s %q", tt.Index, tt.Role, tt.Kind, tt.Text))
		}
		t.Fatalf("stored turns:\n%s\nwant the greeting, the answer, and the caller's question from both the agent and the transcription",
			strings.Join(rows, "\n"))
	}
	if err := call.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
}

// An ai_talk whose agent cannot run (here: no such agent) still answers the
// caller with the built-in apology, then the flow goes on at the action's
// fallback_target_id: the caller hears speech, then the fallback's beep,
// and the record keeps the failed ai_talk and the actions that followed.
func TestAITalkFailureGoesToTheFallback(t *testing.T) {
	inst, _ := testServer(t, mustFlow(t, `{"id":"fb","actions":[
	  {"type":"answer"},
	  {"type":"ai_talk","option":{"agent_id":"nobody","fallback_target_id":"human"}},
	  {"type":"beep","option":{"frequency_hz":500,"duration_ms":300}},
	  {"id":"human","type":"beep","option":{"frequency_hz":1000,"duration_ms":800}},
	  {"type":"hangup"}]}`))
	call := dialTest(t, inst)
	waitDone(t, call)
	heard := call.Heard()
	if got := toneSequence(heard, 500, 1000); fmt.Sprint(got) != "[1000]" {
		t.Fatalf("the caller heard tones %v, want only the fallback's 1000 Hz", got)
	}
	// The apology (speech, not a tone) came before the beep.
	beep := replyStarts(t, call, 0, 1000)
	if media.RMS(heard[:beep]) < 100 {
		t.Fatalf("silence before the fallback (RMS %.0f): no apology", media.RMS(heard[:beep]))
	}
	rec := callRecord(t, inst, call.CallID())
	runs, err := inst.db.ListActionRuns(context.Background(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range runs {
		got = append(got, r.Type+"="+r.Result)
	}
	if strings.Join(got, " ") != "answer=ok ai_talk=error beep=ok hangup=stop" {
		t.Errorf("actions run: %v", got)
	}
}
