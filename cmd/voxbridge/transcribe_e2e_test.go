package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/store"
)

// scribeAgents is one agent whose fake Deepgram transcribes and whose fake
// ElevenLabs speaks a 600 Hz tone.
func scribeAgents(t *testing.T, utterances ...string) *flow.Agents {
	t.Helper()
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{APIKey: "dg-key", Utterances: utterances})
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{APIKey: "el-key", ToneHz: 600, PerChar: 15 * time.Millisecond})
	agents := flow.NewAgents()
	if err := agents.Put(agent.Definition{ID: "scribe", Name: "Scribe", SystemPrompt: "-",
		STT: &agent.ProviderConfig{Provider: "deepgram", BaseURL: dg.URL(), APIKey: "dg-key"},
		LLM: &agent.ProviderConfig{Provider: "openai", APIKey: "unused-here"},
		TTS: &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: el.URL(), APIKey: "el-key"}}); err != nil {
		t.Fatal(err)
	}
	return agents
}

// oneUtterance is the first 2.5 s of a recorded phrase: speech without a
// pause long enough for the recognizer to end the utterance inside it.
func oneUtterance(t *testing.T) []int16 {
	t.Helper()
	speech, err := media.ReadWAVFile("../../media/vad/testdata/s1.wav")
	if err != nil {
		t.Fatal(err)
	}
	return speech[:media.SampleRate*5/2]
}

// liveEvents subscribes to the API's event websocket and collects events.
type liveEvents struct {
	mu  sync.Mutex
	evs []flow.Event
}

func subscribeEvents(t *testing.T, inst *instance, types string) *liveEvents {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + testAPIKey}}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+inst.HTTP.String()+"/v1/events?types="+types, h)
	if err != nil {
		t.Fatal(err)
	}
	le := &liveEvents{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var ev flow.Event
			if err := ws.ReadJSON(&ev); err != nil {
				return
			}
			le.mu.Lock()
			le.evs = append(le.evs, ev)
			le.mu.Unlock()
		}
	}()
	t.Cleanup(func() { ws.Close(); <-done })
	waitFor(t, "the websocket subscription", 10*time.Second, func() bool {
		return metricValue(t, inst.api.Metrics().EventSubscribers) == 1
	})
	return le
}

// roleTexts lists "role: text" of the events of typ.
func (le *liveEvents) roleTexts(typ string) []string {
	le.mu.Lock()
	defer le.mu.Unlock()
	var out []string
	for _, ev := range le.evs {
		if ev.Type != typ {
			continue
		}
		b, _ := json.Marshal(ev.Data)
		var d struct{ Role, Text string }
		json.Unmarshal(b, &d)
		out = append(out, d.Role+": "+d.Text)
	}
	return out
}

