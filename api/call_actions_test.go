package api

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"testing"

	"github.com/voxbridge/voxbridge/flow"
)

// fakeControl records the actions it gets and answers by call id: "live"
// succeeds, "ended" is not live, "busy" conflicts, "bad" has a bad field,
// "nodial" is unavailable, anything else is unknown.
type fakeControl struct {
	mu  sync.Mutex
	got []flow.CallAction
}

func (f *fakeControl) CallAction(_ context.Context, id string, a flow.CallAction) (flow.CallControlState, error) {
	f.mu.Lock()
	f.got = append(f.got, a)
	f.mu.Unlock()
	switch id {
	case "live":
		return flow.CallControlState{CallID: id, Action: a.Action, Status: "accepted", OnHold: a.Action == flow.ActionHold}, nil
	case "ended":
		return flow.CallControlState{}, flow.ErrCallNotLive
	case "busy":
		return flow.CallControlState{}, fmt.Errorf("%w: the call is not on hold", flow.ErrConflict)
	case "bad":
		return flow.CallControlState{}, &flow.ActionError{Field: "files[1]", Msg: "cannot read x.wav"}
	case "nodial":
		return flow.CallControlState{}, fmt.Errorf("%w: no dialer", flow.ErrActionUnavailable)
	case "broken":
		return flow.CallControlState{}, fmt.Errorf("disk on fire")
	}
	return flow.CallControlState{}, flow.ErrCallNotFound
}

func (f *fakeControl) last() flow.CallAction {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		return flow.CallAction{}
	}
	return f.got[len(f.got)-1]
}

func (f *fakeControl) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

// Every route turns its body into the action the controller gets, and
// answers 202 with the state.
func TestCallActionsReachTheController(t *testing.T) {
	fc := &fakeControl{}
	e := newTestEnv(t, func(c *Config) { c.Control = fc })
	yes := true
	cases := []struct {
		path string
		body any
		want flow.CallAction
	}{
		{"hangup", `{}`, flow.CallAction{Action: flow.ActionHangup}},
		{"hangup", `{"reason":"stuck"}`, flow.CallAction{Action: flow.ActionHangup, Reason: "stuck"}},
		{"transfer", `{"to":"1002"}`, flow.CallAction{Action: flow.ActionTransfer, To: "1002"}},
		{"transfer", `{"to":"sip:bob@127.0.0.1","mode":"blind"}`, flow.CallAction{Action: flow.ActionTransfer, To: "sip:bob@127.0.0.1", Mode: "blind"}},
		{"talk", `{"text":"hi","language":"fr","voice":"v","agent_id":"a"}`, flow.CallAction{Action: flow.ActionTalk, Text: "hi", Language: "fr", Voice: "v", AgentID: "a"}},
		{"play", `{"urls":["http://x/a.wav"],"files":["/a.wav"],"loop":3}`, flow.CallAction{Action: flow.ActionPlay, URLs: []string{"http://x/a.wav"}, Files: []string{"/a.wav"}, Loop: 3}},
		{"dtmf", `{"digits":"12#","duration_ms":200}`, flow.CallAction{Action: flow.ActionDTMF, Digits: "12#", DurationMS: 200}},
		{"mute", `{"direction":"in"}`, flow.CallAction{Action: flow.ActionMute, Direction: "in"}},
		{"unmute", `{}`, flow.CallAction{Action: flow.ActionUnmute}},
		{"hold", nil, flow.CallAction{Action: flow.ActionHold}},
		{"unhold", nil, flow.CallAction{Action: flow.ActionUnhold}},
		{"recording/start", `{"stereo":true,"max_duration_s":60,"beep":true}`, flow.CallAction{Action: flow.ActionRecordingStart, Stereo: &yes, MaxDurationS: 60, Beep: true}},
		{"recording/stop", nil, flow.CallAction{Action: flow.ActionRecordingStop}},
	}
	for _, c := range cases {
		res := e.do("POST", "/v1/calls/live/"+c.path, e.key, c.body)
		if res.status != http.StatusAccepted {
			t.Fatalf("%s: %d %s", c.path, res.status, res.body)
		}
		var st flow.CallControlState
		res.decode(t, &st)
		if st.CallID != "live" || st.Action != c.want.Action || st.Status != "accepted" {
			t.Errorf("%s: answer %+v", c.path, st)
		}
		if got := fc.last(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: controller got %+v, want %+v", c.path, got, c.want)
		}
	}
}

