package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// testEnv is an API server on loopback with a bus and two keys.
type testEnv struct {
	t      *testing.T
	srv    *httptest.Server
	api    *Server
	db     *store.DB
	bus    *flow.Bus
	key    string // admin
	roKey  string // read_only
	clock  *fakeClock
	client *http.Client
}

// fakeClock is the clock of rate limits and sessions; it only moves when
// told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestEnv(t *testing.T, tune ...func(*Config)) *testEnv {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("VOXBRIDGE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := Config{Store: db, Bus: flow.NewBus(), Logger: log, Now: clock.Now, RateLimit: 1000, RateBurst: 1000}
	for _, f := range tune {
		f(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	// Close order: connections first, then the API's background work.
	t.Cleanup(func() { s.Close() })
	t.Cleanup(srv.Close)
	e := &testEnv{t: t, srv: srv, api: s, db: db, bus: cfg.Bus, clock: clock, client: srv.Client()}
	e.key = e.newKey("admin", store.RoleAdmin)
	e.roKey = e.newKey("viewer", store.RoleReadOnly)
	return e
}

func (e *testEnv) newKey(name string, role store.APIKeyRole) string {
	e.t.Helper()
	key, rec := NewKey(name, role)
	if err := e.db.CreateAPIKey(context.Background(), rec); err != nil {
		e.t.Fatal(err)
	}
	return key
}

// response is an answer with its body kept.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errorOf returns the error code and details of an error answer, failing
// the test if the answer is not our JSON error shape.
func (r response) errorOf(t *testing.T) (string, map[string]any) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error answer %d with content type %q: %s", r.status, ct, r.body)
	}
	var body struct {
		Error struct {
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	r.decode(t, &body)
	if body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("error answer %d without code or message: %s", r.status, r.body)
	}
	return body.Error.Code, body.Error.Details
}

// do sends a request with key (none if ""); a non-nil body is sent as JSON
// unless it is already []byte or a string.
func (e *testEnv) do(method, path, key string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// expectError checks an answer's status and error code.
func expectError(t *testing.T, what string, r response, status int, code string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
	}
	got, details := r.errorOf(t)
	if got != code {
		t.Fatalf("%s: code %q, want %q: %s", what, got, code, r.body)
	}
	return details
}

// metricValue reads one series of a collector (a counter or gauge).
func metricValue(t *testing.T, c prometheus.Collector, labels ...string) float64 {
	t.Helper()
	var m prometheus.Metric
	switch v := c.(type) {
	case *prometheus.CounterVec:
		m = v.WithLabelValues(labels...)
	case *prometheus.GaugeVec:
		m = v.WithLabelValues(labels...)
	case prometheus.Metric:
		m = v
	default:
		t.Fatalf("metricValue: %T", c)
	}
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	}
	t.Fatalf("metricValue: neither counter nor gauge")
	return 0
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type callPage struct {
	Result        []store.Call `json:"result"`
	NextPageToken *string      `json:"next_page_token"`
}

