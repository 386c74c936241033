package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
)

// loadConfig is one `voxbridge load` run.
type loadConfig struct {
	Target      string
	Calls       int
	Concurrency int
	Rate        float64 // new calls per second
	Hold        time.Duration
	ToneHz      float64 // sent by every caller; expected back when > 0 and Expect
	Expect      bool
	LocalIP     string
	ServerPID   int
	// Accounts, if any, are the extensions callers authenticate as, in
	// turn: each call answers the server's digest challenge.
	Accounts []loadAccount
}

// loadReport is what a run measured.
type loadReport struct {
	Target        string         `json:"target"`
	Authenticated bool           `json:"authenticated,omitempty"` // every call answered a digest challenge
	Calls         int            `json:"calls"`
	Concurrency   int            `json:"concurrency"`
	Answered      int            `json:"answered"`
	Failed        int            `json:"failed"`
	FailuresBy    map[string]int `json:"failures_by,omitempty"`
	AudioOK       int            `json:"audio_ok"`
	CallsPerSec   float64        `json:"calls_per_sec"` // answered calls / time to place them all
	SetupMSP50    float64        `json:"setup_ms_p50"`
	SetupMSP95    float64        `json:"setup_ms_p95"`
	SetupMSP99    float64        `json:"setup_ms_p99"`
	PacketsOut    uint64         `json:"rtp_packets_out"`
	PacketsIn     uint64         `json:"rtp_packets_in"`
	PacketsLost   uint64         `json:"rtp_packets_lost"`
	LossPct       float64        `json:"rtp_loss_pct"`
	MaxLive       int            `json:"max_live_calls"`
	ElapsedS      float64        `json:"elapsed_s"`
	ServerCPUPct  float64        `json:"server_cpu_pct,omitempty"` // of one core, averaged over the run
	ServerRSSMB   float64        `json:"server_rss_mb,omitempty"`  // at the peak of the run
	ServerPeakRSS float64        `json:"server_peak_rss_mb,omitempty"`
}

