// Package openai holds the clients for OpenAI-compatible HTTP APIs: streaming
// chat completions with tools (agent.LLM), utterance transcription
// (agent.STT) and speech synthesis (agent.TTS). Any server that speaks these
// endpoints works: OpenAI itself, a gateway, or a local model server; only
// the base URL and key change.
package openai

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/voxbridge/voxbridge/agent/internal/textutil"
)

// DefaultBaseURL is OpenAI's API root; every endpoint path is relative to it.
const DefaultBaseURL = "https://api.openai.com/v1"

// Default models and voice when Config leaves them empty.
const (
	DefaultLLMModel = "gpt-4o-mini"
	DefaultSTTModel = "gpt-4o-mini-transcribe"
	DefaultTTSModel = "gpt-4o-mini-tts"
	DefaultVoice    = "alloy"
)

// Config configures one client. The zero value talks to OpenAI with the
// role's default model.
type Config struct {
	// BaseURL is the API root including the version, e.g.
	// "https://api.openai.com/v1" or "http://127.0.0.1:8000/v1".
	BaseURL string
	// APIKey is sent as a bearer token; it never appears in errors or logs.
	// Local servers often need none.
	APIKey string
	// Model names the model; empty means the role's default.
	Model string
	// Voice is the TTS voice when TTSOptions.Voice is empty.
	Voice string
	// Language is the STT language (BCP 47, only the primary subtag is sent)
	// when STTOptions.Language is empty.
	Language string
	// HTTPClient carries the requests; nil means a client without an overall
	// timeout (streams are bounded by their contexts instead).
	HTTPClient *http.Client

	// Timeout bounds how long a request waits for its response to start
	// and, while streaming, for more of it; a server that hangs yields a
	// Temporary error instead of silence. 0 means 20 s.
	Timeout time.Duration

	// MinClauseChars is how long (in characters) a TTS segment must be before
	// a comma or other clause break may end it; sentence ends always do.
	// 0 means 40. Smaller starts speech sooner but synthesizes choppier.
	MinClauseChars int
	// MaxSegmentChars splits text without punctuation at a space once a
	// segment grows this long. 0 means 250.
	MaxSegmentChars int
	// FirstSegmentWords ends a stream's first segment after this many
	// words when no clause break (comma, colon, semicolon, dash) came
	// sooner, so speech is requested before the first sentence is
	// written. 0 means 4; -1 waits for a sentence end or long clause
	// like the later segments.
	FirstSegmentWords int
}

func (c Config) client() (*goopenai.Client, error) {
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("openai: base URL %q: want http(s)://host[:port]/path", textutil.Redact(base, c.APIKey))
	}
	cfg := goopenai.DefaultConfig(c.APIKey)
	cfg.BaseURL = strings.TrimRight(base, "/")
	if c.HTTPClient != nil {
		cfg.HTTPClient = c.HTTPClient
	}
	return goopenai.NewClientWithConfig(cfg), nil
}

func (c Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 20 * time.Second
}

// errStalled is the cancel cause a watchdog leaves on a request context.
var errStalled = errors.New("stalled")

// watchdog cancels a request's context when the server sends nothing for d:
// before the response starts, and between reads of a streamed body.
type watchdog struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	d      time.Duration
	t      *time.Timer
}

// newWatchdog returns an armed watchdog whose ctx the request must use.
func newWatchdog(parent context.Context, d time.Duration) *watchdog {
	w := &watchdog{d: d}
	w.ctx, w.cancel = context.WithCancelCause(parent)
	w.t = time.AfterFunc(d, func() { w.cancel(errStalled) })
	return w
}

// kick restarts the countdown: data arrived.
func (w *watchdog) kick() { w.t.Reset(w.d) }

// pause stops the countdown while nobody is reading (a body queued behind
// the one being played).
func (w *watchdog) pause() { w.t.Stop() }

// stop ends the request: the timer and the context.
func (w *watchdog) stop() {
	w.t.Stop()
	w.cancel(nil)
}

// explain replaces the error of a request the watchdog cancelled.
func (w *watchdog) explain(err error) error {
	if err != nil && errors.Is(context.Cause(w.ctx), errStalled) {
		return &Error{Message: fmt.Sprintf("no data from the server for %s", w.d), cause: context.DeadlineExceeded}
	}
	return err
}

func (c Config) model(def string) string {
	if c.Model != "" {
		return c.Model
	}
	return def
}

// Error is a failed request. Its text never contains the API key, even when
// a server echoes it back, and is cut to a readable length.
type Error struct {
	Op         string // "chat", "transcribe" or "speech"
	StatusCode int    // HTTP status, 0 when no response arrived
	Message    string // what the server or the transport said
	cause      error  // only key-free sentinels, so errors.Is works
}

func (e *Error) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("openai %s: HTTP %d: %s", e.Op, e.StatusCode, e.Message)
	}
	return fmt.Sprintf("openai %s: %s", e.Op, e.Message)
}

// Unwrap exposes context cancellation and unexpected EOF, never the
// provider's own error values (whose text could hold the key).
func (e *Error) Unwrap() error { return e.cause }

// Temporary reports whether retrying the same request may succeed: no
// response at all, a dropped stream, rate limiting or a server error.
func (e *Error) Temporary() bool {
	return e.StatusCode == 0 || e.StatusCode == http.StatusTooManyRequests ||
		e.StatusCode == http.StatusRequestTimeout || e.StatusCode >= 500
}

// wrapErr turns any error from go-openai or the transport into an *Error
// with the key removed.
func wrapErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		if e.Op == "" {
			e.Op = op
		}
		return e
	}
	out := &Error{Op: op}
	msg := err.Error()
	var apiErr *goopenai.APIError
	var reqErr *goopenai.RequestError
	switch {
	case errors.As(err, &apiErr):
		out.StatusCode = apiErr.HTTPStatusCode
		msg = apiErr.Message
	case errors.As(err, &reqErr):
		out.StatusCode = reqErr.HTTPStatusCode
		msg = strings.TrimSpace(string(reqErr.Body))
		if msg == "" {
			msg = http.StatusText(reqErr.HTTPStatusCode)
		}
	}
	for _, s := range []error{context.Canceled, context.DeadlineExceeded, io.ErrUnexpectedEOF} {
		if errors.Is(err, s) {
			out.cause = s
			break
		}
	}
	out.Message = textutil.Clean(msg, key)
	return out
}