func TestListCallsPagesNewestFirst(t *testing.T) {
	e := newTestEnv(t)
	var empty callPage
	e.do("GET", "/v1/calls", e.key, nil).decode(t, &empty)
	if empty.Result == nil || len(empty.Result) != 0 || empty.NextPageToken == nil || *empty.NextPageToken != "" {
		t.Fatalf("empty list: %+v", empty)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 25 {
		c := &store.Call{SIPCallID: "c" + string(rune('a'+i)), Direction: store.DirectionIncoming, Status: store.StatusHangup, TMCreate: base.Add(time.Duration(i) * time.Second)}
		if err := e.db.CreateCall(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	var seen []store.Call
	path := "/v1/calls?page_size=10"
	for pages := 0; ; pages++ {
		var p callPage
		res := e.do("GET", path, e.key, nil)
		if res.status != 200 {
			t.Fatalf("status %d", res.status)
		}
		res.decode(t, &p)
		seen = append(seen, p.Result...)
		if *p.NextPageToken == "" {
			if pages != 2 {
				t.Fatalf("%d pages for 25 calls of 10", pages+1)
			}
			break
		}
		path = "/v1/calls?page_size=10&page_token=" + *p.NextPageToken
	}
	if len(seen) != 25 {
		t.Fatalf("saw %d calls, want 25", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if !seen[i-1].TMCreate.After(seen[i].TMCreate) {
			t.Fatalf("not newest first at %d: %v then %v", i, seen[i-1].TMCreate, seen[i].TMCreate)
		}
	}
	var one callView
	if res := e.do("GET", "/v1/calls/"+seen[3].ID, e.roKey, nil); res.status != 200 {
		t.Fatalf("get call: %d", res.status)
	} else if res.decode(t, &one); one.SIPCallID != seen[3].SIPCallID || one.Actions == nil {
		t.Fatalf("get call: %+v", one)
	}
}

func TestListCallsFilters(t *testing.T) {
	e := newTestEnv(t)
	base := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	// Ten calls a minute apart: odd ones outgoing, the last three ringing.
	for i := range 10 {
		c := &store.Call{Direction: store.DirectionIncoming, Status: store.StatusHangup, TMCreate: base.Add(time.Duration(i) * time.Minute)}
		if i%2 == 1 {
			c.Direction = store.DirectionOutgoing
		}
		if i >= 7 {
			c.Status = store.StatusRinging
		}
		if err := e.db.CreateCall(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	list := func(query string) []store.Call {
		t.Helper()
		var all []store.Call
		path := "/v1/calls?page_size=2&" + query
		for {
			var p callPage
			res := e.do("GET", path, e.key, nil)
			if res.status != 200 {
				t.Fatalf("%s: %d %s", query, res.status, res.body)
			}
			res.decode(t, &p)
			all = append(all, p.Result...)
			if *p.NextPageToken == "" {
				return all
			}
			path = "/v1/calls?page_size=2&" + query + "&page_token=" + *p.NextPageToken
		}
	}
	if got := list("direction=outgoing"); len(got) != 5 || got[0].Direction != store.DirectionOutgoing {
		t.Fatalf("outgoing: %d calls", len(got))
	}
	if got := list("status=ringing"); len(got) != 3 {
		t.Fatalf("ringing: %d calls, want 3", len(got))
	}
	if got := list("status=ringing,hangup&direction=incoming"); len(got) != 5 {
		t.Fatalf("ringing or hangup, incoming: %d calls, want 5", len(got))
	}
	// Minutes [2, 6): calls 2, 3, 4, 5.
	if got := list("from=2026-01-02T00:02:00Z&to=2026-01-02T00:06:00Z"); len(got) != 4 || !got[3].TMCreate.Equal(base.Add(2*time.Minute)) {
		t.Fatalf("time window: %d calls", len(got))
	}
	// A zone other than UTC means the same instant.
	if got := list("from=2026-01-02T01:08:00%2B01:00"); len(got) != 2 {
		t.Fatalf("from with an offset: %d calls, want 2", len(got))
	}
	for _, c := range []struct{ query, field string }{
		{"status=asleep", "status"},
		{"direction=up", "direction"},
		{"from=yesterday", "from"},
		{"to=2026-01-02", "to"},
		{"from=2026-01-02T00:06:00Z&to=2026-01-02T00:02:00Z", "to"},
		{"page_size=-1", "page_size"},
		{"statuses=ringing", "statuses"},
	} {
		d := expectError(t, c.query, e.do("GET", "/v1/calls?"+c.query, e.key, nil), 400, "invalid_argument")
		if d["field"] != c.field {
			t.Errorf("%s: details %v, want field %s", c.query, d, c.field)
		}
	}
}

func TestErrors(t *testing.T) {
	e := newTestEnv(t)
	cases := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/calls/nope", 404, "not_found"},
		{"GET", "/v1/calls?page_size=abc", 400, "invalid_argument"},
		{"GET", "/v1/calls?page_size=0", 400, "invalid_argument"},
		{"GET", "/v1/calls?page_token=%25%25garbage", 400, "invalid_argument"},
		{"GET", "/v1/flows?page_token=AAAA", 400, "invalid_argument"},
		{"GET", "/v1/nothing", 404, "not_found"},
		{"DELETE", "/v1/calls", 405, "method_not_allowed"},
		{"PATCH", "/v1/flows/x", 405, "method_not_allowed"},
		{"GET", "/v1/webhooks/nope", 404, "not_found"},
		{"GET", "/v1/webhooks/nope/deliveries", 404, "not_found"},
		{"DELETE", "/v1/webhooks/nope", 404, "not_found"},
	}
	for _, c := range cases {
		res := e.do(c.method, c.path, e.key, nil)
		expectError(t, c.method+" "+c.path, res, c.status, c.code)
		if c.status == 405 && res.header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
	}
	var h map[string]string
	if res := e.do("GET", "/healthz", "", nil); res.status != 200 {
		t.Fatalf("healthz: %d", res.status)
	} else if res.decode(t, &h); h["status"] != "ok" {
		t.Fatalf("healthz: %v", h)
	}
	// A closed database makes health 503.
	e.db.Close()
	expectError(t, "healthz without a database", e.do("GET", "/healthz", "", nil), 503, "unavailable")
}

func TestAuth(t *testing.T) {
	e := newTestEnv(t)
	res := e.do("GET", "/v1/calls", "", nil)
	expectError(t, "no key", res, 401, "unauthenticated")
	if !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without a Bearer challenge: %v", res.header)
	}
	expectError(t, "unknown key", e.do("GET", "/v1/calls", KeyPrefix+"not-a-real-key-at-all", nil), 401, "unauthenticated")
	for _, h := range []string{"Basic dXNlcjpwdw==", "Bearer", "Bearer ", e.key} {
		expectError(t, "Authorization: "+h, e.do("GET", "/v1/calls", "", nil, "Authorization", h), 401, "unauthenticated")
	}
	// The scheme is case-insensitive (RFC 9110).
	if res := e.do("GET", "/v1/calls", "", nil, "Authorization", "bearer "+e.key); res.status != 200 {
		t.Fatalf("lower-case scheme: %d %s", res.status, res.body)
	}
	// A key in the query only works where a browser needs it (/v1/events).
	expectError(t, "api_key on /v1/calls", e.do("GET", "/v1/calls?api_key="+e.key, "", nil), 401, "unauthenticated")

	// Read-only keys read but do not write.
	if res := e.do("GET", "/v1/flows", e.roKey, nil); res.status != 200 {
		t.Fatalf("read-only GET: %d", res.status)
	}
	expectError(t, "read-only POST", e.do("POST", "/v1/flows", e.roKey, map[string]any{"actions": []any{map[string]string{"type": "answer"}}}), 403, "permission_denied")
	expectError(t, "read-only DELETE", e.do("DELETE", "/v1/webhooks/x", e.roKey, nil), 403, "permission_denied")

	// Revocation is immediate.
	k, err := e.db.APIKeyByHash(context.Background(), HashKey(e.roKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.RevokeAPIKey(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
	expectError(t, "revoked key", e.do("GET", "/v1/calls", e.roKey, nil), 401, "unauthenticated")

	// Open routes need no key.
	for _, p := range []string{"/healthz", "/openapi.json", "/metrics"} {
		if res := e.do("GET", p, "", nil); res.status != 200 {
			t.Errorf("GET %s without a key: %d", p, res.status)
		}
	}
	if n := metricValue(t, e.api.metrics.AuthFailures, "unauthenticated"); n < 8 {
		t.Errorf("auth failures counted %v, want at least 8", n)
	}
	// Using a key records when.
	if k, _ := e.db.APIKeyByHash(context.Background(), HashKey(e.key)); k.TMLastUsed == nil || !k.TMLastUsed.Equal(e.clock.Now()) {
		t.Errorf("last use of the admin key: %v", k.TMLastUsed)
	}
}

func TestSeedKey(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	if _, err := SeedKey(ctx, e.db, "short", "env"); err == nil {
		t.Fatal("a short key was seeded")
	}
	key := "my-own-long-enough-api-key-0123456789"
	for i, want := range []bool{true, false} {
		stored, err := SeedKey(ctx, e.db, key, "env")
		if err != nil || stored != want {
			t.Fatalf("seed %d: stored %v, %v; want %v", i, stored, err, want)
		}
	}
	if res := e.do("GET", "/v1/calls", key, nil); res.status != 200 {
		t.Fatalf("seeded key: %d", res.status)
	}
	k, _ := e.db.APIKeyByHash(ctx, HashKey(key))
	if k.Prefix != "" || k.Hash != HashKey(key) || k.Role != store.RoleAdmin {
		t.Fatalf("seeded record: %+v", k)
	}
	e.db.RevokeAPIKey(ctx, k.ID)
	if _, err := SeedKey(ctx, e.db, key, "env"); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("re-seeding a revoked key: %v", err)
	}
	expectError(t, "revoked seeded key", e.do("GET", "/v1/calls", key, nil), 401, "unauthenticated")
}

func TestRateLimit(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.RateLimit, c.RateBurst = 1, 3 })
	for i := 2; i >= 0; i-- {
		res := e.do("GET", "/v1/flows", e.key, nil)
		if res.status != 200 {
			t.Fatalf("request within the burst: %d", res.status)
		}
		if l, r := res.header.Get("X-RateLimit-Limit"), res.header.Get("X-RateLimit-Remaining"); l != "3" || r != string(rune('0'+i)) {
			t.Fatalf("limit %q remaining %q, want 3 and %d", l, r, i)
		}
		if reset := res.header.Get("X-RateLimit-Reset"); reset != string(rune('0'+3-i)) {
			t.Fatalf("reset %q after %d requests", reset, 3-i)
		}
	}
	res := e.do("GET", "/v1/flows", e.key, nil)
	expectError(t, "over the limit", res, 429, "rate_limited")
	if ra := res.header.Get("Retry-After"); ra != "1" {
		t.Fatalf("Retry-After %q, want 1", ra)
	}
	// Another key has its own bucket.
	if res := e.do("GET", "/v1/flows", e.roKey, nil); res.status != 200 {
		t.Fatalf("other key: %d", res.status)
	}
	// One second refills one token.
	e.clock.Advance(time.Second)
	if res := e.do("GET", "/v1/flows", e.key, nil); res.status != 200 {
		t.Fatalf("after a second: %d", res.status)
	}
	expectError(t, "spent again", e.do("GET", "/v1/flows", e.key, nil), 429, "rate_limited")
	// Unauthenticated requests do not spend anyone's tokens.
	e.clock.Advance(10 * time.Second)
	for range 5 {
		e.do("GET", "/v1/flows", "", nil)
	}
	if res := e.do("GET", "/v1/flows", e.key, nil); res.header.Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("bucket after a rest: remaining %q", res.header.Get("X-RateLimit-Remaining"))
	}
}

func TestBodyErrors(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxBodyBytes = 4096 })
	post := func(body string, header ...string) response {
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/webhooks", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.key)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return response{status: res.StatusCode, header: res.Header, body: b}
	}
	good := `{"url":"http://127.0.0.1:9/x"}`
	expectError(t, "no content type", post(good), 415, "unsupported_media_type")
	expectError(t, "text/plain", post(good, "Content-Type", "text/plain"), 415, "unsupported_media_type")
	expectError(t, "form", post("url=x", "Content-Type", "application/x-www-form-urlencoded"), 415, "unsupported_media_type")
	if res := post(good, "Content-Type", "application/json; charset=utf-8"); res.status != 201 {
		t.Fatalf("JSON with a charset: %d %s", res.status, res.body)
	}
	big := `{"url":"http://127.0.0.1:9/x","description":"` + strings.Repeat("a", 5000) + `"}`
	expectError(t, "oversized", post(big, "Content-Type", "application/json"), 413, "payload_too_large")

	for _, c := range []struct{ body, field string }{
		{``, ""},
		{`{`, ""},
		{`{"url":}`, ""},
		{`[]`, ""},
		{`"x"`, ""},
		{`{"url":"http://127.0.0.1:9/x"} {}`, ""},
		{`{"url":"http://127.0.0.1:9/x","colour":"red"}`, "colour"},
		{`{"url":42}`, "url"},
		{`{"url":"http://127.0.0.1:9/x","event_types":"dtmf"}`, "event_types"},
		{`{"url":"http://127.0.0.1:9/x","event_types":["dtmf",7]}`, "event_types"},
		{`{"url":"http://127.0.0.1:9/x","event_types":["dtmf","calls.hangup"]}`, "event_types[1]"},
		{`{"url":"http://127.0.0.1:9/x","event_types":["nothing.*"]}`, "event_types[0]"},
		{`{"url":"ftp://127.0.0.1/x"}`, "url"},
		{`{"url":"http:///nohost"}`, "url"},
		{`{"url":"http://127.0.0.1:9/x#frag"}`, "url"},
		{`{"url":"::::"}`, "url"},
		{`{}`, "url"},
		{`null`, "url"},
	} {
		d := expectError(t, c.body, post(c.body, "Content-Type", "application/json"), 400, "invalid_argument")
		if c.field != "" && d["field"] != c.field {
			t.Errorf("%s: details %v, want field %q", c.body, d, c.field)
		}
	}
}

// Bodies mangled many ways go through the real handlers: every answer must
// be a JSON error or a success, never a 500 or a dropped connection.
func TestMangledBodiesNeverCrash(t *testing.T) {
	e := newTestEnv(t)
	seeds := [][]byte{
		[]byte(`{"id":"f1","name":"n","actions":[{"id":"a","type":"answer"},{"type":"digits_receive","option":{"max_digits":3,"timeout_ms":100}},{"type":"hangup","next_id":"a"}]}`),
		[]byte(`{"url":"http://127.0.0.1:9/hook","event_types":["call.*","dtmf"],"description":"d"}`),
	}
	targets := []struct{ method, path string }{{"POST", "/v1/flows"}, {"PUT", "/v1/flows/f1"}, {"POST", "/v1/webhooks"}}
	tokens := [][]byte{[]byte(`"`), []byte(`{`), []byte(`}`), []byte(`[`), []byte(`]`), []byte(`,`), []byte(`:`), []byte(`null`),
		[]byte(`-1e999`), []byte(`"\u0000"`), []byte(`1.5`), []byte(`true`), []byte(`"option"`), []byte(`{"x":1}`), []byte("\xff")}
	state := uint64(1)
	rnd := func(n int) int {
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		return int(state % uint64(n))
	}
	for i := range 1500 {
		b := append([]byte(nil), seeds[rnd(len(seeds))]...)
		for range 1 + rnd(4) {
			pos := rnd(len(b) + 1)
			switch rnd(3) {
			case 0: // insert a token
				tok := tokens[rnd(len(tokens))]
				b = append(b[:pos], append(append([]byte(nil), tok...), b[pos:]...)...)
			case 1: // delete a span
				end := min(len(b), pos+1+rnd(8))
				b = append(b[:pos], b[end:]...)
			case 2: // flip a byte
				if pos < len(b) {
					b[pos] ^= byte(1 + rnd(255))
				}
			}
		}
		tg := targets[i%len(targets)]
		req := httptest.NewRequest(tg.method, tg.path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+e.key)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		if rec.Code >= 500 || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s with %q: %d %s", tg.method, tg.path, b, rec.Code, rec.Body)
		}
	}
}

