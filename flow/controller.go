package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

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
	Flow   *Flow
	Logger *slog.Logger
}

// Controller owns the live calls.
type Controller struct {
	cfg  Config
	log  *slog.Logger
	prog *program

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
	return &Controller{cfg: cfg, log: log, prog: prog, calls: map[string]*Call{}}, nil
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
	c.run(ct.prog)
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
	go func() { ct.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: %d calls still live: %w", len(live), ctx.Err())
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
