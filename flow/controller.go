package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// Config wires a Controller.
type Config struct {
	Store *store.DB
	// MediaIP is the address put in our SDP; BindIP is where RTP sockets
	// are bound (often 0.0.0.0 while MediaIP is the public address).
	MediaIP netip.Addr
	BindIP  net.IP
	// RouteMediaIP puts in each SDP answer the local address the kernel
	// routes toward the caller's media address, instead of MediaIP. For a
	// server bound to all interfaces with no public IP set, that is the
	// address our RTP really leaves from: 127.0.0.1 for a caller on this
	// machine, the LAN address for a phone on the LAN.
	RouteMediaIP bool
	Ports        media.PortRange
	// Flow runs every inbound call; nil means DefaultFlow.
	Flow *Flow
	// DefaultFlowID, when set, names a stored flow that runs inbound calls
	// instead of Flow (looked up per call, so edits apply to the next call).
	DefaultFlowID string
	Logger        *slog.Logger
	// MaxActions caps the actions one call executes (0: DefaultMaxActions).
	MaxActions int
	// Now is the clock of condition_datetime (nil: time.Now).
	Now func() time.Time
	// Bus receives every call event; nil publishes nothing.
	Bus *Bus
	// RecordAll records every answered call in RecordDir (stereo WAV).
	RecordAll bool
	RecordDir string
	// CaptureDir, when set, gets each answered call's SIP (UDP) and RTP as
	// <call id>.pcap; serve's sip.Config.Capture must be CaptureSIP.
	CaptureDir string
	// Agents are the agents ai_talk may hand calls to.
	Agents *Agents
	// NewProviders builds an agent's provider clients (nil: BuildProviders).
	NewProviders func(agent.Definition) (agent.Providers, error)
	// Dialer places outbound legs (connect, calls to extensions and
	// trunks); nil until SetDialer, and without it those calls fail.
	Dialer Dialer
}

// Controller owns the live calls.
type Controller struct {
	cfg        Config
	log        *slog.Logger
	prog       *program
	maxActions int
	now        func() time.Time
	audio      *audioCache
	capture    *captures // nil: not capturing
	http       *http.Client

	// Work a call starts that may outlive it (asynchronous webhooks).
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup

	// progs caches compiled stored flows by id, for the store's
	// FlowsVersion progVersion (lookup).
	progMu      sync.Mutex
	progs       map[string]*program
	progVersion uint64

	mu       sync.Mutex
	calls    map[string]*Call
	shutdown bool
	wg       sync.WaitGroup // one per live call
}

// NewController validates the configured flow and returns a controller.
func NewController(cfg Config) (*Controller, error) {
	if cfg.Store == nil {
		return nil, errors.New("flow: store required")
	}
	if !cfg.MediaIP.IsValid() {
		return nil, errors.New("flow: media IP required")
	}
	if cfg.Flow == nil {
		cfg.Flow = DefaultFlow()
	}
	prog, err := cfg.Flow.compile()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ct := &Controller{
		cfg: cfg, log: log, prog: prog, calls: map[string]*Call{}, progs: map[string]*program{},
		maxActions: cfg.MaxActions, now: cfg.Now,
		audio: newAudioCache(),
		http:  &http.Client{},
	}
	if ct.maxActions <= 0 {
		ct.maxActions = DefaultMaxActions
	}
	if ct.now == nil {
		ct.now = time.Now
	}
	if ct.capture, err = newCaptures(cfg.CaptureDir, cfg.MediaIP, log); err != nil {
		return nil, err
	}
	ct.bgCtx, ct.bgCancel = context.WithCancel(context.Background())
	return ct, nil
}

// background runs f in a goroutine the controller owns: Shutdown waits for
// it (and cancels it if shutdown takes too long).
func (ct *Controller) background(f func(ctx context.Context)) {
	ct.bgWG.Add(1)
	go func() {
		defer ct.bgWG.Done()
		f(ct.bgCtx)
	}()
}

// route picks the flow an inbound call runs.
func (ct *Controller) route(c *Call) *program {
	if p := ct.routeDialed(c); p != nil {
		return p
	}
	if ct.cfg.DefaultFlowID == "" {
		return ct.prog
	}
	ctx, cancel := context.WithTimeout(c.ctx, storeTimeout)
	defer cancel()
	p, err := ct.lookup(ctx, ct.cfg.DefaultFlowID)
	if err != nil {
		c.log.Error("default flow unavailable; running the built-in one", "flow_id", ct.cfg.DefaultFlowID, "err", err)
		c.warn(fmt.Sprintf("default flow %s: %v", ct.cfg.DefaultFlowID, err))
		return ct.prog
	}
	return p
}

