package flow

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
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

// Every declared action type decodes a minimal valid option into an
// executor: no type without both validation and an executor.
func TestEveryActionTypeHasExecutor(t *testing.T) {
	minimal := map[string]string{
		"answer": ``, "echo": `{"duration_ms":1000}`, "sleep": `{"duration_ms":10}`,
		"hangup": `{"reason":"busy"}`, "play": `{"prompt":"goodbye"}`,
	}
	for typ := range actionTypes {
		opt, ok := minimal[typ]
		if !ok {
			t.Errorf("action type %q has no case in this test", typ)
			continue
		}
		ex, err := decodeAction(Action{Type: typ, Option: json.RawMessage(opt)})
		if err != nil || ex == nil {
			t.Errorf("action type %q: executor %v, err %v", typ, ex != nil, err)
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
