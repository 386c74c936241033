// Package providers turns an agent's provider settings (agent.ProviderConfig)
// into clients: it checks them with messages a user can act on, finds the
// API key (given, named environment variable, or the provider's standard
// one), and masks keys for logs and API replies.
package providers

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/deepgram"
	"github.com/voxbridge/voxbridge/agent/elevenlabs"
	"github.com/voxbridge/voxbridge/agent/openai"
	"github.com/voxbridge/voxbridge/agent/openairt"
)

// Provider names, as written in agent definitions.
const (
	OpenAI         = "openai"          // any OpenAI-compatible HTTP API
	OpenAIRealtime = "openai-realtime" // the Realtime websocket
	Deepgram       = "deepgram"
	ElevenLabs     = "elevenlabs"
)

// Roles a provider can fill.
const (
	RoleSTT      = "stt"
	RoleLLM      = "llm"
	RoleTTS      = "tts"
	RoleRealtime = "realtime"
)

var roleProviders = map[string][]string{
	RoleSTT:      {Deepgram, OpenAI, OpenAIRealtime},
	RoleLLM:      {OpenAI},
	RoleTTS:      {ElevenLabs, OpenAI},
	RoleRealtime: {OpenAIRealtime},
}

var roleNames = map[string]string{
	RoleSTT: "speech-to-text", RoleLLM: "language model", RoleTTS: "text-to-speech", RoleRealtime: "speech-to-speech",
}

// ProvidersFor lists the providers that can fill role, sorted.
func ProvidersFor(role string) []string { return slices.Clone(roleProviders[role]) }

// EnvVar is the environment variable a provider's key is read from when the
// config names none.
func EnvVar(provider string) string {
	switch provider {
	case OpenAI, OpenAIRealtime:
		return "OPENAI_API_KEY"
	case Deepgram:
		return "DEEPGRAM_API_KEY"
	case ElevenLabs:
		return "ELEVENLABS_API_KEY"
	}
	return ""
}

// DefaultBaseURL is the endpoint a provider's client uses when the config
// gives none.
func DefaultBaseURL(provider string) string {
	switch provider {
	case OpenAI:
		return openai.DefaultBaseURL
	case OpenAIRealtime:
		return openairt.DefaultBaseURL
	case Deepgram:
		return deepgram.DefaultBaseURL
	case ElevenLabs:
		return elevenlabs.DefaultBaseURL
	}
	return ""
}

