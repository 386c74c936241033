package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/agenttest"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// `voxbridge load --agent`: concurrent conversations with the agent, its
// providers faked at fixed latencies. The fakes and the callers run in this
// process; the server runs as a child (this same binary's `serve`), so its
// CPU and memory are measured alone. Each caller speaks (a speech-like
// signal) on a fixed schedule and the agent answers every time; the
// latency of every turn is what the server stored, at its RTP edge.

// agentLoadConfig is one agent load run.
type agentLoadConfig struct {
	Calls       int
	Concurrency int
	Rate        float64
	Hold        time.Duration
	TurnEvery   time.Duration // a caller speaks once per TurnEvery
	Speech      time.Duration // for this long
	LocalIP     string
	ServerBin   string // "" for this executable
	RTPPorts    string
	Script      string // fakes script (see replay --fakes); "" for the default
	KeepDir     bool   // leave the server's database and log behind

	toneHz float64 // the fake voice's pitch, from the script
}

// agentLoadReport is what an agent load run measured.
type agentLoadReport struct {
	Calls        int            `json:"calls"`
	Concurrency  int            `json:"concurrency"`
	Answered     int            `json:"answered"`
	Failed       int            `json:"failed"`
	FailuresBy   map[string]int `json:"failures_by,omitempty"`
	AgentHeard   int            `json:"calls_agent_heard"` // calls that heard the greeting and a reply
	MaxLive      int            `json:"max_live_calls"`
	CallerTurns  int            `json:"caller_turns"`
	LatencyRows  int            `json:"latency_rows"`
	V2VP50MS     float64        `json:"voice_to_voice_ms_p50"`
	V2VP95MS     float64        `json:"voice_to_voice_ms_p95"`
	EndpointP50  float64        `json:"endpoint_ms_p50"`
	STTP50       float64        `json:"stt_ms_p50"`
	LLMP50       float64        `json:"llm_first_token_ms_p50"`
	TTSP50       float64        `json:"tts_first_audio_ms_p50"`
	ServerCPUPct float64        `json:"server_cpu_pct"` // of one core, over the time all calls were up
	MachinePct   float64        `json:"server_cpu_machine_pct"`
	ServerRSSMB  float64        `json:"server_peak_rss_mb"`
	LoadAvg      string         `json:"load_avg"`
	ElapsedS     float64        `json:"elapsed_s"`
	Dir          string         `json:"dir,omitempty"`
}

// agentCallResult is one caller's view of its call.
type agentCallResult struct {
	sipCallID string
	err       error
	turns     int
	heard     bool
}

// runAgentLoad is `load --agent`.
func runAgentLoad(ctx context.Context, cfg agentLoadConfig, asJSON bool, out io.Writer) error {
	rep, err := agentLoad(ctx, cfg)
	if rep == nil {
		return err
	}
	if asJSON {
		if e := json.NewEncoder(out).Encode(rep); e != nil {
			return e
		}
		return err
	}
	fmt.Fprintf(out, "agent load: %d calls, %d at once, %v each, a caller turn every %v\n", rep.Calls, rep.Concurrency, cfg.Hold, cfg.TurnEvery)
	fmt.Fprintf(out, "  answered %d, failed %d %v, heard the agent %d, at most %d live\n", rep.Answered, rep.Failed, rep.FailuresBy, rep.AgentHeard, rep.MaxLive)
	fmt.Fprintf(out, "  caller turns %d, agent turns with a latency row %d\n", rep.CallerTurns, rep.LatencyRows)
	fmt.Fprintf(out, "  voice-to-voice p50 %.0f ms, p95 %.0f ms (p50s: endpoint %.0f, stt %.0f, llm %.0f, tts %.0f ms)\n",
		rep.V2VP50MS, rep.V2VP95MS, rep.EndpointP50, rep.STTP50, rep.LLMP50, rep.TTSP50)
	fmt.Fprintf(out, "  server: %.1f %% of one core (%.1f %% of this %d-core machine), peak RSS %.1f MB; load avg %s\n",
		rep.ServerCPUPct, rep.MachinePct, runtime.NumCPU(), rep.ServerRSSMB, rep.LoadAvg)
	fmt.Fprintf(out, "  elapsed %.1f s\n", rep.ElapsedS)
	if rep.Dir != "" {
		fmt.Fprintf(out, "  server database and log: %s\n", rep.Dir)
	}
	return err
}

