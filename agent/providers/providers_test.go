package providers_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/deepgram"
	"github.com/voxbridge/voxbridge/agent/elevenlabs"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/openai"
	"github.com/voxbridge/voxbridge/agent/openairt"
	"github.com/voxbridge/voxbridge/agent/providers"
	"github.com/voxbridge/voxbridge/media"
)

const secret = "sk-secret-0123456789abcdef"

// clearEnv makes the standard key variables empty for the test.
func clearEnv(t *testing.T) {
	for _, v := range []string{"OPENAI_API_KEY", "DEEPGRAM_API_KEY", "ELEVENLABS_API_KEY"} {
		t.Setenv(v, "")
	}
}

func TestValidate(t *testing.T) {
	clearEnv(t)
	t.Setenv("MY_DG_KEY", secret)
	type pc = agent.ProviderConfig
	for _, tc := range []struct {
		role string
		cfg  pc
		want string // "" means valid
	}{
		{"stt", pc{Provider: "deepgram", APIKey: secret, Model: "nova-3", Language: "en-US"}, ""},
		{"stt", pc{Provider: "deepgram", APIKeyEnv: "MY_DG_KEY"}, ""},
		{"stt", pc{Provider: "openai-realtime", APIKey: secret}, ""},
		{"llm", pc{Provider: "openai", BaseURL: "http://127.0.0.1:8000/v1"}, ""}, // a local server needs no key
		{"tts", pc{Provider: "elevenlabs", APIKey: secret, Voice: "21m00Tcm4TlvDq8ikWAM", Language: "fr"}, ""},
		{"tts", pc{Provider: "openai", APIKey: secret, Voice: "alloy"}, ""},
		{"realtime", pc{Provider: "openai-realtime", APIKey: secret, Voice: "marin", BaseURL: "wss://gw.example/v1"}, ""},

		{"asr", pc{Provider: "deepgram", APIKey: secret}, `unknown provider role "asr" (want stt, llm, tts or realtime)`},
		{"stt", pc{APIKey: secret}, "stt: provider is required (one of deepgram, openai, openai-realtime)"},
		{"tts", pc{Provider: "polly", APIKey: secret}, `tts: unknown provider "polly" (want one of elevenlabs, openai)`},
		{"tts", pc{Provider: "deepgram", APIKey: secret}, `tts: provider "deepgram" does not do text-to-speech (want one of elevenlabs, openai)`},
		{"llm", pc{Provider: "elevenlabs", APIKey: secret}, `llm: provider "elevenlabs" does not do language model (want one of openai)`},
		{"realtime", pc{Provider: "openai", APIKey: secret}, `realtime: provider "openai" does not do speech-to-speech`},
		{"stt", pc{Provider: "deepgram"}, "stt: deepgram needs an API key: set api_key, api_key_env, or the environment variable DEEPGRAM_API_KEY"},
		{"llm", pc{Provider: "openai"}, "llm: openai needs an API key: set api_key, api_key_env, or the environment variable OPENAI_API_KEY"},
		{"llm", pc{Provider: "openai", BaseURL: "https://api.openai.com/v1"}, "OPENAI_API_KEY"},
		{"tts", pc{Provider: "elevenlabs", APIKeyEnv: "NOT_SET_ANYWHERE"}, "tts: api_key_env names NOT_SET_ANYWHERE, which is empty or unset"},
		{"tts", pc{Provider: "elevenlabs", APIKeyEnv: "BAD-NAME"}, `api_key_env "BAD-NAME" is not an environment variable name`},
		{"stt", pc{Provider: "deepgram", APIKey: secret, APIKeyEnv: "MY_DG_KEY"}, "set api_key or api_key_env, not both"},
		{"stt", pc{Provider: "deepgram", APIKey: secret + "\n"}, "api_key has surrounding spaces or line breaks"},
		{"llm", pc{Provider: "openai", APIKey: secret, BaseURL: "ws://127.0.0.1/v1"}, `llm: base_url "ws://127.0.0.1/v1": want http(s)://host[:port]/path`},
		{"stt", pc{Provider: "deepgram", APIKey: secret, BaseURL: "127.0.0.1:8080"}, `base_url "127.0.0.1:8080": want ws(s):// or http(s)://`},
		{"stt", pc{Provider: "deepgram", APIKey: secret, BaseURL: "https://user:" + secret + "@gw.example:bad"}, `base_url "https://xxxxx@gw.example:bad": want`},
		{"stt", pc{Provider: "deepgram", APIKey: secret, Voice: "x"}, "stt: voice does not apply to a speech-to-text provider"},
		{"llm", pc{Provider: "openai", APIKey: secret, Voice: "alloy"}, "voice does not apply to a language model provider"},
		{"tts", pc{Provider: "elevenlabs", APIKey: secret, Voice: "Rachel's voice"}, `voice "Rachel's voice": want an ElevenLabs voice ID`},
		{"llm", pc{Provider: "openai", APIKey: secret, Language: "en"}, "language does not apply to a language model"},
		{"tts", pc{Provider: "openai", APIKey: secret, Language: "en"}, "openai text-to-speech takes no language"},
		{"stt", pc{Provider: "deepgram", APIKey: secret, Language: "English"}, `language "English": want a BCP 47 tag like "en" or "en-US"`},
		{"stt", pc{Provider: "deepgram", APIKey: secret, Model: " nova-3"}, `model " nova-3" has surrounding spaces`},
	} {
		err := providers.Validate(tc.role, tc.cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate(%s, %+v): %v", tc.role, providers.Redact(tc.cfg), err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Validate(%s, %+v): %v\nwant %q", tc.role, providers.Redact(tc.cfg), err, tc.want)
		case err != nil && strings.Contains(err.Error(), secret):
			t.Errorf("error shows the key: %v", err)
		}
	}
}

