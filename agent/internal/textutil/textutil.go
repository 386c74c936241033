// Package textutil holds the small string rules the provider clients share:
// keeping API keys out of error text, bounding what a server said, and
// mapping language tags to what provider APIs take.
package textutil

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
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

// MaxErrorText bounds what a provider's reply contributes to an error.
const MaxErrorText = 300

// Clean is what a server said, fit for an error message or a log line:
// without the key, cut to MaxErrorText.
func Clean(s, key string) string { return Truncate(Redact(s, key), MaxErrorText) }

// ReplyText is the start of a refused handshake's HTTP reply as text, or
// the status text when the body is empty.
func ReplyText(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	msg := strings.TrimSpace(string(bytes.ToValidUTF8(body, nil)))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return msg
}

// ContextCause returns context.Canceled or context.DeadlineExceeded when err
// is one of them, else nil: the only causes a key-free error exposes.
func ContextCause(err error) error {
	for _, s := range []error{context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}
