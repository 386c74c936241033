package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/agenttest"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/providers"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
)

// Golden-call replay: the caller's side of a captured call is played, on
// the wall clock, into an agent session, and the run reports what the
// agent heard and said and where each turn's time went. With --fakes the
// providers are agent/fake servers on loopback (the real clients talk to
// them), so a run is repeatable and free; without it the definition's own
// providers answer, with keys from the environment.

// replayAgentConfig is one `replay --agent` run.
type replayAgentConfig struct {
	Capture   string
	Port      uint16
	Stream    int    // 1-based, in the order plain replay lists streams
	AgentPath string // agent definition, JSON or YAML
	FakesPath string // fake providers' script; "" with Fakes: the default script
	Fakes     bool
	Tail      time.Duration // how long the agent may go on after the capture's audio
	MaxP95    time.Duration // fail the run when voice-to-voice p95 exceeds it (0: never)
	WAV       string        // stereo recording: caller left, agent right
	MinDelay  time.Duration
	MaxDelay  time.Duration
	Log       *slog.Logger
}

// replayAgentReport is what `replay --agent --json` prints.
type replayAgentReport struct {
	Stream      string                 `json:"stream"` // "src -> dst"
	CaptureMS   float64                `json:"capture_ms"`
	Providers   string                 `json:"providers"`
	Reason      string                 `json:"reason"`
	Failure     *agent.ProviderFailure `json:"failure,omitempty"`
	Transcript  []agent.Turn           `json:"transcript"`
	Latency     []agent.TurnLatency    `json:"latency"`
	Summary     agent.LatencySummary   `json:"latency_summary"`
	CallerTurns int                    `json:"caller_turns"`
	Transfers   []string               `json:"transfers,omitempty"`
	DTMFSent    []string               `json:"dtmf_sent,omitempty"`
	Variables   map[string]string      `json:"variables,omitempty"`
}

// reasonEndOfCapture ends a replay whose agent was still listening when the
// captured audio (and the tail after it) ran out.
const reasonEndOfCapture = "end_of_capture"

// fakeScript scripts the fake providers of `replay --agent --fakes` and
// `load --agent`: what the caller's utterances are transcribed as, what the
// model answers, and the providers' fixed latencies.
type fakeScript struct {
	// Utterances are the transcripts of the caller's successive stretches
	// of speech; beyond the list an utterance is "(utterance N)".
	Utterances []string `json:"utterances" yaml:"utterances"`
	// Replies are the model's successive answers; beyond the list it
	// answers "You said: <the caller's words>".
	Replies []fakeReply `json:"replies" yaml:"replies"`
	// Latencies in milliseconds; 0 takes the benchmark values
	// (200, 300, 150), -1 means none.
	STTFinalMS      int `json:"stt_final_ms" yaml:"stt_final_ms"`
	LLMFirstTokenMS int `json:"llm_first_token_ms" yaml:"llm_first_token_ms"`
	TTSFirstAudioMS int `json:"tts_first_audio_ms" yaml:"tts_first_audio_ms"`
	// ToneHz is the fake voice's pitch (default 440 Hz).
	ToneHz float64 `json:"tone_hz" yaml:"tone_hz"`
}

type fakeReply struct {
	Text      string           `json:"text" yaml:"text"`
	ToolCalls []agent.ToolCall `json:"tool_calls,omitempty" yaml:"tool_calls,omitempty"`
}

func fakeMS(v, def int) time.Duration {
	switch {
	case v < 0:
		return 0
	case v == 0:
		return time.Duration(def) * time.Millisecond
	}
	return time.Duration(v) * time.Millisecond
}

func readFakeScript(path string) (fakeScript, error) {
	var sc fakeScript
	if path == "" {
		return sc, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return sc, fmt.Errorf("fakes script: %w", err)
	}
	if err := decodeStrict(data, filepath.Ext(path), &sc); err != nil {
		return sc, fmt.Errorf("fakes script %s: %w", path, err)
	}
	for i, r := range sc.Replies {
		for _, tc := range r.ToolCalls {
			if tc.Name == "" || (tc.Arguments != "" && !json.Valid([]byte(tc.Arguments))) {
				return sc, fmt.Errorf("fakes script %s: replies[%d]: a tool call needs a name and JSON arguments", path, i)
			}
		}
	}
	if sc.ToneHz < 0 || sc.ToneHz > 3400 {
		return sc, fmt.Errorf("fakes script %s: tone_hz %v out of the telephone band", path, sc.ToneHz)
	}
	return sc, nil
}

