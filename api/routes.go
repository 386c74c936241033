package api

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// access says who may call a route.
type access int

const (
	public access = iota // no key (health, OpenAPI document, metrics)
	read                 // any valid key
	write                // a key with the admin role
)

// route is one row of the API: everything middleware, the OpenAPI test and
// the handler need to agree on.
type route struct {
	method, path string // the ServeMux pattern, also the OpenAPI path
	op           string // the OpenAPI operationId
	access       access
	// query lists the query parameters the handler reads; any other one
	// is refused with 400, so a typo never silently widens a list.
	query []string
	// queryAuth lets the key come as ?api_key= or ?session_token=, for
	// browsers opening a websocket (they cannot set headers).
	queryAuth bool
	// body, when set, returns a new value of the type the JSON body
	// decodes into (strictly); nil for routes without a body.
	body func() any
	h    http.HandlerFunc
}

var pageQuery = []string{"page_size", "page_token"}

// routeTable lists every route. Later resources (outbound calls, call
// actions, trunks, agents, tasks…) are added here and in openapi.json.
func (s *Server) routeTable() []route {
	return []route{
		{method: "GET", path: "/healthz", op: "getHealth", access: public, h: s.healthz},
		{method: "GET", path: "/openapi.json", op: "getOpenAPI", access: public, h: serveOpenAPI},
		{method: "GET", path: "/metrics", op: "getMetrics", access: public, h: s.metrics.handler().ServeHTTP},

		{method: "POST", path: "/v1/sessions", op: "createSession", access: read, h: s.createSession},

		{method: "GET", path: "/v1/calls", op: "listCalls", access: read,
			query: append([]string{"status", "direction", "agent", "from", "to", "created_after", "created_before"}, pageQuery...), h: s.listCalls},
		bodyRoute("POST", "/v1/calls", "createCall", write, s.createCall),
		{method: "GET", path: "/v1/calls/{id}", op: "getCall", access: read, h: s.getCall},
		{method: "GET", path: "/v1/calls/{id}/transcript", op: "getCallTranscript", access: read, h: s.callTranscript},
		{method: "GET", path: "/v1/calls/{id}/recording", op: "getCallRecording", access: read, h: s.getCallRecording},
		{method: "GET", path: "/v1/calls/{id}/recordings", op: "listCallRecordings", access: read, h: s.listCallRecordings},
		{method: "GET", path: "/v1/calls/{id}/capture", op: "getCallCapture", access: read, h: s.getCallCapture},
		{method: "GET", path: "/v1/recordings/{id}", op: "getRecording", access: read, h: s.getRecording},
		{method: "GET", path: "/v1/calls/{id}/media", op: "streamCallMedia", access: write, queryAuth: true,
			query: []string{"encoding", "direction", "format", "api_key", "session_token"}, h: s.callMedia},
		bodyRoute("POST", "/v1/calls/{id}/hangup", "hangupCall", write, s.hangupCall),
		bodyRoute("POST", "/v1/calls/{id}/transfer", "transferCall", write, s.transferCall),
		bodyRoute("POST", "/v1/calls/{id}/talk", "talkOnCall", write, s.talkOnCall),
		bodyRoute("POST", "/v1/calls/{id}/play", "playOnCall", write, s.playOnCall),
		bodyRoute("POST", "/v1/calls/{id}/dtmf", "sendCallDTMF", write, s.sendCallDTMF),
		bodyRoute("POST", "/v1/calls/{id}/mute", "muteCall", write, s.muteCall),
		bodyRoute("POST", "/v1/calls/{id}/unmute", "unmuteCall", write, s.unmuteCall),
		{method: "POST", path: "/v1/calls/{id}/hold", op: "holdCall", access: write, h: s.holdCall},
		{method: "POST", path: "/v1/calls/{id}/unhold", op: "unholdCall", access: write, h: s.unholdCall},
		bodyRoute("POST", "/v1/calls/{id}/recording/start", "startCallRecording", write, s.startCallRecording),
		{method: "POST", path: "/v1/calls/{id}/recording/stop", op: "stopCallRecording", access: write, h: s.stopCallRecording},

		{method: "GET", path: "/v1/flows", op: "listFlows", access: read, query: pageQuery, h: s.listFlows},
		bodyRoute("POST", "/v1/flows", "createFlow", write, s.createFlow),
		{method: "GET", path: "/v1/flows/{id}", op: "getFlow", access: read, h: s.getFlow},
		bodyRoute("PUT", "/v1/flows/{id}", "replaceFlow", write, s.replaceFlow),
		{method: "DELETE", path: "/v1/flows/{id}", op: "deleteFlow", access: write, h: s.deleteFlow},

		{method: "GET", path: "/v1/trunks", op: "listTrunks", access: read, query: pageQuery, h: s.listTrunks},
		bodyRoute("POST", "/v1/trunks", "createTrunk", write, s.createTrunk),
		{method: "GET", path: "/v1/trunks/{id}", op: "getTrunk", access: read, h: s.getTrunk},
		bodyRoute("PUT", "/v1/trunks/{id}", "replaceTrunk", write, s.replaceTrunk),
		{method: "DELETE", path: "/v1/trunks/{id}", op: "deleteTrunk", access: write, h: s.deleteTrunk},

		{method: "GET", path: "/v1/extensions", op: "listExtensions", access: read, query: pageQuery, h: s.listExtensions},
		bodyRoute("POST", "/v1/extensions", "createExtension", write, s.createExtension),
		{method: "GET", path: "/v1/extensions/{id}", op: "getExtension", access: read, h: s.getExtension},
		bodyRoute("PUT", "/v1/extensions/{id}", "replaceExtension", write, s.replaceExtension),
		{method: "DELETE", path: "/v1/extensions/{id}", op: "deleteExtension", access: write, h: s.deleteExtension},

		{method: "GET", path: "/v1/numbers", op: "listNumbers", access: read, query: pageQuery, h: s.listNumbers},
		bodyRoute("POST", "/v1/numbers", "createNumber", write, s.createNumber),
		{method: "GET", path: "/v1/numbers/{id}", op: "getNumber", access: read, h: s.getNumber},
		bodyRoute("PUT", "/v1/numbers/{id}", "replaceNumber", write, s.replaceNumber),
		{method: "DELETE", path: "/v1/numbers/{id}", op: "deleteNumber", access: write, h: s.deleteNumber},

		{method: "GET", path: "/v1/agents", op: "listAgents", access: read, query: pageQuery, h: s.listAgents},
		bodyRoute("POST", "/v1/agents", "createAgent", write, s.createAgent),
		{method: "GET", path: "/v1/agents/{id}", op: "getAgent", access: read, h: s.getAgent},
		bodyRoute("PUT", "/v1/agents/{id}", "replaceAgent", write, s.replaceAgent),
		{method: "DELETE", path: "/v1/agents/{id}", op: "deleteAgent", access: write, h: s.deleteAgent},

		{method: "GET", path: "/v1/tasks", op: "listTasks", access: read,
			query: append([]string{"status"}, pageQuery...), h: s.listTasks},
		bodyRoute("POST", "/v1/tasks", "createTask", write, s.createTask),
		{method: "GET", path: "/v1/tasks/{id}", op: "getTask", access: read, h: s.getTask},
		{method: "POST", path: "/v1/tasks/{id}/execute", op: "executeTask", access: write, h: s.executeTask},
		{method: "POST", path: "/v1/tasks/{id}/cancel", op: "cancelTask", access: write, h: s.cancelTask},
		{method: "DELETE", path: "/v1/tasks/{id}", op: "deleteTask", access: write, h: s.deleteTask},

		{method: "GET", path: "/v1/events", op: "streamEvents", access: read, queryAuth: true,
			query: []string{"call_id", "types", "api_key", "session_token"}, h: s.streamEvents},

		{method: "GET", path: "/v1/webhooks", op: "listWebhooks", access: read, query: pageQuery, h: s.listWebhooks},
		bodyRoute("POST", "/v1/webhooks", "createWebhook", write, s.createWebhook),
		{method: "GET", path: "/v1/webhooks/{id}", op: "getWebhook", access: read, h: s.getWebhook},
		{method: "DELETE", path: "/v1/webhooks/{id}", op: "deleteWebhook", access: write, h: s.deleteWebhook},
		{method: "GET", path: "/v1/webhooks/{id}/deliveries", op: "listWebhookDeliveries", access: read,
			query: pageQuery, h: s.listWebhookDeliveries},
	}
}