// transcribe_start with direction both runs beside talk and echo: the
// greeting we speak is the assistant's turn, the caller's speech the
// user's, and its echo the assistant's again; each is stored with times
// inside the span it was heard, shown by the API, and published live.
func TestTranscribeBothDirections(t *testing.T) {
	// The fake gives each recognition stream the utterances in order: the
	// out stream hears the greeting, then the echo; the in stream the
	// caller.
	agents := scribeAgents(t, "alpha bravo charlie", "delta echo foxtrot")
	f := mustFlow(t, `{"id":"scribe","actions":[{"type":"answer"},
	  {"id":"on","type":"transcribe_start","option":{"agent_id":"scribe","direction":"both","language":"en"}},
	  {"type":"talk","option":{"text":"Welcome to the line, please speak after this.","agent_id":"scribe"}},
	  {"type":"echo","option":{"duration_ms":30000}},
	  {"id":"off","type":"transcribe_stop"},
	  {"type":"beep","option":{"frequency_hz":1000,"duration_ms":300}},
	  {"type":"hangup"}]}`)
	inst, _ := testServerWith(t, instanceOptions{flow: f, agents: agents}, nil)
	live := subscribeEvents(t, inst, "transcript.*")
	call := dialTest(t, inst)
	answered := time.Now()

	waitFor(t, "the greeting", 15*time.Second, func() bool { return len(toneSequence(call.Heard(), 600)) > 0 })
	waitFor(t, "the greeting to end", 15*time.Second, func() bool {
		h := call.Heard()
		return len(h) > media.SampleRate && media.ToneLevel(h[len(h)-media.SampleRate/2:], 600) < 0.05
	})
	speech := oneUtterance(t)
	spoke := time.Now()
	<-call.Play(speech)
	spokeEnd := time.Now()

	callID := answeredCallID(t, inst)
	waitFor(t, "three stored turns", 20*time.Second, func() bool {
		turns, err := inst.db.ListTranscript(bctx(t), callID)
		return err == nil && len(turns) >= 3
	})
	if _, err := call.SendDTMF('#', 200*time.Millisecond); err != nil { // ends the echo
		t.Fatal(err)
	}
	waitDone(t, call)
	rec, actions := getCallView(t, inst, call.CallID())
	if trail := actionTrail(actions); !strings.HasPrefix(trail, "answer on ") || !strings.Contains(trail, " off ") {
		t.Errorf("actions: %s", trail)
	}

	var got struct {
		Turns []store.TranscriptTurn `json:"turns"`
	}
	if code := getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls/"+rec.ID+"/transcript", &got); code != 200 {
		t.Fatalf("GET transcript: %d", code)
	}
	find := func(role, text string) store.TranscriptTurn {
		t.Helper()
		for _, tt := range got.Turns {
			if tt.Role == role && tt.Text == text {
				if tt.TMStart == nil || tt.TMEnd == nil || tt.TMEnd.Before(*tt.TMStart) {
					t.Fatalf("%s %q: times %v–%v", role, text, tt.TMStart, tt.TMEnd)
				}
				return tt
			}
		}
		t.Fatalf("no %s turn %q in %+v", role, text, got.Turns)
		return store.TranscriptTurn{}
	}
	greeting := find(agent.RoleAssistant, "alpha bravo charlie")
	caller := find(agent.RoleUser, "alpha bravo charlie")
	echo := find(agent.RoleAssistant, "delta echo foxtrot")
	if len(got.Turns) != 3 {
		t.Errorf("%d turns, want 3: %+v", len(got.Turns), got.Turns)
	}
	for _, tt := range got.Turns {
		t.Logf("%s %q: %v to %v after the caller began", tt.Role, tt.Text, tt.TMStart.Sub(spoke).Round(time.Millisecond), tt.TMEnd.Sub(spoke).Round(time.Millisecond))
	}
	const slack = 1500 * time.Millisecond // jitter buffer, VAD frames, a loaded machine
	within := func(what string, tt store.TranscriptTurn, from, to time.Time) {
		t.Helper()
		if tt.TMStart.Before(from.Add(-slack)) || tt.TMEnd.After(to.Add(slack)) {
			t.Errorf("%s: %v–%v, want within %v–%v", what, tt.TMStart.Format(time.StampMilli), tt.TMEnd.Format(time.StampMilli),
				from.Format(time.StampMilli), to.Format(time.StampMilli))
		}
	}
	within("our greeting", greeting, answered, spoke)
	within("the caller", caller, spoke, spokeEnd)
	within("the echo", echo, spoke, spokeEnd.Add(time.Second))
	if d := caller.TMEnd.Sub(*caller.TMStart); d < time.Second {
		t.Errorf("the caller's turn lasts %v; the speech is longer", d)
	}
	if !(greeting.Index < caller.Index && caller.Index < echo.Index) {
		t.Errorf("turn order %d %d %d", greeting.Index, caller.Index, echo.Index)
	}

	finals := strings.Join(live.roleTexts(flow.EventTranscriptFinal), "\n")
	for _, want := range []string{"assistant: alpha bravo charlie", "user: alpha bravo charlie", "assistant: delta echo foxtrot"} {
		if !strings.Contains(finals, want) {
			t.Errorf("live finals lack %q:\n%s", want, finals)
		}
	}
	partial := false
	for _, p := range live.roleTexts(flow.EventTranscriptPart) {
		partial = partial || strings.HasPrefix(p, "user: alpha")
	}
	if !partial {
		t.Errorf("no live partial of the caller's words: %v", live.roleTexts(flow.EventTranscriptPart))
	}
}