// decodeStrict decodes JSON (.json, or a document starting with '{') or
// YAML, refusing unknown fields so a misspelt option is an error.
func decodeStrict(data []byte, ext string, v any) error {
	if strings.EqualFold(ext, ".json") || bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		return dec.Decode(v)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// fakeHost runs agent/fake's servers and agenttest's call, written for
// tests, inside a command: it is their fake.TB (Helper, Cleanup, and
// Fatalf, which only their Wait helpers and a failed loopback listen call).
type fakeHost struct {
	mu       sync.Mutex
	cleanups []func()
}

func (h *fakeHost) Helper() {}

func (h *fakeHost) Cleanup(f func()) {
	h.mu.Lock()
	h.cleanups = append(h.cleanups, f)
	h.mu.Unlock()
}

// fakeHostFailure is Fatalf's panic; startFakes recovers it as an error.
type fakeHostFailure struct{ msg string }

func (h *fakeHost) Fatalf(format string, args ...any) {
	panic(fakeHostFailure{"fake provider: " + fmt.Sprintf(format, args...)})
}

// Close stops every fake, last started first.
func (h *fakeHost) Close() {
	h.mu.Lock()
	fs := h.cleanups
	h.cleanups = nil
	h.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// fakeProviders are running fakes for one agent definition.
type fakeProviders struct {
	host *fakeHost
	oai  *fake.OpenAI
	dg   *fake.Deepgram
	el   *fake.ElevenLabs
	desc string
}

func (f *fakeProviders) Close() { f.host.Close() }

// startFakes starts the fakes that stand in for def's providers, each of
// the kind the definition names (so the same client code runs), and
// returns def pointing at them.
func startFakes(def agent.Definition, sc fakeScript) (fp *fakeProviders, _ agent.Definition, err error) {
	if def.Realtime != nil {
		return nil, def, errors.New("--fakes: speech-to-speech (realtime) agents have no scripted fake here; replay them against the real provider")
	}
	if def.STT == nil || def.LLM == nil || def.TTS == nil {
		return nil, def, errors.New("--fakes: the agent needs stt, llm and tts providers")
	}
	stt, llm, tts := *def.STT, *def.LLM, *def.TTS
	switch {
	case stt.Provider != providers.Deepgram && stt.Provider != providers.OpenAI:
		return nil, def, fmt.Errorf("--fakes: no fake for stt provider %q (deepgram and openai have one)", stt.Provider)
	case llm.Provider != providers.OpenAI:
		return nil, def, fmt.Errorf("--fakes: no fake for llm provider %q", llm.Provider)
	case tts.Provider != providers.ElevenLabs && tts.Provider != providers.OpenAI:
		return nil, def, fmt.Errorf("--fakes: no fake for tts provider %q (elevenlabs and openai have one)", tts.Provider)
	}
	sttLat, llmLat, ttsLat := fakeMS(sc.STTFinalMS, 200), fakeMS(sc.LLMFirstTokenMS, 300), fakeMS(sc.TTSFirstAudioMS, 150)
	hz := sc.ToneHz
	if hz == 0 {
		hz = 440
	}
	utter := func(n int) string {
		if n < len(sc.Utterances) {
			return sc.Utterances[n]
		}
		return fmt.Sprintf("(utterance %d)", n+1)
	}
	// The Deepgram fake transcribes from a list; a long one of numbered
	// placeholders stands in for "anything after the script".
	utterances := make([]string, max(len(sc.Utterances), 500))
	for i := range utterances {
		utterances[i] = utter(i)
	}
	var chat []fake.ChatReply
	for _, r := range sc.Replies {
		chat = append(chat, fake.ChatReply{Text: r.Text, ToolCalls: r.ToolCalls})
	}
	var trans []fake.TranscriptReply
	for _, u := range sc.Utterances {
		trans = append(trans, fake.TranscriptReply{Text: u})
	}
	h := &fakeHost{}
	f := &fakeProviders{host: h}
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(fakeHostFailure)
			if !ok {
				panic(r)
			}
			h.Close()
			fp, err = nil, errors.New(e.msg)
		}
	}()
	var mu sync.Mutex
	nTrans := len(trans)
	f.oai = fake.NewOpenAI(h, fake.OpenAIScript{
		Chat: chat,
		ChatFunc: func(req fake.ChatRequest) fake.ChatReply {
			return fake.ChatReply{Text: "You said: " + strings.TrimSpace(req.LastUserText())}
		},
		Transcripts: trans,
		TranscriptFunc: func(fake.TranscriptionRequest) fake.TranscriptReply {
			mu.Lock()
			defer mu.Unlock()
			t := fake.TranscriptReply{Text: utter(nTrans)}
			nTrans++
			return t
		},
		SpeechFunc: func(req fake.SpeechRequest) fake.SpeechReply {
			return fake.SpeechReply{PCM: toneFor24k(req.Input, hz)}
		},
		Latency: fake.OpenAILatency{
			ChatFirstToken: llmLat, ChatTokenGap: 5 * time.Millisecond,
			Transcribe: sttLat, SpeechFirstAudio: ttsLat,
		},
	})
	kinds := []string{"stt " + stt.Provider, "llm openai", "tts " + tts.Provider}
	point := func(c *agent.ProviderConfig, url string) {
		c.BaseURL, c.APIKey, c.APIKeyEnv = url, "fake-key", ""
	}
	if stt.Provider == providers.Deepgram {
		f.dg = fake.NewDeepgram(h, fake.DeepgramOptions{Utterances: utterances, Latency: sttLat})
		point(&stt, f.dg.URL())
	} else {
		point(&stt, f.oai.URL)
	}
	point(&llm, f.oai.URL)
	if tts.Provider == providers.ElevenLabs {
		f.el = fake.NewElevenLabs(h, fake.ElevenLabsOptions{ToneHz: hz, PerChar: 50 * time.Millisecond, FirstAudioLatency: ttsLat})
		point(&tts, f.el.URL())
	} else {
		point(&tts, f.oai.URL)
	}
	def.STT, def.LLM, def.TTS = &stt, &llm, &tts
	f.desc = fmt.Sprintf("fakes on loopback (%s; stt final %v, llm first token %v, tts first audio %v)",
		strings.Join(kinds, ", "), sttLat, llmLat, ttsLat)
	if err := def.Validate(); err != nil {
		f.Close()
		return nil, def, err
	}
	return f, def, nil
}

