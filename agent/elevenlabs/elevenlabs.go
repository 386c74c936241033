// Package elevenlabs is a streaming text-to-speech client (agent.TTS) for
// ElevenLabs' stream-input websocket: text goes up as the LLM produces it,
// 8 kHz µ-law audio (ulaw_8000, so no resampling) comes back with
// character timings that the client groups into words.
package elevenlabs

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

// DefaultBaseURL is ElevenLabs' API host; the stream-input path is added.
const DefaultBaseURL = "wss://api.elevenlabs.io"

// Defaults when Config leaves them empty.
const (
	DefaultModel = "eleven_flash_v2_5" // lowest latency, multilingual
	// DefaultVoice is "Rachel", one of ElevenLabs' premade voices.
	DefaultVoice           = "21m00Tcm4TlvDq8ikWAM"
	DefaultResponseTimeout = 10 * time.Second
)

// OutputFormat is what the client asks for: telephone audio as is.
const OutputFormat = "ulaw_8000"

// DefaultChunkLengthSchedule starts synthesis after 50 characters, the
// documented minimum, so the first audio comes quickly, then lets later
// chunks grow for better prosody.
var DefaultChunkLengthSchedule = []int{50, 120, 160, 250}

// VoiceSettings are sent in the first message of each connection.
type VoiceSettings struct {
	Stability       float64  `json:"stability"`
	SimilarityBoost float64  `json:"similarity_boost"`
	Style           *float64 `json:"style,omitempty"`
	UseSpeakerBoost *bool    `json:"use_speaker_boost,omitempty"`
	Speed           *float64 `json:"speed,omitempty"`
}

// DefaultVoiceSettings are ElevenLabs' own defaults.
var DefaultVoiceSettings = VoiceSettings{Stability: 0.5, SimilarityBoost: 0.75}

// Config configures the client.
type Config struct {
	// BaseURL is the API host (ws(s) or http(s)); an optional path prefix
	// is kept, and /v1/text-to-speech/{voice}/stream-input is added.
	BaseURL string
	// APIKey is sent as the xi-api-key header; it never appears in errors
	// or logs.
	APIKey   string
	Model    string
	Voice    string // voice ID; TTSOptions.Voice wins
	Language string // BCP 47; sent as language_code (primary subtag); TTSOptions.Language wins

	VoiceSettings *VoiceSettings
	// ChunkLengthSchedule is generation_config.chunk_length_schedule: how
	// many characters to buffer before each successive generation.
	ChunkLengthSchedule []int
	// TryTriggerGeneration sets try_trigger_generation on every text
	// message, asking for audio as soon as the buffer allows.
	TryTriggerGeneration bool
	// ResponseTimeout fails a stream that, after Flush, goes this long
	// without a message from ElevenLabs (a hung server).
	ResponseTimeout time.Duration
	// InactivityTimeout is sent as inactivity_timeout (seconds, up to 180):
	// how long ElevenLabs keeps an idle connection. 0 leaves its default
	// (20 s); a connection it drops while idle is simply reopened.
	InactivityTimeout time.Duration

	Logger *slog.Logger
	Dialer *websocket.Dialer
}

// TTS starts ElevenLabs stream-input sessions.
type TTS struct {
	cfg    Config
	base   *url.URL
	dialer *websocket.Dialer
	log    *slog.Logger
}

var _ agent.TTS = (*TTS)(nil)

// New checks cfg and returns a client. It does not connect.
func New(cfg Config) (*TTS, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("elevenlabs: base URL %q: want ws(s):// or http(s)://host[:port][/path]", cfg.BaseURL)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("elevenlabs: base URL %q: scheme %q is not ws, wss, http or https", cfg.BaseURL, u.Scheme)
	}
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/v1")
	u.RawQuery = ""
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, errors.New("elevenlabs: no API key")
	}
	if cfg.Model == "" {
		cfg.Model = DefaultModel
	}
	if cfg.Voice == "" {
		cfg.Voice = DefaultVoice
	}
	if cfg.VoiceSettings == nil {
		vs := DefaultVoiceSettings
		cfg.VoiceSettings = &vs
	}
	if cfg.ChunkLengthSchedule == nil {
		cfg.ChunkLengthSchedule = DefaultChunkLengthSchedule
	}
	for _, n := range cfg.ChunkLengthSchedule {
		if n < 50 || n > 500 {
			return nil, fmt.Errorf("elevenlabs: chunk length %d outside ElevenLabs' 50-500", n)
		}
	}
	if cfg.ResponseTimeout <= 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	if cfg.InactivityTimeout < 0 || cfg.InactivityTimeout > 180*time.Second {
		return nil, fmt.Errorf("elevenlabs: inactivity timeout %s outside 0-180s", cfg.InactivityTimeout)
	}
	d := cfg.Dialer
	if d == nil {
		d = &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 10 * time.Second}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &TTS{cfg: cfg, base: u, dialer: d, log: log.With("provider", "elevenlabs")}, nil
}

