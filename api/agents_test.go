package api

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/flow"
)

// busyAgents is the real registry with some agents marked as talking, as
// a live call would (the end-to-end test does it with a real call).
type busyAgents struct {
	*flow.Agents
	busy map[string]bool
}

func (b busyAgents) InUse(id string) bool { return b.busy[id] || b.Agents.InUse(id) }

func agentBody(id, sttKey, ttsKey string) map[string]any {
	m := map[string]any{"name": "Booking " + id, "system_prompt": "You take bookings.",
		"stt":   map[string]any{"provider": "deepgram", "api_key": sttKey},
		"llm":   map[string]any{"provider": "openai", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"},
		"tts":   map[string]any{"provider": "elevenlabs", "api_key": ttsKey},
		"tools": []string{"end_call"},
		"http_tools": []map[string]any{{"name": "lookup", "description": "Finds a booking.", "url": "https://bookings.example/lookup",
			"headers": map[string]string{"Authorization": "Bearer tool-secret-0001"}}}}
	if id != "" {
		m["id"] = id
	}
	return m
}

func TestAgentsCRUD(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "front.json"), []byte(`{"name":"Front desk","system_prompt":"Hi.",
		"realtime":{"provider":"openai-realtime","api_key":"sk-file-key-0001"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := busyAgents{Agents: flow.NewAgents(), busy: map[string]bool{}}
	if _, err := reg.LoadDir(dir); err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, func(c *Config) { c.Agents = reg })
	const sttKey, ttsKey, ttsKey2 = "dg-secret-0001", "el-secret-0001", "el-secret-0002"
	var all []response
	do := func(method, path string, body any) response {
		r := e.do(method, path, e.key, body)
		all = append(all, r)
		return r
	}

	res := mustStatus(t, "create", do("POST", "/v1/agents", agentBody("booking", sttKey, ttsKey)), 201)
	made := jsonOf(t, res)
	stt, _ := made["stt"].(map[string]any)
	if made["id"] != "booking" || made["source"] != "api" || made["tm_create"] == nil || stt["api_key_set"] != true ||
		stt["provider"] != "deepgram" || res.header.Get("Location") != "/v1/agents/booking" {
		t.Fatalf("created %s", res.body)
	}
	// Calls see it at once, keys and all.
	if d, ok := reg.Get("booking"); !ok || d.STT.APIKey != sttKey || d.TTS.APIKey != ttsKey {
		t.Fatalf("registry has %+v %v", d, ok)
	}
	if sa, err := e.db.GetAgent(context.Background(), "booking"); err != nil || !strings.Contains(string(sa.Definition), ttsKey) {
		t.Fatalf("stored %v", err)
	}
	// Without an id, one is made.
	res = mustStatus(t, "create without id", do("POST", "/v1/agents", agentBody("", sttKey, ttsKey)), 201)
	if id, _ := jsonOf(t, res)["id"].(string); len(id) != 36 {
		t.Fatalf("generated id %q", id)
	}

	fieldOf(t, "unknown field", do("POST", "/v1/agents", map[string]any{"name": "x", "prompt": "y"}), "prompt")
	d := expectError(t, "missing prompt", do("POST", "/v1/agents", map[string]any{"name": "x", "llm": map[string]any{"provider": "openai"}}), 400, "invalid_agent")
	if d["field"] != "system_prompt" {
		t.Fatalf("details %v", d)
	}
	bad := agentBody("bad", sttKey, ttsKey)
	bad["tts"] = map[string]any{"provider": "deepgram"}
	if d := expectError(t, "bad provider", do("POST", "/v1/agents", bad), 400, "invalid_agent"); d["field"] != "tts.provider" {
		t.Fatalf("details %v", d)
	}
	fieldOf(t, "temperature as text", do("POST", "/v1/agents", map[string]any{"name": "x", "temperature": "hot"}), "temperature")
	expectError(t, "duplicate", do("POST", "/v1/agents", agentBody("booking", sttKey, ttsKey)), 409, "conflict")
	expectError(t, "a file agent's id", do("POST", "/v1/agents", agentBody("front", sttKey, ttsKey)), 409, "read_only")

	got := jsonOf(t, mustStatus(t, "get", e.do("GET", "/v1/agents/booking", e.roKey, nil), 200))
	all = append(all, e.do("GET", "/v1/agents/front", e.roKey, nil))
	if f := jsonOf(t, all[len(all)-1]); f["source"] != "file:"+filepath.Join(dir, "front.json") || f["realtime"].(map[string]any)["api_key_set"] != true {
		t.Fatalf("file agent %s", all[len(all)-1].body)
	}
	expectError(t, "get missing", do("GET", "/v1/agents/nope", nil), 404, "not_found")

	// PUT with the GET answer's shape (keys absent) keeps the keys; a new
	// key replaces one.
	for _, k := range []string{"source", "tm_create", "tm_update"} {
		delete(got, k)
	}
	for _, p := range []string{"stt", "llm", "tts"} {
		delete(got[p].(map[string]any), "api_key_set")
	}
	got["name"] = "Bookings"
	got["tts"].(map[string]any)["api_key"] = ttsKey2
	res = mustStatus(t, "replace", do("PUT", "/v1/agents/booking", got), 200)
	if m := jsonOf(t, res); m["name"] != "Bookings" || m["tm_create"] != made["tm_create"] {
		t.Fatalf("replaced %s", res.body)
	}
	if d, _ := reg.Get("booking"); d.Name != "Bookings" || d.STT.APIKey != sttKey || d.TTS.APIKey != ttsKey2 ||
		d.HTTPTools[0].Headers["Authorization"] != "Bearer tool-secret-0001" {
		t.Fatalf("registry after replace: %+v %+v %+v", d.STT, d.TTS, d.HTTPTools)
	}
	fieldOf(t, "id mismatch", do("PUT", "/v1/agents/booking", agentBody("other", sttKey, ttsKey)), "id")
	expectError(t, "replace missing", do("PUT", "/v1/agents/nope", agentBody("", sttKey, ttsKey)), 404, "not_found")
	expectError(t, "replace a file agent", do("PUT", "/v1/agents/front", agentBody("", sttKey, ttsKey)), 409, "read_only")
	if err := reg.Put(agent.Definition{ID: "builtin", Name: "B", SystemPrompt: "-", Realtime: &agent.ProviderConfig{Provider: "openai-realtime"}}); err != nil {
		t.Fatal(err)
	}
	expectError(t, "delete the built-in agent", do("DELETE", "/v1/agents/builtin", nil), 409, "read_only")
	expectError(t, "delete a file agent", do("DELETE", "/v1/agents/front", nil), 409, "read_only")

	// Busy: 409 and nothing deleted; free: deleted from store and registry.
	reg.busy["booking"] = true
	expectError(t, "delete while talking", do("DELETE", "/v1/agents/booking", nil), 409, "in_use")
	if _, ok := reg.Get("booking"); !ok {
		t.Fatal("a busy agent was removed")
	}
	reg.busy["booking"] = false

	for i := range 2 {
		mustStatus(t, "create more", do("POST", "/v1/agents", agentBody(fmt.Sprintf("p%d", i), sttKey, ttsKey)), 201)
	}
	ids := pageThrough(t, e, "/v1/agents", "id", 3) // 6 agents: booking, builtin, front, p0, p1 and a uuid
	if len(ids) != 6 || !slices.IsSorted(ids) || !slices.Contains(ids, "booking") || !slices.Contains(ids, "front") || !slices.Contains(ids, "p1") {
		t.Fatalf("paged %v", ids)
	}
	all = append(all, e.do("GET", "/v1/agents?page_size=100", e.roKey, nil))
	mustStatus(t, "delete", do("DELETE", "/v1/agents/booking", nil), 204)
	if _, ok := reg.Get("booking"); ok {
		t.Fatal("deleted agent still in the registry")
	}
	if _, err := e.db.GetAgent(context.Background(), "booking"); err == nil {
		t.Fatal("deleted agent still stored")
	}
	expectError(t, "delete twice", do("DELETE", "/v1/agents/booking", nil), 404, "not_found")
	for _, r := range all {
		noSecret(t, "an agent answer", r, sttKey, ttsKey, ttsKey2, "sk-file-key-0001", "tool-secret-0001")
	}
}

func TestAgentsWithoutRegistry(t *testing.T) {
	e := newTestEnv(t)
	expectError(t, "list", e.do("GET", "/v1/agents", e.key, nil), 503, "unavailable")
	expectError(t, "create", e.do("POST", "/v1/agents", e.key, agentBody("a", "k", "k")), 503, "unavailable")
}
