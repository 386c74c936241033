package textutil

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRedact(t *testing.T) {
	if got := Redact("bad key sk-abc123 (sk-abc123)", "sk-abc123"); got != "bad key [redacted] ([redacted])" {
		t.Errorf("got %q", got)
	}
	if got := Redact("a b c", "a"); got != "a b c" {
		t.Errorf("a one-letter key mangled the text: %q", got)
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("héllo", 2); got != "h…" { // é is two bytes: never cut inside it
		t.Errorf("got %q", got)
	}
	if got := Truncate("short", 10); got != "short" {
		t.Errorf("got %q", got)
	}
}

func TestLanguageCode(t *testing.T) {
	for in, want := range map[string]string{"en-US": "en", "pt_BR": "pt", "DE": "de", "": "", " fr ": "fr"} {
		if got := LanguageCode(in); got != want {
			t.Errorf("LanguageCode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCleanAndContextCause(t *testing.T) {
	key := "sk-secret-1234"
	long := "bad key " + key + " " + strings.Repeat("é", 400)
	got := Clean(long, key)
	if strings.Contains(got, key) || len(got) > MaxErrorText+len("…") || !utf8.ValidString(got) {
		t.Fatalf("Clean = %q", got)
	}
	if ContextCause(fmt.Errorf("dial: %w", context.DeadlineExceeded)) != context.DeadlineExceeded || ContextCause(errors.New("x")) != nil {
		t.Fatal("ContextCause")
	}
}