func (t *TTS) streamURL(voice, language string) string {
	u := *t.base
	u.Path += "/v1/text-to-speech/" + voice + "/stream-input"
	u.RawPath = ""
	q := url.Values{}
	q.Set("model_id", t.cfg.Model)
	q.Set("output_format", OutputFormat)
	// Timings with every audio message, not on their own.
	q.Set("sync_alignment", "true")
	if language != "" {
		q.Set("language_code", primaryTag(language))
	}
	if t.cfg.InactivityTimeout > 0 {
		q.Set("inactivity_timeout", strconv.Itoa(int(t.cfg.InactivityTimeout/time.Second)))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// primaryTag maps "en-US" to "en": ElevenLabs takes ISO 639-1 codes.
func primaryTag(tag string) string {
	if i := strings.IndexAny(tag, "-_"); i >= 0 {
		tag = tag[:i]
	}
	return strings.ToLower(strings.TrimSpace(tag))
}

// Start opens a synthesis stream. It connects before returning, so a bad
// key or voice fails here and the first text is not delayed by the
// handshake.
func (t *TTS) Start(ctx context.Context, opt agent.TTSOptions) (agent.TTSStream, error) {
	voice := opt.Voice
	if voice == "" {
		voice = t.cfg.Voice
	}
	if !validVoiceID(voice) {
		return nil, &Error{Op: "connect", Message: fmt.Sprintf("voice ID %q: want letters and digits", voice)}
	}
	lang := opt.Language
	if lang == "" {
		lang = t.cfg.Language
	}
	s := newStream(ctx, t, t.streamURL(voice, lang))
	conn, err := s.dial()
	if err != nil {
		s.cancel()
		return nil, err
	}
	go s.run(conn)
	return s, nil
}

func validVoiceID(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for _, r := range v {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Error is a failure of an ElevenLabs stream. Its text never holds the key.
type Error struct {
	Op         string // "connect", "stream" or "send"
	StatusCode int    // HTTP status of a refused connect
	CloseCode  int    // websocket close code when ElevenLabs closed the stream
	Code       string // ElevenLabs' error identifier, e.g. "input_timeout_exceeded"
	Message    string
	cause      error
	// replayable: the connection failed in a way that resending its text
	// on a new one can fix (a drop, a close, the idle timeout).
	replayable bool
}

func replayable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.replayable
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Code != "" {
		msg = e.Code + ": " + msg
	}
	switch {
	case e.StatusCode != 0:
		return fmt.Sprintf("elevenlabs %s: HTTP %d: %s", e.Op, e.StatusCode, msg)
	case e.CloseCode != 0:
		return fmt.Sprintf("elevenlabs %s: closed %d: %s", e.Op, e.CloseCode, msg)
	}
	return fmt.Sprintf("elevenlabs %s: %s", e.Op, msg)
}

// Unwrap exposes only key-free sentinels (context errors).
func (e *Error) Unwrap() error { return e.cause }

// Temporary reports whether a new stream may succeed where this one
// failed: not for bad credentials, voices or parameters.
func (e *Error) Temporary() bool {
	if e.StatusCode != 0 {
		return e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout || e.StatusCode >= 500
	}
	if e.Code != "" { // an error message: only the idle timeout is not about the request
		return e.Code == "input_timeout_exceeded"
	}
	return e.CloseCode != websocket.ClosePolicyViolation
}

func handshakeError(err error, resp *http.Response, key string) error {
	if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
		msg := textutil.ReplyText(resp)
		return &Error{Op: "connect", StatusCode: resp.StatusCode, Message: textutil.Clean(msg, key)}
	}
	return &Error{Op: "connect", Message: textutil.Clean(err.Error(), key), cause: textutil.ContextCause(err)}
}