// toneFor24k is the OpenAI speech fake's voice at hz: 24 kHz, 50 ms per
// character (the ElevenLabs fake's pace), at least 200 ms.
func toneFor24k(text string, hz float64) []int16 {
	d := max(200*time.Millisecond, time.Duration(len([]rune(text)))*50*time.Millisecond)
	out := make([]int16, int(d*24000/time.Second))
	for i := range out {
		out[i] = int16(16000 * math.Sin(2*math.Pi*hz*float64(i)/24000))
	}
	return out
}

// loadReplayAgent reads the agent definition. With fakes its providers are
// replaced before it is validated, so a definition whose keys are not in
// this environment still replays.
func loadReplayAgent(path string, fakes bool) (agent.Definition, error) {
	if !fakes {
		d, err := agent.LoadDefinition(path)
		if err != nil {
			return d, fmt.Errorf("--agent %s: %w", path, err)
		}
		return d, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return agent.Definition{}, fmt.Errorf("--agent: %w", err)
	}
	var d agent.Definition
	if err := decodeStrict(data, filepath.Ext(path), &d); err != nil {
		return d, fmt.Errorf("--agent %s: %w", path, err)
	}
	if d.ID == "" {
		d.ID = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return d, nil
}

// replayAgent runs the caller's audio of a capture through an agent session.
func replayAgent(ctx context.Context, cfg replayAgentConfig) (*replayAgentReport, error) {
	flows, err := findRTP(cfg.Capture, cfg.Port)
	if err != nil {
		return nil, err
	}
	if len(flows) == 0 {
		return nil, fmt.Errorf("replay: no RTP streams in %s", cfg.Capture)
	}
	if cfg.Stream < 1 || cfg.Stream > len(flows) {
		return nil, fmt.Errorf("replay: --stream %d: the capture has %d RTP stream(s), numbered from 1", cfg.Stream, len(flows))
	}
	fl := flows[cfg.Stream-1]
	rcv := media.NewReceiver(media.ReceiverConfig{DTMFPayloadType: fl.dtmfPT, MinDelay: cfg.MinDelay, MaxDelay: cfg.MaxDelay})
	var caller []int16
	media.PlaySimulated(rcv, fl.arrivals, func(_ time.Time, pcm []int16) { caller = append(caller, pcm...) })

	def, err := loadReplayAgent(cfg.AgentPath, cfg.Fakes)
	if err != nil {
		return nil, err
	}
	desc := "the agent's own providers (" + cfg.AgentPath + ")"
	if cfg.Fakes {
		sc, err := readFakeScript(cfg.FakesPath)
		if err != nil {
			return nil, err
		}
		fp, fdef, err := startFakes(def, sc)
		if err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		defer fp.Close()
		def, desc = fdef, fp.desc
	}
	p, err := flow.BuildProviders(def)
	if err != nil {
		return nil, fmt.Errorf("replay: providers: %w", err)
	}

	// The call is agenttest's: a 20 ms clock on the wall clock, like a
	// media stream's, that delivers the caller's audio (then silence) and
	// plays the agent's queue out, timing each chunk's first frame.
	host := &fakeHost{}
	defer host.Close()
	call := agenttest.NewCall(host)
	defer call.Close()
	_, lastTick := call.Say(caller)
	var (
		mu       sync.Mutex
		state    = agent.StateListening
		listenAt time.Time
	)
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sess, err := agent.NewSession(def, p, call, agent.Options{
		Cache:        &agent.AudioCache{}, // every phrase rendered by this run's providers
		SkipAnalysis: cfg.Fakes,           // a scripted model has nothing to analyse
		Logger:       log,
		OnEvent: func(e agent.Event) {
			if e.Type == agent.EventState {
				mu.Lock()
				state, listenAt = e.State, e.At
				mu.Unlock()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Once the caller's audio has run out, the agent gets the tail to
	// finish what it was doing; it is stopped once it has been listening
	// for a second (nothing more is coming) or the tail is over.
	var watch sync.WaitGroup
	watch.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var tailEnd time.Time
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			if call.Tick() < lastTick {
				continue
			}
			if tailEnd.IsZero() {
				tailEnd = time.Now().Add(cfg.Tail)
			}
			mu.Lock()
			idle := state == agent.StateListening && time.Since(listenAt) >= time.Second
			mu.Unlock()
			if idle || time.Now().After(tailEnd) {
				cancel()
				return
			}
		}
	})
	res, err := sess.Run(runCtx)
	cancel()
	watch.Wait()
	call.Close()
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	var transfers []string
	for _, tr := range call.Transfers() {
		transfers = append(transfers, tr.Target)
	}
	rep := &replayAgentReport{
		Stream:     fmt.Sprintf("%v -> %v", fl.src, fl.dst),
		CaptureMS:  float64(len(caller)) * 1000 / media.SampleRate,
		Providers:  desc,
		Reason:     string(res.Reason),
		Failure:    res.Failure,
		Transcript: res.Transcript,
		Latency:    res.Latency,
		Summary:    res.Summary,
		Transfers:  transfers,
		DTMFSent:   call.SentDTMF(),
		Variables:  res.Variables,
	}
	if res.Reason == agent.EndCanceled && ctx.Err() == nil {
		rep.Reason = reasonEndOfCapture
	}
	for _, t := range res.Transcript {
		if t.Role == agent.RoleUser {
			rep.CallerTurns++
		}
	}
	if cfg.WAV != "" {
		out, _ := call.Outbound()
		if err := writeReplayWAV(cfg.WAV, caller, out); err != nil {
			return rep, fmt.Errorf("replay: %w", err)
		}
	}
	return rep, nil
}

// runReplayAgent is `replay --agent`: it prints the report and fails when
// the voice-to-voice p95 is over budget.
func runReplayAgent(cfg replayAgentConfig, asJSON bool, out io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := replayAgent(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // "src -> dst" reads as written
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReplayAgent(out, rep, cfg.WAV)
	}
	if cfg.MaxP95 > 0 && rep.Summary.VoiceToVoiceP95 > cfg.MaxP95 {
		return fmt.Errorf("replay: voice-to-voice p95 %v is over --max-p95 %v", rep.Summary.VoiceToVoiceP95.Round(time.Millisecond), cfg.MaxP95)
	}
	return nil
}

func printReplayAgent(out io.Writer, rep *replayAgentReport, wav string) {
	fmt.Fprintf(out, "caller audio: %s, %.1f s\n", rep.Stream, rep.CaptureMS/1000)
	fmt.Fprintf(out, "providers: %s\n\ntranscript:\n", rep.Providers)
	var t0 time.Time
	if len(rep.Transcript) > 0 {
		t0 = rep.Transcript[0].Start
	}
	for _, t := range rep.Transcript {
		who := "agent "
		if t.Role == agent.RoleUser {
			who = "caller"
		}
		note := ""
		if t.Kind != agent.KindSpeech && t.Kind != agent.KindReply {
			note = " (" + t.Kind + ")"
		}
		if t.Interrupted {
			note += " (interrupted)"
		}
		for _, tc := range t.ToolCalls {
			note += fmt.Sprintf(" [%s %s]", tc.Name, tc.Arguments)
		}
		fmt.Fprintf(out, "  %6.2f s  %s  %s%s\n", t.Start.Sub(t0).Seconds(), who, t.Text, note)
	}
	fmt.Fprintf(out, "\nlatency per agent turn (ms):\n")
	fmt.Fprintf(out, "  %4s  %8s  %6s  %6s  %6s  %14s\n", "turn", "endpoint", "stt", "llm", "tts", "voice-to-voice")
	for _, l := range rep.Latency {
		fmt.Fprintf(out, "  %4d  %8s  %6s  %6s  %6s  %14s\n", l.Turn, msCell(l.EndpointDelay), msCell(l.STTDelay),
			msCell(l.LLMDelay), msCell(l.TTSDelay), msCell(l.VoiceToVoice))
	}
	s := rep.Summary
	fmt.Fprintf(out, "  voice-to-voice p50 %s ms, p95 %s ms over %d turn(s); %d caller turn(s)\n",
		msCell(s.VoiceToVoiceP50), msCell(s.VoiceToVoiceP95), s.Turns, rep.CallerTurns)
	fmt.Fprintf(out, "\nended: %s", rep.Reason)
	if f := rep.Failure; f != nil {
		fmt.Fprintf(out, " (%s)", f.Error())
	}
	fmt.Fprintln(out)
	for _, t := range rep.Transfers {
		fmt.Fprintf(out, "transferred to: %s\n", t)
	}
	if wav != "" {
		fmt.Fprintf(out, "audio: %s (caller left, agent right)\n", wav)
	}
}

func msCell(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(d.Microseconds())/1000)
}

// writeReplayWAV writes the replay as a stereo WAV: the caller's audio
// (delivered from the call's first tick) left, the agent's right.
func writeReplayWAV(path string, caller, agentOut []int16) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w, err := media.NewWAVWriter(f, 2)
	if err != nil {
		f.Close()
		return err
	}
	lr := make([]int16, 0, 2*len(agentOut))
	for i, a := range agentOut {
		var c int16
		if i < len(caller) {
			c = caller[i]
		}
		lr = append(lr, c, a)
	}
	if err := w.Write(lr); err != nil {
		f.Close()
		return err
	}
	if err := w.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fakesFlag is --fakes (the default script) or --fakes=FILE.
type fakesFlag struct {
	on   bool
	path string
}

func (f *fakesFlag) String() string   { return f.path }
func (f *fakesFlag) IsBoolFlag() bool { return true }

func (f *fakesFlag) Set(v string) error {
	switch v {
	case "true":
		f.on, f.path = true, ""
	case "false":
		f.on, f.path = false, ""
	default:
		f.on, f.path = true, v
	}
	return nil
}