// loadAgentDefinition is the agent every load call talks to; startFakes
// points its providers at the fakes.
func loadAgentDefinition() agent.Definition {
	return agent.Definition{
		ID: "load", Name: "Load", SystemPrompt: "You answer briefly.",
		StartingMessage: "Hello, how can I help?",
		STT:             &agent.ProviderConfig{Provider: "deepgram"},
		LLM:             &agent.ProviderConfig{Provider: "openai", Model: "fake"},
		TTS:             &agent.ProviderConfig{Provider: "elevenlabs"},
		// A load call is silent between turns for longer than a reminder
		// would wait; the reminder is not what is measured.
		IdleReminderS: -1,
	}
}

func agentLoad(ctx context.Context, cfg agentLoadConfig) (*agentLoadReport, error) {
	sc, err := readFakeScript(cfg.Script)
	if err != nil {
		return nil, err
	}
	cfg.toneHz = cmpOr(sc.ToneHz, 440)
	fp, def, err := startFakes(loadAgentDefinition(), sc)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer fp.Close()

	dir, err := os.MkdirTemp("", "voxbridge-load-")
	if err != nil {
		return nil, err
	}
	if !cfg.KeepDir {
		defer os.RemoveAll(dir)
	}
	for _, d := range []string{"agents", "flows"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	defJSON, _ := json.MarshalIndent(def, "", "  ")
	flowJSON := `{"id":"agent","actions":[{"type":"answer"},{"type":"ai_talk","option":{"agent_id":"load"}},{"type":"hangup"}]}`
	if err := os.WriteFile(filepath.Join(dir, "agents", "load.json"), defJSON, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "flows", "agent.json"), []byte(flowJSON), 0o644); err != nil {
		return nil, err
	}
	sipPort, err := freeSIPPort(cfg.LocalIP)
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr(cfg.LocalIP)
	if err != nil {
		return nil, err
	}
	bin := cfg.ServerBin
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	dbPath := filepath.Join(dir, "voxbridge.db")
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	srv := exec.Command(bin, "serve",
		"--sip-addr", net.JoinHostPort(cfg.LocalIP, strconv.Itoa(sipPort)), "--http-addr", httpAddr,
		"--db", dbPath, "--rtp-ports", cfg.RTPPorts, "--flows-dir", filepath.Join(dir, "flows"),
		"--default-flow", "agent", "--agents-dir", filepath.Join(dir, "agents"), "--sip-anonymous", "*",
		"--log-level", "warn")
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("load: starting the server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	stopped := false
	stopServer := func() error {
		if stopped {
			return nil
		}
		stopped = true
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(20 * time.Second):
			srv.Process.Kill()
			<-exited
			return errors.New("the server did not stop within 20 s of SIGTERM")
		}
	}
	defer stopServer()
	if err := waitListening(ctx, httpAddr, exited, 20*time.Second); err != nil {
		return nil, fmt.Errorf("load: server (log in %s): %w", logf.Name(), err)
	}

	target := fmt.Sprintf("sip:agent@%s", net.JoinHostPort(cfg.LocalIP, strconv.Itoa(sipPort)))
	pid := srv.Process.Pid
	rep := &agentLoadReport{Calls: cfg.Calls, Concurrency: cfg.Concurrency, FailuresBy: map[string]int{}}
	var peak float64
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if rss, err := procRSS(pid); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-sampleCtx.Done():
				return
			case <-t.C:
			}
		}
	})
	cpu0, _ := procCPU(pid)
	start := time.Now()
	results, maxLive := placeAgentCalls(ctx, target, cfg)
	elapsed := time.Since(start)
	cpu1, cpuErr := procCPU(pid)
	stopSampling()
	sampler.Wait()
	rep.LoadAvg = loadAvg()
	rep.ElapsedS = elapsed.Seconds()
	rep.MaxLive = maxLive
	rep.ServerRSSMB = peak
	if cpuErr == nil {
		rep.ServerCPUPct = 100 * (cpu1 - cpu0).Seconds() / elapsed.Seconds()
		rep.MachinePct = rep.ServerCPUPct / float64(runtime.NumCPU())
	}
	if err := stopServer(); err != nil {
		return nil, fmt.Errorf("load: server: %w", err)
	}
	db, err := store.Open(dbPath)
	if err != nil {
		return nil, fmt.Errorf("load: reading the server's records: %w", err)
	}
	defer db.Close()
	rows, err := agentLatencyRows(ctx, db, results)
	if err != nil {
		return nil, err
	}
	summarizeAgentLoad(rep, results, rows)
	if cfg.KeepDir {
		rep.Dir = dir
	}
	return rep, ctx.Err()
}

