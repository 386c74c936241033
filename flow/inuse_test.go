package flow

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/store"
)

func TestAgentsInUseCounts(t *testing.T) {
	a := NewAgents()
	if a.InUse("x") {
		t.Fatal("in use before any session")
	}
	r1, r2 := a.use("x"), a.use("x")
	r1()
	if !a.InUse("x") {
		t.Fatal("one of two sessions ended and the agent reads as free")
	}
	r2()
	if a.InUse("x") {
		t.Fatal("still in use after both sessions ended")
	}
	var nilAgents *Agents
	if nilAgents.InUse("x") || nilAgents.File("x") != "" {
		t.Fatal("a nil registry has nothing")
	}
}

// Stored agents load at start; a file's agent of the same id wins whatever
// the order, and a stored definition that no longer validates is reported
// without stopping the others.
func TestAgentsLoadStore(t *testing.T) {
	db, err := store.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	put := func(id string, d any) {
		b, _ := json.Marshal(d)
		if err := db.CreateAgent(ctx, &store.Agent{ID: id, Definition: b}); err != nil {
			t.Fatal(err)
		}
	}
	ok := agent.Definition{ID: "api", Name: "API", SystemPrompt: "-", Realtime: &agent.ProviderConfig{Provider: "openai-realtime", APIKey: "k"}}
	put("api", ok)
	shadow := ok
	shadow.ID, shadow.Name = "front", "stored front"
	put("front", shadow)
	put("broken", map[string]any{"id": "broken", "name": ""})

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "front.yaml"), []byte("name: file front\nsystem_prompt: x\nrealtime: {provider: openai-realtime}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := NewAgents()
	if _, err := a.LoadDir(dir); err != nil {
		t.Fatal(err)
	}
	ids, err := a.LoadStore(ctx, db)
	if len(ids) != 1 || ids[0] != "api" {
		t.Fatalf("loaded %v", ids)
	}
	if err == nil || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "shadowed") {
		t.Fatalf("error %v should name the broken and the shadowed agent", err)
	}
	if d, _ := a.Get("front"); d.Name != "file front" || a.File("front") != filepath.Join(dir, "front.yaml") {
		t.Fatalf("front is %q from %q", d.Name, a.File("front"))
	}
	if d, _ := a.Get("api"); d.Realtime.APIKey != "k" || a.File("api") != "" {
		t.Fatalf("api agent %+v", d)
	}
	a.Remove("front")
	if _, found := a.Get("front"); found || a.File("front") != "" {
		t.Fatal("removed agent still there")
	}
}
