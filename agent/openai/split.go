package openai

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Splitting LLM text for synthesis. Each segment is one speech request, so
// the first one decides when the caller hears anything: end it at the first
// sentence end, or at a clause break once it is long enough to sound
// natural on its own. Segments are cut only when the character after the
// break has arrived (so "3.5" and "e.g." are not cut at the period).

// abbreviations end with a period that does not end a sentence.
var abbreviations = map[string]bool{
	"mr": true, "mrs": true, "ms": true, "dr": true, "st": true, "prof": true,
	"sr": true, "jr": true, "vs": true, "etc": true, "e.g": true, "i.e": true,
	"no": true, "approx": true, "inc": true, "ltd": true,
}

type splitter struct {
	minClause int // characters before a clause break may end a segment
	maxLen    int // characters before a space ends a segment regardless
	// first: this is a stream's first segment, which decides when the
	// caller hears anything. It ends at the first clause break whatever
	// its length, or at the space after firstWords words: the request
	// goes out while the model is still writing the sentence, and the
	// later segments (sentences, long clauses) keep the voice natural.
	first      bool
	firstWords int
}

// next returns the first complete segment of s and the rest; ok is false
// when s holds no complete segment yet.
func (sp splitter) next(s string) (seg, rest string, ok bool) {
	lastSpace := -1
	n := 0     // characters so far
	words := 0 // words ended by a space so far
	for i, r := range s {
		n++
		if unicode.IsSpace(r) {
			if n > sp.maxLen && lastSpace > 0 {
				return s[:lastSpace], s[lastSpace:], true
			}
			if lastSpace != i-1 && i > 0 {
				words++
			}
			if sp.first && sp.firstWords > 0 && words >= sp.firstWords {
				return s[:i], s[i:], true
			}
			if sp.first && r == ' ' && i > 0 && isDash(s, i) {
				return s[:i], s[i:], true // "word - more": a spoken pause
			}
			lastSpace = i
		}
		if r == '\n' && strings.TrimSpace(s[:i]) != "" {
			return s[:i], s[i:], true
		}
		end := i + utf8.RuneLen(r)
		switch {
		case isSentenceEnd(r):
			// Take closing quotes and repeated marks ("?!", "...") along.
			j := end
			for j < len(s) {
				r2, w := utf8.DecodeRuneInString(s[j:])
				if !isSentenceEnd(r2) && !isCloser(r2) {
					break
				}
				j += w
			}
			if j >= len(s) {
				return "", s, false // the next character decides
			}
			r2, _ := utf8.DecodeRuneInString(s[j:])
			if !unicode.IsSpace(r2) || (r == '.' && isAbbreviation(s[:i])) {
				continue
			}
			return s[:j], s[j:], true
		case isClauseBreak(r) && (n >= sp.minClause || sp.first):
			if end >= len(s) {
				return "", s, false
			}
			if r2, _ := utf8.DecodeRuneInString(s[end:]); unicode.IsSpace(r2) {
				return s[:end], s[end:], true
			}
		}
	}
	return "", s, false
}

// isDash reports whether the space at s[i] follows a free-standing hyphen
// (" - "), which is spoken as a pause like a dash.
func isDash(s string, i int) bool {
	return i >= 2 && s[i-1] == '-' && s[i-2] == ' '
}

func isSentenceEnd(r rune) bool {
	switch r {
	case '.', '!', '?', '…', '。', '！', '？':
		return true
	}
	return false
}

func isClauseBreak(r rune) bool {
	switch r {
	case ',', ';', ':', '—', '–', '、', '，':
		return true
	}
	return false
}

func isCloser(r rune) bool {
	switch r {
	case '"', '\'', ')', ']', '”', '’', '»':
		return true
	}
	return false
}

// isAbbreviation reports whether the word just before a period is a known
// abbreviation or a single letter (an initial).
func isAbbreviation(before string) bool {
	i := strings.LastIndexFunc(before, unicode.IsSpace)
	w := strings.ToLower(before[i+1:])
	w = strings.TrimLeft(w, "(\"'“‘")
	return abbreviations[w] || utf8.RuneCountInString(w) == 1 && unicode.IsLetter([]rune(w)[0])
}

// speakable reports whether s has anything a voice could say.
func speakable(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) >= 0
}
