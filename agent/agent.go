// Package agent runs one AI conversation on a call: turn-taking, barge-in,
// tools, the transcript and per-turn latency. Providers sit behind the small
// streaming interfaces below; their clients live in subpackages and the
// fakes that speak their real wire protocols in agent/fake.
//
// All audio here is 8 kHz mono 16-bit PCM; a Frame is 20 ms (160 samples),
// the unit media hands us. Clients convert to and from their provider's
// encoding at the edge.
package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// Frame is 20 ms of 8 kHz mono 16-bit audio.
type Frame = []int16

// ---- Speech to text ----

// STT starts streaming recognition sessions.
type STT interface {
	Start(ctx context.Context, opt STTOptions) (STTStream, error)
}

// STTOptions configure one recognition session.
type STTOptions struct {
	Language string // BCP 47, "" for the provider default
}

// STTStream is one recognition session. Write must not block the caller for
// longer than a copy: clients buffer and send from their own goroutine.
type STTStream interface {
	// Write sends one frame of caller audio.
	Write(f Frame) error
	// Finalize asks for a final transcript of everything written so far
	// (Deepgram's Finalize; for utterance-based providers, the end of an
	// utterance cut by our VAD).
	Finalize() error
	// Events delivers recognition events; closed when the stream ends.
	Events() <-chan STTEvent
	Close() error
}

// STTEventType says what an STTEvent reports.
type STTEventType int

const (
	STTPartial       STTEventType = iota + 1 // interim transcript, may change
	STTFinal                                 // final transcript of a segment
	STTSpeechStarted                         // the provider heard speech begin
	STTUtteranceEnd                          // the provider decided the utterance ended
	STTError                                 // the stream failed; Err says how
)

// STTEvent is one recognition event.
type STTEvent struct {
	Type       STTEventType
	Text       string
	Confidence float64
	At         time.Time // when the client received it
	Err        error
}

// ---- Language model ----

// LLM streams a reply to a conversation.
type LLM interface {
	// Stream starts a completion; the channel delivers text deltas and
	// complete tool calls, then closes. Cancelling ctx stops it.
	Stream(ctx context.Context, req LLMRequest) (<-chan LLMEvent, error)
}

// Roles of conversation messages.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one entry of the conversation.
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`   // assistant messages that call tools
	ToolCallID string     `json:"tool_call_id,omitempty"` // tool results
}

// Tool is a function the model may call.
type Tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"` // JSON Schema
}

// ToolCall is a model's request to run a tool.
type ToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"` // JSON text
}

// LLMRequest is one completion request.
type LLMRequest struct {
	Messages    []Message
	Tools       []Tool
	Temperature *float64
	MaxTokens   int
}

// LLMEvent is one piece of a streamed completion: a text delta, a complete
// tool call, or an error (after which the channel closes).
type LLMEvent struct {
	Text         string
	ToolCall     *ToolCall
	FinishReason string // set on the last event when the provider gives one
	Err          error
}

// ---- Text to speech ----

// TTS starts streaming synthesis sessions.
type TTS interface {
	Start(ctx context.Context, opt TTSOptions) (TTSStream, error)
}

// TTSOptions configure one synthesis session.
type TTSOptions struct {
	Voice    string
	Language string
}

// TTSStream is one synthesis session: text goes in as it is produced, audio
// comes out as it is synthesized, in order.
type TTSStream interface {
	// WriteText appends text to speak.
	WriteText(text string) error
	// Flush says no more text is coming for now: synthesize all of it.
	Flush() error
	// Audio delivers 8 kHz audio in order; closed when the stream ends.
	Audio() <-chan TTSChunk
	Close() error
}

// TTSChunk is a piece of synthesized audio.
type TTSChunk struct {
	PCM []int16
	// Words completed in this chunk, with offsets from the start of the
	// stream's audio, when the provider gives alignment.
	Words []WordTiming
	// Final marks the last chunk for everything flushed so far.
	Final bool
	Err   error
}

// WordTiming places a word in a stream's audio.
type WordTiming struct {
	Word       string
	Start, End time.Duration
}

// ---- Speech to speech ----

