package api

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// Metrics holds every Prometheus metric voxbridge exports, on its own
// registry (not the global one, so tests and several servers in one
// process do not collide). Other packages add theirs with MustRegister.
type Metrics struct {
	Registry *prometheus.Registry

	CallsActive        *prometheus.GaugeVec   // direction
	CallsTotal         *prometheus.CounterVec // direction, hangup_reason; counted at hangup
	DTMFEvents         prometheus.Counter
	ActionsExecuted    *prometheus.CounterVec // type, result
	WebhookDeliveries  *prometheus.CounterVec // result: delivered, failed, dropped
	HTTPRequests       *prometheus.CounterVec // route, code
	HTTPDuration       *prometheus.HistogramVec
	AuthFailures       *prometheus.CounterVec // reason (the error code)
	EventSubscribers   prometheus.Gauge       // open /v1/events websockets
	SubscribersDropped *prometheus.CounterVec // reason: slow_consumer, write_timeout
	BusEventsDropped   *prometheus.CounterVec // consumer: metrics, webhooks

	mu     sync.Mutex
	active map[string]string // live call id → direction, from the bus
}

// NewMetrics makes the metrics on a new registry, with the Go runtime and
// process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		CallsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "voxbridge_calls_active",
			Help: "Calls in progress."}, []string{"direction"}),
		CallsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "voxbridge_calls_total",
			Help: "Calls ended, by direction and hangup reason."}, []string{"direction", "hangup_reason"}),
		DTMFEvents: prometheus.NewCounter(prometheus.CounterOpts{Name: "voxbridge_dtmf_events_total",
			Help: "DTMF digits received."}),
		ActionsExecuted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "voxbridge_actions_executed_total",
			Help: "Flow actions executed, by action type and result."}, []string{"type", "result"}),
		WebhookDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "voxbridge_webhook_deliveries_total",
			Help: "Webhook deliveries finished, by result (delivered, failed, dropped)."}, []string{"result"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "voxbridge_http_requests_total",
			Help: "HTTP API requests, by route pattern and status code."}, []string{"route", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "voxbridge_http_request_duration_seconds",
			Help: "HTTP API request durations (websockets excluded), by route pattern.", Buckets: prometheus.DefBuckets}, []string{"route"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "voxbridge_api_auth_failures_total",
			Help: "HTTP API requests refused for their credentials."}, []string{"reason"}),
		EventSubscribers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "voxbridge_event_subscribers",
			Help: "Open live-event websockets."}),
		SubscribersDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "voxbridge_event_subscribers_dropped_total",
			Help: "Live-event websockets closed for falling behind."}, []string{"reason"}),
		BusEventsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "voxbridge_bus_events_dropped_total",
			Help: "Events an internal consumer missed for falling behind."}, []string{"consumer"}),
		active: map[string]string{},
	}
	m.MustRegister(m.CallsActive, m.CallsTotal, m.DTMFEvents, m.ActionsExecuted, m.WebhookDeliveries,
		m.HTTPRequests, m.HTTPDuration, m.AuthFailures, m.EventSubscribers, m.SubscribersDropped, m.BusEventsDropped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Both directions from the start, so dashboards see 0 rather than no data.
	for _, d := range []store.Direction{store.DirectionIncoming, store.DirectionOutgoing} {
		m.CallsActive.WithLabelValues(string(d))
	}
	return m
}

// MustRegister adds collectors (other packages' metrics) to the registry.
func (m *Metrics) MustRegister(cs ...prometheus.Collector) { m.Registry.MustRegister(cs...) }

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

func (m *Metrics) observeHTTP(route string, code int, hijacked bool, d time.Duration) {
	m.HTTPRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	if !hijacked {
		m.HTTPDuration.WithLabelValues(route).Observe(d.Seconds())
	}
}

