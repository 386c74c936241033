package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// originateEnv is an API whose Originator is a real controller without a
// dialer: every request is validated for real, and a valid one ends in 503
// (nothing to dial with), so no test here places a call.
func originateEnv(t *testing.T) *testEnv {
	t.Helper()
	var ct *flow.Controller
	e := newTestEnv(t, func(c *Config) {
		var err error
		ct, err = flow.NewController(flow.Config{Store: c.Store, MediaIP: netip.MustParseAddr("127.0.0.1"), Logger: c.Logger})
		if err != nil {
			t.Fatal(err)
		}
		c.Originator = ct
	})
	ctx := context.Background()
	f := &flow.Flow{ID: "hello", Actions: []flow.Action{{Type: "answer"}, {Type: "hangup"}}}
	sf, err := f.ToStore("")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.PutFlow(ctx, sf); err != nil {
		t.Fatal(err)
	}
	ext := store.Extension{Number: "1001", Enabled: true}
	if err := ext.SetPassword("voxbridge", "secret-1001"); err != nil {
		t.Fatal(err)
	}
	if err := e.db.CreateExtension(ctx, &ext); err != nil {
		t.Fatal(err)
	}
	if err := e.db.CreateTrunk(ctx, &store.Trunk{Name: "carrier", Enabled: true, Host: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCreateCallBadBodies(t *testing.T) {
	e := originateEnv(t)
	for _, tc := range []struct {
		name   string
		body   string
		status int
		code   string
		field  string
	}{
		{"unknown field", `{"to":"1001","flow_id":"hello","colour":"red"}`, 400, "invalid_argument", "colour"},
		{"wrong type", `{"to":"1001","flow_id":"hello","record":"yes"}`, 400, "invalid_argument", "record"},
		{"no to", `{"flow_id":"hello"}`, 400, "invalid_argument", "to"},
		{"none of flow, actions, agent", `{"to":"1001"}`, 400, "invalid_argument", "flow_id"},
		{"flow and agent", `{"to":"1001","flow_id":"hello","agent_id":"booking"}`, 400, "invalid_argument", "flow_id"},
		{"flow and actions", `{"to":"1001","flow_id":"hello","actions":[{"type":"hangup"}]}`, 400, "invalid_argument", "flow_id"},
		{"to is neither number nor URI", `{"to":"call me maybe","flow_id":"hello"}`, 400, "invalid_argument", "to"},
		{"URI without host", `{"to":"sip:bob@","flow_id":"hello"}`, 400, "invalid_argument", "to"},
		{"bad caller id", `{"to":"1001","flow_id":"hello","from":"a b"}`, 400, "invalid_argument", "from"},
		{"negative max duration", `{"to":"1001","flow_id":"hello","max_duration_s":-1}`, 400, "invalid_argument", "max_duration_s"},
		{"ring timeout too long", `{"to":"1001","flow_id":"hello","ring_timeout_s":601}`, 400, "invalid_argument", "ring_timeout_s"},
		{"reserved variable", `{"to":"1001","flow_id":"hello","variables":{"call.id":"x"}}`, 400, "invalid_argument", "variables.call.id"},
		{"bad metadata key", `{"to":"1001","flow_id":"hello","metadata":{"a b":"x"}}`, 400, "invalid_argument", "metadata"},
		{"trunk for an extension", `{"to":"1001","flow_id":"hello","trunk":"carrier"}`, 400, "invalid_argument", "trunk"},
		{"unknown trunk", `{"to":"+34910000001","flow_id":"hello","trunk":"nope"}`, 404, "not_found", "trunk"},
		{"unknown flow", `{"to":"1001","flow_id":"nope"}`, 404, "not_found", "flow_id"},
		{"unknown agent", `{"to":"1001","agent_id":"nope"}`, 404, "not_found", "agent_id"},
		{"actions not a list", `{"to":"1001","actions":{"type":"hangup"}}`, 400, "invalid_argument", "actions"},
		{"unknown action type", `{"to":"1001","actions":[{"type":"answer"},{"type":"dance"}]}`, 400, "invalid_flow", "actions[1].type"},
		{"bad action option", `{"to":"1001","actions":[{"type":"answer"},{"type":"connect","option":{"destinations":[]}}]}`, 400, "invalid_flow", "actions[1].option.destinations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/v1/calls", e.key, tc.body)
			details := expectError(t, tc.name, r, tc.status, tc.code)
			if details["field"] != tc.field {
				t.Fatalf("field %v, want %q: %s", details["field"], tc.field, r.body)
			}
			if tc.code == "invalid_flow" && details["action_index"] != float64(1) {
				t.Fatalf("action_index %v, want 1: %s", details["action_index"], r.body)
			}
		})
	}
	// Nothing of that placed a call or left a record.
	calls, _, err := e.db.ListCalls(context.Background(), store.ListOptions{}, store.CallFilter{})
	if err != nil || len(calls) != 0 {
		t.Fatalf("records after refused requests: %v, %v", calls, err)
	}
}

func TestCreateCallUnavailableAndAccess(t *testing.T) {
	e := originateEnv(t)
	valid := `{"to":"sip:bob@127.0.0.1:5070","actions":[{"type":"play","option":{"prompt":"greeting"}},{"type":"hangup"}],"metadata":{"crm_id":"42"}}`
	// Valid, but this server has nothing to dial with.
	expectError(t, "no dialer", e.do("POST", "/v1/calls", e.key, valid), http.StatusServiceUnavailable, "unavailable")
	expectError(t, "read-only key", e.do("POST", "/v1/calls", e.roKey, valid), http.StatusForbidden, "permission_denied")
	expectError(t, "no key", e.do("POST", "/v1/calls", "", valid), http.StatusUnauthorized, "unauthenticated")
	r := e.do("POST", "/v1/calls", e.key, []byte(valid), "Content-Type", "text/plain")
	expectError(t, "not JSON", r, http.StatusUnsupportedMediaType, "unsupported_media_type")

	// Without an Originator at all, the route answers 503 too.
	bare := newTestEnv(t)
	expectError(t, "no originator", bare.do("POST", "/v1/calls", bare.key, valid), http.StatusServiceUnavailable, "unavailable")
}

// fakeOriginator records what the handler asked for.
type fakeOriginator struct{ got flow.OriginateRequest }

func (f *fakeOriginator) Originate(_ context.Context, req flow.OriginateRequest) (store.Call, error) {
	f.got = req
	return store.Call{ID: "c1", Direction: store.DirectionOutgoing, Status: store.StatusDialing, Destination: req.To}, nil
}

// Every field of the body reaches the controller, in its units.
func TestCreateCallPassesEveryField(t *testing.T) {
	fo := &fakeOriginator{}
	e := newTestEnv(t, func(c *Config) { c.Originator = fo })
	body := `{"to":"+34910000001","from":"100","caller_name":"Acme","trunk":"carrier","agent_id":"booking",
	  "variables":{"customer":"Ada"},"context":"be brief","max_duration_s":90,"ring_timeout_s":15,"record":true,
	  "metadata":{"crm_id":"42"}}`
	r := e.do("POST", "/v1/calls", e.key, body)
	if r.status != http.StatusCreated || r.header.Get("Location") != "/v1/calls/c1" {
		t.Fatalf("status %d, location %q: %s", r.status, r.header.Get("Location"), r.body)
	}
	var view struct {
		store.Call
		Actions []store.ActionRun `json:"actions"`
	}
	r.decode(t, &view)
	if view.ID != "c1" || view.Direction != store.DirectionOutgoing || view.Status != store.StatusDialing || view.Actions == nil {
		t.Fatalf("answer: %s", r.body)
	}
	g := fo.got
	if g.To != "+34910000001" || g.From != "100" || g.CallerName != "Acme" || g.Trunk != "carrier" || g.AgentID != "booking" ||
		g.Variables["customer"] != "Ada" || g.Context != "be brief" || g.MaxDuration.Seconds() != 90 ||
		g.RingTimeout.Seconds() != 15 || !g.Record || g.Metadata["crm_id"] != "42" || g.FlowID != "" || g.Actions != nil {
		t.Fatalf("originate request: %+v", g)
	}
	r = e.do("POST", "/v1/calls", e.key, `{"to":"1001","actions":[{"type":"hangup"}]}`)
	if r.status != http.StatusCreated || !strings.Contains(string(fo.got.Actions), `"hangup"`) {
		t.Fatalf("inline actions: %d %s", r.status, fo.got.Actions)
	}
	if !json.Valid(fo.got.Actions) {
		t.Fatalf("actions passed as %q", fo.got.Actions)
	}
}
