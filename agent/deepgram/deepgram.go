// Package deepgram is a streaming speech-to-text client (agent.STT) for
// Deepgram's live transcription websocket (/v1/listen): caller audio goes up
// as 8 kHz µ-law, interim and final transcripts, SpeechStarted and
// UtteranceEnd come back as agent.STTEvents.
package deepgram

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/internal/textutil"
)

// DefaultBaseURL is Deepgram's live transcription endpoint.
const DefaultBaseURL = "wss://api.deepgram.com/v1/listen"

// DefaultModel works with 8 kHz µ-law telephone audio.
const DefaultModel = "nova-3"

// Defaults for the zero values of Config's durations.
const (
	DefaultEndpointing     = 300 * time.Millisecond
	DefaultUtteranceEnd    = 1000 * time.Millisecond // Deepgram's minimum
	DefaultKeepAlive       = 4 * time.Second         // Deepgram closes after 10 s without data
	DefaultResponseTimeout = 15 * time.Second
	DefaultCloseTimeout    = time.Second
	DefaultSendBuffer      = 250 // frames: 5 s of audio
)

// Config configures the client. The zero value (plus a key) talks to
// Deepgram with DefaultModel and the defaults above.
type Config struct {
	// BaseURL is the listen endpoint; http(s) is mapped to ws(s). A URL
	// whose path does not end in /listen gets /v1/listen appended, so both
	// "https://api.deepgram.com" and a gateway prefix work.
	BaseURL string
	// APIKey is sent as "Authorization: Token <key>"; it never appears in
	// errors or logs.
	APIKey   string
	Model    string
	Language string // BCP 47; STTOptions.Language wins; "" is Deepgram's default

	// Endpointing is the silence after which Deepgram marks a result
	// speech_final. Negative disables it.
	Endpointing time.Duration
	// UtteranceEnd is the word gap after which Deepgram sends UtteranceEnd
	// (at least 1 s). Negative disables it.
	UtteranceEnd time.Duration
	// KeepAlive is how long the stream may go without sending anything
	// before a KeepAlive message is sent.
	KeepAlive time.Duration
	// ResponseTimeout fails the stream when audio has been flowing this long
	// with no message at all from Deepgram (a hung server). Deepgram answers
	// every second or so while audio flows, silence included. Negative
	// disables the check.
	ResponseTimeout time.Duration
	// CloseTimeout bounds how long Close waits for Deepgram to return the
	// last results after CloseStream. (Cancelling the stream's context
	// before Close skips the wait.)
	CloseTimeout time.Duration
	// SendBuffer is how many messages may wait to be sent before Write
	// reports the connection as stalled.
	SendBuffer int
	// Query adds or overrides listen parameters (e.g. keyterm, diarize).
	Query url.Values
	// Logger receives connection-level logs; nil means slog.Default().
	Logger *slog.Logger
	// Dialer overrides the websocket dialer (proxies, TLS); nil means a
	// dialer with a 10 s handshake timeout that honours HTTP(S)_PROXY.
	Dialer *websocket.Dialer
}

// STT starts Deepgram live transcription streams.
type STT struct {
	cfg    Config
	base   *url.URL
	dialer *websocket.Dialer
	log    *slog.Logger
}

var _ agent.STT = (*STT)(nil)

// New checks cfg and returns a client. It does not connect.
func New(cfg Config) (*STT, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := listenURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, errors.New("deepgram: no API key")
	}
	if cfg.Model == "" {
		cfg.Model = DefaultModel
	}
	if cfg.Endpointing == 0 {
		cfg.Endpointing = DefaultEndpointing
	}
	if cfg.UtteranceEnd == 0 {
		cfg.UtteranceEnd = DefaultUtteranceEnd
	}
	if cfg.UtteranceEnd > 0 && cfg.UtteranceEnd < time.Second {
		return nil, fmt.Errorf("deepgram: utterance end %s is below Deepgram's minimum of 1s", cfg.UtteranceEnd)
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.ResponseTimeout == 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = DefaultCloseTimeout
	}
	if cfg.SendBuffer <= 0 {
		cfg.SendBuffer = DefaultSendBuffer
	}
	d := cfg.Dialer
	if d == nil {
		d = &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 10 * time.Second}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &STT{cfg: cfg, base: base, dialer: d, log: log.With("provider", "deepgram")}, nil
}

