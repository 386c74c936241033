package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxbridge/voxbridge/flow"
)

// EventsConfig tunes the live-event websocket.
type EventsConfig struct {
	// PingInterval is how often the server pings (0: 30 s); a client that
	// has not answered within two intervals is closed.
	PingInterval time.Duration
	// WriteTimeout bounds one write (0: 10 s); a client that does not read
	// for that long is dropped.
	WriteTimeout time.Duration
	// Buffer is how many events may wait for one client (0: 256); a
	// client that lets it fill is dropped.
	Buffer int
}

func (c EventsConfig) withDefaults() EventsConfig {
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Buffer <= 0 {
		c.Buffer = 256
	}
	return c
}

// EventTypes are the event types filters may name. A filter entry is one of
// them or "<prefix>.*" (e.g. "call.*").
var EventTypes = []string{
	flow.EventCallCreated, flow.EventCallRinging, flow.EventCallAnswered, flow.EventCallHangup,
	flow.EventDTMF, flow.EventActionExecuted, flow.EventTranscriptPart, flow.EventTranscriptFinal,
	flow.EventAgentTurn, flow.EventRecordingReady,
	flow.EventTaskCreated, flow.EventTaskStarted, flow.EventTaskCompleted, flow.EventTaskFailed, flow.EventTaskCancelled,
}

// checkEventTypes validates a filter list; field names the parameter.
func checkEventTypes(field string, types []string) *apiError {
	for i, t := range types {
		f := fmt.Sprintf("%s[%d]", field, i)
		if prefix, ok := strings.CutSuffix(t, ".*"); ok && prefix != "" {
			if !slices.ContainsFunc(EventTypes, func(et string) bool { return strings.HasPrefix(et, prefix+".") }) {
				return badField(f, "no event type starts with "+prefix+".")
			}
			continue
		}
		if !slices.Contains(EventTypes, t) {
			return badField(f, fmt.Sprintf("unknown event type %q; known: %s (or a prefix like call.*)", t, strings.Join(EventTypes, ", ")))
		}
	}
	return nil
}

// matchesTypes reports whether typ passes a filter list; empty passes all.
func matchesTypes(types []string, typ string) bool {
	if len(types) == 0 {
		return true
	}
	for _, t := range types {
		if t == typ {
			return true
		}
		if prefix, ok := strings.CutSuffix(t, "*"); ok && strings.HasPrefix(typ, prefix) {
			return true
		}
	}
	return false
}

// upgrader accepts any Origin: the API authenticates by key or one-use
// token, never by cookie, so another site's page cannot borrow a user's
// credentials (the cross-site websocket hijacking CheckOrigin guards
// against).
var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	CheckOrigin:      func(*http.Request) bool { return true },
	Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
		code := "invalid_argument"
		if status != http.StatusBadRequest {
			code = strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
		}
		writeError(w, status, code, "websocket: "+reason.Error())
	},
}

// streamEvents upgrades to a websocket and sends bus events as JSON text
// messages, one per event, filtered by call_id and types.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request) {
	if s.bus == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "live events are not enabled on this server")
		return
	}
	q := r.URL.Query()
	callID := q.Get("call_id")
	var types []string
	if v := q.Get("types"); v != "" {
		for _, t := range strings.Split(v, ",") {
			types = append(types, strings.TrimSpace(t))
		}
		if e := checkEventTypes("types", types); e != nil {
			e.write(w)
			return
		}
	}
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the server is shutting down")
		return
	}
	defer s.wg.Done()
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	defer conn.Close()
	sub := s.bus.Subscribe(s.cfg.Events.Buffer, func(ev flow.Event) bool {
		return (callID == "" || ev.CallID == callID) && matchesTypes(types, ev.Type)
	})
	defer sub.Close()
	s.metrics.EventSubscribers.Inc()
	defer s.metrics.EventSubscribers.Dec()
	s.serveEvents(conn, sub)
}

// serveEvents writes events until the client leaves, falls behind or the
// server closes. The client's messages are read (and dropped) only to see
// pongs and its close.
func (s *Server) serveEvents(conn *websocket.Conn, sub *flow.Subscription) {
	cfg := s.cfg.Events
	readDone := make(chan struct{})
	conn.SetReadLimit(4096)
	_ = conn.SetReadDeadline(time.Now().Add(2 * cfg.PingInterval))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(2 * cfg.PingInterval))
	})
	go func() {
		defer close(readDone)
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()
	// closeWith sends a close frame and waits briefly for the client's
	// answer, so the reason reaches it before the connection goes.
	closeWith := func(code int, reason string) {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-readDone:
		case <-t.C:
		}
	}
	slow := func() bool {
		if n := sub.Dropped(); n > 0 {
			s.metrics.SubscribersDropped.WithLabelValues("slow_consumer").Inc()
			closeWith(websocket.ClosePolicyViolation, fmt.Sprintf("slow consumer: %d events dropped", n))
			return true
		}
		return false
	}
	ping := time.NewTicker(cfg.PingInterval)
	defer func() {
		ping.Stop()
		conn.Close()
		<-readDone
	}()
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok || slow() {
				return
			}
			b, err := json.Marshal(ev)
			if err != nil {
				s.log.Error("encode event", "type", ev.Type, "call_id", ev.CallID, "err", err)
				continue
			}
			_ = conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
			if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					s.metrics.SubscribersDropped.WithLabelValues("write_timeout").Inc()
				}
				return
			}
		case <-ping.C:
			if slow() {
				return
			}
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(cfg.WriteTimeout)); err != nil {
				return
			}
		case <-readDone:
			return
		case <-s.ctx.Done():
			closeWith(websocket.CloseGoingAway, "server shutting down")
			return
		}
	}
}