// lookup finds a flow by id in the store and compiles it.
func (ct *Controller) lookup(ctx context.Context, id string) (*program, error) {
	if id == ct.prog.flow.ID {
		return ct.prog, nil
	}
	// Compiled flows are shared by the calls that run them (they are never
	// changed once compiled) until a flow is written: reading, parsing and
	// compiling the flow again for every call (its prompts read from disk)
	// was a tenth of an echo call's CPU.
	version := ct.cfg.Store.FlowsVersion()
	ct.progMu.Lock()
	if ct.progVersion != version {
		clear(ct.progs)
		ct.progVersion = version
	}
	p := ct.progs[id]
	ct.progMu.Unlock()
	if p != nil {
		return p, nil
	}
	sf, err := ct.cfg.Store.GetFlow(ctx, id)
	if err != nil {
		return nil, err
	}
	f, err := FromStore(sf)
	if err != nil {
		return nil, err
	}
	if p, err = f.compile(); err != nil {
		return nil, err
	}
	ct.progMu.Lock()
	// Not kept if a flow was written meanwhile: what was read may be stale.
	if ct.progVersion == version && ct.cfg.Store.FlowsVersion() == version {
		ct.progs[id] = p
	}
	ct.progMu.Unlock()
	return p, nil
}

// HandleInbound is the sip.CallHandler: it runs a new inbound call to its
// end.
func (ct *Controller) HandleInbound(leg *sip.Leg) {
	ct.mu.Lock()
	if ct.shutdown {
		ct.mu.Unlock()
		_ = leg.Reject(503, "Service Unavailable")
		return
	}
	ct.wg.Add(1)
	ct.mu.Unlock()
	defer ct.wg.Done()

	c, err := newInboundCall(ct, leg)
	if err != nil {
		ct.log.Error("inbound call", "sip_call_id", leg.CallID, "err", err)
		_ = leg.Reject(500, "Server Internal Error")
		return
	}
	ct.mu.Lock()
	ct.calls[c.ID()] = c
	ct.mu.Unlock()
	c.run(ct.route(c))
	ct.mu.Lock()
	delete(ct.calls, c.ID())
	ct.mu.Unlock()
}

// Shutdown hangs up every live call (BYE, reason server_shutdown) and waits
// for their records to be written, or for ctx to end.
func (ct *Controller) Shutdown(ctx context.Context) error {
	ct.mu.Lock()
	ct.shutdown = true
	live := make([]*Call, 0, len(ct.calls))
	for _, c := range ct.calls {
		live = append(live, c)
	}
	ct.mu.Unlock()
	for _, c := range live {
		c.stop(store.ReasonServerShutdown)
	}
	done := make(chan struct{})
	go func() { ct.wg.Wait(); ct.bgWG.Wait(); close(done) }()
	select {
	case <-done:
		ct.bgCancel()
		return nil
	case <-ctx.Done():
		ct.bgCancel()
		// Calls still stuck (a BYE or ACK that never comes) get their
		// final record now, while the store still takes it: the process
		// is about to end them anyway.
		n := 0
		for _, c := range live {
			if c.closeRecord(store.ReasonServerShutdown) {
				n++
			}
		}
		return fmt.Errorf("shutdown: %d calls still live, their records closed: %w", n, ctx.Err())
	}
}

// mediaIPFor picks the address to put in an SDP answer for a caller whose
// media is at remote.
func (ct *Controller) mediaIPFor(remote netip.Addr) netip.Addr {
	if !ct.cfg.RouteMediaIP || !remote.IsValid() || remote.IsUnspecified() {
		return ct.cfg.MediaIP
	}
	// Connecting a UDP socket only asks the routing table; nothing is sent.
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 9)))
	if err != nil {
		return ct.cfg.MediaIP
	}
	defer c.Close()
	if ip, ok := netip.AddrFromSlice(c.LocalAddr().(*net.UDPAddr).IP); ok {
		return ip.Unmap()
	}
	return ct.cfg.MediaIP
}

// LiveCalls reports how many calls are running.
func (ct *Controller) LiveCalls() int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return len(ct.calls)
}