// listenURL maps the configured base URL to the websocket listen endpoint.
func listenURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("deepgram: base URL %q: want ws(s):// or http(s)://host[:port][/path]", raw)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("deepgram: base URL %q: scheme %q is not ws, wss, http or https", raw, u.Scheme)
	}
	if !strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/listen") {
		u.Path = strings.TrimRight(u.Path, "/") + "/v1/listen"
	}
	u.RawQuery = ""
	return u, nil
}

// streamURL is the listen URL with this session's parameters.
func (s *STT) streamURL(language string) string {
	q := url.Values{}
	q.Set("encoding", "mulaw")
	q.Set("sample_rate", "8000")
	q.Set("channels", "1")
	q.Set("model", s.cfg.Model)
	q.Set("interim_results", "true")
	q.Set("vad_events", "true")
	// Punctuation lets the session end a turn early on a complete sentence.
	q.Set("smart_format", "true")
	if s.cfg.Endpointing > 0 {
		q.Set("endpointing", strconv.FormatInt(s.cfg.Endpointing.Milliseconds(), 10))
	} else {
		q.Set("endpointing", "false")
	}
	if s.cfg.UtteranceEnd > 0 {
		q.Set("utterance_end_ms", strconv.FormatInt(s.cfg.UtteranceEnd.Milliseconds(), 10))
	}
	if language != "" {
		q.Set("language", language)
	}
	for k, vs := range s.cfg.Query {
		q[k] = vs
	}
	u := *s.base
	u.RawQuery = q.Encode()
	return u.String()
}

// Start opens a live transcription stream. It returns once Deepgram has
// accepted the connection, so a bad key or endpoint fails here.
func (s *STT) Start(ctx context.Context, opt agent.STTOptions) (agent.STTStream, error) {
	lang := opt.Language
	if lang == "" {
		lang = s.cfg.Language
	}
	h := http.Header{}
	h.Set("Authorization", "Token "+s.cfg.APIKey)
	conn, resp, err := s.dialer.DialContext(ctx, s.streamURL(lang), h)
	if err != nil {
		return nil, handshakeError(err, resp, s.cfg.APIKey)
	}
	if resp != nil && resp.Header.Get("dg-request-id") != "" {
		s.log.Debug("deepgram stream open", "request_id", resp.Header.Get("dg-request-id"))
	}
	return newStream(ctx, s, conn), nil
}

// handshakeError explains a failed connect: the HTTP status and the start
// of Deepgram's reply, or the transport error, never the key.
func handshakeError(err error, resp *http.Response, key string) error {
	if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
		msg := textutil.ReplyText(resp)
		if h := resp.Header.Get("dg-error"); h != "" {
			msg = h + ": " + msg
		}
		return &Error{Op: "connect", StatusCode: resp.StatusCode, Message: textutil.Clean(msg, key)}
	}
	return &Error{Op: "connect", Message: textutil.Clean(err.Error(), key), cause: textutil.ContextCause(err)}
}

// Error is a failure of a Deepgram stream. Its text never holds the key.
type Error struct {
	Op         string // "connect", "stream" or "send"
	StatusCode int    // HTTP status of a refused connect, else 0
	CloseCode  int    // websocket close code when Deepgram closed the stream
	Message    string
	cause      error
}

func (e *Error) Error() string {
	switch {
	case e.StatusCode != 0:
		return fmt.Sprintf("deepgram %s: HTTP %d: %s", e.Op, e.StatusCode, e.Message)
	case e.CloseCode != 0:
		return fmt.Sprintf("deepgram %s: closed %d: %s", e.Op, e.CloseCode, e.Message)
	}
	return fmt.Sprintf("deepgram %s: %s", e.Op, e.Message)
}

// Unwrap exposes only key-free sentinels (context errors).
func (e *Error) Unwrap() error { return e.cause }

// Temporary reports whether a new stream may succeed where this one failed:
// a dropped or refused connection for reasons other than bad credentials
// or parameters.
func (e *Error) Temporary() bool {
	switch {
	case e.StatusCode != 0:
		return e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout || e.StatusCode >= 500
	case e.CloseCode == websocket.ClosePolicyViolation: // DATA-0000: audio it could not decode
		return false
	}
	return true
}
