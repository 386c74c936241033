package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/voxbridge/voxbridge/api"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// apiCLI is a CLI pointed, through the environment, at an API server on
// loopback.
func apiCLI(t *testing.T) (*cli, *store.DB) {
	t.Helper()
	c := newCLI(t)
	db := c.open()
	srv, err := api.New(api.Config{Store: db, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { srv.Close() })
	t.Cleanup(hs.Close)
	key, rec := api.NewKey("cli", store.RoleAdmin)
	if err := db.CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	c.env[envAPIURL] = hs.URL
	c.env[envAPIKey] = key
	return c, db
}

func TestCallsCommands(t *testing.T) {
	c, db := apiCLI(t)
	ctx := context.Background()
	base := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 3 {
		call := &store.Call{Direction: store.DirectionIncoming, Status: store.StatusHangup, Source: "sip:alice@127.0.0.1",
			Destination: "sip:echo@127.0.0.1", HangupBy: store.HangupByRemote, HangupReason: store.ReasonNormal,
			TMCreate: base.Add(time.Duration(i) * time.Minute)}
		if i == 2 {
			call.Direction, call.Source = store.DirectionOutgoing, "sip:voxbridge@127.0.0.1"
		}
		if err := db.CreateCall(ctx, call); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, call.ID)
	}
	db.AddActionRun(ctx, &store.ActionRun{CallID: ids[0], Seq: 1, FlowID: "default", ActionID: "greet", Type: "play",
		TMStart: base, TMEnd: base.Add(1500 * time.Millisecond), Result: "ok"})

	out := c.must("", runCalls, "list")
	for _, id := range ids {
		if !strings.Contains(out, id) {
			t.Fatalf("list lacks %s:\n%s", id, out)
		}
	}
	out = c.must("", runCalls, "list", "--direction", "outgoing")
	if !strings.Contains(out, ids[2]) || strings.Contains(out, ids[0]) {
		t.Fatalf("outgoing list:\n%s", out)
	}
	var page struct {
		Result        []store.Call `json:"result"`
		NextPageToken string       `json:"next_page_token"`
	}
	if err := json.Unmarshal([]byte(c.must("", runCalls, "list", "--json", "--page-size", "2")), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Result) != 2 || page.NextPageToken == "" || page.Result[0].ID != ids[2] {
		t.Fatalf("JSON page: %+v", page)
	}
	if err := json.Unmarshal([]byte(c.must("", runCalls, "list", "--json", "--page-size", "2", "--page-token", page.NextPageToken)), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Result) != 1 || page.Result[0].ID != ids[0] {
		t.Fatalf("second JSON page: %+v", page)
	}

	out = c.must("", runCalls, "get", ids[0])
	for _, want := range []string{ids[0], "remote, normal", "greet", "play", "1500"} {
		if !strings.Contains(out, want) {
			t.Fatalf("get lacks %q:\n%s", want, out)
		}
	}
	if _, err := c.run("", runCalls, "get", "nope"); err == nil || !strings.Contains(err.Error(), "404 not_found") {
		t.Fatalf("get unknown: %v", err)
	}
	if _, err := c.run("", runCalls, "list", "--status", "asleep"); err == nil || !strings.Contains(err.Error(), "invalid_argument") {
		t.Fatalf("bad status: %v", err)
	}

	// Key and address: flags win over the environment; no key is an error.
	if _, err := c.run("", runCalls, "list", "--key", "vbk_wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := c.run("", runCalls, "list", "--api", "ftp://x"); err == nil || !strings.Contains(err.Error(), "API URL") {
		t.Fatalf("bad URL: %v", err)
	}
	delete(c.env, envAPIKey)
	if _, err := c.run("", runCalls, "list"); err == nil || !strings.Contains(err.Error(), envAPIKey) {
		t.Fatalf("no key: %v", err)
	}
}

