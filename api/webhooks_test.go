package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// receiver is a webhook target on loopback that checks every request's
// signature with the secret it is given, and answers with the codes
// queued in answers (then 200).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	// answers are the status codes of the next requests, in order.
	answers []int
	got     []received
}

type received struct {
	body      []byte
	header    http.Header
	signedOK  bool
	event     WebhookEvent
	timestamp int64
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	r := &receiver{t: t, answers: answers}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	ts := req.Header.Get(HeaderTimestamp)
	r.mu.Lock()
	defer r.mu.Unlock()
	// What a receiver in another language would do: HMAC-SHA256 over
	// timestamp "." body with the secret, compared in constant time.
	mac := hmac.New(sha256.New, []byte(r.secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := hex.EncodeToString(mac.Sum(nil))
	rec := received{body: body, header: req.Header.Clone(),
		signedOK: r.secret != "" && hmac.Equal([]byte(want), []byte(req.Header.Get(HeaderSignature)))}
	rec.timestamp, _ = strconv.ParseInt(ts, 10, 64)
	_ = json.Unmarshal(body, &rec.event)
	r.got = append(r.got, rec)
	code := http.StatusOK
	if len(r.answers) > 0 {
		code, r.answers = r.answers[0], r.answers[1:]
	}
	w.WriteHeader(code)
}

func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	r.secret = s
	r.mu.Unlock()
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (e *testEnv) createWebhook(url string, types ...string) createdWebhook {
	e.t.Helper()
	res := e.do("POST", "/v1/webhooks", e.key, map[string]any{"url": url, "event_types": types, "description": "test"})
	if res.status != 201 {
		e.t.Fatalf("create webhook: %d %s", res.status, res.body)
	}
	var hook struct {
		store.Webhook
		Secret string `json:"secret"`
	}
	res.decode(e.t, &hook)
	if hook.Secret == "" || res.header.Get("Location") != "/v1/webhooks/"+hook.ID {
		e.t.Fatalf("created webhook %s (Location %q)", res.body, res.header.Get("Location"))
	}
	return createdWebhook{Webhook: &hook.Webhook, Secret: hook.Secret}
}

func (e *testEnv) deliveries(hookID string) []store.WebhookDelivery {
	e.t.Helper()
	var p struct {
		Result []store.WebhookDelivery `json:"result"`
	}
	res := e.do("GET", "/v1/webhooks/"+hookID+"/deliveries", e.key, nil)
	if res.status != 200 {
		e.t.Fatalf("deliveries: %d %s", res.status, res.body)
	}
	res.decode(e.t, &p)
	return p.Result
}

func fastWebhooks(c *Config) {
	c.Webhooks.Backoff = 20 * time.Millisecond
	c.Webhooks.MaxBackoff = 100 * time.Millisecond
	c.Webhooks.Attempts = 3
}

func TestWebhookSignedAndRetried(t *testing.T) {
	e := newTestEnv(t, fastWebhooks)
	rcv := newReceiver(t, http.StatusInternalServerError) // first attempt fails
	hook := e.createWebhook(rcv.srv.URL+"/hook", "call.hangup")
	rcv.setSecret(hook.Secret)

	// A dtmf event is filtered out; the hangup is delivered, after a retry.
	e.bus.Publish(flow.EventDTMF, "c1", map[string]string{"digit": "1"})
	e.bus.Publish(flow.EventCallHangup, "c1", store.Call{ID: "c1", Direction: store.DirectionIncoming, Status: store.StatusHangup, HangupReason: store.ReasonBusy})

	var ds []store.WebhookDelivery
	waitFor(t, "the delivery to succeed", func() bool {
		ds = e.deliveries(hook.ID)
		return len(ds) == 1 && ds[0].Status == store.DeliveryDelivered
	})
	d := ds[0]
	if d.Attempts != 2 || d.ResponseCode != 200 || d.LastError != "" || d.EventType != flow.EventCallHangup || d.CallID != "c1" {
		t.Fatalf("delivery log: %+v", d)
	}
	reqs := rcv.requests()
	if len(reqs) != 2 {
		t.Fatalf("receiver saw %d requests, want 2 (a 500, then a retry)", len(reqs))
	}
	for i, r := range reqs {
		if !r.signedOK {
			t.Fatalf("request %d: bad signature %q", i, r.header.Get(HeaderSignature))
		}
		if r.header.Get("Content-Type") != "application/json" || r.header.Get(HeaderEvent) != flow.EventCallHangup || r.header.Get(HeaderDelivery) != d.ID {
			t.Fatalf("request %d headers: %v", i, r.header)
		}
		if age := time.Since(time.Unix(r.timestamp, 0)); age < -time.Minute || age > time.Minute {
			t.Fatalf("request %d timestamp %d is not now", i, r.timestamp)
		}
		var data store.Call
		raw, _ := json.Marshal(r.event.Data)
		json.Unmarshal(raw, &data)
		if r.event.Type != flow.EventCallHangup || r.event.CallID != "c1" || data.HangupReason != store.ReasonBusy || r.event.Time.IsZero() {
			t.Fatalf("request %d body: %s", i, r.body)
		}
	}
	if reqs[0].event.ID == "" || reqs[0].event.ID != reqs[1].event.ID || reqs[0].event.ID != d.EventID {
		t.Fatalf("event id not stable across attempts: %q %q (log %q)", reqs[0].event.ID, reqs[1].event.ID, d.EventID)
	}
	// A tampered body does not verify.
	if Sign(hook.Secret, strconv.FormatInt(reqs[0].timestamp, 10), append(reqs[0].body, ' ')) == reqs[0].header.Get(HeaderSignature) {
		t.Fatal("signature does not cover the body")
	}
	if n := metricValue(t, e.api.metrics.WebhookDeliveries, "delivered"); n != 1 {
		t.Fatalf("delivered counted %v", n)
	}
}

func TestWebhookGivesUp(t *testing.T) {
	e := newTestEnv(t, fastWebhooks)
	down := newReceiver(t, 503, 503, 503, 503)
	gone := newReceiver(t, 404)
	hDown := e.createWebhook(down.srv.URL)
	hGone := e.createWebhook(gone.srv.URL, "call.*")
	e.bus.Publish(flow.EventCallCreated, "c1", store.Call{ID: "c1"})

	waitFor(t, "both deliveries to fail", func() bool {
		a, b := e.deliveries(hDown.ID), e.deliveries(hGone.ID)
		return len(a) == 1 && a[0].Status == store.DeliveryFailed && len(b) == 1 && b[0].Status == store.DeliveryFailed
	})
	// 503 is retried up to the bound; 404 is final at once.
	if d := e.deliveries(hDown.ID)[0]; d.Attempts != 3 || d.ResponseCode != 503 || !strings.Contains(d.LastError, "gave up after 3 attempts") {
		t.Fatalf("down target: %+v", d)
	}
	if n := len(down.requests()); n != 3 {
		t.Fatalf("down target got %d requests, want 3", n)
	}
	if d := e.deliveries(hGone.ID)[0]; d.Attempts != 1 || d.ResponseCode != 404 || d.LastError != "HTTP 404" {
		t.Fatalf("404 target: %+v", d)
	}
	if n := metricValue(t, e.api.metrics.WebhookDeliveries, "failed"); n != 2 {
		t.Fatalf("failed deliveries counted %v, want 2", n)
	}

	// An unreachable target fails with the network error.
	ln := newReceiver(t)
	url := ln.srv.URL
	ln.srv.Close()
	hDead := e.createWebhook(url, "dtmf")
	e.bus.Publish(flow.EventDTMF, "c1", map[string]string{"digit": "2"})
	waitFor(t, "the unreachable target to fail", func() bool {
		ds := e.deliveries(hDead.ID)
		return len(ds) == 1 && ds[0].Status == store.DeliveryFailed
	})
	if d := e.deliveries(hDead.ID)[0]; d.ResponseCode != 0 || d.Attempts != 3 || !strings.Contains(d.LastError, "connect") {
		t.Fatalf("unreachable target: %+v", d)
	}
}

// Close does not wait out a retry: the pending delivery is recorded as
// failed, and the deliverer's goroutines are gone.
func TestWebhookStoppedByClose(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Webhooks.Backoff, c.Webhooks.MaxBackoff = time.Hour, time.Hour })
	rcv := newReceiver(t, 500)
	hook := e.createWebhook(rcv.srv.URL)
	e.bus.Publish(flow.EventCallCreated, "c1", store.Call{ID: "c1"})
	waitFor(t, "the first attempt", func() bool {
		ds := e.deliveries(hook.ID)
		return len(ds) == 1 && ds[0].Attempts == 1 && ds[0].TMNextAttempt != nil
	})
	done := make(chan struct{})
	go func() { e.api.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Close waited for a retry an hour away")
	}
	ds, _, err := e.db.ListWebhookDeliveries(t.Context(), hook.ID, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ds[0].Status != store.DeliveryFailed || !strings.Contains(ds[0].LastError, "stopped") {
		t.Fatalf("delivery after Close: %+v", ds[0])
	}
}

func TestWebhookRoutes(t *testing.T) {
	e := newTestEnv(t)
	var ids []string
	for i := range 3 {
		ids = append(ids, e.createWebhook("https://127.0.0.1:"+strconv.Itoa(9000+i)+"/h").ID)
	}
	var p struct {
		Result        []map[string]any `json:"result"`
		NextPageToken string           `json:"next_page_token"`
	}
	e.do("GET", "/v1/webhooks?page_size=2", e.roKey, nil).decode(t, &p)
	if len(p.Result) != 2 || p.NextPageToken == "" {
		t.Fatalf("first page %+v", p)
	}
	for _, h := range p.Result {
		if _, leaked := h["secret"]; leaked {
			t.Fatalf("list shows the secret: %v", h)
		}
	}
	e.do("GET", "/v1/webhooks?page_size=2&page_token="+p.NextPageToken, e.roKey, nil).decode(t, &p)
	if len(p.Result) != 1 || p.NextPageToken != "" {
		t.Fatalf("second page %+v", p)
	}
	var one map[string]any
	e.do("GET", "/v1/webhooks/"+ids[1], e.roKey, nil).decode(t, &one)
	if one["id"] != ids[1] || one["url"] != "https://127.0.0.1:9001/h" || one["secret"] != nil {
		t.Fatalf("get webhook %v", one)
	}
	if res := e.do("DELETE", "/v1/webhooks/"+ids[1], e.key, nil); res.status != 204 {
		t.Fatalf("delete: %d", res.status)
	}
	expectError(t, "get deleted", e.do("GET", "/v1/webhooks/"+ids[1], e.key, nil), 404, "not_found")
	expectError(t, "delete deleted", e.do("DELETE", "/v1/webhooks/"+ids[1], e.key, nil), 404, "not_found")
	expectError(t, "deliveries of deleted", e.do("GET", "/v1/webhooks/"+ids[1]+"/deliveries", e.key, nil), 404, "not_found")
	expectError(t, "bad page size", e.do("GET", "/v1/webhooks/"+ids[0]+"/deliveries?page_size=x", e.key, nil), 400, "invalid_argument")
}

// Events published just before Close (a shutdown's hangups) are still
// sent; a target that hangs is cut off after DrainTimeout.
func TestWebhookDrainOnClose(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Webhooks.DrainTimeout = 2 * time.Second })
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
	}))
	t.Cleanup(slow.Close)
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hung.Close)
	t.Cleanup(func() { close(release) })
	hSlow := e.createWebhook(slow.URL, "call.hangup")
	hHung := e.createWebhook(hung.URL, "call.hangup")
	for _, id := range []string{"c1", "c2", "c3"} {
		e.bus.Publish(flow.EventCallHangup, id, store.Call{ID: id, Status: store.StatusHangup})
	}
	start := time.Now()
	e.api.Close()
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Close took %v with a 2 s drain timeout", took)
	}
	count := func(hookID string, status store.DeliveryStatus) int {
		ds, _, err := e.db.ListWebhookDeliveries(t.Context(), hookID, store.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range ds {
			if d.Status == status {
				n++
			}
		}
		return n
	}
	if n := count(hSlow.ID, store.DeliveryDelivered); n != 3 {
		t.Fatalf("%d of 3 hangups delivered to the slow target during Close", n)
	}
	if n := count(hHung.ID, store.DeliveryFailed); n != 3 {
		t.Fatalf("%d of 3 deliveries to the hung target recorded failed", n)
	}
}