// bodyRoute makes a route whose handler gets its JSON body decoded, once
// and strictly, into a *T; the OpenAPI test decodes the documented examples
// into the same T.
func bodyRoute[T any](method, path, op string, acc access, fn func(http.ResponseWriter, *http.Request, *T)) route {
	return route{method: method, path: path, op: op, access: acc,
		body: func() any { return new(T) },
		h: func(w http.ResponseWriter, r *http.Request) {
			v := new(T)
			if e := decodeBody(w, r, v); e != nil {
				e.write(w)
				return
			}
			fn(w, r, v)
		},
	}
}

// guard wraps a route's handler with authentication, the rate limit, the
// role check, the query parameter check and the body size limit.
func (s *Server) guard(rt route) http.Handler {
	allowed := make(map[string]bool, len(rt.query))
	for _, q := range rt.query {
		allowed[q] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.access != public {
			key, e := s.auth.authenticate(r, rt.queryAuth)
			if e != nil {
				s.metrics.AuthFailures.WithLabelValues(e.code).Inc()
				w.Header().Set("WWW-Authenticate", `Bearer realm="voxbridge"`)
				e.write(w)
				return
			}
			if !s.auth.limit(key.ID, w.Header()) {
				writeError(w, http.StatusTooManyRequests, "rate_limited", "too many requests for this API key; retry after the time in Retry-After")
				return
			}
			if rt.access == write && key.Role != roleAdmin {
				writeError(w, http.StatusForbidden, "permission_denied", "this API key is read-only")
				return
			}
			r = r.WithContext(withKey(r.Context(), key))
		}
		var unknown []string
		for name := range r.URL.Query() {
			if !allowed[name] {
				unknown = append(unknown, name)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			e := badField(unknown[0], "unknown query parameter")
			if len(rt.query) > 0 {
				e.msg += "; this route reads " + strings.Join(rt.query, ", ")
			}
			e.write(w)
			return
		}
		if rt.body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		}
		// Calls write their records through the store's queue. A change
		// answers once its writes are committed, so the client's next GET
		// sees them; a read of calls first commits what is queued, so a
		// client that saw an event (call.hangup) reads the record it
		// announced.
		switch {
		case rt.method != http.MethodGet:
			w = &syncingWriter{ResponseWriter: w, sync: func() { s.syncStore(r.Context()) }}
		case strings.HasPrefix(rt.path, "/v1/calls") && !rt.queryAuth: // not the media websocket
			s.syncStore(r.Context())
		}
		rt.h(w, r)
	})
}

// syncingWriter commits the store's queued writes before the response's
// first byte goes out.
type syncingWriter struct {
	http.ResponseWriter
	sync   func()
	synced bool
}

func (w *syncingWriter) flush() {
	if !w.synced {
		w.synced = true
		w.sync()
	}
}

func (w *syncingWriter) WriteHeader(code int) {
	w.flush()
	w.ResponseWriter.WriteHeader(code)
}

func (w *syncingWriter) Write(b []byte) (int, error) {
	w.flush()
	return w.ResponseWriter.Write(b)
}

func (w *syncingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// syncStore waits for the store's queued writes, briefly: past that the
// answer goes out anyway (the writes still land, in their turn).
func (s *Server) syncStore(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.Sync(ctx); err != nil {
		s.log.Warn("answer before the store caught up", "err", err)
	}
}

// responseWriter remembers the status for metrics and the recover
// middleware, and still lets the websocket upgrade hijack the connection.
type responseWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
	hijacked    bool
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *responseWriter) status() int {
	switch {
	case w.hijacked:
		return http.StatusSwitchingProtocols
	case !w.wroteHeader:
		return http.StatusOK
	}
	return w.code
}

// Hijack hands the connection to the websocket upgrader.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked, w.wroteHeader = true, true
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
