package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// apiDo sends a request with the test key to a running server and returns
// the status and body.
func apiDo(t *testing.T, inst *instance, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+inst.HTTP.String()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

func apiMust(t *testing.T, inst *instance, method, path string, body any, want int) []byte {
	t.Helper()
	code, b := apiDo(t, inst, method, path, body)
	if code != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, b)
	}
	return b
}

// Resources made over the API work on a running server at once: an
// extension's credentials register a phone (and the registration shows on
// the extension), an agent and a number mapped to it take a real call,
// and the agent cannot be deleted while that call talks to it.
func TestResourcesOverAPIEndToEnd(t *testing.T) {
	const extPW, dgKey, oaiKey, elKey = "api-made-secret-1", "dg-key-api-1", "oai-key-api-1", "el-key-api-1"
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{APIKey: dgKey, Utterances: []string{"What are your opening hours?"}})
	oai := fake.NewOpenAI(t, fake.OpenAIScript{APIKey: oaiKey, Chat: []fake.ChatReply{{Text: "We open at nine."}}})
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{APIKey: elKey, ToneHz: 600, PerChar: 15 * time.Millisecond})
	inst, _ := testServer(t, nil)
	ctx := bctx(t)

	apiMust(t, inst, "POST", "/v1/extensions", map[string]any{"number": "1001", "display_name": "Desk", "password": extPW}, 201)
	phone := testPhone(t)
	if err := phone.Register(ctx, inst.SIPUDP.String(), "1001", extPW); err != nil {
		t.Fatalf("register with the API-made credentials: %v", err)
	}
	var ext struct {
		PasswordSet   bool                 `json:"password_set"`
		Registrations []store.Registration `json:"registrations"`
	}
	if err := json.Unmarshal(apiMust(t, inst, "GET", "/v1/extensions/1001", nil, 200), &ext); err != nil {
		t.Fatal(err)
	}
	if !ext.PasswordSet || len(ext.Registrations) != 1 {
		t.Fatalf("extension: %+v", ext)
	}
	if r := ext.Registrations[0]; r.SourceAddr != phone.Addr().String() || r.Transport != "udp" ||
		!strings.Contains(r.Contact, "1001@") || !r.ExpiresAt.After(time.Now()) {
		t.Fatalf("registration %+v (phone at %s)", r, phone.Addr())
	}

	apiMust(t, inst, "POST", "/v1/agents", map[string]any{
		"id": "hours", "name": "Opening hours", "system_prompt": "You tell callers the opening hours.",
		"starting_message": "Hello, how can I help?",
		"stt":              map[string]any{"provider": "deepgram", "base_url": dg.URL(), "api_key": dgKey},
		"llm":              map[string]any{"provider": "openai", "base_url": oai.URL, "api_key": oaiKey, "model": "gpt-4o-mini"},
		"tts":              map[string]any{"provider": "elevenlabs", "base_url": el.URL(), "api_key": elKey},
	}, 201)
	// A number's agent must exist.
	if code, b := apiDo(t, inst, "POST", "/v1/numbers", map[string]any{"number": "+15550001000", "kind": "agent", "target": "nope"}); code != 400 || !strings.Contains(string(b), `"field":"target"`) {
		t.Fatalf("number to a missing agent: %d %s", code, b)
	}
	apiMust(t, inst, "POST", "/v1/numbers", map[string]any{"number": "+15550001000", "kind": "agent", "target": "hours"}, 201)

	call, err := testPhone(t).Dial(ctx, target(inst, "+15550001000"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Close)
	// The agent's greeting, spoken by its TTS (the fake's 600 Hz), which
	// took the key given over the API.
	waitFor(t, "the agent's greeting", 15*time.Second, func() bool { return len(toneSequence(call.Heard(), 600)) > 0 })
	if code, b := apiDo(t, inst, "DELETE", "/v1/agents/hours", nil); code != 409 || !strings.Contains(string(b), "in_use") {
		t.Fatalf("delete during the call: %d %s", code, b)
	}
	waitFor(t, "the greeting to end", 15*time.Second, func() bool {
		h := call.Heard()
		return len(h) > media.SampleRate && media.ToneLevel(h[len(h)-media.SampleRate/2:], 600) < 0.05
	})
	speech, err := media.ReadWAVFile("../../media/vad/testdata/s1.wav")
	if err != nil {
		t.Fatal(err)
	}
	mark := call.HeardLen()
	<-call.Play(speech)
	waitFor(t, "the agent's reply", 20*time.Second, func() bool { return len(toneSequence(call.Heard()[mark:], 600)) > 0 })
	if reqs := oai.ChatRequests(); len(reqs) == 0 || !strings.Contains(reqs[0].LastUserText(), "opening hours") {
		t.Fatalf("the LLM did not hear the caller: %+v", reqs)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := callRecord(t, inst, call.CallID())
	if rec.Variables["agent.id"] != "hours" || rec.FlowID != "route:number:+15550001000" {
		t.Fatalf("call record: flow %q, variables %v", rec.FlowID, rec.Variables)
	}
	// Once the call is over the agent can go; gently, within the rate limit.
	deleted := false
	for range 50 {
		if code, _ := apiDo(t, inst, "DELETE", "/v1/agents/hours", nil); code == 204 {
			deleted = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !deleted {
		t.Fatal("the agent could not be deleted after the call ended")
	}
	apiMust(t, inst, "GET", "/v1/agents/hours", nil, 404)
}

// voxbridge agents create|list|delete against a running server; keys
// never come back.
func TestAgentsCommands(t *testing.T) {
	inst, _ := testServer(t, nil)
	c := newCLI(t)
	c.env[envAPIURL] = "http://" + inst.HTTP.String()
	c.env[envAPIKey] = testAPIKey
	dir := t.TempDir()
	file := filepath.Join(dir, "greeter.yaml")
	os.WriteFile(file, []byte("name: Greeter\nsystem_prompt: You greet.\nrealtime:\n  provider: openai-realtime\n  api_key: sk-cli-secret-0001\n"), 0o600)
	run := func(args []string, env cliEnv) error { return runAgents(args, env) }

	if out := c.must("", run, "create", file); !strings.Contains(out, "agent greeter stored") {
		t.Fatalf("create: %s", out)
	}
	if inst.calls.AgentInUse("greeter") {
		t.Fatal("an agent no call talks to is in use")
	}
	if _, err := c.run("", run, "create", file); err == nil || !strings.Contains(err.Error(), "409 conflict") {
		t.Fatalf("create twice: %v", err)
	}
	os.WriteFile(file, []byte("name: Greeter 2\nsystem_prompt: You greet.\nrealtime:\n  provider: openai-realtime\n"), 0o600)
	c.must("", run, "create", "--replace", file)
	out := c.must("", run, "list")
	if !strings.Contains(out, "greeter") || !strings.Contains(out, "Greeter 2") || !strings.Contains(out, "openai-realtime") || !strings.Contains(out, "api") {
		t.Fatalf("list:\n%s", out)
	}
	js := c.must("", run, "list", "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(js), &list); err != nil || len(list) != 1 {
		t.Fatalf("list --json: %s %v", js, err)
	}
	if rt, _ := list[0]["realtime"].(map[string]any); rt["api_key_set"] != true || strings.Contains(js, "sk-cli-secret") {
		t.Fatalf("list --json: the key (kept by --replace) must show only as set: %s", js)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"id":"bad","name":"Bad","system_prompt":"x","realtime":{"provider":"elevenlabs"}}`), 0o600)
	if _, err := c.run("", run, "create", bad); err == nil || !strings.Contains(err.Error(), "realtime.provider") {
		t.Fatalf("bad agent: %v", err)
	}
	c.must("", run, "delete", "greeter")
	if _, err := c.run("", run, "delete", "greeter"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("delete twice: %v", err)
	}
}
