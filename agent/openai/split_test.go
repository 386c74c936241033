package openai

import (
	"slices"
	"testing"
)

// segments feeds deltas through the splitter the way ttsStream does and
// returns the segments cut before a flush, plus the remainder.
func segments(sp splitter, deltas ...string) ([]string, string) {
	var out []string
	pending := ""
	for _, d := range deltas {
		pending += d
		for {
			seg, rest, ok := sp.next(trimLeftSpace(pending))
			if !ok {
				break
			}
			pending = rest
			out = append(out, seg)
		}
	}
	return out, trimLeftSpace(pending)
}

func trimLeftSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\n' || s[0] == '\t' || s[0] == '\r') {
		s = s[1:]
	}
	return s
}

func TestSplitter(t *testing.T) {
	sp := splitter{minClause: 20, maxLen: 60}
	cases := []struct {
		name   string
		deltas []string
		segs   []string
		rest   string
	}{
		{"sentences", []string{"Hi", " there", ".", " How", " are", " you", "?", " Fine"},
			[]string{"Hi there.", "How are you?"}, "Fine"},
		{"period waits for the next character", []string{"It costs 3", ".", "5 dollars."},
			nil, "It costs 3.5 dollars."},
		{"decimal then sentence", []string{"It costs 3.5 dollars. Okay"},
			[]string{"It costs 3.5 dollars."}, "Okay"},
		{"abbreviations and initials", []string{"Dr. Smith and J. R. Tolkien e.g. this. Next"},
			[]string{"Dr. Smith and J. R. Tolkien e.g. this."}, "Next"},
		{"short clause stays", []string{"Yes, of course. "},
			[]string{"Yes, of course."}, ""},
		{"long clause splits at comma", []string{"If you could give me your account number, I will look it up"},
			[]string{"If you could give me your account number,"}, "I will look it up"},
		{"closing quote and repeated marks", []string{`He said "stop!" Then?! Yes... ok`},
			[]string{`He said "stop!"`, "Then?!", "Yes..."}, "ok"},
		{"newline ends a segment", []string{"First line\nSecond"},
			[]string{"First line"}, "Second"},
		{"no punctuation splits at a space when long", []string{"word word word word word word word word word word word word word word word"},
			[]string{"word word word word word word word word word word word word"}, "word word word"},
		{"unicode", []string{"Voilà, très bien. ¿Qué tal? Ok"},
			[]string{"Voilà, très bien.", "¿Qué tal?"}, "Ok"},
	}
	for _, c := range cases {
		segs, rest := segments(sp, c.deltas...)
		if !slices.Equal(segs, c.segs) || rest != c.rest {
			t.Errorf("%s:\n got %q + %q\nwant %q + %q", c.name, segs, rest, c.segs, c.rest)
		}
	}
}

func TestSpeakable(t *testing.T) {
	for s, want := range map[string]bool{"...": false, " - ": false, "": false, "Ok": true, "42": true, "¿Sí?": true} {
		if speakable(s) != want {
			t.Errorf("speakable(%q) = %v", s, !want)
		}
	}
}

// A stream's first segment is cut early: at the first clause break however
// short, a spaced dash, or after firstWords words; with the next character
// still deciding (so "1,000" stays whole).
func TestSplitterFirstSegment(t *testing.T) {
	sp := splitter{minClause: 40, maxLen: 250, first: true, firstWords: 5}
	cases := []struct {
		name   string
		deltas []string
		seg    string
	}{
		{"comma", []string{"Sure", ",", " I", " can", " help"}, "Sure,"},
		{"words", []string{"You", " said", " I", " would", " like", " to", " check"}, "You said I would like"},
		{"sentence first", []string{"Yes", ".", " Then"}, "Yes."},
		{"spaced dash", []string{"Right", " -", " the", " order"}, "Right -"},
		{"em dash", []string{"Well—", " let", " me", " see"}, "Well—"},
		{"number with comma", []string{"It", " is", " 1,000", " dollars", " in", " total"}, "It is 1,000 dollars in"},
	}
	for _, c := range cases {
		segs, _ := segments(sp, c.deltas...)
		if len(segs) == 0 || segs[0] != c.seg {
			t.Errorf("%s: segments %q, want first %q", c.name, segs, c.seg)
		}
	}
	// Too few words and no break: nothing yet.
	if segs, rest := segments(sp, "You", " said", " I"); segs != nil || rest != "You said I" {
		t.Errorf("cut early: %q / %q", segs, rest)
	}
}
