package api

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// flowIDRE keeps flow ids safe in a URL path and a file name.
var flowIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (s *Server) listFlows(w http.ResponseWriter, r *http.Request) {
	opt, e := listOptions(r.URL.Query())
	if e != nil {
		e.write(w)
		return
	}
	flows, next, err := s.store.ListFlows(r.Context(), opt)
	s.writePage(w, "flows", flows, next, err)
}

func (s *Server) getFlow(w http.ResponseWriter, r *http.Request) {
	f, e := s.findFlow(r, r.PathValue("id"))
	if e != nil {
		e.write(w)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// createFlow stores a new flow; its id is generated when the body has none.
func (s *Server) createFlow(w http.ResponseWriter, r *http.Request, f *flow.Flow) {
	if f.ID == "" {
		f.ID = uuid.NewString()
	}
	if e := checkFlow(f); e != nil {
		e.write(w)
		return
	}
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	old, err := s.store.GetFlow(r.Context(), f.ID)
	switch {
	case err == nil && fromFile(old):
		readOnlyFlow(old).write(w)
		return
	case err == nil:
		writeError(w, http.StatusConflict, "conflict", "flow "+f.ID+" already exists; PUT /v1/flows/"+f.ID+" replaces it")
		return
	case !errors.Is(err, store.ErrNotFound):
		s.log.Error("create flow", "flow_id", f.ID, "err", err)
		internalError(w)
		return
	}
	sf, ok := s.putFlow(w, r, f, time.Time{})
	if !ok {
		return
	}
	w.Header().Set("Location", "/v1/flows/"+sf.ID)
	writeJSON(w, http.StatusCreated, sf)
}

// replaceFlow replaces an existing flow made over the API.
func (s *Server) replaceFlow(w http.ResponseWriter, r *http.Request, f *flow.Flow) {
	id := r.PathValue("id")
	if f.ID != "" && f.ID != id {
		badField("id", "does not match the flow id in the path; leave it out or make it "+id).write(w)
		return
	}
	f.ID = id
	if e := checkFlow(f); e != nil {
		e.write(w)
		return
	}
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	old, e := s.editableFlow(r, id)
	if e != nil {
		e.write(w)
		return
	}
	if sf, ok := s.putFlow(w, r, f, old.TMCreate); ok {
		writeJSON(w, http.StatusOK, sf)
	}
}

func (s *Server) deleteFlow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	_, e := s.editableFlow(r, id)
	if e != nil {
		e.write(w)
		return
	}
	if err := s.store.DeleteFlow(r.Context(), id); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("delete flow", "flow_id", id, "err", err)
		internalError(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkFlow validates f as the controller will run it: 400 invalid_flow
// names the action (index and id) and the field.
func checkFlow(f *flow.Flow) *apiError {
	if !flowIDRE.MatchString(f.ID) {
		return badField("id", "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	err := f.Validate()
	if err == nil {
		return nil
	}
	e := &apiError{status: http.StatusBadRequest, code: "invalid_flow", msg: err.Error()}
	var ve *flow.ValidationError
	if errors.As(err, &ve) {
		e.details = map[string]any{"action_index": ve.Index, "action_id": ve.ID, "field": ve.Field}
	}
	return e
}

// putFlow stores f; created is the existing flow's creation time, which
// a replacement keeps (zero for a new flow).
func (s *Server) putFlow(w http.ResponseWriter, r *http.Request, f *flow.Flow, created time.Time) (*store.Flow, bool) {
	sf, err := f.ToStore("")
	if err == nil {
		sf.TMCreate = created
		err = s.store.PutFlow(r.Context(), sf)
	}
	if err != nil {
		s.log.Error("store flow", "flow_id", f.ID, "err", err)
		internalError(w)
		return nil, false
	}
	return sf, true
}

func (s *Server) findFlow(r *http.Request, id string) (*store.Flow, *apiError) {
	f, err := s.store.GetFlow(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, &apiError{status: http.StatusNotFound, code: "not_found", msg: "flow " + id + " not found"}
	case err != nil:
		s.log.Error("get flow", "flow_id", id, "err", err)
		return nil, &apiError{status: http.StatusInternalServerError, code: "internal", msg: "internal error"}
	}
	return f, nil
}

// editableFlow returns the stored flow when the API may change it.
func (s *Server) editableFlow(r *http.Request, id string) (*store.Flow, *apiError) {
	f, e := s.findFlow(r, id)
	if e == nil && fromFile(f) {
		return nil, readOnlyFlow(f)
	}
	return f, e
}

func fromFile(f *store.Flow) bool { return strings.HasPrefix(f.Source, "file:") }

func readOnlyFlow(f *store.Flow) *apiError {
	return &apiError{status: http.StatusConflict, code: "read_only",
		msg: "flow " + f.ID + " is loaded from " + strings.TrimPrefix(f.Source, "file:") +
			"; it is read-only over the API: edit the file and reload (SIGHUP)"}
}
