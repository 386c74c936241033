package flow

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

func TestConnectValidation(t *testing.T) {
	bad := []struct {
		name, option, field string
	}{
		{"no destinations", `{}`, "option.destinations"},
		{"unknown type", `{"destinations":[{"type":"queue","target":"1"}]}`, "option.destinations[0].type"},
		{"empty target", `{"destinations":[{"type":"uri","target":""}]}`, "option.destinations[0].target"},
		{"extension not digits", `{"destinations":[{"type":"number","target":"+1"},{"type":"extension","target":"sales"}]}`, "option.destinations[1].target"},
		{"bad number", `{"destinations":[{"type":"number","target":"call me"}]}`, "option.destinations[0].target"},
		{"uri not sip", `{"destinations":[{"type":"uri","target":"http://x"}]}`, "option.destinations[0].target"},
		{"uri without host", `{"destinations":[{"type":"uri","target":"sip:bob@"}]}`, "option.destinations[0].target"},
		{"bad ring", `{"destinations":[{"type":"extension","target":"1"}],"ring":"round_robin"}`, "option.ring"},
		{"timeout too long", `{"destinations":[{"type":"extension","target":"1"}],"timeout_s":601}`, "option.timeout_s"},
		{"caller id with space", `{"destinations":[{"type":"extension","target":"1"}],"caller_id":"a b"}`, "option.caller_id"},
		{"early media not bool", `{"destinations":[{"type":"extension","target":"1"}],"early_media":"yes"}`, "option.early_media"},
		{"relay not bool", `{"destinations":[{"type":"extension","target":"1"}],"relay_hangup_reason":"yes"}`, "option.relay_hangup_reason"},
		{"unknown field", `{"destinations":[{"type":"extension","target":"1"}],"music":"on"}`, "option.music"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			f := &Flow{ID: "c", Actions: []Action{{Type: "connect", Option: json.RawMessage(c.option)}}}
			err := f.Validate()
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %v, want one naming %s", err, c.field)
			}
		})
	}
	ok := `{"destinations":[{"type":"extension","target":"1002"},{"type":"number","target":"+1 (415) 555-0100"},
		{"type":"uri","target":"sip:bob@127.0.0.1:5070;transport=tcp"},{"type":"extension","target":"${ext}"}],
		"ring":"sequential","timeout_s":5,"caller_id":"+14155550199","relay_hangup_reason":false,"early_media":true}`
	st, err := actionTypes["connect"](json.RawMessage(ok))
	if err != nil {
		t.Fatal(err)
	}
	if st.timeout < 4*5e9 {
		t.Errorf("sequential ring of 4 destinations bounded by %v", st.timeout)
	}
}

func TestRejectFor(t *testing.T) {
	cases := []struct {
		err    sip.DialError
		code   int
		reason store.HangupReason
	}{
		{sip.DialError{Reason: store.ReasonBusy, Code: 600, Status: "Busy Everywhere"}, 486, store.ReasonBusy},
		{sip.DialError{Reason: store.ReasonNoAnswer}, 480, store.ReasonNoAnswer},
		{sip.DialError{Reason: store.ReasonFailed, Code: 404, Status: "Not Found"}, 404, store.ReasonFailed},
		{sip.DialError{Reason: store.ReasonFailed, Code: 0}, 503, store.ReasonFailed},
	}
	for _, c := range cases {
		code, _, reason := rejectFor(&c.err)
		if code != c.code || reason != c.reason {
			t.Errorf("%v: %d %s, want %d %s", &c.err, code, reason, c.code, c.reason)
		}
	}
	got := worstFailure([]*sip.DialError{{Reason: store.ReasonFailed, Code: 503}, {Reason: store.ReasonBusy, Code: 486}, {Reason: store.ReasonNoAnswer}})
	if got.Reason != store.ReasonBusy {
		t.Errorf("ring-all with one busy callee reports %s", got.Reason)
	}
}