func TestCallActionErrors(t *testing.T) {
	fc := &fakeControl{}
	e := newTestEnv(t, func(c *Config) { c.Control = fc })
	expectError(t, "unknown call", e.do("POST", "/v1/calls/nope/hold", e.key, nil), http.StatusNotFound, "not_found")
	expectError(t, "ended call", e.do("POST", "/v1/calls/ended/hangup", e.key, `{}`), http.StatusConflict, "call_not_live")
	expectError(t, "unhold when not held", e.do("POST", "/v1/calls/busy/unhold", e.key, nil), http.StatusConflict, "conflict")
	expectError(t, "no dialer", e.do("POST", "/v1/calls/nodial/transfer", e.key, `{"to":"1"}`), http.StatusServiceUnavailable, "unavailable")
	expectError(t, "controller failure", e.do("POST", "/v1/calls/broken/hold", e.key, nil), http.StatusInternalServerError, "internal")
	d := expectError(t, "bad file", e.do("POST", "/v1/calls/bad/play", e.key, `{"files":["a.wav","x.wav"]}`), http.StatusBadRequest, "invalid_argument")
	if d["field"] != "files[1]" {
		t.Errorf("bad file: field %v", d["field"])
	}

	before := fc.count()
	bad := []struct {
		path, body, field string
	}{
		{"transfer", `{}`, "to"},
		{"transfer", `{"to":"1","music":"on"}`, "music"},
		{"talk", `{"text":""}`, "text"},
		{"talk", `{"text":42}`, "text"},
		{"play", `{}`, "urls"},
		{"play", `{"urls":"http://x/a.wav"}`, "urls"},
		{"play", `{"urls":["http://x/a.wav"],"loop":true}`, "loop"},
		{"dtmf", `{"duration_ms":100}`, "digits"},
		{"mute", `{"direction":1}`, "direction"},
		{"recording/start", `{"stereo":"yes"}`, "stereo"},
		{"hangup", `{"reason":["a"]}`, "reason"},
	}
	for _, c := range bad {
		d := expectError(t, c.path+" "+c.body, e.do("POST", "/v1/calls/live/"+c.path, e.key, c.body), http.StatusBadRequest, "invalid_argument")
		if d["field"] != c.field {
			t.Errorf("%s %s: field %v, want %s", c.path, c.body, d["field"], c.field)
		}
	}
	expectError(t, "empty body", e.do("POST", "/v1/calls/live/hangup", e.key, ``), http.StatusBadRequest, "invalid_argument")
	expectError(t, "not JSON", e.do("POST", "/v1/calls/live/talk", e.key, `text=hi`, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType, "unsupported_media_type")
	if fc.count() != before {
		t.Errorf("bad bodies reached the controller: %d actions", fc.count()-before)
	}
}

func TestCallActionAuth(t *testing.T) {
	fc := &fakeControl{}
	e := newTestEnv(t, func(c *Config) { c.Control = fc })
	for _, p := range []string{"hangup", "transfer", "talk", "play", "dtmf", "mute", "unmute", "hold", "unhold", "recording/start", "recording/stop"} {
		expectError(t, p+" without key", e.do("POST", "/v1/calls/live/"+p, "", `{}`), http.StatusUnauthorized, "unauthenticated")
		expectError(t, p+" with a read-only key", e.do("POST", "/v1/calls/live/"+p, e.roKey, `{}`), http.StatusForbidden, "permission_denied")
		expectError(t, p+" with a bad key", e.do("POST", "/v1/calls/live/"+p, "vbx_nope", `{}`), http.StatusUnauthorized, "unauthenticated")
	}
	if fc.count() != 0 {
		t.Fatalf("unauthorised requests reached the controller: %d", fc.count())
	}
}

func TestCallActionsWithoutController(t *testing.T) {
	e := newTestEnv(t)
	expectError(t, "no controller", e.do("POST", "/v1/calls/live/hold", e.key, nil), http.StatusServiceUnavailable, "unavailable")
	expectError(t, "no controller", e.do("POST", "/v1/calls/live/talk", e.key, `{"text":"hi"}`), http.StatusServiceUnavailable, "unavailable")
}