func TestPanicIsA500(t *testing.T) {
	e := newTestEnv(t)
	e.api.mux.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	expectError(t, "panicking handler", e.do("GET", "/boom", "", nil), 500, "internal")
	// The server is still up.
	if res := e.do("GET", "/healthz", "", nil); res.status != 200 {
		t.Fatalf("after a panic: %d", res.status)
	}
}

func TestMetrics(t *testing.T) {
	e := newTestEnv(t)
	e.do("GET", "/v1/calls", "", nil) // a 401, counted by route and code
	in := store.Call{ID: "c1", Direction: store.DirectionIncoming, Status: store.StatusRinging}
	out := store.Call{ID: "c2", Direction: store.DirectionOutgoing, Status: store.StatusDialing}
	e.bus.Publish(flow.EventCallCreated, "c1", in)
	e.bus.Publish(flow.EventCallCreated, "c2", out)
	e.bus.Publish(flow.EventDTMF, "c1", map[string]string{"digit": "5"})
	e.bus.Publish(flow.EventDTMF, "c1", map[string]string{"digit": "#"})
	e.bus.Publish(flow.EventActionExecuted, "c1", store.ActionRun{Type: "answer", Result: "ok"})
	e.bus.Publish(flow.EventActionExecuted, "c1", store.ActionRun{Type: "goto", Result: "jump:menu"})
	in.Status, in.HangupReason = store.StatusHangup, store.ReasonNormal
	e.bus.Publish(flow.EventCallHangup, "c1", in)

	want := []string{
		`voxbridge_calls_active{direction="incoming"} 0`,
		`voxbridge_calls_active{direction="outgoing"} 1`,
		`voxbridge_calls_total{direction="incoming",hangup_reason="normal"} 1`,
		`voxbridge_dtmf_events_total 2`,
		`voxbridge_actions_executed_total{result="ok",type="answer"} 1`,
		`voxbridge_actions_executed_total{result="jump",type="goto"} 1`,
		`voxbridge_http_requests_total{code="401",route="GET /v1/calls"} 1`,
		`voxbridge_api_auth_failures_total{reason="unauthenticated"} 1`,
		`go_goroutines`,
	}
	var text string
	waitFor(t, "the metrics to count the events", func() bool {
		res := e.do("GET", "/metrics", "", nil)
		text = string(res.body)
		for _, w := range want {
			if !strings.Contains(text, w) {
				return false
			}
		}
		return true
	})
}