// placeAgentCalls runs the callers against target and returns what each
// saw and the most calls up at once.
func placeAgentCalls(ctx context.Context, target string, cfg agentLoadConfig) ([]agentCallResult, int) {
	nPhones := (cfg.Concurrency + callsPerPhone - 1) / callsPerPhone
	var phones []*siptest.Phone
	for range nPhones {
		p, err := siptest.NewPhone(cfg.LocalIP, nil)
		if err != nil {
			return []agentCallResult{{err: err}}, 0
		}
		defer p.Close()
		phones = append(phones, p)
	}
	speech := agenttest.Speech(cfg.Speech)
	results := make([]agentCallResult, cfg.Calls)
	var (
		mu            sync.Mutex
		live, maxLive int
		wg            sync.WaitGroup
	)
	sem := make(chan struct{}, cfg.Concurrency)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now()
	for i := 0; i < cfg.Calls; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			results = results[:i]
			break
		}
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			call, err := phones[i%len(phones)].Dial(dctx, target, siptest.DialOptions{RTCPMux: true})
			cancel()
			if err != nil {
				results[i].err = err
				return
			}
			defer call.Close()
			mu.Lock()
			live++
			maxLive = max(maxLive, live)
			mu.Unlock()
			results[i] = runAgentCaller(ctx, call, speech, cfg)
			mu.Lock()
			live--
			mu.Unlock()
		})
	}
	wg.Wait()
	return results, maxLive
}

// runAgentCaller lets the greeting play, then speaks every TurnEvery until
// the hold time is up, and hangs up.
func runAgentCaller(ctx context.Context, call *siptest.Call, speech []int16, cfg agentLoadConfig) agentCallResult {
	res := agentCallResult{sipCallID: call.CallID()}
	end := time.Now().Add(cfg.Hold)
	wait := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-call.Done():
		case <-ctx.Done():
		}
		return false
	}
	// The greeting first (about 1 s of the fake's voice).
	ok := wait(3 * time.Second)
	for ok && time.Until(end) >= cfg.TurnEvery {
		turn := time.Now()
		select {
		case <-call.Play(speech):
		case <-call.Done():
			ok = false
		}
		if !ok {
			break
		}
		res.turns++
		ok = wait(time.Until(turn.Add(cfg.TurnEvery)))
	}
	if call.RemoteHungUp() {
		res.err = errors.New("the server hung up")
	}
	hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = call.Hangup(hctx)
	cancel()
	// The greeting and at least one answer: two stretches of the voice.
	res.heard = len(toneSequence100(call.Heard(), cfg.toneHz)) >= 2
	return res
}

