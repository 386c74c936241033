// Package api is voxbridge's HTTP control API: JSON resources under /v1,
// errors as {"error":{"code","message"}}, cursor pages.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

// Server serves the HTTP API.
type Server struct {
	store *store.DB
	log   *slog.Logger
	mux   *http.ServeMux
}

// New builds the API handler.
func New(db *store.DB, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{store: db, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /v1/calls", s.listCalls)
	s.mux.HandleFunc("GET /v1/calls/{id}", s.getCall)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
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

// page is the shape of every list answer.
type page[T any] struct {
	Result        []T    `json:"result"`
	NextPageToken string `json:"next_page_token"`
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var e errorBody
	e.Error.Code, e.Error.Message = code, msg
	writeJSON(w, status, e)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "database: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) listCalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opt := store.ListOptions{PageToken: q.Get("page_token")}
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "invalid_argument", "page_size: must be a positive integer")
			return
		}
		opt.PageSize = n
	}
	calls, next, err := s.store.ListCalls(r.Context(), opt)
	if errors.Is(err, store.ErrBadPageToken) {
		writeError(w, http.StatusBadRequest, "invalid_argument", "page_token: malformed")
		return
	}
	if err != nil {
		s.log.Error("list calls", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "could not list calls")
		return
	}
	if calls == nil {
		calls = []store.Call{}
	}
	writeJSON(w, http.StatusOK, page[store.Call]{Result: calls, NextPageToken: next})
}

func (s *Server) getCall(w http.ResponseWriter, r *http.Request) {
	c, err := s.store.GetCall(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "call not found")
		return
	}
	if err != nil {
		s.log.Error("get call", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "could not read call")
		return
	}
	actions, err := s.store.ListActionRuns(r.Context(), c.ID)
	if err != nil {
		s.log.Error("get call actions", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "could not read call")
		return
	}
	writeJSON(w, http.StatusOK, callView{Call: c, Actions: actions})
}

// callView is a call with the actions its flows executed.
type callView struct {
	*store.Call
	Actions []store.ActionRun `json:"actions"`
}
