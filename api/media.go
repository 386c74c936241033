package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/gorilla/websocket"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// MediaAttacher runs the media websocket protocol on a live call; the flow
// controller implements it.
type MediaAttacher interface {
	AttachMediaStream(ctx context.Context, callID string, ws *websocket.Conn, opt flow.MediaStreamOptions) error
}

// callMedia upgrades to the call's two-way media websocket (see README:
// "Bring your own agent").
func (s *Server) callMedia(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Media == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "media streams are not available on this server")
		return
	}
	q := r.URL.Query()
	opt := flow.MediaStreamOptions{Encoding: q.Get("encoding"), Direction: q.Get("direction"), Binary: q.Get("format") == "binary"}
	if f := q.Get("format"); f != "" && f != "json" && f != "binary" {
		writeError(w, http.StatusBadRequest, "invalid_argument", "format: must be json or binary")
		return
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	// The stream runs until either side ends it; the request context ends
	// with the server's shutdown of hijacked connections only, so the call's
	// own end (or the client's) is what stops it.
	if err := s.cfg.Media.AttachMediaStream(context.WithoutCancel(r.Context()), r.PathValue("id"), conn, opt); err != nil {
		// AttachMediaStream closed the connection; a client sees the close.
		s.log.Info("call media stream refused", "call_id", r.PathValue("id"), "err", err)
	}
}

// callTranscript returns what the agent and the caller said, with the
// latency breakdown of each agent turn.
func (s *Server) callTranscript(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, err := s.store.GetCall(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "call not found")
		return
	}
	turns, terr := s.store.ListTranscript(r.Context(), id)
	latency, lerr := s.store.ListTurnLatency(r.Context(), id)
	if err = errors.Join(err, terr, lerr); err != nil {
		s.log.Error("get call transcript", "err", err)
		internalError(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"turns": turns, "latency": latency})
}