// The store's write queue is on /metrics: what it committed, its bound.
func TestStoreWriterMetrics(t *testing.T) {
	e := newTestEnv(t)
	e.api.Metrics().MustRegister(StoreWriterCollector(e.db))
	before := e.db.WriterStats().Written
	for i := range 3 {
		c := store.Call{Direction: store.DirectionIncoming, Status: store.StatusRinging, Source: fmt.Sprint(i)}
		if err := e.db.QueueCreateCall(&c); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.db.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	text := string(e.do("GET", "/metrics", "", nil).body)
	for _, w := range []string{
		fmt.Sprintf("voxbridge_store_writes_total %d", before+3),
		fmt.Sprintf("voxbridge_store_write_queue_capacity %d", store.WriteQueueCapacity),
		"voxbridge_store_write_queue 0",
		"voxbridge_store_writes_failed_total 0",
	} {
		if !strings.Contains(text, w+"\n") {
			t.Errorf("/metrics lacks %q", w)
		}
	}
}

// Close ends every goroutine the API started: the metrics feed, the
// webhook deliverer and a delivery waiting to retry, an open websocket.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	ours := func() []string {
		buf := make([]byte, 1<<20)
		var left []string
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "voxbridge/api.(*") {
				left = append(left, g)
			}
		}
		return left
	}
	e := newTestEnv(t, func(c *Config) { c.Webhooks.Backoff, c.Webhooks.MaxBackoff = time.Hour, time.Hour })
	rcv := newReceiver(t, 500)
	hook := e.createWebhook(rcv.srv.URL)
	ws, _, err := e.dialEvents("", e.key)
	if err != nil {
		t.Fatal(err)
	}
	e.subscribers(1)
	e.bus.Publish(flow.EventCallCreated, "c1", store.Call{ID: "c1"})
	waitFor(t, "a delivery waiting to retry", func() bool {
		ds := e.deliveries(hook.ID)
		return len(ds) == 1 && ds[0].TMNextAttempt != nil
	})
	if len(ours()) == 0 {
		t.Fatal("no API goroutines seen while running; the check would pass vacuously")
	}
	e.srv.Close()
	e.api.Close()
	ws.Close()
	deadline := time.Now().Add(15 * time.Second)
	for len(ours()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after Close:\n%s", strings.Join(ours(), "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
