package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// Originator places outbound calls; the flow controller implements it.
type Originator interface {
	Originate(ctx context.Context, req flow.OriginateRequest) (store.Call, error)
}

// createCallBody is POST /v1/calls: where to call, as whom, and exactly
// one of flow_id, actions or agent_id to run once the callee answers. A
// task's call (POST /v1/tasks) is the same body.
type createCallBody store.CallRequest

// createCall starts an outbound call and answers 201 with its record at
// once (status dialing); the dialing goes on in the background and its
// outcome lands on the record and the live events.
func (s *Server) createCall(w http.ResponseWriter, r *http.Request, b *createCallBody) {
	if s.cfg.Originator == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "outbound calls are not available on this server")
		return
	}
	if e := b.check(); e != nil {
		e.write(w)
		return
	}
	rec, err := s.cfg.Originator.Originate(r.Context(), flow.OriginateRequestFrom(store.CallRequest(*b)))
	if err != nil {
		s.originateError(err).write(w)
		return
	}
	w.Header().Set("Location", "/v1/calls/"+rec.ID)
	writeJSON(w, http.StatusCreated, callView{Call: &rec, Actions: []store.ActionRun{}})
}

// check refuses what needs no controller to know; the controller checks
// the rest (destinations, limits, what the ids name).
func (b *createCallBody) check() *apiError {
	if b.To == "" {
		return badField("to", "required: an extension, a phone number or a sip: URI")
	}
	// A JSON null is no inline flow, like leaving the field out.
	if string(b.Actions) == "null" {
		b.Actions = nil
	}
	// Bounded here so that the conversion to a duration cannot overflow.
	for _, f := range []struct {
		name string
		v    int
	}{{"max_duration_s", b.MaxDurationS}, {"ring_timeout_s", b.RingTimeoutS}} {
		if f.v < 0 || f.v > 7*24*3600 {
			return badField(f.name, "must be a number of seconds from 0 to 604800")
		}
	}
	return nil
}

// originateError maps why a call was not placed to its answer: the field
// at fault (400, or 404 for a flow, agent or trunk that does not exist),
// the inline action at fault (400 invalid_flow), or 503.
func (s *Server) originateError(err error) *apiError {
	var (
		re *flow.RequestError
		ve *flow.ValidationError
	)
	switch {
	case errors.As(err, &ve):
		field := "actions"
		if ve.Index >= 0 {
			field = fmt.Sprintf("actions[%d]", ve.Index)
			if ve.Field != "" {
				field += "." + ve.Field
			}
		}
		return &apiError{status: http.StatusBadRequest, code: "invalid_flow", msg: ve.Error(),
			details: map[string]any{"action_index": ve.Index, "action_id": ve.ID, "field": field}}
	case errors.As(err, &re) && errors.Is(re, store.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: re.Error(), details: map[string]any{"field": re.Field}}
	case errors.As(err, &re):
		return badField(re.Field, re.Msg)
	case errors.Is(err, flow.ErrOutboundUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, code: "unavailable", msg: err.Error()}
	}
	s.log.Error("originate", "err", err)
	return &apiError{status: http.StatusInternalServerError, code: "internal", msg: "internal error"}
}