// observe counts one bus event.
func (m *Metrics) observe(ev flow.Event) {
	switch ev.Type {
	case flow.EventCallCreated:
		c, ok := callOf(ev.Data)
		if !ok {
			return
		}
		m.mu.Lock()
		_, seen := m.active[ev.CallID]
		m.active[ev.CallID] = string(c.Direction)
		m.mu.Unlock()
		if !seen {
			m.CallsActive.WithLabelValues(string(c.Direction)).Inc()
		}
	case flow.EventCallHangup:
		c, ok := callOf(ev.Data)
		if !ok {
			return
		}
		m.mu.Lock()
		dir, live := m.active[ev.CallID]
		delete(m.active, ev.CallID)
		m.mu.Unlock()
		if live {
			m.CallsActive.WithLabelValues(dir).Dec()
		}
		reason := string(c.HangupReason)
		if reason == "" {
			reason = "unknown"
		}
		m.CallsTotal.WithLabelValues(string(c.Direction), reason).Inc()
	case flow.EventDTMF:
		m.DTMFEvents.Inc()
	case flow.EventActionExecuted:
		var a store.ActionRun
		switch v := ev.Data.(type) {
		case store.ActionRun:
			a = v
		case *store.ActionRun:
			a = *v
		default:
			return
		}
		// "jump:<id>" would make one series per action id.
		result, _, _ := strings.Cut(a.Result, ":")
		m.ActionsExecuted.WithLabelValues(a.Type, result).Inc()
	}
}

func callOf(data any) (store.Call, bool) {
	switch v := data.(type) {
	case store.Call:
		return v, true
	case *store.Call:
		if v != nil {
			return *v, true
		}
	}
	return store.Call{}, false
}

// startMetricsFeed counts the bus's events until Close.
func (s *Server) startMetricsFeed() {
	sub := s.bus.Subscribe(4096, nil)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer sub.Close()
		var reported uint64
		for {
			select {
			case <-s.ctx.Done():
				return
			case ev := <-sub.C:
				s.metrics.observe(ev)
				if d := sub.Dropped(); d > reported {
					s.metrics.BusEventsDropped.WithLabelValues("metrics").Add(float64(d - reported))
					reported = d
				}
			}
		}
	}()
}

// Metrics returns the server's metrics, for other packages to add theirs.
func (s *Server) Metrics() *Metrics { return s.metrics }

// storeWriterMetrics are the store's write-queue figures, one row each.
var storeWriterMetrics = []struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(store.WriterStats) float64
}{
	{prometheus.NewDesc("voxbridge_store_write_queue", "Record writes queued, not yet committed.", nil, nil),
		prometheus.GaugeValue, func(s store.WriterStats) float64 { return float64(s.Queued) }},
	{prometheus.NewDesc("voxbridge_store_write_queue_capacity", "The record write queue's bound.", nil, nil),
		prometheus.GaugeValue, func(s store.WriterStats) float64 { return float64(s.Capacity) }},
	{prometheus.NewDesc("voxbridge_store_writes_total", "Record writes committed.", nil, nil),
		prometheus.CounterValue, func(s store.WriterStats) float64 { return float64(s.Written) }},
	{prometheus.NewDesc("voxbridge_store_writes_coalesced_total", "Call record writes replaced by a later one of the same batch.", nil, nil),
		prometheus.CounterValue, func(s store.WriterStats) float64 { return float64(s.Coalesced) }},
	{prometheus.NewDesc("voxbridge_store_write_batches_total", "Record write transactions committed.", nil, nil),
		prometheus.CounterValue, func(s store.WriterStats) float64 { return float64(s.Batches) }},
	{prometheus.NewDesc("voxbridge_store_writes_failed_total", "Record writes the database refused.", nil, nil),
		prometheus.CounterValue, func(s store.WriterStats) float64 { return float64(s.Failed) }},
	{prometheus.NewDesc("voxbridge_store_write_retries_total", "Record writes tried again after a passing failure.", nil, nil),
		prometheus.CounterValue, func(s store.WriterStats) float64 { return float64(s.Retries) }},
	{prometheus.NewDesc("voxbridge_store_write_delay_max_seconds", "The longest a record write waited from queued to committed.", nil, nil),
		prometheus.GaugeValue, func(s store.WriterStats) float64 { return s.MaxDelay.Seconds() }},
}

// StoreWriterCollector exports the store's write queue: its depth against
// its bound (new calls are refused at a quarter), what it wrote and refused,
// and the longest a write waited to be committed (what a kill -9 can lose).
// One scrape reads the figures once.
func StoreWriterCollector(db *store.DB) prometheus.Collector { return storeWriterCollector{db} }

type storeWriterCollector struct{ db *store.DB }

func (storeWriterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range storeWriterMetrics {
		ch <- m.desc
	}
}

func (c storeWriterCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.db.WriterStats()
	for _, m := range storeWriterMetrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st))
	}
}