// Routing by who calls and what they dialed, against a real store.
func TestRouteDialed(t *testing.T) {
	db, err := store.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	exts := map[string]*store.Extension{}
	for _, e := range []store.Extension{{Number: "1001", Enabled: true}, {Number: "1002", Enabled: true}, {Number: "1003", Enabled: true, CallOut: true}} {
		mustDo(e.SetPassword("r", "password-1"))
		mustDo(db.CreateExtension(ctx, &e))
		exts[e.Number] = &e
	}
	trunk := store.Trunk{Name: "t", Enabled: true, Host: "127.0.0.1", Transport: store.TransportUDP, Format: store.NumberE164}
	mustDo(db.CreateTrunk(ctx, &trunk))
	actions, _ := json.Marshal(DefaultFlow().Actions)
	mustDo(db.PutFlow(ctx, &store.Flow{ID: "menu", Actions: actions}))
	mustDo(db.PutNumber(ctx, &store.Number{Number: "+34910000001", Kind: store.NumberToFlow, Target: "menu"}))
	mustDo(db.PutNumber(ctx, &store.Number{Number: "+34910000002", Kind: store.NumberToExtension, Target: "1002"}))
	mustDo(db.PutNumber(ctx, &store.Number{Number: "+34910000003", Kind: store.NumberToAgent, Target: "sales-bot"}))
	mustDo(db.PutNumber(ctx, &store.Number{Number: "+34910000004", Kind: store.NumberToFlow, Target: "menu", TrunkID: trunk.ID}))
	mustDo(db.PutNumber(ctx, &store.Number{Number: "+34910000005", Kind: store.NumberToAgent, Target: "desk"}))
	agents := NewAgents()
	mustDo(agents.Put(agent.Definition{ID: "desk", Name: "Desk", SystemPrompt: "-",
		Realtime: &agent.ProviderConfig{Provider: "openai-realtime"}}))

	ct, err := NewController(Config{Store: db, MediaIP: netip.MustParseAddr("127.0.0.1"), Logger: slog.New(slog.DiscardHandler), Agents: agents})
	if err != nil {
		t.Fatal(err)
	}
	anon, fromTrunk := sip.Identity{}, sip.Identity{Trunk: &trunk}
	ext := func(n string) sip.Identity { return sip.Identity{Extension: exts[n]} }
	cases := []struct {
		name    string
		from    sip.Identity
		dialed  string
		flow    string // "" for the default flow
		warning string
	}{
		{"number to flow", fromTrunk, "+34 910 000 001", "menu", ""},
		{"number to extension", fromTrunk, "+34910000002", "route:number:+34910000002", ""},
		{"number to a missing agent", fromTrunk, "+34910000003", "", "agent sales-bot not found"},
		{"number to agent", fromTrunk, "+34910000005", "route:number:+34910000005", ""},
		{"trunk's own DID", fromTrunk, "+34910000004", "menu", ""},
		{"another trunk's DID from an extension", ext("1003"), "+34910000004", "route:trunk", ""},
		{"extension to extension", ext("1001"), "1002", "route:extension:1002", ""},
		{"anonymous to extension", anon, "1002", "route:extension:1002", ""},
		{"trunk to an extension number", fromTrunk, "1002", "", ""},
		{"extension without call-out to a number", ext("1001"), "+14155550100", "route:forbidden", ""},
		{"extension with call-out to a number", ext("1003"), "+14155550100", "route:trunk", ""},
		{"anonymous to a number", anon, "+14155550100", "", ""},
		{"extension to a name", ext("1001"), "echo", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			call := &Call{ct: ct, ctx: ctx, log: ct.log, variables: map[string]string{},
				leg: &sip.Leg{ToUser: c.dialed, Identity: c.from}}
			p := ct.routeDialed(call)
			got := ""
			if p != nil {
				got = p.flow.ID
			}
			if got != c.flow {
				t.Errorf("routed to %q, want %q", got, c.flow)
			}
			warnings := strings.Join(call.rec.Warnings, "; ")
			if (c.warning == "") != (warnings == "") || !strings.Contains(warnings, c.warning) {
				t.Errorf("warnings %q, want %q", warnings, c.warning)
			}
		})
	}
}