func runLoad(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var cfg loadConfig
	fs.StringVar(&cfg.Target, "target", "sip:echo@127.0.0.1:5060", "SIP URI to call")
	fs.IntVar(&cfg.Calls, "calls", 10, "calls to place in all")
	fs.IntVar(&cfg.Concurrency, "concurrency", 10, "calls up at once at most")
	fs.Float64Var(&cfg.Rate, "rate", 10, "new calls per second")
	fs.DurationVar(&cfg.Hold, "hold", 10*time.Second, "how long each call stays up")
	fs.Float64Var(&cfg.ToneHz, "tone", 1000, "tone each caller sends (Hz)")
	fs.BoolVar(&cfg.Expect, "expect-echo", true, "count a call's audio as good only if its tone comes back (an echo flow)")
	fs.StringVar(&cfg.LocalIP, "local-ip", "127.0.0.1", "address to call from")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "the server's process id, to report its CPU and memory")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	authN := fs.Int("auth-extensions", 0, "authenticate: create (or reset) this many extensions in --auth-db and have the calls log in as them in turn (INVITE, 407, INVITE with credentials)")
	authDB := fs.String("auth-db", "", "with --auth-extensions: the server's database file")
	authRealm := fs.String("auth-realm", defaultLoadRealm, "with --auth-extensions: the server's digest realm")
	agentMode := fs.Bool("agent", false, "call an agent instead: start fake providers here and a server (this binary's serve) as a child, and report its CPU, memory and per-turn latency")
	var acfg agentLoadConfig
	fs.StringVar(&acfg.Script, "agent-script", "", "with --agent: the fakes' script (as replay --fakes=FILE)")
	fs.DurationVar(&acfg.TurnEvery, "turn-every", 5*time.Second, "with --agent: each caller speaks once per this")
	fs.DurationVar(&acfg.Speech, "speech", 1200*time.Millisecond, "with --agent: how long each caller turn is")
	fs.StringVar(&acfg.ServerBin, "server-bin", "", "with --agent: the voxbridge binary to serve with (default: this one)")
	fs.StringVar(&acfg.RTPPorts, "rtp-ports", "30000-39999", "with --agent: the server's RTP ports")
	fs.BoolVar(&acfg.KeepDir, "keep", false, "with --agent: keep the server's database and log")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *agentMode {
		if cfg.Calls < 1 || cfg.Concurrency < 1 || cfg.Rate <= 0 || acfg.Speech < 200*time.Millisecond || acfg.TurnEvery < acfg.Speech+2*time.Second || cfg.Hold < acfg.TurnEvery+3*time.Second {
			return errors.New("load --agent: --calls, --concurrency and --rate must be positive, --speech at least 200ms, --turn-every at least --speech + 2s, and --hold at least --turn-every + 3s")
		}
		acfg.Calls, acfg.Concurrency, acfg.Rate, acfg.Hold, acfg.LocalIP = cfg.Calls, cfg.Concurrency, cfg.Rate, cfg.Hold, cfg.LocalIP
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runAgentLoad(ctx, acfg, *jsonOut, out)
	}
	// An echo check needs a second of audio; a setup-rate run does not.
	minHold := 100 * time.Millisecond
	if cfg.Expect {
		minHold = time.Second
	}
	if cfg.Calls < 1 || cfg.Concurrency < 1 || cfg.Rate <= 0 || cfg.Hold < minHold {
		return errors.New("load: --calls, --concurrency and --rate must be positive and --hold at least 1s (100ms with --expect-echo=false)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *authN > 0 {
		accts, err := prepareLoadAccounts(ctx, *authDB, *authRealm, *authN)
		if err != nil {
			return err
		}
		cfg.Accounts = accts
	}
	rep, err := placeLoad(ctx, cfg)
	if err != nil {
		return err
	}
	if *jsonOut {
		return json.NewEncoder(out).Encode(rep)
	}
	fmt.Fprintf(out, "target %s: %d calls, %d at once\n", rep.Target, rep.Calls, rep.Concurrency)
	if rep.Authenticated {
		fmt.Fprintf(out, "  digest auth as %d extensions (setup includes the 407 round trip)\n", len(cfg.Accounts))
	}
	fmt.Fprintf(out, "  answered %d, failed %d %v, audio ok %d\n", rep.Answered, rep.Failed, rep.FailuresBy, rep.AudioOK)
	fmt.Fprintf(out, "  %.1f calls/s; setup p50 %.1f ms, p95 %.1f ms, p99 %.1f ms; at most %d live\n", rep.CallsPerSec, rep.SetupMSP50, rep.SetupMSP95, rep.SetupMSP99, rep.MaxLive)
	fmt.Fprintf(out, "  RTP out %d, in %d, lost %d (%.3f %%)\n", rep.PacketsOut, rep.PacketsIn, rep.PacketsLost, rep.LossPct)
	if cfg.ServerPID > 0 {
		fmt.Fprintf(out, "  server: %.1f %% CPU (of one core), peak RSS %.1f MB\n", rep.ServerCPUPct, rep.ServerPeakRSS)
	}
	fmt.Fprintf(out, "  elapsed %.1f s\n", rep.ElapsedS)
	return nil
}

// callsPerPhone spreads calls over SIP sockets so one socket's queue never
// becomes the bottleneck being measured.
const callsPerPhone = 200

