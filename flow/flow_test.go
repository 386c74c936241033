package flow

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDefaultFlowCompiles(t *testing.T) {
	if err := DefaultFlow().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"greeting", "goodbye"} {
		pcm, err := Prompt(name)
		if err != nil || len(pcm) < 4000 {
			t.Fatalf("prompt %s: %d samples, %v", name, len(pcm), err)
		}
	}
}

func TestValidateNamesActionAndField(t *testing.T) {
	cases := []struct {
		name   string
		action Action
		want   []string // all must appear in the error
	}{
		{"unknown type", Action{ID: "x", Type: "dance"}, []string{"action 1", `"x"`, "type", "dance"}},
		{"unknown option field", Action{ID: "e", Type: "echo", Option: json.RawMessage(`{"duration":5}`)}, []string{"action 1", `"e"`, "duration"}},
		{"wrong type", Action{ID: "s", Type: "sleep", Option: json.RawMessage(`{"duration_ms":"soon"}`)}, []string{"action 1", "duration_ms"}},
		{"missing sleep duration", Action{ID: "s", Type: "sleep"}, []string{"option.duration_ms"}},
		{"negative echo", Action{ID: "e", Type: "echo", Option: json.RawMessage(`{"duration_ms":-1}`)}, []string{"option.duration_ms"}},
		{"unknown prompt", Action{ID: "p", Type: "play", Option: json.RawMessage(`{"prompt":"nope"}`)}, []string{"option.prompt", "nope"}},
		{"missing file", Action{ID: "p", Type: "play", Option: json.RawMessage(`{"files":["/no/such.wav"]}`)}, []string{"option.files[0]"}},
		{"play needs one source", Action{ID: "p", Type: "play", Option: json.RawMessage(`{}`)}, []string{"exactly one"}},
		{"bad hangup reason", Action{ID: "h", Type: "hangup", Option: json.RawMessage(`{"reason":"bored"}`)}, []string{"option.reason", "bored"}},
		{"answer takes no option", Action{ID: "a", Type: "answer", Option: json.RawMessage(`{"x":1}`)}, []string{"action 1", "x"}},
		{"trailing garbage", Action{ID: "a", Type: "answer", Option: json.RawMessage(`{} {}`)}, []string{"trailing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &Flow{ID: "f", Actions: []Action{{Type: "answer"}, c.action}}
			err := f.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if err := (&Flow{ID: "empty"}).Validate(); err == nil {
		t.Fatal("empty flow accepted")
	}
}

// Every declared action type decodes a minimal valid option into a step
// with an executor: no type without both validation and an executor. The
// end-to-end tests run each of them through a real call.
func TestEveryActionTypeHasExecutor(t *testing.T) {
	minimal := map[string]string{
		"answer": ``, "echo": `{"duration_ms":1000}`, "sleep": `{"duration_ms":10}`,
		"hangup": `{"reason":"busy"}`, "play": `{"prompt":"goodbye"}`, "stop": ``,
		"beep": ``, "digits_receive": `{"max_digits":2}`, "digits_send": `{"digits":"12#"}`,
		"branch":             `{"targets":{"1":"a"}}`,
		"goto":               `{"target_id":"a","loop_count":2}`,
		"condition_variable": `{"variable":"call.digits","operator":"==","value":"1","false_target_id":"a"}`,
		"condition_datetime": `{"timezone":"Europe/Madrid","weekdays":["mon"],"start_time":"09:00","end_time":"17:00","false_target_id":"a"}`,
		"variable_set":       `{"key":"x","value":"y"}`,
		"fetch_flow":         `{"flow_id":"other"}`,
		"webhook_send":       `{"url":"http://127.0.0.1:1/hook"}`,
		"media_stream":       `{"url":"ws://127.0.0.1:1/agent","encoding":"l16","direction":"both"}`,
		"connect":            `{"destinations":[{"type":"extension","target":"1002"}]}`,
		"ai_talk":            `{"agent_id":"support","greeting":"Hi","variables":{"name":"${call.from_user}"},"max_duration_s":600}`,
		"talk":               `{"text":"Hello ${call.from_user}","agent_id":"support","barge":"dtmf"}`,
		"recording_start":    `{"stereo":false,"max_duration_s":60,"end_on_silence_s":5,"end_on_key":"#","beep":true}`,
		"recording_stop":     ``,
		"amd":                `{"timeout_ms":3000,"on_machine":"hangup"}`,
		"transfer":           `{"destination":{"type":"extension","target":"1002"},"mode":"blind"}`,
		"transcribe_start":   `{"agent_id":"support","language":"en-US","direction":"both"}`,
		"transcribe_stop":    ``,
	}
	for typ, spec := range actionTypes {
		opt, ok := minimal[typ]
		if !ok {
			t.Errorf("action type %q has no case in this test", typ)
			continue
		}
		st, err := spec(json.RawMessage(opt))
		if err != nil || st.exec == nil {
			t.Errorf("action type %q: executor %v, err %v", typ, st.exec != nil, err)
		}
	}
}

func TestMediaIPFollowsRoute(t *testing.T) {
	public := netip.MustParseAddr("192.0.2.99")
	ct := &Controller{cfg: Config{MediaIP: public, RouteMediaIP: true}}
	if got := ct.mediaIPFor(netip.MustParseAddr("127.0.0.1")); got != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("caller on loopback answered with %v", got)
	}
	if got := ct.mediaIPFor(netip.IPv4Unspecified()); got != public {
		t.Fatalf("held (0.0.0.0) media answered with %v", got)
	}
	ct.cfg.RouteMediaIP = false
	if got := ct.mediaIPFor(netip.MustParseAddr("127.0.0.1")); got != public {
		t.Fatalf("configured public IP ignored: %v", got)
	}
}

func TestValidateGraph(t *testing.T) {
	cases := []struct {
		name    string
		actions string
		want    []string
	}{
		{"goto unknown target", `[{"type":"answer"},{"type":"goto","option":{"target_id":"nope","loop_count":1}}]`, []string{"action 1", "nope"}},
		{"next_id unknown", `[{"type":"answer","next_id":"zz"},{"type":"hangup"}]`, []string{"action 0", "next_id", "zz"}},
		{"duplicate id", `[{"id":"a","type":"answer"},{"id":"a","type":"hangup"}]`, []string{"action 1", "duplicate"}},
		{"unreachable after hangup", `[{"type":"answer"},{"type":"hangup"},{"id":"orphan","type":"beep"}]`, []string{"action 2", "orphan", "unreachable"}},
		{"unreachable loop", `[{"type":"hangup"},{"id":"l1","type":"beep"},{"type":"goto","option":{"target_id":"l1","loop_count":3}}]`, []string{"action 1", "unreachable"}},
		{"goto without bound", `[{"id":"a","type":"answer"},{"type":"goto","option":{"target_id":"a"}}]`, []string{"option.loop_count"}},
		{"branch bad default", `[{"type":"branch","option":{"targets":{"1":"x"},"default_target_id":"y"}},{"id":"x","type":"hangup"}]`, []string{"y", "not an action id"}},
		{"bad operator", `[{"id":"a","type":"condition_variable","option":{"variable":"v","operator":"~","value":"1","false_target_id":"a"}}]`, []string{"option.operator"}},
		{"bad regexp", `[{"id":"a","type":"condition_variable","option":{"variable":"v","operator":"matches","value":"(","false_target_id":"a"}}]`, []string{"option.value", "pattern"}},
		{"bad timezone", `[{"id":"a","type":"condition_datetime","option":{"timezone":"Mars/Base","false_target_id":"a"}}]`, []string{"option.timezone"}},
		{"bad weekday", `[{"id":"a","type":"condition_datetime","option":{"weekdays":["mon","funday"],"false_target_id":"a"}}]`, []string{"option.weekdays[1]"}},
		{"start without end", `[{"id":"a","type":"condition_datetime","option":{"start_time":"09:00","false_target_id":"a"}}]`, []string{"option.end_time"}},
		{"bad variable name", `[{"type":"variable_set","option":{"key":"9lives","value":"x"}}]`, []string{"option.key"}},
		{"bad terminator", `[{"type":"digits_receive","option":{"terminators":"#x"}}]`, []string{"option.terminators"}},
		{"bad digits", `[{"type":"digits_send","option":{"digits":"12Z"}}]`, []string{"option.digits"}},
		{"webhook not http", `[{"type":"webhook_send","option":{"url":"file:///etc/passwd"}}]`, []string{"option.url"}},
		{"webhook bad method", `[{"type":"webhook_send","option":{"url":"http://127.0.0.1/x","method":"TRACE"}}]`, []string{"option.method"}},
		{"beep out of band", `[{"type":"beep","option":{"frequency_hz":5000}}]`, []string{"option.frequency_hz"}},
		{"media_stream not ws", `[{"type":"media_stream","option":{"url":"http://127.0.0.1/x"}}]`, []string{"option.url"}},
		{"media_stream bad encoding", `[{"type":"media_stream","option":{"url":"ws://127.0.0.1/x","encoding":"opus"}}]`, []string{"option.encoding"}},
		{"play barge speech", `[{"type":"play","option":{"prompt":"greeting","barge":"shout"}}]`, []string{"option.barge"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var actions []Action
			if err := json.Unmarshal([]byte(c.actions), &actions); err != nil {
				t.Fatal(err)
			}
			err := (&Flow{ID: "g", Actions: actions}).Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// A loop with a bound and a way out is fine.
	ok := `[{"id":"m","type":"beep"},{"type":"digits_receive"},{"type":"branch","option":{"targets":{"1":"end"}}},{"type":"goto","option":{"target_id":"m","loop_count":2}},{"id":"end","type":"hangup"}]`
	var actions []Action
	json.Unmarshal([]byte(ok), &actions)
	if err := (&Flow{ID: "ok", Actions: actions}).Validate(); err != nil {
		t.Fatalf("valid menu loop refused: %v", err)
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"call.from": "alice", "x": "1"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	var unknown []string
	got := expand("hi ${call.from} ${ x } ${nope} $${literal} ${open", lookup, func(n string) { unknown = append(unknown, n) })
	if got != "hi alice 1  ${literal} ${open" {
		t.Fatalf("expand = %q", got)
	}
	if len(unknown) != 1 || unknown[0] != "nope" {
		t.Fatalf("unknown = %v", unknown)
	}
}

func TestCompare(t *testing.T) {
	cases := []struct {
		a, op, b string
		want     bool
	}{
		{"10", ">", "9", true},   // numbers compare as numbers
		{"10", ">", "9x", false}, // else as strings
		{"abc", "==", "abc", true}, {"abc", "!=", "abd", true},
		{"1.5", "<=", "1.50", true}, {"hello world", "contains", "lo w", true},
		{"7123", "matches", "^7[0-9]+$", true}, {"x7", "matches", "^7", false},
	}
	for _, c := range cases {
		if got, err := compare(c.a, c.op, c.b); err != nil || got != c.want {
			t.Errorf("compare(%q %s %q) = %v, %v", c.a, c.op, c.b, got, err)
		}
	}
	if _, err := compare("x", "matches", "("); err == nil {
		t.Error("bad pattern accepted at run time")
	}
}

func TestConditionDatetime(t *testing.T) {
	st, err := compileConditionDatetime(&ConditionDatetimeOption{Timezone: "Europe/Madrid", Weekdays: []string{"mon", "tue", "wed", "thu", "fri"}, StartTime: "09:00", EndTime: "17:00", FalseTargetID: "closed"})
	if err != nil {
		t.Fatal(err)
	}
	madrid, _ := time.LoadLocation("Europe/Madrid")
	cases := []struct {
		t    time.Time
		open bool
	}{
		{time.Date(2026, 11, 23, 9, 0, 0, 0, madrid), true},     // Monday opening minute
		{time.Date(2026, 11, 23, 16, 59, 0, 0, madrid), true},   // last minute
		{time.Date(2026, 11, 23, 17, 0, 0, 0, madrid), false},   // closed at 17:00
		{time.Date(2026, 11, 22, 12, 0, 0, 0, madrid), false},   // Sunday
		{time.Date(2026, 11, 23, 7, 30, 0, 0, time.UTC), false}, // 08:30 in Madrid (CET, UTC+1): not yet open
		{time.Date(2026, 11, 23, 8, 30, 0, 0, time.UTC), true},  // 09:30 in Madrid
	}
	for _, c := range cases {
		ct := &Controller{now: func() time.Time { return c.t }}
		jump, err := st.exec(context.Background(), &run{c: &Call{ct: ct}})
		if err != nil {
			t.Fatal(err)
		}
		if open := jump == ""; open != c.open {
			t.Errorf("%v: open %v, want %v", c.t, open, c.open)
		}
	}
	// A window across midnight.
	night, _ := compileConditionDatetime(&ConditionDatetimeOption{StartTime: "22:00", EndTime: "06:00", FalseTargetID: "day"})
	for h, want := range map[int]bool{23: true, 3: true, 6: false, 12: false, 22: true} {
		ct := &Controller{now: func() time.Time { return time.Date(2026, 1, 1, h, 0, 0, 0, time.UTC) }}
		jump, _ := night.exec(context.Background(), &run{c: &Call{ct: ct}})
		if (jump == "") != want {
			t.Errorf("night window at %02d:00: in %v, want %v", h, jump == "", want)
		}
	}
}

func TestWebhookVars(t *testing.T) {
	got := webhookVars([]byte(`{"route":"sales","n":3,"ok":true,"obj":{"a":1},"bad key":"x"}`))
	want := map[string]string{"route": "sales", "n": "3", "ok": "true", "obj": `{"a":1}`}
	if len(got) != len(want) {
		t.Fatalf("webhookVars = %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if webhookVars([]byte(`[1,2]`)) != nil || webhookVars([]byte(`garbage`)) != nil {
		t.Error("non-object replies must give no variables")
	}
}

func TestParseYAMLAndJSON(t *testing.T) {
	y := "id: menu\nname: Menu\nactions:\n  - id: a\n    type: answer\n  - type: branch\n    option:\n      targets: {1: a}\n      default_target_id: a\n"
	f, err := Parse([]byte(y), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("YAML flow with a numeric map key refused: %v", err)
	}
	if _, err := Parse([]byte(`{"id":"x","actions":[],"colour":"red"}`), false); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown top-level field: %v", err)
	}
}
