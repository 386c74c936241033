package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// dialEvents opens /v1/events with query (auth included or not) and an
// optional bearer key; it returns the connection or the HTTP answer that
// refused it.
func (e *testEnv) dialEvents(query, key string) (*websocket.Conn, *http.Response, error) {
	e.t.Helper()
	u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/v1/events"
	if query != "" {
		u += "?" + query
	}
	h := http.Header{}
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	c, res, err := websocket.DefaultDialer.Dial(u, h)
	if c != nil {
		e.t.Cleanup(func() { c.Close() })
	}
	return c, res, err
}

// subscribers waits until n websockets are subscribed to the bus.
func (e *testEnv) subscribers(n int) {
	e.t.Helper()
	waitFor(e.t, "websocket subscribers", func() bool { return metricValue(e.t, e.api.metrics.EventSubscribers) == float64(n) })
}

func readEvent(t *testing.T, c *websocket.Conn) flow.Event {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var ev flow.Event
	if err := c.ReadJSON(&ev); err != nil {
		t.Fatalf("read event: %v", err)
	}
	return ev
}

func TestEventsStreamWithFilters(t *testing.T) {
	e := newTestEnv(t)
	all, _, err := e.dialEvents("", e.roKey)
	if err != nil {
		t.Fatal(err)
	}
	oneCall, _, err := e.dialEvents("call_id=c1&types=dtmf,call.*", e.key)
	if err != nil {
		t.Fatal(err)
	}
	e.subscribers(2)

	e.bus.Publish(flow.EventCallCreated, "c1", store.Call{ID: "c1", Direction: store.DirectionIncoming, Status: store.StatusRinging})
	e.bus.Publish(flow.EventDTMF, "c2", map[string]string{"digit": "9"})
	e.bus.Publish(flow.EventActionExecuted, "c1", store.ActionRun{Type: "answer", Result: "ok"})
	e.bus.Publish(flow.EventDTMF, "c1", map[string]string{"digit": "4"})
	e.bus.Publish(flow.EventCallHangup, "c1", store.Call{ID: "c1", Status: store.StatusHangup, HangupReason: store.ReasonNormal})

	wantAll := []string{"call.created/c1", "dtmf/c2", "action.executed/c1", "dtmf/c1", "call.hangup/c1"}
	var prev uint64
	for i, want := range wantAll {
		ev := readEvent(t, all)
		if got := ev.Type + "/" + ev.CallID; got != want {
			t.Fatalf("unfiltered event %d: %s, want %s", i, got, want)
		}
		if ev.ID <= prev || ev.Time.IsZero() {
			t.Fatalf("event %d not stamped in order: %+v", i, ev)
		}
		prev = ev.ID
	}
	for i, want := range []string{"call.created/c1", "dtmf/c1", "call.hangup/c1"} {
		ev := readEvent(t, oneCall)
		if got := ev.Type + "/" + ev.CallID; got != want {
			t.Fatalf("filtered event %d: %s, want %s", i, got, want)
		}
		if want == "dtmf/c1" {
			data, _ := ev.Data.(map[string]any)
			if data["digit"] != "4" {
				t.Fatalf("dtmf data %v", ev.Data)
			}
		}
	}

	// The server closes with 1001 when it stops.
	e.api.Close()
	all.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, _, err = all.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("on shutdown: %v, want close 1001", err)
	}
	if _, res, err := e.dialEvents("", e.key); err == nil || res == nil || res.StatusCode != 503 {
		t.Fatalf("dial after Close: %v %v", res, err)
	}
}

func TestEventsAuthAndBadFilters(t *testing.T) {
	e := newTestEnv(t)
	for _, c := range []struct {
		query, key string
		status     int
	}{
		{"", "", 401},
		{"api_key=" + KeyPrefix + "wrong-wrong-wrong", "", 401},
		{"session_token=vbs_made_up", "", 401},
		{"types=dtmf,nonsense", e.key, 400},
		{"types=", e.key, 0}, // empty means all
		{"colour=red", e.key, 400},
	} {
		c0, res, err := e.dialEvents(c.query, c.key)
		if c.status == 0 {
			if err != nil {
				t.Fatalf("%q: %v", c.query, err)
			}
			c0.Close()
			continue
		}
		if err == nil || res == nil || res.StatusCode != c.status {
			t.Fatalf("%q: %v %v, want %d", c.query, res, err, c.status)
		}
	}
	// A plain GET (no upgrade) gets a JSON error.
	expectError(t, "GET without upgrade", e.do("GET", "/v1/events", e.key, nil), 400, "invalid_argument")

	// ?api_key= works for browsers.
	c, _, err := e.dialEvents("types=dtmf&api_key="+e.roKey, "")
	if err != nil {
		t.Fatal(err)
	}
	e.subscribers(1)
	e.bus.Publish(flow.EventDTMF, "x", map[string]string{"digit": "1"})
	if ev := readEvent(t, c); ev.Type != flow.EventDTMF {
		t.Fatalf("got %+v", ev)
	}
}

