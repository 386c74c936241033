// Package sip terminates SIP signaling on top of sipgo: listeners, inbound
// dialogs (legs), SDP offer/answer and in-dialog requests. It never touches
// audio: the flow package reads a leg's negotiated media and drives a media
// stream with it.
package sip

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/store"
)

// Methods we implement; used for Allow headers and 405 answers.
var allowedMethods = []string{"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY"}

// knownMethods are RFC methods we recognise but do not (yet) serve: 405.
// Anything else is 501 Not Implemented (RFC 3261 §21.5.2).
var knownMethods = map[string]bool{
	"REGISTER": true, "SUBSCRIBE": true, "NOTIFY": true, "REFER": true,
	"MESSAGE": true, "PRACK": true, "PUBLISH": true,
}

// Config says where the server listens and what it advertises.
type Config struct {
	// UDP and TCP listeners, made by the caller so tests can bind port 0
	// and serve can report the real address.
	UDP net.PacketConn
	TCP net.Listener
	// TLS, if set, serves SIP over TLS: a listener from NewTLSListener
	// (or tls.NewListener) on its own port, 5061 by convention.
	TLS net.Listener
	// Protect bounds what the listeners accept: sizes, rates, bans, call
	// caps, silent-unknown, connection caps and timeouts (protect.go).
	Protect ProtectConfig
	// Capture, if set, sees every datagram of the UDP listener (TCP is not
	// captured), e.g. for per-call pcaps.
	Capture CaptureFunc
	// AdvertiseIP is the address put in Contact headers (and by the flow in
	// SDP). Required.
	AdvertiseIP net.IP
	UserAgent   string
	Logger      *slog.Logger

	// Store holds extensions, registrations and trunks. Without one the
	// server has no registrar (REGISTER gets 405) and nobody can
	// authenticate: only anonymous calls, if allowed, get through.
	Store Store
	// Realm of our digest challenges; extensions' hashes are made for it.
	// Default DefaultRealm.
	Realm string
	// AllowAnonymous lets INVITEs that neither come from a trunk's address
	// nor carry valid credentials through with an empty Identity. When
	// AnonymousTo is set, only calls to Request-URI users it accepts are let
	// through that way; the others are challenged. Anonymous callers must
	// never reach a trunk: Dial refuses it.
	AllowAnonymous bool
	AnonymousTo    func(user string) bool

	Registrar RegistrarConfig
	Auth      AuthConfig
	Trunks    TrunkConfig
	// SessionTimer tunes RFC 4028 session timers (sessiontimer.go).
	SessionTimer SessionTimerConfig
	// ClientTLS configures TLS connections to trunks with transport tls;
	// nil uses the system roots.
	ClientTLS *tls.Config

	now func() time.Time // tests move the clock of nonces; nil is time.Now
}

// DefaultRealm is the digest realm when Config.Realm is empty.
const DefaultRealm = "voxbridge"

// RegistrarConfig bounds registrations. Zero values take the defaults.
type RegistrarConfig struct {
	MinExpires     time.Duration // shorter asks get 423 Interval Too Brief; default 60 s
	MaxExpires     time.Duration // longer asks are cut to this; default 2 h
	DefaultExpires time.Duration // when the REGISTER names none; default 1 h
	MaxBindings    int           // contacts per extension; default 10
	PurgeInterval  time.Duration // how often expired bindings are deleted; default 1 min
	// Keepalive is how often every registered binding gets a NAT
	// keepalive (keepalive.go); default DefaultKeepalive, negative: none.
	Keepalive time.Duration
}

// AuthConfig tunes digest authentication. Zero values take the defaults.
type AuthConfig struct {
	NonceLifetime time.Duration // default 5 min; older nonces get stale=true
	// After MaxFailures failed authentications from one IP within
	// FailureWindow, that IP gets only 403 for LockoutDuration. Defaults 10,
	// 10 min, 15 min; MaxFailures < 0 disables the lock-out.
	MaxFailures     int
	FailureWindow   time.Duration
	LockoutDuration time.Duration
	// NonceSecret seals nonces; default random per process, so nonces do
	// not survive a restart (clients are simply challenged again).
	NonceSecret []byte
	// Algorithms are the digest challenges offered, in this order; default
	// SHA-256 then MD5 (RFC 8760). Credentials are accepted in any of
	// them. Some clients answer only the first challenge and know only MD5
	// (SIPp 3.6, baresip 1.0): put MD5 first for them.
	Algorithms []string
}

