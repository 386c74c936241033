package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	sipgosip "github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/api"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// shutdownGrace bounds how long a stopping server waits for calls to hang up.
const shutdownGrace = 10 * time.Second

// instance is a running server: what it listens on and how to stop it.
type instance struct {
	SIPUDP    *net.UDPAddr
	SIPTCP    *net.TCPAddr
	SIPTLS    *net.TCPAddr // nil without --sip-tls-cert
	HTTP      net.Addr
	Advertise net.IP

	log      *slog.Logger
	db       *store.DB
	sip      *sip.Server
	calls    *flow.Controller
	tasks    *flow.Scheduler
	http     *http.Server
	api      *api.Server
	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

// options that are not configuration: tests swap the flow.
type instanceOptions struct {
	flow   *flow.Flow
	now    func() time.Time
	agents *flow.Agents
}

func startInstance(cfg serveConfig, log *slog.Logger, opt instanceOptions) (*instance, error) {
	ports, err := media.ParsePortRange(cfg.RTPPorts)
	if err != nil {
		return nil, fmt.Errorf("rtp-ports: %w", err)
	}
	adv := advertiseIP(cfg)
	mediaIP, ok := netip.AddrFromSlice(adv)
	if !ok {
		return nil, fmt.Errorf("advertise address %v", adv)
	}
	if cfg.MediaPublicIP != "" { // validated with the config
		mediaIP = netip.MustParseAddr(cfg.MediaPublicIP)
	}
	sipHost, _, _ := net.SplitHostPort(cfg.SIPAddr)
	bindIP := net.ParseIP(sipHost)

	db, err := store.Open(cfg.DB)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if n, err := db.CloseUnfinishedCalls(ctx, store.ReasonServerRestart); err != nil {
		log.Warn("closing calls left by a previous run", "err", err)
	} else if n > 0 {
		log.Warn("closed calls left unfinished by a previous run", "calls", n)
	}
	inst := &instance{log: log, db: db, cancel: cancel, done: make(chan struct{}), Advertise: adv}
	fail := func(err error) (*instance, error) {
		cancel()
		db.Close()
		return nil, err
	}

	// API keys and TLS first: a bad VOXBRIDGE_API_KEY or certificate
	// fails the start before any socket is open.
	if err := setupAPIKeys(ctx, db, os.Getenv(envAPIKey), cfg.DB, log); err != nil {
		return fail(err)
	}
	tlsCfg, err := httpTLSConfig(cfg)
	if err != nil {
		return fail(err)
	}
	// Calls publish their events here; the API streams, delivers and
	// counts them.
	bus := flow.NewBus()

	udp, tcp, err := listenSIP(cfg.SIPAddr, sipHost)
	if err != nil {
		return fail(err)
	}
	inst.SIPUDP = udp.LocalAddr().(*net.UDPAddr)
	inst.SIPTCP = tcp.Addr().(*net.TCPAddr)

	if cfg.FlowsDir != "" {
		ids, err := flow.LoadDir(ctx, db, cfg.FlowsDir)
		if err != nil {
			udp.Close()
			tcp.Close()
			return fail(fmt.Errorf("flows-dir: %w", err))
		}
		log.Info("flows loaded", "dir", cfg.FlowsDir, "flows", ids)
	}
	agents := opt.agents
	if agents == nil {
		agents = flow.NewAgents()
	}
	// With an OpenAI-compatible provider configured and no flow chosen,
	// calls go to a default agent: make run plus a softphone is a voice agent.
	if opt.flow == nil && cfg.DefaultFlow == "" {
		if def, ok := defaultAgent(os.Getenv); ok {
			if err := agents.Put(def); err != nil {
				udp.Close()
				tcp.Close()
				return fail(fmt.Errorf("default agent: %w", err))
			}
			opt.flow = defaultAgentFlow()
			log.Info("calls go to the default agent", "llm", def.LLM)
		}
	}
	// Agents made over the API; --agents-dir, loaded next, wins an id both
	// define (and stays read-only over the API).
	if ids, err := agents.LoadStore(ctx, db); err != nil {
		log.Warn("stored agents skipped", "loaded", ids, "err", err)
	} else if len(ids) > 0 {
		log.Info("stored agents loaded", "agents", ids)
	}
	if cfg.AgentsDir != "" {
		ids, err := agents.LoadDir(cfg.AgentsDir)
		if err != nil {
			udp.Close()
			tcp.Close()
			return fail(fmt.Errorf("agents-dir: %w", err))
		}
		log.Info("agents loaded", "dir", cfg.AgentsDir, "agents", ids)
	}
	recordAll, _ := strconv.ParseBool(cfg.RecordAll) // validated with the config
	if n, err := db.FailUnfinishedRecordings(ctx, string(store.ReasonServerRestart)); err == nil && n > 0 {
		log.Warn("recordings left unfinished by a previous run marked failed (their files stay playable)", "recordings", n)
	}
	inst.calls, err = flow.NewController(flow.Config{
		Agents:     agents,
		RecordAll:  recordAll,
		RecordDir:  cfg.RecordDir,
		CaptureDir: cfg.CaptureDir,
		Store:      db,
		MediaIP:    mediaIP.Unmap(),
		BindIP:     bindIP,
		// With no public IP and an all-interfaces bind, answer each caller
		// with the address our packets to it really come from.
		RouteMediaIP:  cfg.PublicIP == "" && cfg.MediaPublicIP == "" && (bindIP == nil || bindIP.IsUnspecified()),
		Ports:         ports,
		Flow:          opt.flow,
		DefaultFlowID: cfg.DefaultFlow,
		Now:           opt.now,
		Logger:        log,
		Bus:           bus,
	})
	if err != nil {
		udp.Close()
		tcp.Close()
		return fail(err)
	}
	allowAnon, anonTo := cfg.anonymousTo()
	protect, sipTLS, err := sipProtection(cfg)
	protect.Backlogged = db.Backlogged
	if err != nil {
		udp.Close()
		tcp.Close()
		return fail(err)
	}
	if sipTLS != nil {
		inst.SIPTLS = sipTLS.Addr().(*net.TCPAddr)
	}
	keepalive, _ := cfg.sipKeepalive() // checked by validate
	inst.sip, err = sip.NewServer(sip.Config{UDP: udp, TCP: tcp, TLS: sipTLS, Protect: protect, AdvertiseIP: adv, Logger: log,
		Store: db, Realm: cfg.SIPRealm, AllowAnonymous: allowAnon, AnonymousTo: anonTo,
		Auth: sip.AuthConfig{Algorithms: cfg.digestAlgorithms()}, Capture: inst.calls.CaptureSIP,
		Registrar: sip.RegistrarConfig{Keepalive: keepalive}}, inst.calls.HandleInbound)
	if err != nil {
		udp.Close()
		tcp.Close()
		if sipTLS != nil {
			sipTLS.Close()
		}
		return fail(err)
	}
	inst.calls.SetDialer(inst.sip) // connect and routed calls dial through it

	hl, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		inst.sip.Close()
		return fail(fmt.Errorf("http listen %s: %w", cfg.HTTPAddr, err))
	}
	inst.HTTP = hl.Addr()
	// Scheduled calls; started below, once the API that feeds it is up.
	inst.tasks, err = flow.NewScheduler(flow.SchedulerConfig{Store: db, Calls: inst.calls, Bus: bus,
		TrunkCalls: inst.sip.TrunkCalls, Now: opt.now, Logger: log})
	if err != nil {
		hl.Close()
		inst.sip.Close()
		return fail(err)
	}
	inst.api, err = api.New(api.Config{Tasks: inst.tasks, Store: db, Bus: bus, Logger: log, Media: inst.calls, Originator: inst.calls, Control: inst.calls,
		Agents: agents, SIPRealm: cfg.SIPRealm, CaptureDir: cfg.CaptureDir})
	if err != nil {
		hl.Close()
		inst.sip.Close()
		return fail(err)
	}
	inst.api.Metrics().MustRegister(inst.sip.Collector()) // voxbridge_sip_refused_total
	inst.api.Metrics().MustRegister(api.StoreWriterCollector(db))
	if err := inst.tasks.Start(ctx); err != nil {
		inst.api.Close()
		hl.Close()
		inst.sip.Close()
		return fail(err)
	}
	if tlsCfg != nil {
		hl = tls.NewListener(hl, tlsCfg)
	}
	inst.http = &http.Server{Handler: inst.api, ReadHeaderTimeout: 10 * time.Second}

	sipDone := make(chan struct{})
	go func() { inst.sip.Serve(ctx); close(sipDone) }()
	httpDone := make(chan struct{})
	go func() {
		if err := inst.http.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http serve", "err", err)
		}
		close(httpDone)
	}()
	go func() {
		<-sipDone
		<-httpDone
		close(inst.done)
	}()
	return inst, nil
}