// toneSequence100 returns the runs of 100 ms windows carrying hz.
func toneSequence100(pcm []int16, hz float64) [][2]int {
	const w = media.SampleRate / 10
	var runs [][2]int
	on := false
	for i := 0; i+w <= len(pcm); i += w {
		loud := media.ToneLevel(pcm[i:i+w], hz) > 0.15
		switch {
		case loud && !on:
			runs = append(runs, [2]int{i, i + w})
		case loud:
			runs[len(runs)-1][1] = i + w
		}
		on = loud
	}
	return runs
}

// agentLatency is the part of a stored latency row the report uses.
type agentLatency struct {
	V2V      float64 `json:"voice_to_voice_ms"`
	Endpoint float64 `json:"endpoint_ms"`
	STT      float64 `json:"stt_ms"`
	LLM      float64 `json:"llm_first_token_ms"`
	TTS      float64 `json:"tts_first_audio_ms"`
}

// agentLatencyRows reads the latency rows the server stored for the calls.
func agentLatencyRows(ctx context.Context, db *store.DB, results []agentCallResult) ([]agentLatency, error) {
	want := map[string]bool{}
	for _, r := range results {
		if r.sipCallID != "" {
			want[r.sipCallID] = true
		}
	}
	var rows []agentLatency
	token := ""
	for {
		calls, next, err := db.ListCalls(ctx, store.ListOptions{PageSize: store.MaxPageSize, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("load: listing calls: %w", err)
		}
		for _, c := range calls {
			if !want[c.SIPCallID] {
				continue
			}
			raw, err := db.ListTurnLatency(ctx, c.ID)
			if err != nil {
				return nil, fmt.Errorf("load: latency of %s: %w", c.ID, err)
			}
			for _, b := range raw {
				var l agentLatency
				if json.Unmarshal(b, &l) == nil {
					rows = append(rows, l)
				}
			}
		}
		if next == "" {
			return rows, nil
		}
		token = next
	}
}

func summarizeAgentLoad(rep *agentLoadReport, results []agentCallResult, rows []agentLatency) {
	for _, r := range results {
		switch {
		case r.err != nil && r.sipCallID == "":
			rep.Failed++
			rep.FailuresBy[failureKey(r.err)]++
			continue
		case r.err != nil:
			rep.Answered++
			rep.Failed++
			rep.FailuresBy["server hung up"]++
		default:
			rep.Answered++
		}
		rep.CallerTurns += r.turns
		if r.heard {
			rep.AgentHeard++
		}
	}
	var v2v, ep, stt, llm, tts []float64
	for _, l := range rows {
		if l.V2V <= 0 {
			continue // interrupted before its first packet
		}
		v2v, ep, stt, llm, tts = append(v2v, l.V2V), append(ep, l.Endpoint), append(stt, l.STT), append(llm, l.LLM), append(tts, l.TTS)
	}
	rep.LatencyRows = len(v2v)
	for _, s := range [][]float64{v2v, ep, stt, llm, tts} {
		slices.Sort(s)
	}
	rep.V2VP50MS, rep.V2VP95MS = nearestRank(v2v, 50), nearestRank(v2v, 95)
	rep.EndpointP50, rep.STTP50, rep.LLMP50, rep.TTSP50 = nearestRank(ep, 50), nearestRank(stt, 50), nearestRank(llm, 50), nearestRank(tts, 50)
}

// nearestRank is the p-th percentile of sorted values (nearest rank, as
// agent.Percentile).
func nearestRank(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

func cmpOr(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

// freeSIPPort finds a port free on both UDP and TCP (serve listens on both).
func freeSIPPort(ip string) (int, error) {
	for range 20 {
		c, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, fmt.Errorf("load: finding a free port: %w", err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		c.Close()
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, errors.New("load: no port free on both UDP and TCP")
}

func freeAddr(ip string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return "", fmt.Errorf("load: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitListening waits until addr accepts TCP connections, the process
// exits, or the timeout passes.
func waitListening(ctx context.Context, addr string, exited <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %v", addr, timeout)
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited at start: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 14 {
		return "?"
	}
	return string(b[:14])
}