func TestRedact(t *testing.T) {
	c := agent.ProviderConfig{
		Provider: "openai", APIKey: secret, APIKeyEnv: "X",
		BaseURL: "https://bob:hunter2@gw.example/v1?api_key=" + secret + "&region=eu",
	}
	r := providers.Redact(c)
	if r.APIKey != "****cdef" {
		t.Errorf("masked key %q, want ****cdef", r.APIKey)
	}
	if r.BaseURL != "https://bob:xxxxx@gw.example/v1?api_key=xxxxx&region=eu" {
		t.Errorf("base URL %q", r.BaseURL)
	}
	if c.APIKey != secret {
		t.Error("Redact changed its argument")
	}
	for _, f := range []func(any) ([]byte, error){json.Marshal, yaml.Marshal} {
		b, _ := f(r)
		if strings.Contains(string(b), secret) || strings.Contains(string(b), "hunter2") {
			t.Errorf("redacted config still shows a secret: %s", b)
		}
	}
	for key, want := range map[string]string{"": "", "short-key": "****", "0123456789ab": "****89ab"} {
		if got := providers.MaskKey(key); got != want {
			t.Errorf("MaskKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestClientTypes(t *testing.T) {
	clearEnv(t)
	type pc = agent.ProviderConfig
	stt := func(c pc) any { v, err := providers.NewSTT(c); mustNot(t, err); return v }
	tts := func(c pc) any { v, err := providers.NewTTS(c); mustNot(t, err); return v }
	for _, tc := range []struct {
		got  any
		want string
	}{
		{stt(pc{Provider: "deepgram", APIKey: secret}), "*deepgram.STT"},
		{stt(pc{Provider: "openai", APIKey: secret}), "*openai.STT"},
		{stt(pc{Provider: "openai-realtime", APIKey: secret}), "*openairt.STT"},
		{tts(pc{Provider: "elevenlabs", APIKey: secret}), "*elevenlabs.TTS"},
		{tts(pc{Provider: "openai", APIKey: secret}), "*openai.TTS"},
	} {
		if got := typeName(tc.got); got != tc.want {
			t.Errorf("built %s, want %s", got, tc.want)
		}
	}
	l, err := providers.NewLLM(pc{Provider: "openai", BaseURL: "http://127.0.0.1:1/v1"})
	mustNot(t, err)
	if _, ok := l.(*openai.LLM); !ok {
		t.Errorf("NewLLM built %T", l)
	}
	r, err := providers.NewRealtime(pc{Provider: "openai-realtime", APIKey: secret})
	mustNot(t, err)
	if _, ok := r.(*openairt.Realtime); !ok {
		t.Errorf("NewRealtime built %T", r)
	}
	// A config error gives a nil interface, not a typed nil.
	if s, err := providers.NewSTT(pc{Provider: "deepgram"}); err == nil || s != nil {
		t.Errorf("NewSTT without a key: %v, %v", s, err)
	}
	if s, err := providers.NewTTS(pc{Provider: "elevenlabs", APIKey: secret, BaseURL: "ftp://x"}); err == nil || s != nil {
		t.Errorf("NewTTS with a bad URL: %v, %v", s, err)
	}
}

func mustNot(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *deepgram.STT:
		return "*deepgram.STT"
	case *openai.STT:
		return "*openai.STT"
	case *openairt.STT:
		return "*openairt.STT"
	case *elevenlabs.TTS:
		return "*elevenlabs.TTS"
	case *openai.TTS:
		return "*openai.TTS"
	}
	return "something else"
}

// The key reaches the provider from each place it can come from, in
// order of precedence.
func TestKeySources(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{APIKey: secret})
	for _, tc := range []struct {
		name string
		cfg  agent.ProviderConfig
		env  map[string]string
		ok   bool
	}{
		{"api_key", agent.ProviderConfig{APIKey: secret}, map[string]string{"DEEPGRAM_API_KEY": "wrong-key-000000"}, true},
		{"api_key_env", agent.ProviderConfig{APIKeyEnv: "TEAM_DG"}, map[string]string{"TEAM_DG": secret, "DEEPGRAM_API_KEY": "wrong-key-000000"}, true},
		{"standard variable", agent.ProviderConfig{}, map[string]string{"DEEPGRAM_API_KEY": secret}, true},
		{"wrong key", agent.ProviderConfig{APIKey: "wrong-key-000000"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tc.cfg.Provider, tc.cfg.BaseURL = "deepgram", dg.URL()
			stt, err := providers.NewSTT(tc.cfg)
			mustNot(t, err)
			s, err := stt.Start(t.Context(), agent.STTOptions{})
			if tc.ok != (err == nil) {
				t.Fatalf("Start: %v", err)
			}
			if err == nil {
				s.Close()
			} else if strings.Contains(err.Error(), "wrong-key") {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

// A YAML agent definition's provider blocks, through the factory, to
// working clients on the fakes.
func TestFromYAMLToWorkingClients(t *testing.T) {
	clearEnv(t)
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{APIKey: secret, Utterances: []string{"what are your opening hours"}})
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{APIKey: secret, ToneHz: 800})
	oai := fake.NewOpenAI(t, fake.OpenAIScript{APIKey: secret, Chat: []fake.ChatReply{{Text: "We open at nine."}}})
	t.Setenv("ELEVENLABS_API_KEY", secret)
	t.Setenv("OPENAI_API_KEY", secret)

	doc := `
stt: {provider: deepgram, base_url: "` + dg.URL() + `", api_key: ` + secret + `, language: en-US}
llm: {provider: openai, base_url: "` + oai.URL + `", model: gpt-4o-mini}
tts: {provider: elevenlabs, base_url: "` + el.URL() + `", voice: testVoice1, language: en}
`
	var cfg struct{ STT, LLM, TTS agent.ProviderConfig }
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}

	stt, err := providers.NewSTT(cfg.STT)
	mustNot(t, err)
	s, err := stt.Start(t.Context(), agent.STTOptions{})
	mustNot(t, err)
	defer s.Close()
	for pcm := media.Tone(300, 600*time.Millisecond, 0.3); len(pcm) >= 160; pcm = pcm[160:] {
		mustNot(t, s.Write(pcm[:160]))
	}
	mustNot(t, s.Finalize())
	heard := ""
	for ev := range s.Events() {
		if ev.Type == agent.STTFinal {
			heard = ev.Text
			break
		}
		if ev.Type == agent.STTError {
			t.Fatal(ev.Err)
		}
	}
	if heard != "what are your opening hours" {
		t.Errorf("heard %q", heard)
	}
	if q := dg.WaitSession(t, 0, time.Second).Query; q.Get("language") != "en-US" {
		t.Errorf("deepgram language %q", q.Get("language"))
	}

	llm, err := providers.NewLLM(cfg.LLM)
	mustNot(t, err)
	evs, err := llm.Stream(t.Context(), agent.LLMRequest{Messages: []agent.Message{{Role: agent.RoleUser, Content: heard}}})
	mustNot(t, err)
	reply := ""
	for ev := range evs {
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		reply += ev.Text
	}
	if reply != "We open at nine." {
		t.Errorf("reply %q", reply)
	}

	tts, err := providers.NewTTS(cfg.TTS)
	mustNot(t, err)
	ts, err := tts.Start(t.Context(), agent.TTSOptions{})
	mustNot(t, err)
	defer ts.Close()
	mustNot(t, ts.WriteText(reply))
	mustNot(t, ts.Flush())
	var pcm []int16
	for c := range ts.Audio() {
		if c.Err != nil {
			t.Fatal(c.Err)
		}
		pcm = append(pcm, c.PCM...)
		if c.Final {
			break
		}
	}
	if lvl := media.ToneLevel(pcm, 800); lvl < 0.25 {
		t.Errorf("spoken reply: %d samples, 800 Hz level %.2f", len(pcm), lvl)
	}
	sess := el.WaitSession(t, 0, time.Second)
	if sess.VoiceID != "testVoice1" || sess.Query.Get("language_code") != "en" || !strings.HasPrefix(sess.Text(), reply) {
		t.Errorf("elevenlabs got voice %q language %q text %q", sess.VoiceID, sess.Query.Get("language_code"), sess.Text())
	}
}