var (
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	languageRe = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$`)
	voiceID    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Validate checks c for role ("stt", "llm", "tts" or "realtime"),
// including that an API key can be found. Its messages name the field at
// fault and never show a key.
func Validate(role string, c agent.ProviderConfig) error {
	_, err := check(role, c)
	return err
}

// check validates c and returns its key.
func check(role string, c agent.ProviderConfig) (string, error) {
	allowed, ok := roleProviders[role]
	if !ok {
		return "", fmt.Errorf("unknown provider role %q (want stt, llm, tts or realtime)", role)
	}
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf(role+": "+format, args...)
	}
	switch {
	case c.Provider == "":
		return fail("provider is required (one of %s)", strings.Join(allowed, ", "))
	case EnvVar(c.Provider) == "":
		return fail("unknown provider %q (want one of %s)", c.Provider, strings.Join(allowed, ", "))
	case !slices.Contains(allowed, c.Provider):
		return fail("provider %q does not do %s (want one of %s)", c.Provider, roleNames[role], strings.Join(allowed, ", "))
	}
	if c.BaseURL != "" {
		if err := checkBaseURL(c.Provider, c.BaseURL); err != nil {
			return fail("%v", err)
		}
	}
	if c.Voice != "" {
		switch {
		case role == RoleSTT || role == RoleLLM:
			return fail("voice does not apply to a %s provider", roleNames[role])
		case c.Provider == ElevenLabs && !voiceID.MatchString(c.Voice):
			return fail("voice %q: want an ElevenLabs voice ID (letters and digits)", c.Voice)
		case strings.TrimSpace(c.Voice) != c.Voice:
			return fail("voice %q has surrounding spaces", c.Voice)
		}
	}
	if c.Language != "" {
		switch {
		case role == RoleLLM:
			return fail("language does not apply to a language model (write it into the prompt)")
		case role == RoleTTS && c.Provider == OpenAI:
			return fail("openai text-to-speech takes no language: it speaks the text it is given")
		case !languageRe.MatchString(c.Language):
			return fail("language %q: want a BCP 47 tag like \"en\" or \"en-US\"", c.Language)
		}
	}
	if strings.TrimSpace(c.Model) != c.Model {
		return fail("model %q has surrounding spaces", c.Model)
	}
	key, err := resolveKey(c)
	if err != nil {
		return fail("%v", err)
	}
	return key, nil
}

func checkBaseURL(provider, raw string) error {
	u, err := url.Parse(raw)
	schemes := []string{"ws", "wss", "http", "https"}
	want := "ws(s):// or http(s)://host[:port][/path]"
	if provider == OpenAI {
		schemes, want = []string{"http", "https"}, "http(s)://host[:port]/path, e.g. http://127.0.0.1:8000/v1"
	}
	if err != nil || u.Host == "" || !slices.Contains(schemes, u.Scheme) {
		return fmt.Errorf("base_url %q: want %s", redactURL(raw), want)
	}
	return nil
}

// resolveKey finds the key: the config's own, else the variable it names,
// else the provider's standard variable. OpenAI-compatible servers other
// than OpenAI itself (a local model server) may need none.
func resolveKey(c agent.ProviderConfig) (string, error) {
	if c.APIKey != "" && c.APIKeyEnv != "" {
		return "", errors.New("set api_key or api_key_env, not both")
	}
	if c.APIKey != "" {
		if strings.TrimSpace(c.APIKey) != c.APIKey || strings.ContainsAny(c.APIKey, "\r\n") {
			return "", errors.New("api_key has surrounding spaces or line breaks")
		}
		return c.APIKey, nil
	}
	if c.APIKeyEnv != "" {
		if !envName.MatchString(c.APIKeyEnv) {
			return "", fmt.Errorf("api_key_env %q is not an environment variable name", c.APIKeyEnv)
		}
		key := strings.TrimSpace(os.Getenv(c.APIKeyEnv))
		if key == "" {
			return "", fmt.Errorf("api_key_env names %s, which is empty or unset", c.APIKeyEnv)
		}
		return key, nil
	}
	env := EnvVar(c.Provider)
	if key := strings.TrimSpace(os.Getenv(env)); key != "" {
		return key, nil
	}
	if (c.Provider == OpenAI || c.Provider == OpenAIRealtime) && c.BaseURL != "" && !isOpenAIHost(c.BaseURL) {
		return "", nil
	}
	return "", fmt.Errorf("%s needs an API key: set api_key, api_key_env, or the environment variable %s", c.Provider, env)
}

func isOpenAIHost(raw string) bool {
	u, err := url.Parse(raw)
	return err != nil || strings.EqualFold(u.Hostname(), "api.openai.com")
}

// Redact returns c with its key masked to its last four characters (all of
// it for keys too short to show any) and any credentials in the base URL
// hidden, for logs and API replies.
func Redact(c agent.ProviderConfig) agent.ProviderConfig {
	c.APIKey = MaskKey(c.APIKey)
	if c.BaseURL != "" {
		c.BaseURL = redactURL(c.BaseURL)
	}
	return c
}

// MaskKey shows only the last four characters of key; keys shorter than 12
// characters are masked entirely, since four would be too much of them.
func MaskKey(key string) string { return agent.MaskKey(key) }

// redactURL hides a password in the userinfo and the values of query
// parameters that look like credentials.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil { // show what is safe of it: no userinfo, no query
		s := raw
		if i := strings.LastIndex(s, "@"); i >= 0 {
			scheme := ""
			if j := strings.Index(s, "://"); j >= 0 && j < i {
				scheme = s[:j+3]
			}
			s = scheme + "xxxxx@" + s[i+1:]
		}
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			s = s[:i] + "?xxxxx"
		}
		return s
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			lk := strings.ToLower(k)
			if strings.Contains(lk, "key") || strings.Contains(lk, "token") || strings.Contains(lk, "secret") || strings.Contains(lk, "auth") {
				q[k] = []string{"xxxxx"}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// NewSTT builds the speech-to-text client c describes.
func NewSTT(c agent.ProviderConfig) (agent.STT, error) {
	key, err := check(RoleSTT, c)
	if err != nil {
		return nil, err
	}
	// Each case returns its own pointer: a nil one must not become a
	// non-nil interface.
	switch c.Provider {
	case Deepgram:
		s, err := deepgram.New(deepgram.Config{BaseURL: c.BaseURL, APIKey: key, Model: c.Model, Language: c.Language})
		if err != nil {
			return nil, fmt.Errorf("stt: %w", err)
		}
		return s, nil
	case OpenAI:
		s, err := openai.NewSTT(openai.Config{BaseURL: c.BaseURL, APIKey: key, Model: c.Model, Language: c.Language})
		if err != nil {
			return nil, fmt.Errorf("stt: %w", err)
		}
		return s, nil
	default: // OpenAIRealtime; check allows nothing else
		s, err := openairt.NewSTT(openairt.Config{BaseURL: c.BaseURL, APIKey: key, TranscriptionModel: c.Model, Language: c.Language})
		if err != nil {
			return nil, fmt.Errorf("stt: %w", err)
		}
		return s, nil
	}
}

// NewLLM builds the language model client c describes.
func NewLLM(c agent.ProviderConfig) (agent.LLM, error) {
	key, err := check(RoleLLM, c)
	if err != nil {
		return nil, err
	}
	l, err := openai.NewLLM(openai.Config{BaseURL: c.BaseURL, APIKey: key, Model: c.Model})
	if err != nil {
		return nil, fmt.Errorf("llm: %w", err)
	}
	return l, nil
}

// NewTTS builds the text-to-speech client c describes.
func NewTTS(c agent.ProviderConfig) (agent.TTS, error) {
	key, err := check(RoleTTS, c)
	if err != nil {
		return nil, err
	}
	if c.Provider == ElevenLabs {
		t, err := elevenlabs.New(elevenlabs.Config{BaseURL: c.BaseURL, APIKey: key, Model: c.Model, Voice: c.Voice, Language: c.Language})
		if err != nil {
			return nil, fmt.Errorf("tts: %w", err)
		}
		return t, nil
	}
	t, err := openai.NewTTS(openai.Config{BaseURL: c.BaseURL, APIKey: key, Model: c.Model, Voice: c.Voice})
	if err != nil {
		return nil, fmt.Errorf("tts: %w", err)
	}
	return t, nil
}

// NewRealtime builds the speech-to-speech client c describes.
func NewRealtime(c agent.ProviderConfig) (agent.Realtime, error) {
	key, err := check(RoleRealtime, c)
	if err != nil {
		return nil, err
	}
	r, err := openairt.NewRealtime(openairt.Config{BaseURL: c.BaseURL, APIKey: key, Model: c.Model, Voice: c.Voice, Language: c.Language})
	if err != nil {
		return nil, fmt.Errorf("realtime: %w", err)
	}
	return r, nil
}
