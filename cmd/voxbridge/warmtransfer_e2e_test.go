package main

import (
	"context"
	"slices"
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

// mohNote is a note of every chord of flow's music on hold but one (C4).
const mohNote = 329.63

// heardMusicOnHold reports whether pcm has a second of chords in it: the
// hold music's notes, and neither the announcement's 600 Hz nor the
// parties' tones.
func heardMusicOnHold(pcm []int16) bool {
	win, level := strongest(pcm, media.SampleRate, mohNote)
	return level > 0.02 && media.ToneLevel(win, 392) > 0.02 &&
		media.ToneLevel(win, 600) < 0.01 && media.ToneLevel(win, toneCaller) < 0.01 && media.ToneLevel(win, toneCallee) < 0.01
}

// voiceAgents is an agent whose fake ElevenLabs voice is a 600 Hz tone.
func voiceAgents(t *testing.T) *flow.Agents {
	t.Helper()
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{ToneHz: 600, PerChar: 20 * time.Millisecond})
	agents := flow.NewAgents()
	if err := agents.Put(agent.Definition{ID: "voice", Name: "Voice", SystemPrompt: "-",
		STT: &agent.ProviderConfig{Provider: "deepgram", APIKey: "unused-here"},
		LLM: &agent.ProviderConfig{Provider: "openai", APIKey: "unused-here"},
		TTS: &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: el.URL(), APIKey: "k"}}); err != nil {
		t.Fatal(err)
	}
	return agents
}

// warmServer is exampleServer (extension 1002, anonymous "sales") with
// agents, at the time now says (nil: the real time).
func warmServer(t *testing.T, f *flow.Flow, agents *flow.Agents, now func() time.Time) *instance {
	t.Helper()
	inst, cfg := testServerWith(t, instanceOptions{flow: f, agents: agents, now: now}, func(c *serveConfig) { c.SIPAnonymous = "sales" })
	ext := store.Extension{Number: "1002", DisplayName: "Sales", Enabled: true}
	if err := ext.SetPassword(cfg.SIPRealm, extPass); err != nil {
		t.Fatal(err)
	}
	if err := inst.db.CreateExtension(context.Background(), &ext); err != nil {
		t.Fatal(err)
	}
	return inst
}

// A warm transfer: the caller hears music on hold while extension 1002
// rings, 1002 answers and hears the announcement (the agent's voice, 600
// Hz) before anything of the caller, then the two are bridged. (A loaded
// machine may drop a frame mid-announcement: the order is what counts.)
func TestWarmTransferAnswered(t *testing.T) {
	inst := warmServer(t, mustFlow(t, `{"id":"warm","actions":[
	  {"type":"answer"},
	  {"id":"xfer","type":"transfer","option":{"destination":{"type":"extension","target":"1002"},"mode":"warm",
	    "announce":"Transferring a caller from ${call.from_user}.","agent_id":"voice"}},
	  {"type":"hangup"}]}`), voiceAgents(t), nil)
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee, RingFor: 3 * time.Second})
	a := dialSales(t, inst)
	bc := answeredCall(t, b)
	onHold := a.Heard()
	a.Play(media.Tone(toneCaller, 6*time.Second, 0.5))
	hears(t, "the caller, bridged", a, toneCallee)
	hears(t, "extension 1002, bridged", bc, toneCaller)
	if !heardMusicOnHold(onHold) {
		t.Error("the caller heard no music on hold while 1002 rang")
	}
	if _, l := strongest(onHold, media.SampleRate/4, 600); l > 0.05 {
		t.Errorf("the caller heard the announcement meant for 1002 (level %.2f)", l)
	}
	if seq := slices.Compact(toneSequence(bc.Heard(), 600, toneCaller)); len(seq) < 2 || seq[0] != 600 || seq[1] != toneCaller {
		t.Errorf("1002 heard %v, want the announcement (600) and then the caller (%v)", seq, toneCaller)
	}
	if err := bc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)
	rec, actions := getCallView(t, inst, a.CallID())
	if trail := actionTrail(actions); trail != "answer xfer(stop)" {
		t.Errorf("actions: %s", trail)
	}
	if rec.Variables[flow.VarTransferResult] != "answered" || rec.Variables[flow.VarConnectCallID] == "" {
		t.Errorf("variables %v", rec.Variables)
	}
	legs := finalChained(t, inst, rec.ID, 1)
	if legs[0].ID != rec.Variables[flow.VarConnectCallID] {
		t.Errorf("transferred leg %+v", legs[0])
	}
}

