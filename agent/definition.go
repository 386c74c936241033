package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Definition is an agent: what it says, how it listens and speaks, what it
// may do on a call. It is stored, and loaded from JSON or YAML files (strict:
// unknown fields are errors). Zero values of the tuning fields select the
// defaults documented on them; WithDefaults fills them in.
type Definition struct {
	ID   string `json:"id" yaml:"id"`
	Name string `json:"name" yaml:"name"`
	// SystemPrompt may contain {{variables}}, filled from the call's
	// variables when the session starts.
	SystemPrompt string `json:"system_prompt" yaml:"system_prompt"`
	// StartingMessage is spoken when the call is handed to the agent, without
	// waiting on the LLM; empty means wait for the caller to speak first.
	StartingMessage string `json:"starting_message,omitempty" yaml:"starting_message,omitempty"`
	Language        string `json:"language,omitempty" yaml:"language,omitempty"` // BCP 47

	STT *ProviderConfig `json:"stt,omitempty" yaml:"stt,omitempty"`
	LLM *ProviderConfig `json:"llm,omitempty" yaml:"llm,omitempty"`
	TTS *ProviderConfig `json:"tts,omitempty" yaml:"tts,omitempty"`
	// Realtime, when set, replaces STT, LLM and TTS with one speech-to-speech
	// model. A TTS may still be set to render the greeting and canned phrases.
	Realtime *ProviderConfig `json:"realtime,omitempty" yaml:"realtime,omitempty"`
	// Voice overrides the TTS (or Realtime) provider's voice.
	Voice       string   `json:"voice,omitempty" yaml:"voice,omitempty"`
	Temperature *float64 `json:"temperature,omitempty" yaml:"temperature,omitempty"`
	MaxTokens   int      `json:"max_tokens,omitempty" yaml:"max_tokens,omitempty"`

	// Tools lists the built-in tools the model may use: end_call,
	// transfer_call, send_dtmf, set_variable.
	Tools     []string   `json:"tools,omitempty" yaml:"tools,omitempty"`
	HTTPTools []HTTPTool `json:"http_tools,omitempty" yaml:"http_tools,omitempty"`
	// TransferTargets are the only places transfer_call (and DTMF rules and
	// the fallback) may send the call, whatever the caller says.
	TransferTargets []TransferTarget `json:"transfer_targets,omitempty" yaml:"transfer_targets,omitempty"`
	DTMF            DTMFRules        `json:"dtmf,omitempty" yaml:"dtmf,omitempty"`

	// Folded into the system prompt under their own headings.
	Objectives  []string `json:"objectives,omitempty" yaml:"objectives,omitempty"`
	Constraints []string `json:"constraints,omitempty" yaml:"constraints,omitempty"`
	TaskSteps   []string `json:"task_steps,omitempty" yaml:"task_steps,omitempty"`
	Knowledge   string   `json:"knowledge,omitempty" yaml:"knowledge,omitempty"`

	// MaxDurationS ends the call politely after this long (0: no limit).
	MaxDurationS int `json:"max_duration_s,omitempty" yaml:"max_duration_s,omitempty"`
	// SilenceTimeoutS ends the call politely after this long without the
	// caller speaking (0: default 30 s; -1: never).
	SilenceTimeoutS int `json:"silence_timeout_s,omitempty" yaml:"silence_timeout_s,omitempty"`
	// IdleReminderS says IdleReminderText after this long without the caller
	// speaking (0: default 10 s; -1: never).
	IdleReminderS    int    `json:"idle_reminder_s,omitempty" yaml:"idle_reminder_s,omitempty"`
	IdleReminderText string `json:"idle_reminder_text,omitempty" yaml:"idle_reminder_text,omitempty"`
	// GoodbyeMessage is said before hanging up on a timeout, on end_call when
	// the model said nothing itself, and by the goodbye fallback.
	GoodbyeMessage string `json:"goodbye_message,omitempty" yaml:"goodbye_message,omitempty"`

	Endpointing Endpointing `json:"endpointing,omitempty" yaml:"endpointing,omitempty"`
	BargeIn     BargeIn     `json:"barge_in,omitempty" yaml:"barge_in,omitempty"`
	// FillerPhrases are said, in turn, when a tool takes longer than
	// FillerAfterMS (default 1500 ms; -1: never), and (once per reply)
	// when the model's first token takes that long; for the latter, with
	// no phrases, DefaultFiller.
	FillerPhrases []string  `json:"filler_phrases,omitempty" yaml:"filler_phrases,omitempty"`
	FillerAfterMS int       `json:"filler_after_ms,omitempty" yaml:"filler_after_ms,omitempty"`
	Fallback      Fallback  `json:"fallback,omitempty" yaml:"fallback,omitempty"`
	PostCall      *PostCall `json:"post_call,omitempty" yaml:"post_call,omitempty"`
}

