package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

func TestFlowsCRUD(t *testing.T) {
	e := newTestEnv(t)
	answerHangup := map[string]any{"name": "short", "actions": []any{
		map[string]any{"id": "a", "type": "answer"},
		map[string]any{"type": "hangup", "option": map[string]any{"reason": "busy"}},
	}}

	// Without an id, one is generated.
	res := e.do("POST", "/v1/flows", e.key, answerHangup)
	if res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	var made store.Flow
	res.decode(t, &made)
	if made.ID == "" || made.Name != "short" || made.Source != "" || made.TMCreate.IsZero() || res.header.Get("Location") != "/v1/flows/"+made.ID {
		t.Fatalf("created %s (Location %q)", res.body, res.header.Get("Location"))
	}
	// What is stored runs: it converts back into a valid flow.
	got, err := e.db.GetFlow(context.Background(), made.ID)
	if err != nil {
		t.Fatal(err)
	}
	f, err := flow.FromStore(got)
	if err != nil || f.Validate() != nil || len(f.Actions) != 2 || f.Actions[1].Type != "hangup" {
		t.Fatalf("stored flow: %+v %v", f, err)
	}

	// With an id; then the same id again is a conflict.
	named := map[string]any{"id": "menu", "actions": answerHangup["actions"]}
	if res := e.do("POST", "/v1/flows", e.key, named); res.status != 201 {
		t.Fatalf("create menu: %d %s", res.status, res.body)
	}
	expectError(t, "duplicate id", e.do("POST", "/v1/flows", e.key, named), 409, "conflict")
	d := expectError(t, "bad id", e.do("POST", "/v1/flows", e.key, map[string]any{"id": "../etc", "actions": answerHangup["actions"]}), 400, "invalid_argument")
	if d["field"] != "id" {
		t.Fatalf("bad id details %v", d)
	}

	var one store.Flow
	e.do("GET", "/v1/flows/menu", e.roKey, nil).decode(t, &one)
	if one.ID != "menu" || !strings.Contains(string(one.Actions), `"answer"`) {
		t.Fatalf("get: %+v", one)
	}

	// PUT replaces, keeping the creation time; the body id may be absent
	// but must not disagree with the path.
	replaced := map[string]any{"name": "renamed", "actions": []any{map[string]any{"type": "answer"}, map[string]any{"type": "hangup"}}}
	res = e.do("PUT", "/v1/flows/menu", e.key, replaced)
	if res.status != 200 {
		t.Fatalf("replace: %d %s", res.status, res.body)
	}
	var after store.Flow
	res.decode(t, &after)
	if after.Name != "renamed" || !after.TMCreate.Equal(one.TMCreate) {
		t.Fatalf("replaced: %+v (created %v before)", after, one.TMCreate)
	}
	replaced["id"] = "other"
	if d := expectError(t, "id mismatch", e.do("PUT", "/v1/flows/menu", e.key, replaced), 400, "invalid_argument"); d["field"] != "id" {
		t.Fatalf("id mismatch details %v", d)
	}
	delete(replaced, "id")
	expectError(t, "replace missing", e.do("PUT", "/v1/flows/nope", e.key, replaced), 404, "not_found")

	// Pages by id.
	for _, id := range []string{"p1", "p2", "p3"} {
		if res := e.do("POST", "/v1/flows", e.key, map[string]any{"id": id, "actions": answerHangup["actions"]}); res.status != 201 {
			t.Fatalf("create %s: %d", id, res.status)
		}
	}
	var ids []string
	path := "/v1/flows?page_size=2"
	for pages := 0; pages < 10; pages++ {
		var p struct {
			Result        []store.Flow `json:"result"`
			NextPageToken string       `json:"next_page_token"`
		}
		e.do("GET", path, e.key, nil).decode(t, &p)
		for _, f := range p.Result {
			ids = append(ids, f.ID)
		}
		if p.NextPageToken == "" {
			break
		}
		path = "/v1/flows?page_size=2&page_token=" + p.NextPageToken
	}
	if len(ids) != 5 || ids[0] > ids[1] || ids[1] != "menu" && ids[0] != "menu" && ids[2] != "menu" {
		t.Fatalf("listed %v", ids)
	}

	if res := e.do("DELETE", "/v1/flows/menu", e.key, nil); res.status != 204 {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	expectError(t, "get deleted", e.do("GET", "/v1/flows/menu", e.key, nil), 404, "not_found")
	expectError(t, "delete deleted", e.do("DELETE", "/v1/flows/menu", e.key, nil), 404, "not_found")
}

func TestInvalidFlowNamesTheAction(t *testing.T) {
	e := newTestEnv(t)
	cases := []struct {
		body          string
		index         float64
		actionID      string
		field         string
		messageSubstr string
	}{
		{`{"actions":[{"type":"answer"},{"id":"w","type":"digits_receive","option":{"max_digits":"two"}}]}`, 1, "w", "option.max_digits", ""},
		{`{"actions":[{"type":"answer"},{"id":"x","type":"teleport"}]}`, 1, "x", "type", "teleport"},
		{`{"actions":[{"id":"a","type":"answer","next_id":"nowhere"}]}`, 0, "a", "next_id", "nowhere"},
		{`{"actions":[]}`, -1, "", "actions", "no actions"},
		{`{"actions":[{"id":"a","type":"answer"},{"id":"a","type":"hangup"}]}`, 1, "a", "id", "duplicate"},
	}
	for _, c := range cases {
		for _, req := range []struct{ method, path string }{{"POST", "/v1/flows"}, {"PUT", "/v1/flows/any"}} {
			if req.method == "PUT" {
				e.do("POST", "/v1/flows", e.key, `{"id":"any","actions":[{"type":"answer"}]}`)
			}
			d := expectError(t, c.body, e.do(req.method, req.path, e.key, c.body), 400, "invalid_flow")
			if d["action_index"] != c.index || d["action_id"] != c.actionID || d["field"] != c.field {
				t.Errorf("%s %s: details %v, want index %v id %q field %q", req.method, c.body, d, c.index, c.actionID, c.field)
			}
		}
		var body struct {
			Error struct{ Message string } `json:"error"`
		}
		json.Unmarshal(e.do("POST", "/v1/flows", e.key, c.body).body, &body)
		if !strings.Contains(body.Error.Message, c.messageSubstr) {
			t.Errorf("%s: message %q lacks %q", c.body, body.Error.Message, c.messageSubstr)
		}
	}
	// Unknown fields of the flow or its actions are refused while decoding.
	for _, c := range []struct{ body, field string }{
		{`{"actions":[{"type":"answer"}],"colour":"red"}`, "colour"},
		{`{"actions":[{"type":"answer","colour":"red"}]}`, "colour"},
		{`{"actions":{"type":"answer"}}`, "actions"},
	} {
		if d := expectError(t, c.body, e.do("POST", "/v1/flows", e.key, c.body), 400, "invalid_argument"); d["field"] != c.field {
			t.Errorf("%s: details %v, want field %s", c.body, d, c.field)
		}
	}
}

// Flows from --flows-dir are the files' to change, not the API's.
func TestFileFlowsAreReadOnly(t *testing.T) {
	e := newTestEnv(t)
	f := &flow.Flow{ID: "fromfile", Actions: []flow.Action{{Type: "answer"}, {Type: "hangup"}}}
	sf, err := f.ToStore("file:/etc/voxbridge/flows/fromfile.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.PutFlow(context.Background(), sf); err != nil {
		t.Fatal(err)
	}
	body := `{"id":"fromfile","actions":[{"type":"answer"}]}`
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/flows", body},
		{"PUT", "/v1/flows/fromfile", body},
		{"DELETE", "/v1/flows/fromfile", ""},
	} {
		var b any
		if c.body != "" {
			b = c.body
		}
		res := e.do(c.method, c.path, e.key, b)
		expectError(t, c.method, res, 409, "read_only")
		if !strings.Contains(string(res.body), "/etc/voxbridge/flows/fromfile.yaml") {
			t.Errorf("%s: message does not name the file: %s", c.method, res.body)
		}
	}
	var got store.Flow
	e.do("GET", "/v1/flows/fromfile", e.key, nil).decode(t, &got)
	if got.Source != "file:/etc/voxbridge/flows/fromfile.yaml" || !strings.Contains(string(got.Actions), "hangup") {
		t.Fatalf("file flow changed: %+v", got)
	}
}
