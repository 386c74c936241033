package api

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// WebhookConfig tunes webhook delivery.
type WebhookConfig struct {
	// Attempts bounds the tries per delivery (0: 6).
	Attempts int
	// Backoff is the wait before the first retry, doubled for each next
	// one up to MaxBackoff (0: 2 s and 5 min). A Retry-After from the
	// target is honoured up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Timeout bounds one attempt (0: 10 s).
	Timeout time.Duration
	// MaxInFlight bounds deliveries being attempted or waiting to retry
	// (0: 1000); past it a delivery is recorded as failed, not queued.
	MaxInFlight int
	// Retention is how long the delivery log is kept (0: 7 days).
	Retention time.Duration
	// DrainTimeout is how long Close lets the first attempts of the last
	// events (a shutdown's hangups) finish (0: 5 s). Retries are not
	// waited for.
	DrainTimeout time.Duration
	// Client sends the requests (nil: one with Timeout that does not
	// follow redirects).
	Client *http.Client
}

func (c WebhookConfig) withDefaults() WebhookConfig {
	if c.Attempts <= 0 {
		c.Attempts = 6
	}
	if c.Backoff <= 0 {
		c.Backoff = 2 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1000
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 5 * time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{
			Timeout: c.Timeout,
			// A redirect is an answer, recorded with its code: following
			// it would send the signed body somewhere not configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c
}

// Headers of a delivery. The signature is the hex HMAC-SHA256, keyed with
// the target's secret, of the timestamp, ".", and the body: a receiver
// recomputes it and rejects old timestamps to stop replays.
const (
	HeaderTimestamp = "X-Voxbridge-Timestamp"
	HeaderSignature = "X-Voxbridge-Signature"
	HeaderEvent     = "X-Voxbridge-Event"
	HeaderDelivery  = "X-Voxbridge-Delivery"
)

// Sign returns the signature of body sent at timestamp (unix seconds).
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte("."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// WebhookEvent is the body of a delivery. ID is the same for every target
// and every attempt, so receivers can drop duplicates.
type WebhookEvent struct {
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	Time   time.Time `json:"time"`
	CallID string    `json:"call_id"`
	Data   any       `json:"data"`
}

// deliverer sends bus events to webhook targets in the background: a
// target that is slow or down delays only its own deliveries, and never
// a call, since the bus drops rather than blocks.
//
// Stopping has two steps. When the server's context ends, the loop sends
// the events already queued and stops, and deliveries stop retrying; then
// stop waits up to DrainTimeout for attempts in flight before cancelling
// them (hard).
type deliverer struct {
	s        *Server
	cfg      WebhookConfig
	inFlight atomic.Int64
	wg       sync.WaitGroup // deliveries
	loopDone chan struct{}
	hard     context.Context
	cancel   context.CancelFunc

	mu      sync.Mutex
	targets []store.Webhook
	stale   bool
}

func newDeliverer(s *Server) *deliverer {
	hard, cancel := context.WithCancel(context.Background())
	return &deliverer{s: s, cfg: s.cfg.Webhooks, stale: true, loopDone: make(chan struct{}), hard: hard, cancel: cancel}
}

// dbContext bounds a store call that must happen even while stopping.
func dbContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// invalidate makes the next event reload the targets.
func (d *deliverer) invalidate() {
	d.mu.Lock()
	d.stale = true
	d.mu.Unlock()
}

func (d *deliverer) start() {
	s := d.s
	ctx, cancel := dbContext()
	if n, err := s.store.FailPendingWebhookDeliveries(ctx, "the server stopped before this delivery finished"); err != nil {
		s.log.Warn("closing webhook deliveries left by a previous run", "err", err)
	} else if n > 0 {
		s.log.Warn("webhook deliveries left unfinished by a previous run marked failed", "deliveries", n)
	}
	cancel()
	sub := s.bus.Subscribe(4096, nil)
	go func() {
		defer close(d.loopDone)
		defer sub.Close()
		prune := time.NewTicker(time.Hour)
		defer prune.Stop()
		d.prune()
		var reported uint64
		for {
			select {
			case <-s.ctx.Done():
				// Events published before the stop (the hangups of a
				// shutdown) still go out.
				for {
					select {
					case ev := <-sub.C:
						d.dispatch(ev)
					default:
						return
					}
				}
			case <-prune.C:
				d.prune()
			case ev := <-sub.C:
				d.dispatch(ev)
				if n := sub.Dropped(); n > reported {
					s.metrics.BusEventsDropped.WithLabelValues("webhooks").Add(float64(n - reported))
					s.log.Warn("webhook deliverer fell behind; events were not delivered", "dropped_total", n)
					reported = n
				}
			}
		}
	}()
}

// stop waits for the loop, then up to DrainTimeout for deliveries in
// flight, then cancels what is left and waits for it to be recorded.
func (d *deliverer) stop() {
	<-d.loopDone
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	t := time.NewTimer(d.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		d.cancel()
		<-done
	}
	d.cancel()
}

func (d *deliverer) prune() {
	ctx, cancel := context.WithTimeout(d.s.ctx, time.Minute)
	defer cancel()
	if _, err := d.s.store.PruneWebhookDeliveries(ctx, time.Now().Add(-d.cfg.Retention)); err != nil && ctx.Err() == nil {
		d.s.log.Warn("prune webhook deliveries", "err", err)
	}
}

// matching returns the targets that want an event of type typ.
func (d *deliverer) matching(typ string) []store.Webhook {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stale {
		ctx, cancel := dbContext()
		ts, err := d.s.store.AllWebhooks(ctx)
		cancel()
		if err != nil {
			// Keep the old list; try again on the next event.
			d.s.log.Error("load webhooks", "err", err)
		} else {
			d.targets, d.stale = ts, false
		}
	}
	var out []store.Webhook
	for _, t := range d.targets {
		if matchesTypes(t.EventTypes, typ) {
			out = append(out, t)
		}
	}
	return out
}

// dispatch records one delivery per interested target and starts it.
func (d *deliverer) dispatch(ev flow.Event) {
	targets := d.matching(ev.Type)
	if len(targets) == 0 {
		return
	}
	s := d.s
	eventID := uuid.NewString()
	body, err := json.Marshal(WebhookEvent{ID: eventID, Type: ev.Type, Time: ev.Time, CallID: ev.CallID, Data: ev.Data})
	if err != nil {
		s.log.Error("encode webhook event", "type", ev.Type, "call_id", ev.CallID, "err", err)
		return
	}
	for _, t := range targets {
		rec := &store.WebhookDelivery{WebhookID: t.ID, EventID: eventID, EventType: ev.Type, CallID: ev.CallID, Status: store.DeliveryPending}
		ctx, cancel := dbContext()
		err := s.store.CreateWebhookDelivery(ctx, rec)
		cancel()
		if err != nil {
			s.log.Error("record webhook delivery", "webhook_id", t.ID, "err", err)
			continue
		}
		if d.inFlight.Load() >= int64(d.cfg.MaxInFlight) {
			rec.Status, rec.LastError = store.DeliveryFailed, "dropped: too many deliveries in flight"
			d.record(rec)
			s.metrics.WebhookDeliveries.WithLabelValues("dropped").Inc()
			continue
		}
		d.wg.Add(1) // only the loop adds, and stop waits for the loop first
		d.inFlight.Add(1)
		go func() {
			defer d.wg.Done()
			defer d.inFlight.Add(-1)
			d.deliver(t, rec, body)
		}()
	}
}

// deliver makes the attempts of one delivery, recording each outcome.
func (d *deliverer) deliver(t store.Webhook, rec *store.WebhookDelivery, body []byte) {
	s := d.s
	log := s.log.With("webhook_id", t.ID, "delivery_id", rec.ID, "call_id", rec.CallID)
	for attempt := 1; ; attempt++ {
		code, retryAfter, err := d.attempt(t, rec, body)
		rec.Attempts, rec.ResponseCode, rec.TMNextAttempt = attempt, code, nil
		switch {
		case err != nil:
			rec.LastError = err.Error()
		case code < 200 || code > 299:
			rec.LastError = fmt.Sprintf("HTTP %d", code)
		default:
			rec.LastError = ""
		}
		// Other 4xx answers say the request itself is wrong for the
		// target: sending it again would not help.
		retryable := err != nil || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
		switch {
		case rec.LastError == "":
			rec.Status = store.DeliveryDelivered
		case s.ctx.Err() != nil:
			// Stopping: no retry.
			rec.Status, rec.LastError = store.DeliveryFailed, "the server stopped before this delivery finished; last error: "+rec.LastError
		case !retryable:
			rec.Status = store.DeliveryFailed
		case attempt >= d.cfg.Attempts:
			rec.Status = store.DeliveryFailed
			rec.LastError = fmt.Sprintf("gave up after %d attempts: %s", attempt, rec.LastError)
		default:
			wait := d.cfg.MaxBackoff
			if attempt <= 30 && d.cfg.Backoff<<(attempt-1) < wait {
				wait = d.cfg.Backoff << (attempt - 1)
			}
			if retryAfter > 0 {
				wait = min(retryAfter, d.cfg.MaxBackoff)
			}
			next := time.Now().Add(wait)
			rec.Status, rec.TMNextAttempt = store.DeliveryPending, &next
			d.record(rec)
			log.Debug("webhook attempt failed; retrying", "attempt", attempt, "code", code, "err", rec.LastError, "in", wait)
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
				continue
			case <-s.ctx.Done():
				timer.Stop()
				rec.Status, rec.TMNextAttempt = store.DeliveryFailed, nil
				rec.LastError = "the server stopped before this delivery finished; last error: " + rec.LastError
			}
		}
		d.record(rec)
		result := "failed"
		if rec.Status == store.DeliveryDelivered {
			result = "delivered"
		} else {
			log.Warn("webhook delivery failed", "attempts", rec.Attempts, "code", rec.ResponseCode, "err", rec.LastError)
		}
		s.metrics.WebhookDeliveries.WithLabelValues(result).Inc()
		return
	}
}

// attempt posts body once and returns the answer's code and the
// Retry-After it asked for; the error is for no answer at all.
func (d *deliverer) attempt(t store.Webhook, rec *store.WebhookDelivery, body []byte) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(d.hard, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "voxbridge-webhook/1")
	req.Header.Set(HeaderEvent, rec.EventType)
	req.Header.Set(HeaderDelivery, rec.ID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(t.Secret, ts, body))
	res, err := d.cfg.Client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	// Read a little so the connection can be reused; the rest is not ours.
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	var retryAfter time.Duration
	if n, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && n > 0 {
		retryAfter = time.Duration(n) * time.Second
	}
	return res.StatusCode, retryAfter, nil
}

// record writes a delivery's outcome, even while the server is stopping.
func (d *deliverer) record(rec *store.WebhookDelivery) {
	ctx, cancel := dbContext()
	defer cancel()
	if err := d.s.store.UpdateWebhookDelivery(ctx, rec); err != nil {
		d.s.log.Error("record webhook delivery", "delivery_id", rec.ID, "err", err)
	}
}
