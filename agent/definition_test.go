package agent_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voxbridge/voxbridge/agent"
)

func TestLoadDefinitionYAMLAndJSONAgree(t *testing.T) {
	d, err := agent.LoadDefinition("testdata/booking.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != "booking" || d.LLM.BaseURL != "http://127.0.0.1:11434/v1" || d.TTS.Voice != "rachel" ||
		len(d.HTTPTools) != 1 || d.HTTPTools[0].TimeoutMS != 3000 || !d.TransferTargets[0].Warm ||
		d.DTMF.Keys["0"].Target != "manager" || d.Endpointing.SilenceMS != 600 || !d.Endpointing.Speculative ||
		d.BargeIn.MinSpeechMS != 250 || d.PostCall == nil || !d.PostCall.Summary ||
		d.LLM.FirstTokenTimeoutMS != 4000 || d.LLM.Retries != 2 {
		t.Fatalf("decoded %+v", d)
	}
	var params map[string]any
	if err := json.Unmarshal(d.HTTPTools[0].Parameters, &params); err != nil || params["required"].([]any)[0] != "date" {
		t.Errorf("YAML schema became %s (%v)", d.HTTPTools[0].Parameters, err)
	}
	// The same definition through JSON decodes to the same thing.
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "booking.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d2, err := agent.LoadDefinition(path)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(d2)
	if string(b) != string(b2) {
		t.Errorf("JSON round trip differs:\n%s\n%s", b, b2)
	}
	if !strings.Contains(string(b), `"system_prompt":`) || !strings.Contains(string(b), `"max_duration_s":600`) {
		t.Errorf("not snake_case: %s", b)
	}
}

func TestDefinitionPromptFoldsEverything(t *testing.T) {
	d, err := agent.LoadDefinition("testdata/booking.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, missing := d.BuildSystemPrompt(map[string]string{"restaurant": "Chez Test"})
	for _, want := range []string{"for Chez Test.", "## Objectives\n- Book a table", "## Constraints\n- Never promise", "## Steps\n1. Ask the date\n2. Ask the party size\n3. Confirm", "## Knowledge\nOpen 12:00", "- manager: complaints", "Speak the language en-US"} {
		if !strings.Contains(p, want) {
			t.Errorf("prompt lacks %q:\n%s", want, p)
		}
	}
	if strings.Contains(p, "{{") || len(missing) != 1 || missing[0] != "caller_name" {
		t.Errorf("missing %v; prompt %q", missing, p)
	}
}

func TestParseDefinitionIsStrict(t *testing.T) {
	for _, tc := range []struct {
		name, format, doc, want string
	}{
		{"unknown JSON field", "json", `{"name":"a","system_prompt":"p","realtime":{"provider":"openai-realtime"},"temprature":1}`, `unknown field "temprature"`},
		{"unknown YAML field", "yaml", "name: a\nsystem_prompt: p\nrealtime: {provider: openai-realtime}\nbarge_in: {min_speach_ms: 3}\n", "field min_speach_ms not found"},
		{"unknown provider field", "yaml", "name: a\nsystem_prompt: p\nrealtime: {provider: openai-realtime, key: x}\n", "field key not found"},
		{"wrong type", "json", `{"name":"a","max_duration_s":"long"}`, "max_duration_s"},
		{"trailing data", "json", `{"name":"a"} {}`, "trailing data"},
		{"empty", "yaml", "", "empty document"},
		{"bad format", "toml", "name = 1", "unknown format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agent.ParseDefinition([]byte(tc.doc), tc.format)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestValidateNamesTheField(t *testing.T) {
	ok := func() agent.Definition {
		d := baseDef()
		return d
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("base definition: %v", err)
	}
	for _, tc := range []struct {
		field  string
		mutate func(*agent.Definition)
	}{
		{"name", func(d *agent.Definition) { d.Name = " " }},
		{"system_prompt", func(d *agent.Definition) { d.SystemPrompt = "" }},
		{"id", func(d *agent.Definition) { d.ID = "../etc" }},
		{"llm", func(d *agent.Definition) { d.LLM = nil }},
		{"tts.provider", func(d *agent.Definition) { d.TTS.Provider = "deepgram" }},
		{"stt.base_url", func(d *agent.Definition) { d.STT.BaseURL = "not a url" }},
		{"tools[0]", func(d *agent.Definition) { d.Tools[0] = "format_disk" }},
		{"transfer_targets", func(d *agent.Definition) { d.TransferTargets = nil }},
		{"transfer_targets[1].name", func(d *agent.Definition) { d.TransferTargets[1].Name = "billing" }},
		{"transfer_targets[0].target", func(d *agent.Definition) { d.TransferTargets[0].Target = "" }},
		{"http_tools[0].url", func(d *agent.Definition) {
			d.HTTPTools = []agent.HTTPTool{{Name: "x", Description: "d", URL: "ftp://x"}}
		}},
		{"http_tools[0].name", func(d *agent.Definition) {
			d.HTTPTools = []agent.HTTPTool{{Name: "end_call", Description: "d", URL: "http://x"}}
		}},
		{"http_tools[0].parameters", func(d *agent.Definition) {
			d.HTTPTools = []agent.HTTPTool{{Name: "x", Description: "d", URL: "http://x", Parameters: agent.JSONSchema(`[1]`)}}
		}},
		{"http_tools[0].method", func(d *agent.Definition) {
			d.HTTPTools = []agent.HTTPTool{{Name: "x", Description: "d", URL: "http://x", Method: "TRACE"}}
		}},
		{`dtmf.keys["5"].target`, func(d *agent.Definition) {
			d.DTMF.Keys = map[string]agent.DTMFAction{"5": {Action: "transfer", Target: "nowhere"}}
		}},
		{`dtmf.keys["55"]`, func(d *agent.Definition) {
			d.DTMF.Keys = map[string]agent.DTMFAction{"55": {Action: "end_call"}}
		}},
		{"fallback.transfer_to", func(d *agent.Definition) { d.Fallback.TransferTo = "ceo" }},
		{"endpointing.min_silence_ms", func(d *agent.Definition) { d.Endpointing = agent.Endpointing{SilenceMS: 400, MinSilenceMS: 600} }},
		{"barge_in.min_speech_ms", func(d *agent.Definition) { d.BargeIn.MinSpeechMS = -1 }},
		{"temperature", func(d *agent.Definition) { v := 3.0; d.Temperature = &v }},
		{"llm.first_token_timeout_ms", func(d *agent.Definition) { d.LLM = &agent.ProviderConfig{Provider: "openai", FirstTokenTimeoutMS: -5} }},
		{"llm.retries", func(d *agent.Definition) { d.LLM = &agent.ProviderConfig{Provider: "openai", Retries: 9} }},
		{"tts.retries", func(d *agent.Definition) { d.TTS.Retries = 1 }},
		{"stt.first_token_timeout_ms", func(d *agent.Definition) { d.STT.FirstTokenTimeoutMS = 100 }},
		{"filler_after_ms", func(d *agent.Definition) { d.FillerAfterMS = -2 }},
		{"post_call.fields", func(d *agent.Definition) { d.PostCall = &agent.PostCall{Fields: agent.JSONSchema(`"x"`)} }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			d := ok()
			d.STT = &agent.ProviderConfig{Provider: "deepgram"}
			d.TTS = &agent.ProviderConfig{Provider: "elevenlabs"}
			d.Tools = append([]string(nil), d.Tools...)
			d.TransferTargets = append([]agent.TransferTarget(nil), d.TransferTargets...)
			tc.mutate(&d)
			err := d.Validate()
			var ve *agent.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v", err)
			}
			found := false
			for _, p := range ve.Problems {
				found = found || strings.HasPrefix(p, tc.field+":")
			}
			if !found {
				t.Errorf("problems %q do not name %s", ve.Problems, tc.field)
			}
		})
	}
}

func TestNewSessionChecksProviders(t *testing.T) {
	d := baseDef()
	if _, err := agent.NewSession(d, agent.Providers{}, nil, agent.Options{}); err == nil {
		t.Error("no call accepted")
	}
	d.Name = ""
	if _, err := agent.NewSession(d, agent.Providers{}, fakeCallOnly{}, agent.Options{}); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("invalid definition accepted: %v", err)
	}
	if _, err := agent.NewSession(baseDef(), agent.Providers{}, fakeCallOnly{}, agent.Options{}); err == nil {
		t.Error("pipeline without providers accepted")
	}
}

// fakeCallOnly satisfies agent.Call for constructor checks; it is never run.
type fakeCallOnly struct{ agent.Call }
