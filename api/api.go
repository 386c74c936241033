// Package api is voxbridge's HTTP control API: JSON resources under /v1,
// API keys, errors as {"error":{"code","message"}}, cursor pages, a live
// event websocket, webhooks, an OpenAPI document and Prometheus metrics.
//
// Every route is one row of the table in routes: its method and path (the
// same strings the OpenAPI document uses), who may call it, the query
// parameters it reads and the type its JSON body decodes into. Middleware
// and the OpenAPI test both read that table, so a route cannot be served
// without being documented, nor documented without being served.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// Config wires a Server. Store is required; the rest has defaults.
type Config struct {
	Store *store.DB
	// Bus carries call events to the websocket, webhooks and metrics. Nil
	// turns those off: /v1/events answers 503 and nothing is delivered.
	Bus    *flow.Bus
	Logger *slog.Logger
	// Metrics is where the API's and the bus's counters go (nil: a new
	// NewMetrics()); other packages may register theirs on it too.
	Metrics *Metrics
	// RateLimit is the sustained requests per second one key may make and
	// RateBurst how many it may make at once (0: 20/s and 40).
	RateLimit float64
	RateBurst int
	// MaxBodyBytes bounds a JSON request body (0: 1 MiB); larger is 413.
	MaxBodyBytes int64
	// SessionTTL is how long a websocket session token stays valid
	// (0: 60 s).
	SessionTTL time.Duration
	Events     EventsConfig
	Webhooks   WebhookConfig
	// Media attaches websockets to live calls (GET /v1/calls/{id}/media);
	// nil answers 503.
	Media MediaAttacher
	// Control acts on live calls (POST /v1/calls/{id}/hangup, /talk…);
	// nil answers 503.
	Control CallController
	// Originator places outbound calls (POST /v1/calls); nil answers 503.
	Originator Originator
	// Tasks schedules outbound calls (/v1/tasks writes); nil answers 503.
	Tasks TaskScheduler
	// Now is the clock for rate limits and sessions (nil: time.Now).
	Now func() time.Time
	// Agents is the running server's agent registry, which /v1/agents
	// writes through to; nil answers those routes with 503.
	Agents AgentRegistry
	// SIPRealm is the digest realm extension and inbound trunk passwords
	// are hashed for (empty: "voxbridge", the SIP server's default).
	SIPRealm string
	// CaptureDir is where serve --capture-dir writes each call's
	// <call id>.pcap, for GET /v1/calls/{id}/capture; empty: capture is off.
	CaptureDir string
}

const (
	defaultRateLimit    = 20
	defaultRateBurst    = 40
	defaultMaxBodyBytes = 1 << 20
	defaultSessionTTL   = 60 * time.Second
)

// Server serves the HTTP API. Close it to stop its background work (the
// webhook deliverer, the metrics feed, open websockets).
type Server struct {
	cfg     Config
	store   *store.DB
	bus     *flow.Bus
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	mux    *http.ServeMux
	routes []route
	auth   *authenticator
	hooks  *deliverer

	// flowMu serialises flow writes, so that a create cannot overwrite a
	// flow another request made between its check and its write.
	flowMu sync.Mutex
	// resMu does the same for numbers and agents (check, then write).
	resMu sync.Mutex

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // background loops and websocket handlers
}

// New builds the API handler and starts its background work.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: store required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RateLimit <= 0 {
		cfg.RateLimit = defaultRateLimit
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = defaultRateBurst
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = defaultMaxBodyBytes
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = defaultSessionTTL
	}
	cfg.Events = cfg.Events.withDefaults()
	cfg.Webhooks = cfg.Webhooks.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, store: cfg.Store, bus: cfg.Bus, log: cfg.Logger, metrics: cfg.Metrics, now: cfg.Now,
		mux: http.NewServeMux(), ctx: ctx, cancel: cancel,
	}
	s.auth = newAuthenticator(cfg.Store, cfg.Now, cfg.RateLimit, cfg.RateBurst, cfg.SessionTTL, s.log)
	s.routes = s.routeTable()
	for _, rt := range s.routes {
		s.mux.Handle(rt.method+" "+rt.path, s.guard(rt))
	}
	if s.bus != nil {
		s.startMetricsFeed()
		s.hooks = newDeliverer(s)
		s.hooks.start()
	}
	return s, nil
}

// Close closes open websockets with 1001, sends the events already
// published to webhooks (waiting up to Webhooks.DrainTimeout for them;
// retries are recorded as failed, not waited for) and waits for all of it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	if s.hooks != nil {
		s.hooks.stop()
	}
	s.wg.Wait()
	return nil
}

// track registers work that Close must wait for; false once closing.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// ServeHTTP answers every request: unknown routes in our error shape, and
// a panic anywhere as a logged 500 rather than a dropped connection.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w}
	_, pattern := s.mux.Handler(r)
	label := pattern
	if label == "" {
		label = "unmatched"
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v) // net/http's way to abort a response on purpose
			}
			s.log.Error("api handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if !rw.wroteHeader {
				writeError(rw, http.StatusInternalServerError, "internal", "internal error")
			}
		}
		s.metrics.observeHTTP(label, rw.status(), rw.hijacked, time.Since(start))
	}()
	if pattern == "" {
		s.noRoute(rw, r)
		return
	}
	s.mux.ServeHTTP(rw, r)
}

// noRoute answers unmatched requests in our JSON error shape, keeping the
// mux's own choice between 404 and 405 (and its Allow header).
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if allow := rec.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	if rec.status == http.StatusMethodNotAllowed {
		writeError(w, rec.status, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
		return
	}
	writeError(w, http.StatusNotFound, "not_found", "no such route: "+r.URL.Path)
}

// statusRecorder keeps only the status and headers a handler set.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(code int)        { r.status = code }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "database: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
