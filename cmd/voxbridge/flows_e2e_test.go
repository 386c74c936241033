package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// Beep frequencies the test flows use as audible markers: the phone tells
// which branch ran by the tones it hears.
const (
	toneMenu    = 600
	toneBye     = 400
	toneOne     = 1000
	toneTwo     = 1400
	toneSub     = 800
	toneOpen    = 1200
	toneClosed  = 1800
	tonePrompt  = 500
	toneWindow  = media.SampleRate / 10 // 100 ms
	toneMinRMS  = 1000
	toneMinPeak = 0.15
)

// toneSequence lists the marker tones heard in pcm, in order, one entry per
// continuous run.
func toneSequence(pcm []int16, candidates ...float64) []float64 {
	var seq []float64
	last := 0.0
	for i := 0; i+toneWindow <= len(pcm); i += toneWindow {
		w := pcm[i : i+toneWindow]
		cur := 0.0
		if media.RMS(w) > toneMinRMS {
			best := 0.0
			for _, f := range candidates {
				if l := media.ToneLevel(w, f); l > best && l > toneMinPeak {
					best, cur = l, f
				}
			}
		}
		if cur != last && cur != 0 {
			seq = append(seq, cur)
		}
		last = cur
	}
	return seq
}

func mustFlow(t *testing.T, doc string) *flow.Flow {
	t.Helper()
	f, err := flow.Parse([]byte(doc), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	return f
}

// getCallView reads a call with its executed actions.
func getCallView(t *testing.T, inst *instance, sipCallID string) (store.Call, []store.ActionRun) {
	t.Helper()
	rec := callRecord(t, inst, sipCallID)
	var view struct {
		Actions []store.ActionRun `json:"actions"`
	}
	getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls/"+rec.ID, &view)
	return rec, view.Actions
}

func actionTrail(runs []store.ActionRun) string {
	var b []string
	for _, a := range runs {
		s := a.Type
		if a.ActionID != "" {
			s = a.ActionID
		}
		if a.Result != "ok" {
			s += "(" + a.Result + ")"
		}
		b = append(b, s)
	}
	return strings.Join(b, " ")
}

const ivrFlow = `{
  "id": "ivr",
  "actions": [
    {"type": "answer"},
    {"type": "variable_set", "option": {"key": "tries", "value": "menu"}},
    {"id": "menu", "type": "beep", "option": {"frequency_hz": 600, "duration_ms": 300}},
    {"id": "ask", "type": "digits_receive", "option": {"max_digits": 1, "timeout_ms": 1200}},
    {"type": "branch", "option": {"targets": {"1": "one", "2": "two"}}},
    {"type": "goto", "option": {"target_id": "menu", "loop_count": 2}},
    {"id": "bye", "type": "beep", "option": {"frequency_hz": 400, "duration_ms": 300}},
    {"type": "hangup", "option": {"reason": "noanswer"}},
    {"id": "one", "type": "beep", "option": {"frequency_hz": 1000, "duration_ms": 300}},
    {"type": "variable_set", "option": {"key": "choice", "value": "one:${call.digits}"}},
    {"type": "condition_variable", "option": {"variable": "choice", "operator": "==", "value": "one:1", "false_target_id": "bye"}},
    {"type": "digits_send", "option": {"digits": "42", "duration_ms": 120}},
    {"type": "sleep", "option": {"duration_ms": 300}},
    {"type": "hangup"},
    {"id": "two", "type": "beep", "option": {"frequency_hz": 1400, "duration_ms": 300}, "next_id": "bye"}
  ]
}`

// Pressing 1 at the menu takes the "one" branch: its tone, the variable, the
// condition, and digits sent back to the caller.
func TestFlowMenuChoice(t *testing.T) {
	inst, _ := testServer(t, mustFlow(t, ivrFlow))
	call := dialTest(t, inst)
	waitFor(t, "the menu tone", 10*time.Second, func() bool {
		return len(toneSequence(call.Heard(), toneMenu)) > 0
	})
	if _, err := call.SendDTMF('1', 120*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitDone(t, call)
	heard := toneSequence(call.Heard(), toneMenu, toneBye, toneOne, toneTwo)
	if len(heard) < 2 || heard[0] != toneMenu || heard[1] != toneOne {
		t.Fatalf("tones heard %v, want menu then one", heard)
	}
	if sum := call.Summary(); sum.DigitsHeard != "42" {
		t.Fatalf("phone heard digits %q, want 42", sum.DigitsHeard)
	}
	rec, runs := getCallView(t, inst, call.CallID())
	if rec.FlowID != "ivr" || rec.Variables["choice"] != "one:1" || rec.Variables["call.digits"] != "1" || rec.DTMF != "1" {
		t.Fatalf("record: flow %q variables %v dtmf %q", rec.FlowID, rec.Variables, rec.DTMF)
	}
	if rec.HangupBy != store.HangupByLocal || rec.HangupReason != store.ReasonNormal {
		t.Fatalf("record: hangup %s/%s", rec.HangupBy, rec.HangupReason)
	}
	want := "answer variable_set menu ask branch(jump:one) one variable_set condition_variable digits_send sleep hangup(stop)"
	if got := actionTrail(runs); got != want {
		t.Fatalf("actions ran:\n got %s\nwant %s", got, want)
	}
}

// No key at all: the menu repeats twice (goto loop_count 2), then goodbye
// and a hangup with the flow's reason.
func TestFlowMenuRepeatsThenGivesUp(t *testing.T) {
	inst, _ := testServer(t, mustFlow(t, ivrFlow))
	call := dialTest(t, inst)
	waitDone(t, call)
	heard := toneSequence(call.Heard(), toneMenu, toneBye, toneOne, toneTwo)
	want := []float64{toneMenu, toneMenu, toneMenu, toneBye}
	if !equalTones(heard, want) {
		t.Fatalf("tones heard %v, want %v", heard, want)
	}
	rec, runs := getCallView(t, inst, call.CallID())
	if rec.HangupReason != store.ReasonNoAnswer {
		t.Fatalf("hangup reason %q, want noanswer (from the flow)", rec.HangupReason)
	}
	if n := strings.Count(actionTrail(runs), "goto"); n != 3 {
		t.Fatalf("goto ran %d times, want 3 (2 jumps, then fall through): %s", n, actionTrail(runs))
	}
}

func equalTones(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func dialTest(t *testing.T, inst *instance) *siptest.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := testPhone(t).Dial(ctx, target(inst, "flow"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Close)
	return call
}

func waitDone(t *testing.T, call *siptest.Call) {
	t.Helper()
	select {
	case <-call.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the server never hung up")
	}
}

// hookServer is a webhook receiver on loopback that answers with reply and
// keeps what it was sent.
type hookServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]string
}

func newHookServer(t *testing.T, reply string) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]string
		_ = json.Unmarshal(b, &m)
		h.mu.Lock()
		h.bodies = append(h.bodies, m)
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, reply)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) received() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]string(nil), h.bodies...)
}

