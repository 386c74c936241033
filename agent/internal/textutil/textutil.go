// Package textutil holds the small string rules the provider clients share:
// keeping API keys out of error text, bounding what a server said, and
// mapping language tags to what provider APIs take.
package textutil

import (
	"strings"
	"unicode/utf8"
)

// Redact replaces every occurrence of key in s. Keys shorter than 4
// characters are not real keys; replacing them would mangle the text.
func Redact(s, key string) string {
	if len(key) < 4 {
		return s
	}
	return strings.ReplaceAll(s, key, "[redacted]")
}

// Truncate cuts s to at most n bytes on a character boundary, marking the
// cut with an ellipsis.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// LanguageCode maps a BCP 47 tag ("en-US", "pt_BR") to the ISO 639-1 code
// OpenAI's transcription takes ("en", "pt").
func LanguageCode(tag string) string {
	tag = strings.TrimSpace(tag)
	if i := strings.IndexAny(tag, "-_"); i >= 0 {
		tag = tag[:i]
	}
	return strings.ToLower(tag)
}