func TestFlowsCommands(t *testing.T) {
	c, db := apiCLI(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "welcome.yaml")
	os.WriteFile(good, []byte("name: welcome\nactions:\n  - type: answer\n  - type: play\n    option: {prompt: greeting}\n  - type: hangup\n"), 0o600)

	out := c.must("", flowsVerb, "create", good)
	if !strings.Contains(out, "flow welcome stored") {
		t.Fatalf("create: %s", out)
	}
	sf, err := db.GetFlow(context.Background(), "welcome")
	if err != nil {
		t.Fatal(err)
	}
	if f, err := flow.FromStore(sf); err != nil || f.Validate() != nil || f.Actions[1].Type != "play" {
		t.Fatalf("stored: %+v %v", f, err)
	}
	if _, err := c.run("", flowsVerb, "create", good); err == nil || !strings.Contains(err.Error(), "409 conflict") {
		t.Fatalf("create twice: %v", err)
	}
	os.WriteFile(good, []byte("name: welcome v2\nactions:\n  - type: answer\n  - type: hangup\n"), 0o600)
	c.must("", flowsVerb, "create", "--replace", good)
	if sf, _ := db.GetFlow(context.Background(), "welcome"); sf.Name != "welcome v2" {
		t.Fatalf("after --replace: %+v", sf)
	}

	// The server's validation comes back with the action and field.
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"actions":[{"type":"answer"},{"id":"w","type":"digits_receive","option":{"max_digits":"two"}}]}`), 0o600)
	_, err = c.run("", flowsVerb, "create", bad)
	for _, want := range []string{"invalid_flow", "action index 1", `"w"`, "option.max_digits"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("bad flow: %v lacks %q", err, want)
		}
	}

	out = c.must("", flowsVerb, "list")
	if !strings.Contains(out, "welcome v2") || !strings.Contains(out, "api") {
		t.Fatalf("list:\n%s", out)
	}
	var flows []store.Flow
	if err := json.Unmarshal([]byte(c.must("", flowsVerb, "list", "--json")), &flows); err != nil || len(flows) != 1 {
		t.Fatalf("list --json: %v %v", flows, err)
	}
	c.must("", flowsVerb, "delete", "welcome")
	if _, err := db.GetFlow(context.Background(), "welcome"); err == nil {
		t.Fatal("deleted flow still stored")
	}
	if _, err := c.run("", flowsVerb, "delete", "welcome"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("delete twice: %v", err)
	}
	// validate still works offline, through the same command.
	if out := c.must("", flowsVerb, "validate", good); !strings.Contains(out, "ok") {
		t.Fatalf("validate: %s", out)
	}
	if _, err := c.run("", flowsVerb, "rename"); err == nil || !strings.Contains(err.Error(), "create|delete|list|validate") {
		t.Fatalf("unknown verb: %v", err)
	}
}

// flowsVerb runs the flows command as main does, with the test's
// environment.
func flowsVerb(args []string, env cliEnv) error { return runFlowsAPI(args, env) }

// A real call through a whole server: its events reach a websocket client
// (authenticated like a browser, with a session token), a signed webhook
// and the metrics, in the order the call made them.
func TestRealCallEventsReachWebsocketWebhookAndMetrics(t *testing.T) {
	waitDigit := &flow.Flow{ID: "digit", Actions: []flow.Action{
		{Type: "answer"},
		{Type: "digits_receive", Option: json.RawMessage(`{"max_digits":1,"timeout_ms":20000}`)},
		{Type: "hangup"},
	}}
	inst, _ := testServer(t, waitDigit)
	base := "http://" + inst.HTTP.String()
	c := &apiClient{base: base, key: testAPIKey, http: &http.Client{Timeout: 10 * time.Second}}

	// The webhook target checks signatures with the secret it was given.
	type delivery struct {
		signedOK bool
		event    api.WebhookEvent
	}
	got := make(chan delivery, 10)
	var secret atomic.Value // set once the target exists
	secret.Store("")
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret.Load().(string)))
		mac.Write([]byte(r.Header.Get(api.HeaderTimestamp) + "." + string(body)))
		d := delivery{signedOK: hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(r.Header.Get(api.HeaderSignature)))}
		json.Unmarshal(body, &d.event)
		got <- d
	}))
	t.Cleanup(rcv.Close)
	var hook struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := c.do("POST", "/v1/webhooks", map[string]any{"url": rcv.URL, "event_types": []string{"call.hangup"}}, &hook); err != nil {
		t.Fatal(err)
	}
	secret.Store(hook.Secret)

	var session struct {
		Token string `json:"token"`
	}
	if err := c.do("POST", "/v1/sessions", nil, &session); err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+inst.HTTP.String()+"/v1/events?types=call.*,dtmf&session_token="+session.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	waitFor(t, "the websocket subscription", 10*time.Second, func() bool {
		return metricValue(t, inst.api.Metrics().EventSubscribers) == 1
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := testPhone(t).Dial(ctx, target(inst, "x"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()

	var types []string
	var callID string
	var final store.Call
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for len(types) == 0 || types[len(types)-1] != flow.EventCallHangup {
		var ev struct {
			Type   string          `json:"type"`
			CallID string          `json:"call_id"`
			Data   json.RawMessage `json:"data"`
		}
		if err := ws.ReadJSON(&ev); err != nil {
			t.Fatalf("after %v: %v", types, err)
		}
		if callID == "" {
			callID = ev.CallID
		}
		if ev.CallID != callID {
			t.Fatalf("event of another call: %+v", ev)
		}
		types = append(types, ev.Type)
		switch ev.Type {
		case flow.EventCallAnswered:
			// Answered: press 5; the flow hangs up after one digit.
			if _, err := call.SendDTMF('5', 100*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		case flow.EventCallHangup:
			json.Unmarshal(ev.Data, &final)
		}
	}
	want := []string{flow.EventCallCreated, flow.EventCallRinging, flow.EventCallAnswered, flow.EventDTMF, flow.EventCallHangup}
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Fatalf("websocket saw %v, want %v", types, want)
	}
	if final.ID != callID || final.DTMF != "5" || final.HangupReason == "" {
		t.Fatalf("hangup event data: %+v", final)
	}

	select {
	case d := <-got:
		if !d.signedOK || d.event.Type != flow.EventCallHangup || d.event.CallID != callID {
			t.Fatalf("webhook delivery: %+v", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook delivery")
	}

	// The same call in the metrics, and through the CLI.
	waitFor(t, "the metrics", 10*time.Second, func() bool {
		return metricValue(t, inst.api.Metrics().CallsTotal, "incoming", string(final.HangupReason)) == 1 &&
			metricValue(t, inst.api.Metrics().DTMFEvents) == 1 &&
			metricValue(t, inst.api.Metrics().CallsActive, "incoming") == 0
	})
	cl := newCLI(t)
	cl.env[envAPIURL], cl.env[envAPIKey] = base, testAPIKey
	if out := cl.must("", runCalls, "get", callID); !strings.Contains(out, "digits_receive") || !strings.Contains(out, string(final.HangupReason)) {
		t.Fatalf("calls get:\n%s", out)
	}
}

// metricValue reads one counter or gauge series.
func metricValue(t *testing.T, c prometheus.Collector, labels ...string) float64 {
	t.Helper()
	var m prometheus.Metric
	switch v := c.(type) {
	case *prometheus.CounterVec:
		m = v.WithLabelValues(labels...)
	case *prometheus.GaugeVec:
		m = v.WithLabelValues(labels...)
	case prometheus.Metric:
		m = v
	}
	var out dto.Metric
	if m == nil || m.Write(&out) != nil {
		t.Fatalf("metricValue %T", c)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}