// TrunkConfig tunes trunk handling. Zero values take the defaults.
type TrunkConfig struct {
	// CacheTTL bounds how long a change to the trunk table (e.g. by the
	// CLI in another process) takes to be seen; default 5 s.
	CacheTTL time.Duration
	// RegisterRetryMin and RegisterRetryMax bound the backoff after a
	// failed registration to a carrier when it gives no Retry-After;
	// defaults 30 s and 10 min.
	RegisterRetryMin time.Duration
	RegisterRetryMax time.Duration
	// DefaultRegisterExpires is asked for when the trunk names none;
	// default 1 h.
	DefaultRegisterExpires time.Duration
}

func (c *Config) setDefaults() {
	if c.UserAgent == "" {
		c.UserAgent = "voxbridge"
	}
	if c.Realm == "" {
		c.Realm = DefaultRealm
	}
	r := &c.Registrar
	r.MinExpires = cmp.Or(r.MinExpires, 60*time.Second)
	r.MaxExpires = max(cmp.Or(r.MaxExpires, 2*time.Hour), r.MinExpires)
	r.DefaultExpires = min(max(cmp.Or(r.DefaultExpires, time.Hour), r.MinExpires), r.MaxExpires)
	r.MaxBindings = cmp.Or(r.MaxBindings, 10)
	r.PurgeInterval = cmp.Or(r.PurgeInterval, time.Minute)
	r.Keepalive = cmp.Or(r.Keepalive, DefaultKeepalive)
	a := &c.Auth
	a.NonceLifetime = cmp.Or(a.NonceLifetime, 5*time.Minute)
	a.MaxFailures = cmp.Or(a.MaxFailures, 10)
	a.FailureWindow = cmp.Or(a.FailureWindow, 10*time.Minute)
	a.LockoutDuration = cmp.Or(a.LockoutDuration, 15*time.Minute)
	if len(a.Algorithms) == 0 {
		a.Algorithms = []string{algSHA256, algMD5}
	}
	c.SessionTimer.setDefaults()
	t := &c.Trunks
	t.CacheTTL = cmp.Or(t.CacheTTL, 5*time.Second)
	t.RegisterRetryMin = cmp.Or(t.RegisterRetryMin, 30*time.Second)
	t.RegisterRetryMax = max(cmp.Or(t.RegisterRetryMax, 10*time.Minute), t.RegisterRetryMin)
	t.DefaultRegisterExpires = cmp.Or(t.DefaultRegisterExpires, time.Hour)
	c.Protect.setDefaults()
}

// Store is what the server needs from storage; *store.DB implements it.
type Store interface {
	ExtensionByUsername(ctx context.Context, username string) (*store.Extension, error)
	EnabledTrunks(ctx context.Context) ([]store.Trunk, error)
	UpdateRegistrations(ctx context.Context, extension string,
		decide func([]store.Registration) (store.RegistrationChange, error)) ([]store.Registration, error)
	ListRegistrations(ctx context.Context, extension string) ([]store.Registration, error)
	ListAllRegistrations(ctx context.Context) ([]store.Registration, error)
	PurgeExpiredRegistrations(ctx context.Context) (int, error)
}

// CallHandler receives every new inbound leg. It runs in its own goroutine
// and must end the leg by answering, rejecting or hanging it up.
type CallHandler func(leg *Leg)

// Server serves SIP: inbound calls, registrations, outbound calls and
// registrations to carriers.
type Server struct {
	cfg      Config
	log      *slog.Logger
	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	client   *sipgo.Client
	dialogUA *sipgo.DialogUA
	handler  CallHandler
	port     int
	udpAddr  sip.Addr // the UDP listener, for requests we originate

	store  Store
	auth   *digestAuth
	lock   *lockout
	trunks trunkCache

	legs sync.Map // dialog id → *Leg
	// liveLegs counts legs: the call cap reads it for every INVITE, where
	// ranging over legs cost as much as the calls it counted.
	liveLegs atomic.Int64
	outLegs  sync.Map // dialog id → *OutLeg
	draining atomic.Bool

	trunkMu    sync.Mutex
	trunkCalls map[string]int // trunk id → live outbound calls
	trunkRegs  trunkRegistrations
	protect    *protector
	keep       keepalives // registered bindings' NAT keepalives

	stop      chan struct{} // closed by Close: background work ends
	closeOnce sync.Once
	lifeMu    sync.Mutex
	closed    bool
	bg        sync.WaitGroup // purge loop, trunk registrations
	wg        sync.WaitGroup // serve goroutines
}

