package agent

import (
	"strings"
	"testing"
	"time"
)

func TestEndpointSilence(t *testing.T) {
	e := Definition{}.WithDefaults().Endpointing
	for _, tc := range []struct {
		text string
		want int
	}{
		{"", 500},
		{"I would like a table", 500},
		{"I would like a table.", 250},
		{"Is eight free?", 250},
		{"I would like a table and", 1200},
		{"For two, um", 1200},
		{"Tomorrow,", 1200},
		{"Let me think...", 1200},
		{"I want to go to the", 1200},
	} {
		if got := endpointSilence(tc.text, e); got != time.Duration(tc.want)*time.Millisecond {
			t.Errorf("%q: %v, want %dms", tc.text, got, tc.want)
		}
	}
	if completeSentence("I want the.") || !completeSentence("Book it!") || completeSentence("and so...") {
		t.Error("completeSentence")
	}
}

func TestBackchannels(t *testing.T) {
	b := DefaultBackchannels
	for text, want := range map[string]int{
		"uh-huh":              0,
		"Uh huh.":             0,
		"Yeah, okay.":         0,
		"mm-hmm":              0,
		"yeah but wait":       2,
		"stop":                1,
		"Okay, book it then.": 3,
	} {
		if got := contentWords(text, b); got != want {
			t.Errorf("%q: %d content words, want %d", text, got, want)
		}
	}
}

func TestHeardText(t *testing.T) {
	text := "We have tables at six and seven."
	words := []WordTiming{
		{"We", 0, 200 * time.Millisecond}, {"have", 250 * time.Millisecond, 500 * time.Millisecond},
		{"tables", 550 * time.Millisecond, 900 * time.Millisecond}, {"at", 950 * time.Millisecond, time.Second},
	}
	for _, tc := range []struct {
		heard, total time.Duration
		w            []WordTiming
		want         string
	}{
		{0, 0, words, ""},
		{100 * time.Millisecond, 0, words, "We"},
		{560 * time.Millisecond, 0, words, "We have tables"},
		{3 * time.Second, 3 * time.Second, words, text},
		// Without timings: the share of the whole, back to a word boundary.
		{time.Second, 2 * time.Second, nil, "We have tables"},
		// Whole length unknown: the speaking rate.
		{500 * time.Millisecond, 0, nil, "We have"},
	} {
		if got := heardText(text, tc.w, tc.heard, tc.total); got != tc.want {
			t.Errorf("heard %v of %v: %q, want %q", tc.heard, tc.total, got, tc.want)
		}
	}
}

func TestRender(t *testing.T) {
	got, missing := Render("Hi {{ name }}, {{name}} from {{city}}!", map[string]string{"name": "Ann"})
	if got != "Hi Ann, Ann from !" || len(missing) != 1 || missing[0] != "city" {
		t.Errorf("%q %v", got, missing)
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	if Percentile(ds, 50) != 3 || Percentile(ds, 95) != 5 || Percentile(ds, 0) != 1 || Percentile(nil, 50) != 0 {
		t.Error("percentiles")
	}
}

func TestAudioCacheEvicts(t *testing.T) {
	c := &AudioCache{MaxSamples: 10}
	c.Put(CacheKey{Text: "a"}, make([]int16, 6))
	c.Put(CacheKey{Text: "b"}, make([]int16, 4))
	if _, ok := c.Get(CacheKey{Text: "a"}); !ok {
		t.Fatal("a missing")
	}
	c.Put(CacheKey{Text: "c"}, make([]int16, 3)) // evicts b, the least recent
	if _, ok := c.Get(CacheKey{Text: "b"}); ok || c.Len() != 2 {
		t.Errorf("b kept, len %d", c.Len())
	}
	if _, ok := c.Get(CacheKey{Text: "a", Voice: "other"}); ok {
		t.Error("another voice's rendering returned")
	}
}

func TestParseAnalysis(t *testing.T) {
	pc := PostCall{Summary: true, Fields: JSONSchema(`{"type":"object","properties":{"n":{"type":"integer"},"who":{"type":["string","null"]}},"required":["n"]}`)}
	if a, err := parseAnalysis("Sure! ```json\n{\"summary\":\"ok\",\"fields\":{\"n\":2,\"who\":null}}```", pc); err != nil || string(a.Fields) != `{"n":2,"who":null}` {
		t.Errorf("%+v %v", a, err)
	}
	for doc, want := range map[string]string{
		"no json here":                          "no JSON object",
		`{"summary":"s","fields":{"who":"x"}}`:  `required field "n" missing`,
		`{"summary":"s","fields":{"n":"two"}}`:  `field "n" is string`,
		`{"fields":{"n":1}}`:                    "no summary",
		`{"summary":"s","fields":[1]}`:          "not a JSON object",
		`{"summary":"s","fields":{"n":1}, oops`: "not valid JSON",
	} {
		if _, err := parseAnalysis(doc, pc); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
}
