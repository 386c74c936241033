package agent

import (
	"strings"
	"time"
	"unicode"
)

// State is where the conversation is in the turn-taking state machine.
type State int

const (
	StateListening      State = iota // waiting for the caller
	StateCallerSpeaking              // the caller is talking (or pausing inside a turn)
	StateThinking                    // the turn ended; waiting on the LLM or TTS
	StateAgentSpeaking               // agent audio is playing
	StateEnded                       // the conversation is over
)

func (s State) String() string {
	switch s {
	case StateListening:
		return "listening"
	case StateCallerSpeaking:
		return "caller_speaking"
	case StateThinking:
		return "thinking"
	case StateAgentSpeaking:
		return "agent_speaking"
	case StateEnded:
		return "ended"
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// words splits text into lower-case words without punctuation (hyphens and
// apostrophes kept, so "uh-huh" and "don't" stay whole).
func words(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '\''
	})
}

// contentWords counts the words of text that are not backchannels.
func contentWords(text string, backchannels []string) int {
	n := 0
	for _, w := range words(text) {
		if !isBackchannelWord(w, backchannels) {
			n++
		}
	}
	return n
}

func isBackchannelWord(w string, backchannels []string) bool {
	w = strings.Trim(w, "-'")
	if w == "" {
		return true
	}
	for _, b := range backchannels {
		for _, bw := range words(b) {
			if w == bw {
				return true
			}
		}
	}
	return false
}

// trailingWords make a turn sound unfinished when they end it.
var trailingWords = map[string]bool{
	"and": true, "but": true, "or": true, "so": true, "because": true, "um": true, "uh": true,
	"er": true, "erm": true, "the": true, "a": true, "an": true, "to": true, "of": true,
	"with": true, "my": true, "is": true, "if": true, "then": true, "like": true, "for": true,
	"i": true, "we": true, "that": true, "which": true, "at": true, "in": true, "on": true,
}

// endpointSilence is the silence that ends a turn whose transcript so far is
// text: shorter after a complete sentence, longer when it trails off.
func endpointSilence(text string, e Endpointing) time.Duration {
	t := strings.TrimSpace(text)
	ms := e.SilenceMS
	switch {
	case t == "":
	case strings.HasSuffix(t, ",") || strings.HasSuffix(t, "...") || strings.HasSuffix(t, "…") || strings.HasSuffix(t, "-"):
		ms = e.MaxSilenceMS
	default:
		w := words(t)
		last := ""
		if len(w) > 0 {
			last = w[len(w)-1]
		}
		switch {
		case trailingWords[last]:
			ms = e.MaxSilenceMS
		case strings.HasSuffix(t, ".") || strings.HasSuffix(t, "?") || strings.HasSuffix(t, "!"):
			ms = e.MinSilenceMS
		}
	}
	return time.Duration(ms) * time.Millisecond
}

// completeSentence reports whether text ends like a finished sentence.
func completeSentence(text string) bool {
	t := strings.TrimSpace(text)
	if t == "" || strings.HasSuffix(t, "...") || strings.HasSuffix(t, "…") {
		return false
	}
	if !strings.HasSuffix(t, ".") && !strings.HasSuffix(t, "?") && !strings.HasSuffix(t, "!") {
		return false
	}
	w := words(t)
	return len(w) > 0 && !trailingWords[w[len(w)-1]]
}

// joinText joins transcript pieces with single spaces.
func joinText(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p)
	}
	return b.String()
}

// charsPerSecond estimates speech rate when a TTS gives no word timings.
const charsPerSecond = 14.0

// heardText returns the part of text spoken in the first heard of audio
// that lasts total (0 when unknown). With word timings, it is the words that
// started before heard; without, a proportional cut at a word boundary.
func heardText(text string, wordsAt []WordTiming, heard, total time.Duration) string {
	if heard <= 0 {
		return ""
	}
	if total > 0 && heard >= total {
		return strings.TrimSpace(text)
	}
	if len(wordsAt) > 0 {
		n := 0
		for _, w := range wordsAt {
			if w.Start >= heard {
				break
			}
			n++
		}
		return cutWords(text, n)
	}
	// Without alignment: the share of the audio heard, or the speaking rate
	// when the length of the whole is not known yet.
	frac := 0.0
	if total > 0 {
		frac = float64(heard) / float64(total)
	} else if len(text) > 0 {
		frac = heard.Seconds() * charsPerSecond / float64(len([]rune(text)))
	}
	if frac >= 1 {
		return strings.TrimSpace(text)
	}
	r := []rune(text)
	cut := int(frac * float64(len(r)))
	// Back to the end of the last whole word.
	for cut > 0 && cut < len(r) && !unicode.IsSpace(r[cut]) {
		cut--
	}
	return strings.TrimSpace(string(r[:cut]))
}

// cutWords returns the first n whitespace-separated words of text, with
// their punctuation.
func cutWords(text string, n int) string {
	if n <= 0 {
		return ""
	}
	f := strings.Fields(text)
	if n >= len(f) {
		return strings.TrimSpace(text)
	}
	return strings.Join(f[:n], " ")
}