// Built-in tool names.
const (
	ToolEndCall      = "end_call"
	ToolTransferCall = "transfer_call"
	ToolSendDTMF     = "send_dtmf"
	ToolSetVariable  = "set_variable"
)

var builtinTools = []string{ToolEndCall, ToolTransferCall, ToolSendDTMF, ToolSetVariable}

// HTTPTool is an operator-defined tool: the model's arguments go to URL and
// the JSON reply goes back to the model.
type HTTPTool struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description" yaml:"description"`
	// Parameters is the JSON Schema of the arguments (an object schema).
	Parameters JSONSchema `json:"parameters,omitempty" yaml:"parameters,omitempty"`
	URL        string     `json:"url" yaml:"url"`
	// Method is GET, POST, PUT, PATCH or DELETE (default POST). GET and
	// DELETE send the arguments as query parameters, the others as a JSON
	// body.
	Method    string            `json:"method,omitempty" yaml:"method,omitempty"`
	Headers   map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	TimeoutMS int               `json:"timeout_ms,omitempty" yaml:"timeout_ms,omitempty"` // default 10000
}

// TransferRequest is a transfer the agent asks of the call.
type TransferRequest struct {
	// Target is an extension, number or SIP URI (TransferTarget.Target).
	Target string
	// Warm asks for an attended transfer: the target hears an
	// announcement, then is bridged.
	Warm bool
	// Summary is what the model wrote for the person taking a warm
	// transfer (who is calling and why); "" for the default announcement.
	Summary string
}

// maxTransferSummary bounds the spoken summary (about 30 s of speech).
const maxTransferSummary = 400

// transferSummary is the model's summary made fit to speak: one line, at
// most maxTransferSummary bytes, cut at a word.
func transferSummary(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxTransferSummary {
		return s
	}
	s = s[:maxTransferSummary]
	if i := strings.LastIndexByte(s, ' '); i > 0 {
		s = s[:i]
	}
	return strings.ToValidUTF8(s, "")
}

