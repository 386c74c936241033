package api

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

func TestNumbersCRUD(t *testing.T) {
	agents := flow.NewAgents()
	if err := agents.Put(agent.Definition{ID: "booking", Name: "Booking", SystemPrompt: "-",
		Realtime: &agent.ProviderConfig{Provider: "openai-realtime"}}); err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, func(c *Config) { c.Agents = agents })
	ctx := context.Background()
	actions, _ := json.Marshal(flow.DefaultFlow().Actions)
	if err := e.db.PutFlow(ctx, &store.Flow{ID: "support", Actions: actions}); err != nil {
		t.Fatal(err)
	}
	tr := &store.Trunk{Name: "carrier", Enabled: true}
	if err := e.db.CreateTrunk(ctx, tr); err != nil {
		t.Fatal(err)
	}
	do := func(method, path string, body any) response { return e.do(method, path, e.key, body) }

	res := mustStatus(t, "create to flow", do("POST", "/v1/numbers", map[string]any{
		"number": "+1 (415) 555-0100", "kind": "flow", "target": "support", "trunk_id": tr.ID}), 201)
	var n store.Number
	res.decode(t, &n)
	if n.Number != "+14155550100" || n.Kind != store.NumberToFlow || n.Target != "support" || n.TrunkID != tr.ID ||
		res.header.Get("Location") != "/v1/numbers/+14155550100" {
		t.Fatalf("created %s", res.body)
	}
	mustStatus(t, "create to agent", do("POST", "/v1/numbers", map[string]any{"number": "+14155550101", "kind": "agent", "target": "booking"}), 201)

	fieldOf(t, "unknown field", do("POST", "/v1/numbers", map[string]any{"number": "+14155550102", "kind": "flow", "target": "support", "flow": "x"}), "flow")
	fieldOf(t, "missing number", do("POST", "/v1/numbers", map[string]any{"kind": "flow", "target": "support"}), "number")
	fieldOf(t, "bad number", do("POST", "/v1/numbers", map[string]any{"number": "call me", "kind": "flow", "target": "support"}), "number")
	fieldOf(t, "missing kind", do("POST", "/v1/numbers", map[string]any{"number": "+14155550102", "target": "support"}), "kind")
	fieldOf(t, "bad kind", do("POST", "/v1/numbers", map[string]any{"number": "+14155550102", "kind": "queue", "target": "support"}), "kind")
	fieldOf(t, "missing target", do("POST", "/v1/numbers", map[string]any{"number": "+14155550102", "kind": "flow"}), "target")
	fieldOf(t, "no such flow", do("POST", "/v1/numbers", map[string]any{"number": "+14155550102", "kind": "flow", "target": "nope"}), "target")
	fieldOf(t, "no such agent", do("POST", "/v1/numbers", map[string]any{"number": "+14155550102", "kind": "agent", "target": "nope"}), "target")
	fieldOf(t, "no such extension", do("POST", "/v1/numbers", map[string]any{"number": "+14155550102", "kind": "extension", "target": "1001"}), "target")
	fieldOf(t, "no such trunk", do("POST", "/v1/numbers", map[string]any{"number": "+14155550102", "kind": "flow", "target": "support", "trunk_id": "nope"}), "trunk_id")
	// The same number without its '+' is the same number.
	expectError(t, "duplicate", do("POST", "/v1/numbers", map[string]any{"number": "14155550100", "kind": "agent", "target": "booking"}), 409, "conflict")

	var got store.Number
	mustStatus(t, "get", e.do("GET", "/v1/numbers/+14155550101", e.roKey, nil), 200).decode(t, &got)
	if got.Kind != store.NumberToAgent || got.Target != "booking" {
		t.Fatalf("get %+v", got)
	}
	expectError(t, "get missing", do("GET", "/v1/numbers/+19995550100", nil), 404, "not_found")
	expectError(t, "get garbage", do("GET", "/v1/numbers/abc", nil), 404, "not_found")

	res = mustStatus(t, "replace", do("PUT", "/v1/numbers/+14155550100", map[string]any{"kind": "agent", "target": "booking"}), 200)
	res.decode(t, &got)
	if got.Kind != store.NumberToAgent || got.Target != "booking" || got.TrunkID != "" || !got.TMCreate.Equal(n.TMCreate) {
		t.Fatalf("replaced %s", res.body)
	}
	fieldOf(t, "replace to missing flow", do("PUT", "/v1/numbers/+14155550100", map[string]any{"kind": "flow", "target": "nope"}), "target")
	fieldOf(t, "number mismatch", do("PUT", "/v1/numbers/+14155550100", map[string]any{"number": "+14155550101", "kind": "flow", "target": "support"}), "number")
	expectError(t, "replace missing", do("PUT", "/v1/numbers/+19995550100", map[string]any{"kind": "flow", "target": "support"}), 404, "not_found")

	for i := range 3 {
		mustStatus(t, "create more", do("POST", "/v1/numbers", map[string]any{"number": fmt.Sprintf("+4930000%d", i), "kind": "flow", "target": "support"}), 201)
	}
	if nums := pageThrough(t, e, "/v1/numbers", "number", 3); fmt.Sprint(nums) != "[+14155550100 +14155550101 +49300000 +49300001 +49300002]" {
		t.Fatalf("paged %v", nums)
	}
	mustStatus(t, "delete", do("DELETE", "/v1/numbers/14155550100", nil), 204)
	expectError(t, "delete twice", do("DELETE", "/v1/numbers/+14155550100", nil), 404, "not_found")
}