// Realtime starts speech-to-speech sessions (audio in, audio out).
type Realtime interface {
	Start(ctx context.Context, opt RealtimeOptions) (RealtimeSession, error)
}

// RealtimeOptions configure one speech-to-speech session.
type RealtimeOptions struct {
	Instructions string
	Voice        string
	Language     string
	Tools        []Tool
}

// RealtimeSession is one speech-to-speech conversation.
type RealtimeSession interface {
	WriteAudio(f Frame) error
	Events() <-chan RealtimeEvent
	// SendToolResult returns a tool's output and asks for the next response.
	SendToolResult(callID, output string) error
	// Truncate tells the model the caller heard only the first played of
	// item itemID (after a barge-in).
	Truncate(itemID string, played time.Duration) error
	// CreateResponse asks the model to speak now (e.g. the greeting).
	CreateResponse() error
	Close() error
}

// RealtimeEventType says what a RealtimeEvent reports.
type RealtimeEventType int

const (
	RealtimeAudio         RealtimeEventType = iota + 1 // agent audio (Audio, ItemID)
	RealtimeAgentText                                  // transcript delta of the agent's speech (Text, ItemID): join by ItemID
	RealtimeUserText                                   // transcript of the caller's speech (Text)
	RealtimeSpeechStarted                              // server VAD: caller started speaking
	RealtimeSpeechStopped                              // server VAD: caller stopped
	RealtimeToolCall                                   // ToolCall
	RealtimeResponseDone                               // the agent finished a response
	RealtimeError                                      // Err; the session is over only when Events closes
)

// RealtimeEvent is one speech-to-speech event.
type RealtimeEvent struct {
	Type     RealtimeEventType
	Audio    []int16
	Text     string
	ItemID   string
	ToolCall *ToolCall
	Err      error
}

// ProviderConfig selects and configures one provider client. It is part of
// an agent's definition; agent/providers turns it into a client.
type ProviderConfig struct {
	// Provider is "openai", "openai-realtime", "deepgram" or "elevenlabs".
	Provider string `json:"provider" yaml:"provider"`
	// BaseURL overrides the provider's endpoint (any OpenAI-compatible
	// server, a gateway, or a test fake).
	BaseURL string `json:"base_url,omitempty" yaml:"base_url,omitempty"`
	// APIKey is the key itself; APIKeyEnv names an environment variable
	// holding it instead. Keys are never logged nor returned in full.
	APIKey    string `json:"api_key,omitempty" yaml:"api_key,omitempty"`
	APIKeyEnv string `json:"api_key_env,omitempty" yaml:"api_key_env,omitempty"`
	Model     string `json:"model,omitempty" yaml:"model,omitempty"`
	Voice     string `json:"voice,omitempty" yaml:"voice,omitempty"`
	Language  string `json:"language,omitempty" yaml:"language,omitempty"`
	// FirstTokenTimeoutMS (llm only) bounds the wait for the model's first
	// token of each attempt (0: default 5000). With Retries it bounds the
	// silence before the apology when the model hangs:
	// FirstTokenTimeoutMS × (Retries+1).
	FirstTokenTimeoutMS int `json:"first_token_timeout_ms,omitempty" yaml:"first_token_timeout_ms,omitempty"`
	// Retries (llm only) is how many times a failed or silent request is
	// tried again (0: default 1; -1: never).
	Retries int `json:"retries,omitempty" yaml:"retries,omitempty"`
}

// LogValue keeps keys out of logs: only the key's last 4 characters show.
func (p ProviderConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("provider", p.Provider), slog.String("base_url", p.BaseURL),
		slog.String("api_key", MaskKey(p.APIKey)), slog.String("api_key_env", p.APIKeyEnv),
		slog.String("model", p.Model), slog.String("voice", p.Voice), slog.String("language", p.Language))
}

// MaskKey shows a key as "****" plus its last 4 characters (all masked
// when it is short enough that 4 characters would give much away).
func MaskKey(key string) string {
	switch {
	case key == "":
		return ""
	case len(key) < 12:
		return "****"
	}
	return "****" + key[len(key)-4:]
}
