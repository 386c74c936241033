package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/store"
)

// toneSupport is the support agent's voice (its fake TTS), apart from the
// IVR's 600 Hz menu beep.
const toneSupport = 500

// testdata/flows/ivr.json, key 2: the caller reaches the agent "support"
// (fake Deepgram, OpenAI and ElevenLabs): it hears the agent's greeting,
// which is stored in the call's transcript, and the agent's results come
// back as variables.
func TestIVRExampleAgent(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{APIKey: "dg-key"})
	oai := fake.NewOpenAI(t, fake.OpenAIScript{APIKey: "oai-key"})
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{APIKey: "el-key", ToneHz: toneSupport, PerChar: 20 * time.Millisecond})
	agents := flow.NewAgents()
	if err := agents.Put(agent.Definition{ID: "support", Name: "Support", SystemPrompt: "You help callers.",
		StartingMessage: "Hello, this is support. How can I help?",
		STT:             &agent.ProviderConfig{Provider: "deepgram", BaseURL: dg.URL(), APIKey: "dg-key"},
		LLM:             &agent.ProviderConfig{Provider: "openai", BaseURL: oai.URL, APIKey: "oai-key", Model: "m"},
		TTS:             &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: el.URL(), APIKey: "el-key"}}); err != nil {
		t.Fatal(err)
	}
	inst := warmServer(t, exampleFlow(t, "ivr.json"), agents, officeHours)
	a := dialSales(t, inst)
	hears(t, "the caller (the menu beep)", a, toneMenu)
	if _, err := a.SendDTMF('2', 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	mark := a.HeardLen()
	waitFor(t, "the agent's greeting", 20*time.Second, func() bool {
		return len(toneSequence(a.Heard()[mark:], toneSupport)) > 0
	})
	waitFor(t, "the greeting to end", 15*time.Second, func() bool {
		h := a.Heard()
		return len(h) > mark+media.SampleRate && media.ToneLevel(h[len(h)-media.SampleRate/2:], toneSupport) < 0.05
	})
	if err := a.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	rec, actions := getCallView(t, inst, a.CallID())
	if trail := actionTrail(actions); !strings.HasPrefix(trail, "hours answer welcome menu choice route(jump:support) support") {
		t.Errorf("actions: %s", trail)
	}
	var turns []store.TranscriptTurn
	waitFor(t, "the stored greeting", 10*time.Second, func() bool {
		time.Sleep(100 * time.Millisecond)
		turns, _ = inst.db.ListTranscript(bctx(t), rec.ID)
		return len(turns) > 0
	})
	if turns[0].Role != agent.RoleAssistant || turns[0].Text != "Hello, this is support. How can I help?" || turns[0].TMStart == nil {
		t.Errorf("transcript %+v", turns)
	}
	if rec.Variables["agent.id"] != "support" || rec.Variables["agent.reason"] != string(agent.EndCallerHangup) || rec.Variables[flow.VarCallDigits] != "2" {
		t.Errorf("variables %v", rec.Variables)
	}
}

// Every action type appears in a flow that one of this package's tests
// runs through a real call (or in an example flow those tests run). It
// checks the flows' text, not what ran: it catches a new action type
// added without an end-to-end test.
func TestEveryActionTypeHasEndToEndFlow(t *testing.T) {
	files, _ := filepath.Glob("*_e2e_test.go")
	examples, _ := filepath.Glob("../../testdata/flows/*")
	var text strings.Builder
	for _, f := range append(files, examples...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text.Write(b)
	}
	typeRE := regexp.MustCompile(`"type":\s*"([a-z_]+)"|\btype:\s*([a-z_]+)`)
	used := map[string]bool{}
	for _, m := range typeRE.FindAllStringSubmatch(text.String(), -1) {
		used[m[1]+m[2]] = true
	}
	for _, typ := range flow.ActionTypes() {
		if !used[typ] {
			t.Errorf("action type %q is in no end-to-end flow", typ)
		}
	}
}