// NewServer builds a server; call Serve to start it.
func NewServer(cfg Config, handler CallHandler) (*Server, error) {
	if cfg.AdvertiseIP == nil {
		return nil, errors.New("sip: advertise IP required")
	}
	if cfg.UDP == nil && cfg.TCP == nil && cfg.TLS == nil {
		return nil, errors.New("sip: no listener")
	}
	cfg.setDefaults()
	if cfg.Capture != nil && cfg.UDP != nil {
		cfg.UDP = newCaptureConn(cfg.UDP, cfg.Capture)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	protect := newProtector(cfg.Protect, log)
	if cfg.UDP != nil {
		protect.udpLocal, protect.udpReply = cfg.UDP.LocalAddr().String(), func(b []byte, to net.Addr) { _, _ = cfg.UDP.WriteTo(b, to) }
	}
	cfg.TCP, cfg.TLS = protect.guard(cfg.TCP), protect.guard(cfg.TLS)
	uaOpts := []sipgo.UserAgentOption{sipgo.WithUserAgent(cfg.UserAgent), sipgo.WithUserAgentHostname(cfg.AdvertiseIP.String()),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(protect.filter))}
	if cfg.ClientTLS != nil {
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(cfg.ClientTLS))
	}
	ua, err := sipgo.NewUA(uaOpts...)
	if err != nil {
		return nil, fmt.Errorf("sip: user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		return nil, fmt.Errorf("sip: server: %w", err)
	}
	port := 5060
	var udpAddr sip.Addr
	if cfg.UDP != nil {
		port = cfg.UDP.LocalAddr().(*net.UDPAddr).Port
		// sipgo finds the listener by this exact string, so requests we
		// originate over UDP leave from our SIP port, as NATs and carriers
		// expect.
		host, p, err := sip.ParseAddr(cfg.UDP.LocalAddr().String())
		if err != nil {
			return nil, fmt.Errorf("sip: udp listener address: %w", err)
		}
		udpAddr = sip.Addr{IP: net.ParseIP(host), Port: p, Hostname: host}
	} else if cfg.TCP != nil {
		port = cfg.TCP.Addr().(*net.TCPAddr).Port
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(cfg.AdvertiseIP.String()), sipgo.WithClientPort(port), sipgo.WithClientLogger(log))
	if err != nil {
		return nil, fmt.Errorf("sip: client: %w", err)
	}
	auth, err := newDigestAuth(cfg.Realm, cfg.Auth.NonceSecret, cfg.Auth.NonceLifetime, cfg.Auth.Algorithms)
	if err != nil {
		return nil, err
	}
	if cfg.now != nil {
		auth.now = cfg.now
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		ua:      ua,
		srv:     srv,
		client:  client,
		handler: handler,
		port:    port,
		udpAddr: udpAddr,
		store:   cfg.Store,
		auth:    auth,
		lock:    newLockout(cfg.Auth.MaxFailures, cfg.Auth.FailureWindow, cfg.Auth.LockoutDuration),
		dialogUA: &sipgo.DialogUA{
			Client: client,
			ContactHDR: sip.ContactHeader{
				Address: sip.Uri{Scheme: "sip", User: "voxbridge", Host: cfg.AdvertiseIP.String(), Port: port},
			},
			// In-dialog requests go back where the INVITE came from: right
			// behind NAT and on TCP, where it reuses the caller's connection.
			RewriteContact: true,
		},
		trunkCalls: map[string]int{},
		stop:       make(chan struct{}),
		protect:    protect,
	}
	protect.isTrunk, protect.inDialog = s.isTrunkSource, s.hasCall
	s.trunks.ttl = cfg.Trunks.CacheTTL
	s.trunkRegs.init()
	srv.OnInvite(s.onInvite)
	srv.OnAck(s.onAck)
	srv.OnBye(s.onBye)
	srv.OnCancel(s.onCancel)
	srv.OnOptions(s.onOptions)
	srv.OnInfo(s.onInfo)
	srv.OnUpdate(s.onUpdate)
	srv.OnRefer(s.onRefer)   // refer.go
	srv.OnNotify(s.onNotify) // refer.go
	srv.OnRegister(s.knownAfterSuccess(s.onRegister))
	srv.OnNoRoute(s.onNoRoute)
	return s, nil
}

