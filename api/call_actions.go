package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/voxbridge/voxbridge/flow"
)

// CallController applies actions to live calls; the flow controller
// implements it.
type CallController interface {
	CallAction(ctx context.Context, callID string, a flow.CallAction) (flow.CallControlState, error)
}

// Bodies of the call action routes. Each checks what it can alone; the
// controller checks the rest against the call (files, agents, state).

type hangupRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (b *hangupRequest) check() *apiError { return nil }

type transferRequest struct {
	To   string `json:"to"`
	Mode string `json:"mode,omitempty"`
}

func (b *transferRequest) check() *apiError {
	if strings.TrimSpace(b.To) == "" {
		return badField("to", "required: a number, an extension or a sip: URI")
	}
	return nil
}

type talkRequest struct {
	Text     string `json:"text"`
	Language string `json:"language,omitempty"`
	Voice    string `json:"voice,omitempty"`
	AgentID  string `json:"agent_id,omitempty"`
}

func (b *talkRequest) check() *apiError {
	if strings.TrimSpace(b.Text) == "" {
		return badField("text", "required")
	}
	return nil
}

type playRequest struct {
	URLs  []string `json:"urls,omitempty"`
	Files []string `json:"files,omitempty"`
	Loop  int      `json:"loop,omitempty"`
}

func (b *playRequest) check() *apiError {
	if len(b.URLs)+len(b.Files) == 0 {
		return badField("urls", "one of urls or files is required")
	}
	return nil
}

type dtmfRequest struct {
	Digits     string `json:"digits"`
	DurationMS int    `json:"duration_ms,omitempty"`
}

func (b *dtmfRequest) check() *apiError {
	if b.Digits == "" {
		return badField("digits", "required")
	}
	return nil
}

type muteRequest struct {
	Direction string `json:"direction,omitempty"`
}

func (b *muteRequest) check() *apiError { return nil }

type recordingStartRequest struct {
	Stereo       *bool `json:"stereo,omitempty"`
	MaxDurationS int   `json:"max_duration_s,omitempty"`
	Beep         bool  `json:"beep,omitempty"`
}

func (b *recordingStartRequest) check() *apiError { return nil }

// Handlers of the call action routes (see routeTable).

func (s *Server) hangupCall(w http.ResponseWriter, r *http.Request, b *hangupRequest) {
	s.callAction(w, r, b, flow.CallAction{Action: flow.ActionHangup, Reason: b.Reason})
}

func (s *Server) transferCall(w http.ResponseWriter, r *http.Request, b *transferRequest) {
	s.callAction(w, r, b, flow.CallAction{Action: flow.ActionTransfer, To: b.To, Mode: b.Mode})
}

func (s *Server) talkOnCall(w http.ResponseWriter, r *http.Request, b *talkRequest) {
	s.callAction(w, r, b, flow.CallAction{Action: flow.ActionTalk, Text: b.Text, Language: b.Language, Voice: b.Voice, AgentID: b.AgentID})
}

func (s *Server) playOnCall(w http.ResponseWriter, r *http.Request, b *playRequest) {
	s.callAction(w, r, b, flow.CallAction{Action: flow.ActionPlay, URLs: b.URLs, Files: b.Files, Loop: b.Loop})
}

func (s *Server) sendCallDTMF(w http.ResponseWriter, r *http.Request, b *dtmfRequest) {
	s.callAction(w, r, b, flow.CallAction{Action: flow.ActionDTMF, Digits: b.Digits, DurationMS: b.DurationMS})
}

func (s *Server) muteCall(w http.ResponseWriter, r *http.Request, b *muteRequest) {
	s.callAction(w, r, b, flow.CallAction{Action: flow.ActionMute, Direction: b.Direction})
}

func (s *Server) unmuteCall(w http.ResponseWriter, r *http.Request, b *muteRequest) {
	s.callAction(w, r, b, flow.CallAction{Action: flow.ActionUnmute, Direction: b.Direction})
}

func (s *Server) holdCall(w http.ResponseWriter, r *http.Request) {
	s.callAction(w, r, nil, flow.CallAction{Action: flow.ActionHold})
}

func (s *Server) unholdCall(w http.ResponseWriter, r *http.Request) {
	s.callAction(w, r, nil, flow.CallAction{Action: flow.ActionUnhold})
}

func (s *Server) startCallRecording(w http.ResponseWriter, r *http.Request, b *recordingStartRequest) {
	s.callAction(w, r, b, flow.CallAction{Action: flow.ActionRecordingStart, Stereo: b.Stereo, MaxDurationS: b.MaxDurationS, Beep: b.Beep})
}

func (s *Server) stopCallRecording(w http.ResponseWriter, r *http.Request) {
	s.callAction(w, r, nil, flow.CallAction{Action: flow.ActionRecordingStop})
}

// callAction checks the body (nil for routes without one), hands a to the
// controller and answers 202 with the call's control state, or the error
// in our shape.
func (s *Server) callAction(w http.ResponseWriter, r *http.Request, body interface{ check() *apiError }, a flow.CallAction) {
	if body != nil {
		if e := body.check(); e != nil {
			e.write(w)
			return
		}
	}
	if s.cfg.Control == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "call actions are not available on this server")
		return
	}
	id := r.PathValue("id")
	st, err := s.cfg.Control.CallAction(r.Context(), id, a)
	var ae *flow.ActionError
	switch {
	case err == nil:
		writeJSON(w, http.StatusAccepted, st)
	case errors.As(err, &ae):
		badField(ae.Field, ae.Msg).write(w)
	case errors.Is(err, flow.ErrCallNotFound):
		writeError(w, http.StatusNotFound, "not_found", "call not found")
	case errors.Is(err, flow.ErrCallNotLive):
		writeError(w, http.StatusConflict, "call_not_live", "call "+id+": "+err.Error())
	case errors.Is(err, flow.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, flow.ErrActionUnavailable):
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	default:
		s.log.Error("call action", "call_id", id, "action", a.Action, "err", err)
		internalError(w)
	}
}