// TransferTarget is a place the agent may transfer the call to.
type TransferTarget struct {
	// Name is what the model uses ("sales", "billing").
	Name string `json:"name" yaml:"name"`
	// Target is where the call goes: an extension, number or SIP URI.
	Target      string `json:"target" yaml:"target"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	// Warm asks for an attended transfer.
	Warm bool `json:"warm,omitempty" yaml:"warm,omitempty"`
}

// DTMFRules say what keys pressed during the conversation do.
type DTMFRules struct {
	// Ignore drops digits not covered by Keys; by default they reach the
	// model as text once the caller stops pressing keys.
	Ignore bool `json:"ignore,omitempty" yaml:"ignore,omitempty"`
	// Keys maps a single key to an action taken at once.
	Keys map[string]DTMFAction `json:"keys,omitempty" yaml:"keys,omitempty"`
	// InterDigitMS is how long after the last key the digits go to the
	// model (default 1500 ms; "#" sends them at once).
	InterDigitMS int `json:"inter_digit_ms,omitempty" yaml:"inter_digit_ms,omitempty"`
}

// DTMFAction is what a key does.
type DTMFAction struct {
	Action string `json:"action" yaml:"action"`                     // "transfer" or "end_call"
	Target string `json:"target,omitempty" yaml:"target,omitempty"` // a transfer target's name
}

// Endpointing decides when the caller has finished a turn.
type Endpointing struct {
	// SilenceMS is the silence that ends a turn (default 500).
	SilenceMS int `json:"silence_ms,omitempty" yaml:"silence_ms,omitempty"`
	// MinSilenceMS applies when the transcript is a complete sentence
	// (default 250).
	MinSilenceMS int `json:"min_silence_ms,omitempty" yaml:"min_silence_ms,omitempty"`
	// MaxSilenceMS applies when the transcript trails off ("and", "so",
	// "um", a comma) (default 1200).
	MaxSilenceMS int `json:"max_silence_ms,omitempty" yaml:"max_silence_ms,omitempty"`
	// Speculative starts the LLM as soon as a final transcript is a
	// complete sentence; its reply is held until the turn really ends and
	// discarded if the caller goes on.
	Speculative bool `json:"speculative,omitempty" yaml:"speculative,omitempty"`
}

// BargeIn decides when the caller interrupts the agent.
type BargeIn struct {
	Disabled bool `json:"disabled,omitempty" yaml:"disabled,omitempty"`
	// MinSpeechMS of caller speech interrupts (default 300).
	MinSpeechMS int `json:"min_speech_ms,omitempty" yaml:"min_speech_ms,omitempty"`
	// MinWords, when > 0, also requires that many recognised words that are
	// not backchannels.
	MinWords int `json:"min_words,omitempty" yaml:"min_words,omitempty"`
	// EchoGuardMS ignores caller speech that starts this soon after the
	// agent starts speaking (default 200).
	EchoGuardMS int `json:"echo_guard_ms,omitempty" yaml:"echo_guard_ms,omitempty"`
	// BackchannelWords never interrupt on their own (default "uh-huh",
	// "mhm", "yeah", "ok", "okay", "right", "yes", "sure", "hmm").
	BackchannelWords []string `json:"backchannel_words,omitempty" yaml:"backchannel_words,omitempty"`
	// ResumeAfterMS: an interruption with no words after this long was
	// noise, and the agent resumes where it was cut (default 1500).
	ResumeAfterMS int `json:"resume_after_ms,omitempty" yaml:"resume_after_ms,omitempty"`
}

// Fallback is what happens after a provider failed for good: the apology,
// then a transfer, or else the goodbye and a hangup.
type Fallback struct {
	Apology    string `json:"apology,omitempty" yaml:"apology,omitempty"`
	TransferTo string `json:"transfer_to,omitempty" yaml:"transfer_to,omitempty"` // a transfer target's name
	Goodbye    string `json:"goodbye,omitempty" yaml:"goodbye,omitempty"`
}

// PostCall is the analysis made with one LLM call after the conversation.
type PostCall struct {
	Summary bool `json:"summary,omitempty" yaml:"summary,omitempty"`
	// SuccessCriteria, when set, asks for a success flag judged by it.
	SuccessCriteria string `json:"success_criteria,omitempty" yaml:"success_criteria,omitempty"`
	// Fields is a JSON Schema (an object) of values to extract.
	Fields JSONSchema `json:"fields,omitempty" yaml:"fields,omitempty"`
}

// JSONSchema holds a JSON Schema document as JSON text, whether it was
// written as JSON or as YAML.
type JSONSchema json.RawMessage

// MarshalJSON implements json.Marshaler.
func (s JSONSchema) MarshalJSON() ([]byte, error) {
	if len(s) == 0 {
		return []byte("null"), nil
	}
	return []byte(s), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (s *JSONSchema) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = nil
		return nil
	}
	if !json.Valid(b) {
		return errors.New("invalid JSON")
	}
	*s = append((*s)[:0], b...)
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *JSONSchema) UnmarshalYAML(n *yaml.Node) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("schema is not representable as JSON: %w", err)
	}
	*s = b
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (s JSONSchema) MarshalYAML() (any, error) {
	if len(s) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(s, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// Defaults.
const (
	DefaultSilenceTimeout   = 30 * time.Second
	DefaultIdleReminder     = 10 * time.Second
	DefaultIdleReminderText = "Are you still there?"
	DefaultGoodbye          = "Thank you for calling. Goodbye."
	DefaultApology          = "I'm sorry, I'm having technical difficulties."
	DefaultFillerAfter      = 1500 * time.Millisecond
	DefaultHTTPToolTimeout  = 10 * time.Second
	DefaultInterDigit       = 1500 * time.Millisecond
	DefaultFiller           = "One moment."
	DefaultLLMFirstToken    = 5 * time.Second
	DefaultLLMRetries       = 1
	// maxLLMRetries keeps a hanging model's dead air bounded.
	maxLLMRetries = 5
)

// DefaultBackchannels are words that acknowledge without taking the turn.
var DefaultBackchannels = []string{"uh-huh", "uh huh", "mhm", "mm-hmm", "hmm", "yeah", "yes", "ok", "okay", "right", "sure", "yep", "uh", "um"}

// WithDefaults returns d with every zero tuning field set to its default.
func (d Definition) WithDefaults() Definition {
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&d.SilenceTimeoutS, int(DefaultSilenceTimeout/time.Second))
	setInt(&d.IdleReminderS, int(DefaultIdleReminder/time.Second))
	if d.IdleReminderText == "" {
		d.IdleReminderText = DefaultIdleReminderText
	}
	if d.GoodbyeMessage == "" {
		d.GoodbyeMessage = DefaultGoodbye
	}
	setInt(&d.FillerAfterMS, int(DefaultFillerAfter/time.Millisecond))
	setInt(&d.Endpointing.SilenceMS, 500)
	setInt(&d.Endpointing.MinSilenceMS, min(250, d.Endpointing.SilenceMS))
	setInt(&d.Endpointing.MaxSilenceMS, max(1200, d.Endpointing.SilenceMS))
	setInt(&d.BargeIn.MinSpeechMS, 300)
	setInt(&d.BargeIn.EchoGuardMS, 200)
	setInt(&d.BargeIn.ResumeAfterMS, 1500)
	if d.BargeIn.BackchannelWords == nil {
		d.BargeIn.BackchannelWords = DefaultBackchannels
	}
	setInt(&d.DTMF.InterDigitMS, int(DefaultInterDigit/time.Millisecond))
	if d.Fallback.Apology == "" {
		d.Fallback.Apology = DefaultApology
	}
	if d.Fallback.Goodbye == "" {
		d.Fallback.Goodbye = d.GoodbyeMessage
	}
	if len(d.HTTPTools) > 0 {
		tools := make([]HTTPTool, len(d.HTTPTools))
		copy(tools, d.HTTPTools)
		for i := range tools {
			if tools[i].Method == "" {
				tools[i].Method = "POST"
			}
			tools[i].Method = strings.ToUpper(tools[i].Method)
			setInt(&tools[i].TimeoutMS, int(DefaultHTTPToolTimeout/time.Millisecond))
		}
		d.HTTPTools = tools
	}
	return d
}

// ValidationError lists everything wrong with a definition, each problem
// naming its field.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "invalid agent definition: " + strings.Join(e.Problems, "; ")
}

var (
	toolNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	idRE       = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)
	dtmfKeyRE  = regexp.MustCompile(`^[0-9*#A-D]$`)
)

// providerRoles says which providers can fill which role.
var providerRoles = map[string][]string{
	"stt":      {"openai", "openai-realtime", "deepgram"},
	"llm":      {"openai"},
	"tts":      {"openai", "elevenlabs"},
	"realtime": {"openai-realtime"},
}

// Validate checks the definition and returns a *ValidationError naming
// every bad field, or nil.
func (d Definition) Validate() error {
	var p []string
	bad := func(field, format string, args ...any) {
		p = append(p, field+": "+fmt.Sprintf(format, args...))
	}
	if d.ID != "" && !idRE.MatchString(d.ID) {
		bad("id", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if strings.TrimSpace(d.Name) == "" {
		bad("name", "required")
	}
	if strings.TrimSpace(d.SystemPrompt) == "" && d.Realtime == nil {
		bad("system_prompt", "required")
	}
	checkProvider := func(role string, c *ProviderConfig) {
		if c == nil {
			return
		}
		ok := false
		for _, name := range providerRoles[role] {
			ok = ok || c.Provider == name
		}
		if !ok {
			bad(role+".provider", "%q cannot be used for %s (one of %s)", c.Provider, role, strings.Join(providerRoles[role], ", "))
		}
		if role == "llm" {
			if c.FirstTokenTimeoutMS < 0 || c.FirstTokenTimeoutMS > 120000 {
				bad("llm.first_token_timeout_ms", "must be between 0 (default %d) and 120000", DefaultLLMFirstToken.Milliseconds())
			}
			if c.Retries < -1 || c.Retries > maxLLMRetries {
				bad("llm.retries", "must be -1 (never), 0 (default %d) or up to %d", DefaultLLMRetries, maxLLMRetries)
			}
		} else {
			if c.FirstTokenTimeoutMS != 0 {
				bad(role+".first_token_timeout_ms", "only applies to llm")
			}
			if c.Retries != 0 {
				bad(role+".retries", "only applies to llm")
			}
		}
		if c.BaseURL != "" {
			if u, err := url.Parse(c.BaseURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ws" && u.Scheme != "wss") {
				bad(role+".base_url", "must be an absolute http(s) or ws(s) URL")
			}
		}
	}
	checkProvider("stt", d.STT)
	checkProvider("llm", d.LLM)
	checkProvider("tts", d.TTS)
	checkProvider("realtime", d.Realtime)
	if d.Realtime == nil {
		for _, r := range []struct {
			name string
			c    *ProviderConfig
		}{{"stt", d.STT}, {"llm", d.LLM}, {"tts", d.TTS}} {
			if r.c == nil {
				bad(r.name, "required unless realtime is set")
			}
		}
	}
	if d.Temperature != nil && (*d.Temperature < 0 || *d.Temperature > 2) {
		bad("temperature", "must be between 0 and 2")
	}
	if d.MaxTokens < 0 {
		bad("max_tokens", "must not be negative")
	}

	names := map[string]bool{}
	for i, t := range d.Tools {
		known := false
		for _, b := range builtinTools {
			known = known || t == b
		}
		if !known {
			bad(fmt.Sprintf("tools[%d]", i), "unknown tool %q (one of %s)", t, strings.Join(builtinTools, ", "))
		}
		if names[t] {
			bad(fmt.Sprintf("tools[%d]", i), "%q listed twice", t)
		}
		names[t] = true
	}
	for i, t := range d.HTTPTools {
		f := fmt.Sprintf("http_tools[%d]", i)
		if !toolNameRE.MatchString(t.Name) {
			bad(f+".name", "must be 1-64 letters, digits, '_' or '-'")
		} else if names[t.Name] {
			bad(f+".name", "%q is already a tool", t.Name)
		}
		names[t.Name] = true
		if strings.TrimSpace(t.Description) == "" {
			bad(f+".description", "required")
		}
		if u, err := url.Parse(t.URL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			bad(f+".url", "must be an absolute http or https URL")
		}
		switch strings.ToUpper(t.Method) {
		case "", "GET", "POST", "PUT", "PATCH", "DELETE":
		default:
			bad(f+".method", "must be GET, POST, PUT, PATCH or DELETE")
		}
		if t.TimeoutMS < 0 || t.TimeoutMS > 120000 {
			bad(f+".timeout_ms", "must be between 0 and 120000")
		}
		if len(t.Parameters) > 0 {
			var obj map[string]any
			if json.Unmarshal(t.Parameters, &obj) != nil || obj == nil {
				bad(f+".parameters", "must be a JSON Schema object")
			}
		}
		for k := range t.Headers {
			if k == "" || strings.ContainsAny(k, " \r\n:") {
				bad(f+".headers", "bad header name %q", k)
			}
		}
	}

	targets := map[string]bool{}
	for i, t := range d.TransferTargets {
		f := fmt.Sprintf("transfer_targets[%d]", i)
		if !toolNameRE.MatchString(t.Name) {
			bad(f+".name", "must be 1-64 letters, digits, '_' or '-'")
		} else if targets[t.Name] {
			bad(f+".name", "%q listed twice", t.Name)
		}
		targets[t.Name] = true
		if strings.TrimSpace(t.Target) == "" {
			bad(f+".target", "required")
		}
	}
	if names[ToolTransferCall] && len(d.TransferTargets) == 0 {
		bad("transfer_targets", "transfer_call is enabled but no target is allowed")
	}
	for k, a := range d.DTMF.Keys {
		f := fmt.Sprintf("dtmf.keys[%q]", k)
		if !dtmfKeyRE.MatchString(k) {
			bad(f, "must be one of 0-9 * # A-D")
		}
		switch a.Action {
		case "transfer":
			if !targets[a.Target] {
				bad(f+".target", "%q is not a transfer target", a.Target)
			}
		case "end_call":
		default:
			bad(f+".action", "must be transfer or end_call")
		}
	}
	if d.DTMF.InterDigitMS < 0 {
		bad("dtmf.inter_digit_ms", "must not be negative")
	}
	if d.Fallback.TransferTo != "" && !targets[d.Fallback.TransferTo] {
		bad("fallback.transfer_to", "%q is not a transfer target", d.Fallback.TransferTo)
	}
	nonNeg := func(field string, v int) {
		if v < 0 {
			bad(field, "must not be negative")
		}
	}
	nonNeg("max_duration_s", d.MaxDurationS)
	if d.SilenceTimeoutS < -1 {
		bad("silence_timeout_s", "must be -1 (never), 0 (default) or positive")
	}
	if d.IdleReminderS < -1 {
		bad("idle_reminder_s", "must be -1 (never), 0 (default) or positive")
	}
	if d.FillerAfterMS < -1 {
		bad("filler_after_ms", "must be -1 (never), 0 (default) or positive")
	}
	e := d.Endpointing
	nonNeg("endpointing.silence_ms", e.SilenceMS)
	nonNeg("endpointing.min_silence_ms", e.MinSilenceMS)
	nonNeg("endpointing.max_silence_ms", e.MaxSilenceMS)
	if e.SilenceMS > 10000 {
		bad("endpointing.silence_ms", "must be at most 10000")
	}
	if e.MinSilenceMS > 0 && e.SilenceMS > 0 && e.MinSilenceMS > e.SilenceMS {
		bad("endpointing.min_silence_ms", "must not exceed silence_ms")
	}
	if e.MaxSilenceMS > 0 && e.SilenceMS > 0 && e.MaxSilenceMS < e.SilenceMS {
		bad("endpointing.max_silence_ms", "must not be below silence_ms")
	}
	b := d.BargeIn
	nonNeg("barge_in.min_speech_ms", b.MinSpeechMS)
	nonNeg("barge_in.min_words", b.MinWords)
	nonNeg("barge_in.echo_guard_ms", b.EchoGuardMS)
	nonNeg("barge_in.resume_after_ms", b.ResumeAfterMS)
	if pc := d.PostCall; pc != nil && len(pc.Fields) > 0 {
		var obj map[string]any
		if json.Unmarshal(pc.Fields, &obj) != nil || obj == nil {
			bad("post_call.fields", "must be a JSON Schema object")
		}
	}
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// ParseDefinition decodes a definition from JSON or YAML (format "json" or
// "yaml"; "" sniffs: a document starting with '{' is JSON). Unknown fields
// are errors. The result is validated.
func ParseDefinition(data []byte, format string) (Definition, error) {
	var d Definition
	if format == "" {
		format = "yaml"
		if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
			format = "json"
		}
	}
	switch format {
	case "json":
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			return Definition{}, fmt.Errorf("agent definition: %w", err)
		}
		if dec.More() {
			return Definition{}, errors.New("agent definition: trailing data after the JSON object")
		}
	case "yaml":
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&d); err != nil {
			if errors.Is(err, io.EOF) {
				return Definition{}, errors.New("agent definition: empty document")
			}
			return Definition{}, fmt.Errorf("agent definition: %w", err)
		}
	default:
		return Definition{}, fmt.Errorf("agent definition: unknown format %q", format)
	}
	if err := d.Validate(); err != nil {
		return Definition{}, err
	}
	return d, nil
}

// LoadDefinition reads a definition file; .json files are JSON, .yaml and
// .yml YAML. A definition without an ID takes the file's base name.
func LoadDefinition(path string) (Definition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Definition{}, err
	}
	format := ""
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		format = "json"
	case ".yaml", ".yml":
		format = "yaml"
	}
	d, err := ParseDefinition(data, format)
	if err != nil {
		return Definition{}, fmt.Errorf("%s: %w", path, err)
	}
	if d.ID == "" {
		d.ID = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		if !idRE.MatchString(d.ID) {
			return Definition{}, fmt.Errorf("%s: file name is not a valid agent id; set id", path)
		}
	}
	return d, nil
}

// TransferTarget returns the allowed target called name, matching the name
// or the target itself case-insensitively.
func (d Definition) TransferTarget(name string) (TransferTarget, bool) {
	name = strings.TrimSpace(name)
	for _, t := range d.TransferTargets {
		if strings.EqualFold(t.Name, name) || strings.EqualFold(t.Target, name) {
			return t, true
		}
	}
	return TransferTarget{}, false
}

func (d Definition) toolEnabled(name string) bool {
	for _, t := range d.Tools {
		if t == name {
			return true
		}
	}
	return false
}