// Serve serves the configured listeners until ctx is done, then closes them.
// It also runs the registrar's expiry purge and the registrations to
// carriers, which end with it.
func (s *Server) Serve(ctx context.Context) {
	// Starting goroutines and Close's waits are ordered by lifeMu: a
	// WaitGroup must not gain members while it is being waited for.
	s.lifeMu.Lock()
	if s.closed {
		s.lifeMu.Unlock()
		return
	}
	s.knowRegisteredSources(ctx)
	if s.cfg.UDP != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.srv.ServeUDP(s.cfg.UDP); err != nil && ctx.Err() == nil {
				s.log.Error("sip udp serve", "err", err)
			}
		}()
	}
	if s.cfg.TCP != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.srv.ServeTCP(s.cfg.TCP); err != nil && ctx.Err() == nil {
				s.log.Error("sip tcp serve", "err", err)
			}
		}()
	}
	if s.cfg.TLS != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.srv.ServeTLS(s.cfg.TLS); err != nil && ctx.Err() == nil {
				s.log.Error("sip tls serve", "err", err)
			}
		}()
	}
	if s.store != nil {
		s.bg.Add(2)
		go s.purgeLoop()
		go func() {
			s.waitListening()
			s.trunkRegistrationLoop()
		}()
	}
	if s.store != nil && s.cfg.Registrar.Keepalive > 0 {
		s.bg.Add(1)
		go s.keepaliveLoop()
	}
	s.lifeMu.Unlock()
	select {
	case <-ctx.Done():
	case <-s.stop:
	}
	s.Close()
}

// waitListening waits (briefly) until sipgo knows the UDP listener, since
// requests we originate are sent through it.
func (s *Server) waitListening() {
	if s.cfg.UDP == nil {
		return
	}
	for range 500 {
		if c, _ := s.ua.TransportLayer().GetConnection("udp", s.udpAddr.String()); c != nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Drain makes the server refuse new calls with 503 while live ones finish.
func (s *Server) Drain() { s.draining.Store(true) }

// Close ends the background work (unregistering from carriers), then closes
// the listeners and the transport layer and waits for the serve goroutines.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.lifeMu.Lock()
		s.closed = true
		s.lifeMu.Unlock()
		close(s.stop)
		s.bg.Wait()
		if s.cfg.UDP != nil {
			s.cfg.UDP.Close()
		}
		if s.cfg.TCP != nil {
			s.cfg.TCP.Close()
		}
		if s.cfg.TLS != nil {
			s.cfg.TLS.Close()
		}
		s.ua.Close()
		s.wg.Wait()
	})
}

// purgeLoop deletes expired registrations and forgets stale nonce and
// lock-out state, until the server closes.
func (s *Server) purgeLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.cfg.Registrar.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if n, err := s.store.PurgeExpiredRegistrations(ctx); err != nil {
			s.log.Warn("purge registrations", "err", err)
		} else if n > 0 {
			s.log.Debug("purged expired registrations", "count", n)
		}
		cancel()
		s.auth.purge()
		s.lock.purge()
		s.protect.purge()
	}
}

// LiveLegs returns the legs whose dialogs have not ended.
func (s *Server) LiveLegs() []*Leg {
	var out []*Leg
	s.legs.Range(func(_, v any) bool {
		out = append(out, v.(*Leg))
		return true
	})
	return out
}

func (s *Server) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, headers ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range headers {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("sip respond", "code", code, "method", req.Method, "err", err)
	}
}

// allowHeader lists our methods; REGISTER only when there is a registrar.
func (s *Server) allowHeader() sip.Header {
	methods := allowedMethods
	if s.store != nil {
		methods = append(methods[:len(methods):len(methods)], "REGISTER")
	}
	return sip.NewHeader("Allow", strings.Join(methods, ", "))
}

func (s *Server) lookup(req *sip.Request) *Leg {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return nil
	}
	v, ok := s.legs.Load(id)
	if !ok {
		return nil
	}
	return v.(*Leg)
}

func (s *Server) lookupOut(req *sip.Request) *OutLeg {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return nil
	}
	v, ok := s.outLegs.Load(id)
	if !ok {
		return nil
	}
	return v.(*OutLeg)
}