// transcribe_start refuses to run twice, and transcribe_stop without a
// transcription is recorded as a failed action without ending the call;
// hangup ends a running transcription and keeps what was said.
func TestTranscribeUntilHangup(t *testing.T) {
	agents := scribeAgents(t, "the caller said this")
	f := mustFlow(t, `{"id":"scribe","actions":[{"type":"answer"},
	  {"id":"nothing","type":"transcribe_stop"},
	  {"id":"on","type":"transcribe_start","option":{"agent_id":"scribe"}},
	  {"id":"again","type":"transcribe_start","option":{"agent_id":"scribe"}},
	  {"type":"beep","option":{"frequency_hz":1400,"duration_ms":300}},
	  {"type":"sleep","option":{"duration_ms":60000}}]}`)
	inst, _ := testServerWith(t, instanceOptions{flow: f, agents: agents}, nil)
	call := dialTest(t, inst)
	hears(t, "the caller (the beep)", call, 1400)
	id := answeredCallID(t, inst)
	<-call.Play(oneUtterance(t))
	if err := call.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the final record", 10*time.Second, func() bool {
		time.Sleep(100 * time.Millisecond) // gently: the record is also read over the rate-limited API
		rec, err := inst.db.GetCall(bctx(t), id)
		return err == nil && rec.Status == store.StatusHangup
	})
	rec, actions := getCallView(t, inst, call.CallID())
	errs := map[string]string{}
	for _, a := range actions {
		errs[a.ActionID] = a.Error
	}
	if errs["nothing"] == "" || errs["on"] != "" || !strings.Contains(errs["again"], "already running") {
		t.Errorf("action errors: %v", errs)
	}
	var turns []store.TranscriptTurn
	waitFor(t, "the stored turn", 10*time.Second, func() bool {
		turns, _ = inst.db.ListTranscript(bctx(t), rec.ID)
		return len(turns) >= 1
	})
	if len(turns) != 1 || turns[0].Role != agent.RoleUser || turns[0].Text != "the caller said this" {
		t.Errorf("transcript %+v", turns)
	}
}

// A transcription follows the media in force: after the phone moves its
// media to another port and switches to PCMA by re-INVITE, its speech from
// there is still transcribed.
func TestTranscribeFollowsReinvite(t *testing.T) {
	agents := scribeAgents(t, "said after the move")
	f := mustFlow(t, `{"id":"scribe","actions":[{"type":"answer"},
	  {"type":"transcribe_start","option":{"agent_id":"scribe","direction":"in"}},
	  {"type":"beep","option":{"frequency_hz":1400,"duration_ms":300}},
	  {"type":"sleep","option":{"duration_ms":60000}}]}`)
	inst, _ := testServerWith(t, instanceOptions{flow: f, agents: agents}, nil)
	call := dialTest(t, inst)
	hears(t, "the caller (the beep)", call, 1400)
	id := answeredCallID(t, inst)
	moved := moveMediaTo(t, testPhone(t), call, sdp.PCMA)
	<-moved.Enqueue(oneUtterance(t))
	var turns []store.TranscriptTurn
	waitFor(t, "the stored turn", 20*time.Second, func() bool {
		turns, _ = inst.db.ListTranscript(bctx(t), id)
		return len(turns) >= 1
	})
	if len(turns) != 1 || turns[0].Role != agent.RoleUser || turns[0].Text != "said after the move" {
		t.Errorf("transcript %+v", turns)
	}
	if err := call.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
}
