package flow

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseValidate feeds arbitrary documents through what a flow file or
// an API body goes through; it must never panic, and a flow that validates
// must compile to steps whose targets all exist.
func FuzzParseValidate(f *testing.F) {
	paths, _ := filepath.Glob("../testdata/flows/*")
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, filepath.Ext(p) != ".json")
		}
	}
	for _, s := range []string{
		`{"id":"x","actions":[{"type":"answer"},{"type":"goto","option":{"target_id":"x","loop_count":1}}]}`,
		`{"actions":[{"id":"a","type":"branch","option":{"targets":{"1":"a"},"default_target_id":"a"}}]}`,
		`{"actions":[{"type":"condition_datetime","option":{"timezone":"Europe/Madrid","start_time":"23:00","end_time":"01:00","false_target_id":"z"}},{"id":"z","type":"stop"}]}`,
		`{"actions":[{"type":"webhook_send","option":{"url":"http://127.0.0.1/${x}","headers":{"A":"b"}}}]}`,
		`{"actions":[{"type":"play","option":{"prompt":"greeting","loop_count":3,"barge":"dtmf"}}]}`,
		`{"actions":[{"type":"media_stream","option":{"url":"ws://127.0.0.1/x","encoding":"l16"}}]}`,
		`{"actions":null}`, `[]`, `{}`, `{"actions":[{"type":"answer","option":[1,2]}]}`,
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("id: y\nactions:\n  - type: answer\n  - {type: hangup, option: {reason: busy}}\n"), true)
	f.Fuzz(func(t *testing.T, doc []byte, yamlDoc bool) {
		fl, err := Parse(doc, yamlDoc)
		if err != nil {
			return
		}
		p, err := fl.compile()
		if err != nil {
			return
		}
		for i, st := range p.steps {
			if st.exec == nil {
				t.Fatalf("action %d compiled without an executor", i)
			}
			for _, j := range st.jumps {
				if _, ok := p.index[j]; !ok {
					t.Fatalf("action %d jumps to unknown %q", i, j)
				}
			}
		}
	})
}