func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil {
		if _, hasTag := to.Params.Get("tag"); hasTag {
			s.onReinvite(req, tx)
			return
		}
	}
	if s.draining.Load() {
		s.respond(req, tx, 503, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
		return
	}
	id, ok := s.authorizeInvite(req, tx)
	if !ok {
		return
	}
	if id.Authenticated() {
		s.markKnownSource(req)
	}
	if !s.admitInvite(req, tx) {
		return
	}
	if req.Contact() == nil {
		s.respond(req, tx, 400, "Missing Contact")
		return
	}
	if !s.checkSessionTimer(req, tx) {
		return
	}
	offer, negotiated, negErr, code, reason := readOffer(req)
	if code != 0 {
		s.log.Info("sip invite refused", "call_id", callID(req), "source", req.Source(), "code", code, "reason", reason)
		s.respond(req, tx, code, reason, sip.NewHeader("Accept", "application/sdp"))
		return
	}
	dlg, err := s.dialogUA.ReadInvite(req, tx)
	if err != nil {
		s.respond(req, tx, 400, "Bad Request")
		return
	}
	s.respond(req, tx, 100, "Trying")

	leg := newLeg(s, req, dlg, tx, offer, negotiated, negErr)
	leg.Identity = id
	s.legs.Store(dlg.ID, leg)
	s.liveLegs.Add(1)
	// sipgo answers the CANCEL with 200 and the INVITE with 487 itself.
	// The transaction outlives the call (an answered INVITE's is kept 32 s,
	// RFC 6026), so its hook reaches the leg through a pointer the leg's end
	// clears: else every ended call, its media buffers included, stayed in
	// memory 32 s more (at 100 calls/s, 3 200 dead calls).
	cancelTo := new(atomic.Pointer[Leg])
	cancelTo.Store(leg)
	leg.cancelTo = cancelTo
	tx.OnCancel(func(*sip.Request) {
		if l := cancelTo.Load(); l != nil {
			l.end(EndRemote, CauseCancel, 487)
		}
	})
	go s.handler(leg)

	// sipgo requires the INVITE transaction to be answered before this
	// handler returns, so wait for the flow's final answer or the end of the
	// transaction (CANCEL, transport failure).
	select {
	case <-leg.final:
	case <-leg.done:
	case <-tx.Done():
		if !leg.finalStarted() {
			leg.end(EndRemote, CauseTransport, 0)
		}
	}
}

// onReinvite hands a re-INVITE to its dialog's session (reinvite.go).
func (s *Server) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	if out := s.lookupOut(req); out != nil {
		out.onReinvite(req, tx)
		return
	}
	leg := s.lookup(req)
	if leg == nil {
		s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	leg.sess.onOffer(legPeer{leg}, req, tx)
}

func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	leg := s.lookup(req)
	if leg == nil {
		// ACKs get no response; a stray one is simply dropped. One for an
		// outbound leg may answer our offer in a re-INVITE's 2xx.
		if out := s.lookupOut(req); out != nil {
			out.sess.onAck(outPeer{out}, req)
		}
		return
	}
	if leg.sess.onAck(legPeer{leg}, req) {
		return
	}
	_ = leg.dlg.ReadAck(req, tx)
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if out := s.lookupOut(req); out != nil {
		s.respond(req, tx, 200, "OK")
		out.end(EndRemote, CauseBye, 0)
		return
	}
	leg := s.lookup(req)
	if leg == nil {
		s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	if err := leg.dlg.ReadBye(req, tx); err != nil {
		s.respond(req, tx, 500, "Server Internal Error")
		return
	}
	leg.end(EndRemote, CauseBye, 0)
}

// onCancel only sees CANCELs that matched no pending INVITE: sipgo's
// transaction layer answers the others itself.
func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
}

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	s.respond(req, tx, 200, "OK",
		s.allowHeader(),
		sip.NewHeader("Accept", "application/sdp, application/dtmf-relay, application/dtmf"),
		sip.NewHeader("Accept-Language", "en"),
	)
}

func (s *Server) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	var push func(rune)
	if out := s.lookupOut(req); out != nil {
		push = out.pushInfoDTMF
	} else if leg := s.lookup(req); leg != nil {
		push = leg.pushInfoDTMF
	} else {
		s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	digit, ok, err := ParseInfoDTMF(ct, req.Body())
	switch {
	case err != nil:
		s.respond(req, tx, 400, "Bad DTMF")
	case !ok:
		s.respond(req, tx, 415, "Unsupported Media Type", sip.NewHeader("Accept", "application/dtmf-relay, application/dtmf"))
	default:
		push(digit)
		s.respond(req, tx, 200, "OK")
	}
}

func (s *Server) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	if knownMethods[string(req.Method)] {
		s.respond(req, tx, 405, "Method Not Allowed", s.allowHeader())
		return
	}
	s.respond(req, tx, 501, "Not Implemented", s.allowHeader())
}

func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}