func placeLoad(ctx context.Context, cfg loadConfig) (*loadReport, error) {
	nPhones := (cfg.Concurrency + callsPerPhone - 1) / callsPerPhone
	phones := make([]*siptest.Phone, nPhones)
	for i := range phones {
		p, err := siptest.NewPhone(cfg.LocalIP, nil)
		if err != nil {
			return nil, err
		}
		defer p.Close()
		phones[i] = p
	}
	rep := &loadReport{Target: cfg.Target, Calls: cfg.Calls, Concurrency: cfg.Concurrency, FailuresBy: map[string]int{},
		Authenticated: len(cfg.Accounts) > 0}
	cpu0, _ := procCPU(cfg.ServerPID)
	start := time.Now()
	var (
		mu      sync.Mutex
		setups  []float64
		live    int
		wg      sync.WaitGroup
		lastNew time.Time
	)
	sem := make(chan struct{}, cfg.Concurrency)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	tone := media.Tone(cfg.ToneHz, cfg.Hold, 0.4)
	sampleRSS := func() {
		if rss, err := procRSS(cfg.ServerPID); err == nil && rss > rep.ServerPeakRSS {
			rep.ServerPeakRSS = rss
		}
	}
	for i := 0; i < cfg.Calls && ctx.Err() == nil; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		// Pace on an absolute schedule, like the media clock.
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		// RTCP on the RTP socket: with hundreds of phones in one process
		// a port+1 RTCP would land on another call's socket.
		opt := siptest.DialOptions{RTCPMux: true}
		if len(cfg.Accounts) > 0 {
			a := cfg.Accounts[i%len(cfg.Accounts)]
			opt.Username, opt.Password = a.Username, a.Password
		}
		wg.Add(1)
		go func(p *siptest.Phone) {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			call, err := p.Dial(dctx, cfg.Target, opt)
			cancel()
			mu.Lock()
			lastNew = time.Now()
			if err != nil {
				rep.Failed++
				rep.FailuresBy[failureKey(err)]++
				mu.Unlock()
				return
			}
			rep.Answered++
			setups = append(setups, float64(call.Answered.Microseconds())/1000)
			live++
			rep.MaxLive = max(rep.MaxLive, live)
			if rep.Answered%50 == 0 {
				sampleRSS()
			}
			mu.Unlock()

			call.Play(tone)
			select {
			case <-time.After(cfg.Hold):
			case <-call.Done():
			case <-ctx.Done():
			}
			hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = call.Hangup(hctx)
			hcancel()
			sum := call.Summary()
			ok := !cfg.Expect || echoed(call.Heard(), cfg.ToneHz)
			mu.Lock()
			live--
			rep.PacketsIn += sum.PacketsIn
			rep.PacketsOut += sum.PacketsOut
			rep.PacketsLost += sum.PacketsLost
			if ok {
				rep.AudioOK++
			}
			mu.Unlock()
		}(phones[i%len(phones)])
	}
	wg.Wait()
	sampleRSS()
	elapsed := time.Since(start)
	rep.ElapsedS = elapsed.Seconds()
	if placing := lastNew.Sub(start).Seconds(); placing > 0 {
		rep.CallsPerSec = float64(rep.Answered) / placing
	}
	slices.Sort(setups)
	rep.SetupMSP50, rep.SetupMSP95, rep.SetupMSP99 = percentile(setups, 50), percentile(setups, 95), percentile(setups, 99)
	if total := rep.PacketsIn + rep.PacketsLost; total > 0 {
		rep.LossPct = 100 * float64(rep.PacketsLost) / float64(total)
	}
	if cpu1, err := procCPU(cfg.ServerPID); err == nil {
		rep.ServerCPUPct = 100 * (cpu1 - cpu0).Seconds() / elapsed.Seconds()
	}
	rep.ServerRSSMB = rep.ServerPeakRSS
	return rep, ctx.Err()
}

// echoed reports whether the tone came back in the second half of a call
// (the first may hold a greeting or the echo's start).
func echoed(heard []int16, hz float64) bool {
	if len(heard) < media.SampleRate {
		return false
	}
	half := heard[len(heard)/2:]
	return media.ToneLevel(half, hz) > 0.1
}

func failureKey(err error) string {
	var de *siptest.DialError
	if errors.As(err, &de) {
		return strconv.Itoa(de.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "error"
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)-1))
	return sorted[i]
}

// procCPU reads a process's user+system CPU time from /proc.
func procCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command; utime and stime are the 12th
	// and 13th of those, in clock ticks (100 per second on Linux).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// procRSS reads a process's resident memory in MB.
func procRSS(pid int) (float64, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}