func TestEventsSessionToken(t *testing.T) {
	e := newTestEnv(t)
	var s sessionView
	res := e.do("POST", "/v1/sessions", e.roKey, nil)
	if res.status != 201 {
		t.Fatalf("create session: %d %s", res.status, res.body)
	}
	res.decode(t, &s)
	if !strings.HasPrefix(s.Token, sessionPrefix) || s.TTLSeconds != 60 || !s.ExpiresAt.Equal(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("session %+v", s)
	}
	// Not a bearer key.
	expectError(t, "session token as a key", e.do("GET", "/v1/calls", s.Token, nil), 401, "unauthenticated")
	c, _, err := e.dialEvents("session_token="+s.Token, "")
	if err != nil {
		t.Fatalf("first use: %v", err)
	}
	c.Close()
	if _, res, err := e.dialEvents("session_token="+s.Token, ""); err == nil || res.StatusCode != 401 {
		t.Fatalf("second use: %v %v", res, err)
	}
	// Expired after its TTL.
	e.do("POST", "/v1/sessions", e.roKey, nil).decode(t, &s)
	e.clock.Advance(61 * time.Second)
	if _, res, err := e.dialEvents("session_token="+s.Token, ""); err == nil || res.StatusCode != 401 {
		t.Fatalf("expired token: %v %v", res, err)
	}
	// Revoking the key voids its unused tokens.
	e.do("POST", "/v1/sessions", e.roKey, nil).decode(t, &s)
	k, _ := e.db.APIKeyByHash(t.Context(), HashKey(e.roKey))
	e.db.RevokeAPIKey(t.Context(), k.ID)
	if _, res, err := e.dialEvents("session_token="+s.Token, ""); err == nil || res.StatusCode != 401 {
		t.Fatalf("token of a revoked key: %v %v", res, err)
	}
}

// A client that reads but cannot keep up with a burst is closed with 1008
// and a reason, while Publish never waits for it.
func TestEventsSlowConsumerClosed(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Events.Buffer = 4 })
	c, _, err := e.dialEvents("", e.key)
	if err != nil {
		t.Fatal(err)
	}
	e.subscribers(1)
	for i := range 20000 {
		e.bus.Publish(flow.EventDTMF, "c", i)
	}
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	received := 0
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			received++
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "slow consumer") {
			t.Fatalf("after %d events: %v, want close 1008 slow consumer", received, err)
		}
		break
	}
	if received >= 20000 {
		t.Fatalf("received all %d events, nothing was dropped", received)
	}
	e.subscribers(0)
	if n := metricValue(t, e.api.metrics.SubscribersDropped, "slow_consumer"); n != 1 {
		t.Fatalf("slow consumers counted %v, want 1", n)
	}
}

// A client that stops reading altogether is dropped when a write blocks
// past the write timeout (or its buffer fills), never holding up events.
func TestEventsStalledClientDropped(t *testing.T) {
	e := newTestEnv(t, func(c *Config) {
		c.Events.Buffer = 8
		c.Events.WriteTimeout = 200 * time.Millisecond
	})
	if _, _, err := e.dialEvents("", e.key); err != nil {
		t.Fatal(err)
	}
	e.subscribers(1)
	big := strings.Repeat("x", 64<<10)
	waitFor(t, "the stalled client to be dropped", func() bool {
		for range 50 {
			e.bus.Publish(flow.EventDTMF, "c", big)
		}
		return metricValue(t, e.api.metrics.EventSubscribers) == 0
	})
	dropped := metricValue(t, e.api.metrics.SubscribersDropped, "write_timeout") + metricValue(t, e.api.metrics.SubscribersDropped, "slow_consumer")
	if dropped != 1 {
		t.Fatalf("dropped subscribers counted %v, want 1", dropped)
	}
}

// The server pings; a client that answers stays, one that does not is
// closed after two ping intervals.
func TestEventsKeepalive(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Events.PingInterval = 50 * time.Millisecond })
	alive, _, err := e.dialEvents("", e.key)
	if err != nil {
		t.Fatal(err)
	}
	pings := make(chan struct{}, 100)
	alive.SetPingHandler(func(data string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return alive.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	deaf, _, err := e.dialEvents("", e.key)
	if err != nil {
		t.Fatal(err)
	}
	deaf.SetPingHandler(func(string) error { return nil }) // never pongs
	e.subscribers(2)

	// Both read; only the one answering pings survives.
	aliveErr := make(chan error, 1)
	go func() {
		for {
			alive.SetReadDeadline(time.Now().Add(15 * time.Second))
			var ev flow.Event
			if err := alive.ReadJSON(&ev); err != nil {
				aliveErr <- err
				return
			}
			if ev.Type == flow.EventCallHangup {
				aliveErr <- nil
				return
			}
		}
	}()
	deaf.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		if _, _, err := deaf.ReadMessage(); err != nil {
			break
		}
	}
	e.subscribers(1)
	for range 3 {
		<-pings
	}
	e.bus.Publish(flow.EventCallHangup, "c", nil)
	if err := <-aliveErr; err != nil {
		t.Fatalf("the client answering pings lost its stream: %v", err)
	}
}

// Events carry their data as JSON the client can decode into our types.
func TestEventsCarryCallRecords(t *testing.T) {
	e := newTestEnv(t)
	c, _, err := e.dialEvents("types=call.hangup", e.key)
	if err != nil {
		t.Fatal(err)
	}
	e.subscribers(1)
	e.bus.Publish(flow.EventCallHangup, "c9", store.Call{ID: "c9", Direction: store.DirectionIncoming, Status: store.StatusHangup,
		HangupBy: store.HangupByRemote, HangupReason: store.ReasonNormal, DTMF: "12"})
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var ev struct {
		Type string     `json:"type"`
		Data store.Call `json:"data"`
	}
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != flow.EventCallHangup || ev.Data.ID != "c9" || ev.Data.HangupBy != store.HangupByRemote || ev.Data.DTMF != "12" {
		t.Fatalf("event %s", b)
	}
}