// A webhook decides the route; the route fetches a stored sub-flow, checks
// business hours on a fixed clock, and ends with stop; a last webhook is
// sent without waiting.
func TestFlowWebhookRouter(t *testing.T) {
	hook := newHookServer(t, `{"route":"sales","agent":{"name":"Ada"},"score":7}`)
	router := mustFlow(t, `{
	  "id": "router",
	  "actions": [
	    {"type": "answer"},
	    {"type": "webhook_send", "option": {"url": "`+hook.URL+`/route?from=${call.from_user}", "sync": true, "body": "{\"caller\":\"${call.from_user}\"}"}},
	    {"type": "branch", "option": {"variable": "webhook.route", "targets": {"sales": "sales"}, "default_target_id": "closed"}},
	    {"id": "sales", "type": "fetch_flow", "option": {"flow_id": "sub"}},
	    {"type": "condition_datetime", "option": {"timezone": "Europe/Madrid", "weekdays": ["mon","tue","wed","thu","fri"], "start_time": "09:00", "end_time": "17:00", "false_target_id": "closed"}},
	    {"type": "condition_variable", "option": {"variable": "webhook.score", "operator": ">=", "value": "5", "false_target_id": "closed"}},
	    {"type": "beep", "option": {"frequency_hz": 1200}},
	    {"type": "webhook_send", "option": {"url": "`+hook.URL+`/done"}},
	    {"type": "stop"},
	    {"id": "closed", "type": "beep", "option": {"frequency_hz": 1800}},
	    {"type": "hangup"}
	  ]
	}`)
	// Monday 10:30 in Madrid: open.
	monday := time.Date(2026, 11, 23, 10, 30, 0, 0, time.FixedZone("CET", 3600))
	cfg := defaultServeConfig()
	cfg.SIPAnonymous = "*" // tests dial whatever user their flow needs
	cfg.SIPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DB = filepath.Join(t.TempDir(), "voxbridge.db")
	inst, err := startInstance(cfg, testLogger(t), instanceOptions{flow: router, now: func() time.Time { return monday }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	sub, _ := mustFlow(t, `{"id":"sub","actions":[{"type":"beep","option":{"frequency_hz":800}},{"type":"variable_set","option":{"key":"visited","value":"sub"}}]}`).ToStore("")
	if err := inst.db.PutFlow(context.Background(), sub); err != nil {
		t.Fatal(err)
	}

	call := dialTest(t, inst)
	waitDone(t, call)
	heard := toneSequence(call.Heard(), toneSub, toneOpen, toneClosed)
	if !equalTones(heard, []float64{toneSub, toneOpen}) {
		_, runs := getCallView(t, inst, call.CallID())
		t.Fatalf("tones heard %v, want sub-flow then open; ran %s", heard, actionTrail(runs))
	}
	rec, runs := getCallView(t, inst, call.CallID())
	if rec.Variables["webhook.route"] != "sales" || rec.Variables["webhook.score"] != "7" || rec.Variables["visited"] != "sub" {
		t.Fatalf("variables %v", rec.Variables)
	}
	if rec.Variables["webhook.agent"] != `{"name":"Ada"}` {
		t.Fatalf("nested reply field: %q", rec.Variables["webhook.agent"])
	}
	trail := actionTrail(runs)
	if !strings.Contains(trail, "sales beep variable_set condition_datetime condition_variable beep webhook_send stop(stop)") {
		t.Fatalf("actions ran: %s", trail)
	}
	waitFor(t, "the asynchronous webhook", 5*time.Second, func() bool { return len(hook.received()) == 2 })
	got := hook.received()
	if got[0]["caller"] != "voxbridge-phone" {
		t.Fatalf("sync webhook body %v: the template's variable was not filled", got[0])
	}
	if got[1]["call.id"] != rec.ID || got[1]["webhook.route"] != "sales" {
		t.Fatalf("async webhook body %v: want the call's variables", got[1])
	}
}

// A key pressed during a prompt with barge dtmf cuts it short, and the key
// is what the next digits_receive gets (type-ahead).
func TestFlowPromptBargeAndTypeAhead(t *testing.T) {
	long := filepath.Join(t.TempDir(), "long.wav")
	if err := media.WriteWAVFile(long, media.Tone(tonePrompt, 8*time.Second, 0.3)); err != nil {
		t.Fatal(err)
	}
	f := mustFlow(t, `{
	  "id": "barge",
	  "actions": [
	    {"type": "answer"},
	    {"type": "play", "option": {"files": ["`+long+`"], "barge": "dtmf"}},
	    {"type": "digits_receive", "option": {"max_digits": 3, "terminators": "#", "timeout_ms": 3000, "inter_digit_timeout_ms": 2000, "variable": "pin"}},
	    {"type": "condition_variable", "option": {"variable": "pin", "operator": "matches", "value": "^7[0-9]$", "false_target_id": "bad"}},
	    {"type": "beep", "option": {"frequency_hz": 1000}},
	    {"type": "hangup"},
	    {"id": "bad", "type": "hangup", "option": {"reason": "failed"}}
	  ]
	}`)
	inst, _ := testServer(t, f)
	call := dialTest(t, inst)
	waitFor(t, "the prompt", 10*time.Second, func() bool { return len(toneSequence(call.Heard(), tonePrompt)) > 0 })
	for _, d := range "73#" {
		done, err := call.SendDTMF(d, 120*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		<-done
	}
	waitDone(t, call)
	heard := call.Heard()
	if !equalTones(toneSequence(heard, tonePrompt, toneOne), []float64{tonePrompt, toneOne}) {
		t.Fatalf("tones %v: want the prompt, cut short, then the success beep", toneSequence(heard, tonePrompt, toneOne))
	}
	// The 8 s prompt was cut: far less than 8 s of it was heard.
	promptMS := 0
	for i := 0; i+toneWindow <= len(heard); i += toneWindow {
		if media.ToneLevel(heard[i:i+toneWindow], tonePrompt) > toneMinPeak {
			promptMS += 100
		}
	}
	if promptMS > 4000 {
		t.Fatalf("heard %d ms of an 8 s prompt after pressing a key", promptMS)
	}
	rec, _ := getCallView(t, inst, call.CallID())
	if rec.Variables["pin"] != "73" || rec.HangupReason != store.ReasonNormal {
		t.Fatalf("pin %q reason %q", rec.Variables["pin"], rec.HangupReason)
	}
}

// flows validate names the action and field of a broken file, and
// --flows-dir loads a directory at start.
func TestFlowsValidateAndLoadDir(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("id: good\nactions:\n  - type: answer\n  - type: hangup\n    option: {reason: busy}\n"), 0o600)
	var out strings.Builder
	if err := runFlows([]string{"validate", good}, &out); err != nil {
		t.Fatalf("good flow refused: %v\n%s", err, out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"id":"bad","actions":[{"type":"answer"},{"id":"w","type":"digits_receive","option":{"max_digits":"two"}}]}`), 0o600)
	out.Reset()
	if err := runFlows([]string{"validate", bad}, &out); err == nil {
		t.Fatal("bad flow accepted")
	}
	for _, want := range []string{"action 1", `"w"`, "option.max_digits"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("message %q lacks %q", out.String(), want)
		}
	}

	cfg := defaultServeConfig()
	cfg.SIPAnonymous = "*" // tests dial whatever user their flow needs
	cfg.SIPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DB = filepath.Join(t.TempDir(), "voxbridge.db")
	cfg.FlowsDir, cfg.DefaultFlow = dir, "good"
	inst, err := startInstance(cfg, testLogger(t), instanceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The loaded default flow answers and hangs up at once with "busy".
	call, err := testPhone(t).Dial(ctx, target(inst, "x"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	waitFor(t, "the record", 10*time.Second, func() bool {
		var list struct{ Result []store.Call }
		getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls", &list)
		return len(list.Result) == 1 && list.Result[0].HangupReason == store.ReasonBusy && list.Result[0].FlowID == "good"
	})
	// A broken file makes a reload refuse, keeping the loaded flows.
	os.WriteFile(filepath.Join(dir, "broken.json"), []byte(`{"id":"x","actions":[{"type":"nope"}]}`), 0o600)
	inst.reloadFlows(dir)
	if _, err := inst.db.GetFlow(ctx, "good"); err != nil {
		t.Fatalf("reload with a broken file lost the good flow: %v", err)
	}
}

// The example flows in testdata/flows are valid.
func TestExampleFlowsValidate(t *testing.T) {
	paths, _ := filepath.Glob("../../testdata/flows/*")
	if len(paths) == 0 {
		t.Fatal("no example flows")
	}
	var out strings.Builder
	if err := runFlows(append([]string{"validate"}, paths...), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
}