// When the destination does not answer (or is busy), the caller comes off
// hold and the flow goes on with ${transfer.result}: here it branches on
// it to a beep the caller hears.
func TestWarmTransferNotTaken(t *testing.T) {
	for _, c := range []struct {
		result string
		plan   siptest.AnswerPlan
		hold   bool // the caller waited long enough to hear the music
	}{
		{"noanswer", siptest.AnswerPlan{RingFor: time.Minute}, true},
		{"busy", siptest.AnswerPlan{Reject: 486}, false},
	} {
		t.Run(c.result, func(t *testing.T) {
			inst := exampleServer(t, mustFlow(t, `{"id":"warm","actions":[
			  {"type":"answer"},
			  {"id":"xfer","type":"transfer","option":{"destination":{"type":"extension","target":"1002"},"mode":"warm","timeout_s":3}},
			  {"id":"why","type":"branch","option":{"variable":"transfer.result","targets":{"busy":"busy","noanswer":"noanswer"}}},
			  {"type":"hangup"},
			  {"id":"busy","type":"beep","option":{"frequency_hz":800,"duration_ms":400},"next_id":"bye"},
			  {"id":"noanswer","type":"beep","option":{"frequency_hz":1200,"duration_ms":400},"next_id":"bye"},
			  {"id":"bye","type":"hangup"}]}`), nil)
			registeredPhone(t, inst, "1002", c.plan)
			a := dialSales(t, inst)
			waitDone(t, a)
			rec, actions := getCallView(t, inst, a.CallID())
			if trail := actionTrail(actions); trail != "answer xfer why(jump:"+c.result+") "+c.result+" bye(stop)" {
				t.Errorf("actions: %s", trail)
			}
			if rec.Variables[flow.VarTransferResult] != c.result {
				t.Errorf("transfer.result %q", rec.Variables[flow.VarTransferResult])
			}
			want := map[string]float64{"busy": 800, "noanswer": 1200}[c.result]
			if seq := toneSequence(a.Heard(), 800, 1200); len(seq) != 1 || seq[0] != want {
				t.Errorf("the caller heard beeps %v, want one of %v", seq, want)
			}
			if c.hold && !heardMusicOnHold(a.Heard()) {
				t.Error("no music on hold while 1002 rang")
			}
		})
	}
}

// The agent's transfer_call to a warm target takes the same path: the
// caller hears music on hold while sales rings, sales hears who is coming
// in the agent's voice (600 Hz) before the caller, then they are bridged.
func TestAgentWarmTransfer(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{Utterances: []string{"Sales, please."}})
	oai := fake.NewOpenAI(t, fake.OpenAIScript{Chat: []fake.ChatReply{
		{Text: "Transferring you.", ToolCalls: []agent.ToolCall{{Name: "transfer_call", Arguments: `{"target":"sales","summary":"A caller asking about order ${call.id}."}`}}},
		{Text: "You are through."},
	}})
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{ToneHz: 600, PerChar: 10 * time.Millisecond})
	agents := flow.NewAgents()
	if err := agents.Put(agent.Definition{ID: "desk", Name: "Desk", SystemPrompt: "You route calls.", StartingMessage: "Hello.",
		STT:             &agent.ProviderConfig{Provider: "deepgram", BaseURL: dg.URL(), APIKey: "k"},
		LLM:             &agent.ProviderConfig{Provider: "openai", BaseURL: oai.URL, APIKey: "k", Model: "m"},
		TTS:             &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: el.URL(), APIKey: "k"},
		Tools:           []string{"transfer_call"},
		TransferTargets: []agent.TransferTarget{{Name: "sales", Target: "1002", Warm: true}},
	}); err != nil {
		t.Fatal(err)
	}
	inst := warmServer(t, mustFlow(t, `{"id":"desk","actions":[{"type":"answer"},{"type":"ai_talk","option":{"agent_id":"desk"}},{"type":"hangup"}]}`), agents, nil)
	sales := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee, RingFor: 3 * time.Second})
	a := dialSales(t, inst)
	waitFor(t, "the greeting", 15*time.Second, func() bool { return len(toneSequence(a.Heard(), 600)) > 0 })
	waitFor(t, "the greeting to end", 15*time.Second, func() bool {
		h := a.Heard()
		return len(h) > media.SampleRate && media.ToneLevel(h[len(h)-media.SampleRate/2:], 600) < 0.05
	})
	<-a.Play(oneUtterance(t))
	mark := a.HeardLen()
	bc := answeredCall(t, sales)
	onHold := a.Heard()[mark:]
	a.Play(media.Tone(toneCaller, 6*time.Second, 0.5))
	hears(t, "the caller, bridged to sales", a, toneCallee)
	hears(t, "sales, bridged", bc, toneCaller)
	if !heardMusicOnHold(onHold) {
		t.Error("the caller heard no music on hold while sales rang")
	}
	if seq := slices.Compact(toneSequence(bc.Heard(), 600, toneCaller)); len(seq) < 2 || seq[0] != 600 || seq[1] != toneCaller {
		t.Errorf("sales heard %v, want the announcement (600) and then the caller (%v)", seq, toneCaller)
	}
	if err := bc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)
	rec := callRecord(t, inst, a.CallID())
	// The model's summary is what sales heard, spoken as written.
	const summary = "A caller asking about order ${call.id}."
	if rec.Variables["agent.reason"] != string(agent.EndTransfer) || rec.Variables[flow.VarTransferResult] != "answered" ||
		rec.Variables[flow.VarTransferSummary] != summary {
		t.Errorf("variables %v", rec.Variables)
	}
	var said []string
	for _, s := range el.Sessions() {
		said = append(said, s.Text())
	}
	if !slices.ContainsFunc(said, func(s string) bool { return strings.Contains(s, summary) }) {
		t.Errorf("the voice was asked to say %q; want the model's summary %q", said, summary)
	}
}