// Stop refuses new calls, hangs up live ones with BYE, then closes the
// listeners and the database.
func (inst *instance) Stop() { inst.stopOnce.Do(inst.stop) }

func (inst *instance) stop() {
	// The scheduler first: calls cut by the shutdown leave their tasks in
	// progress, for the next start to retry, rather than failed.
	inst.tasks.Close()
	inst.sip.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := inst.calls.Shutdown(ctx); err != nil {
		inst.log.Warn("shutdown", "err", err)
	}
	_ = inst.http.Shutdown(ctx)
	// After the HTTP server: websockets (which Shutdown does not track)
	// are closed and webhook retries stop, before the database closes.
	inst.api.Close()
	inst.cancel()
	<-inst.done
	if err := inst.db.Close(); err != nil {
		inst.log.Warn("close database", "err", err)
	}
}

// reloadFlows re-reads the flows directory (SIGHUP). A bad file refuses
// the whole reload and the flows in use stay as they were.
func (inst *instance) reloadFlows(dir string) {
	if dir == "" {
		inst.log.Info("SIGHUP: no --flows-dir to reload")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, err := flow.LoadDir(ctx, inst.db, dir)
	if err != nil {
		inst.log.Error("flows reload refused; keeping the previous flows", "dir", dir, "err", err)
		return
	}
	inst.log.Info("flows reloaded", "dir", dir, "flows", ids)
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l, ReplaceAttr: truncateAttr})), nil
}

// maxLogValue bounds a logged string: network input (a garbage SIP message
// quoted by sipgo's parser) must not flood the log.
const maxLogValue = 300

func truncateAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindString {
		if v := a.Value.String(); len(v) > maxLogValue {
			a.Value = slog.StringValue(fmt.Sprintf("%s…(%d bytes)", v[:maxLogValue], len(v)))
		}
	}
	return a
}

// serverGCPercent is the server's GOGC unless the environment sets one:
// calls keep little live memory each but make steady garbage (a frame per
// 20 ms each way), and the default 100 lets the heap double between
// collections. 50 measured 86 KB of RSS per echo call instead of about
// 104 KB, at no CPU cost visible at 1000 calls (BENCHMARKS.md).
const serverGCPercent = 50

func setServerGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serverGCPercent)
	}
}

func runServe(args []string) error {
	cfg, err := loadServeConfig(args, os.Getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	// sipgo's transport and transaction layers log through their own
	// default logger; route it through ours (level, truncation).
	sipgosip.SetDefaultLogger(log.With("component", "sipgo"))
	setServerGC()
	startPprof(os.Getenv(envPprof), log)
	inst, err := startInstance(cfg, log, instanceOptions{})
	if err != nil {
		return err
	}
	target := net.JoinHostPort(inst.Advertise.String(), fmt.Sprint(inst.SIPUDP.Port))
	log.Info("voxbridge listening",
		"sip_udp", inst.SIPUDP.String(), "sip_tcp", inst.SIPTCP.String(),
		"http", httpURL(cfg, inst.HTTP), "rtp_ports", cfg.RTPPorts,
		"advertise", inst.Advertise.String(), "db", cfg.DB, "version", version)
	if inst.SIPTLS != nil {
		log.Info("sip over tls listening", "sip_tls", inst.SIPTLS.String())
	}
	log.Info("call it: voxbridge dial sip:echo@"+target+" --duration 10s", "calls", httpURL(cfg, inst.HTTP)+"/v1/calls")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var s os.Signal
	for s = range sig {
		if s != syscall.SIGHUP {
			break
		}
		inst.reloadFlows(cfg.FlowsDir)
	}
	log.Info("stopping", "signal", s.String(), "live_calls", inst.calls.LiveCalls())
	signal.Stop(sig)
	inst.Stop()
	log.Info("stopped")
	return nil
}

// sipProtection reads the SIP port's limits and, with a certificate and
// key, opens the SIP over TLS listener.
func sipProtection(cfg serveConfig) (sip.ProtectConfig, net.Listener, error) {
	protect, err := cfg.protectConfig()
	if err != nil || cfg.SIPTLSCert == "" {
		return protect, nil, err
	}
	addr, err := cfg.sipTLSAddr()
	if err != nil {
		return protect, nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return protect, nil, fmt.Errorf("sip tls listen %s: %w", addr, err)
	}
	tl, err := sip.NewTLSListener(l, cfg.SIPTLSCert, cfg.SIPTLSKey)
	if err != nil {
		l.Close()
		return protect, nil, fmt.Errorf("sip-tls-cert/sip-tls-key: %w", err)
	}
	return protect, tl, nil
}

// listenSIP opens UDP on addr and TCP on the same port, so one address
// serves both. With port 0 the kernel picks a UDP port whose TCP twin may
// be taken by someone else: then it tries another.
// sipUDPReadBuffer is the SIP UDP socket's receive buffer.
const sipUDPReadBuffer = 4 << 20

func listenSIP(addr, host string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("sip udp listen %s: %w", addr, err)
		}
		// One socket takes every phone's SIP: with the kernel's default
		// buffer (about 200 KB) a second's burst of INVITEs at 200 calls/s
		// on a busy machine overflowed it, and the lost ACKs and BYEs left
		// calls hanging. The kernel caps this at net.core.rmem_max.
		_ = udp.(*net.UDPConn).SetReadBuffer(sipUDPReadBuffer)
		tcp, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(udp.LocalAddr().(*net.UDPAddr).Port)))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if port != "0" || attempt == 9 {
			return nil, nil, fmt.Errorf("sip tcp listen %s: %w", addr, err)
		}
	}
}
