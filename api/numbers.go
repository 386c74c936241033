package api

import (
	"errors"
	"net/http"

	"github.com/voxbridge/voxbridge/store"
)

// numberRequest maps a DID to what its calls run: a flow, an agent or an
// extension (kind), named by target.
type numberRequest struct {
	Number  string           `json:"number"`
	Kind    store.NumberKind `json:"kind"`
	Target  string           `json:"target"`
	TrunkID string           `json:"trunk_id"` // the trunk that delivers it; "" for any
}

// check validates the request on its own; targetExists then checks it
// against what exists.
func (r *numberRequest) check() *apiError {
	if r.Number == "" {
		return badField("number", "required")
	}
	num, err := store.NormalizeNumber(r.Number)
	if err != nil {
		return invalidFromStore(err, []fieldHint{{"", "number"}})
	}
	r.Number = num
	if r.Kind == "" {
		return badField("kind", "required: flow, agent or extension")
	}
	if !r.Kind.Valid() {
		return badField("kind", "must be flow, agent or extension")
	}
	if r.Target == "" {
		return badField("target", "required: the "+string(r.Kind)+" calls to the number go to")
	}
	return nil
}

// targetExists refuses a number whose flow, agent, extension or trunk does
// not exist: a call to it would otherwise fall through to the default flow.
func (s *Server) targetExists(r *http.Request, req *numberRequest) *apiError {
	ctx := r.Context()
	var err error
	switch req.Kind {
	case store.NumberToFlow:
		_, err = s.store.GetFlow(ctx, req.Target)
	case store.NumberToExtension:
		_, err = s.store.GetExtension(ctx, req.Target)
	case store.NumberToAgent:
		if s.cfg.Agents == nil {
			err = store.ErrNotFound
		} else if _, ok := s.cfg.Agents.Get(req.Target); !ok {
			err = store.ErrNotFound
		}
	}
	if err == nil && req.TrunkID != "" {
		if _, terr := s.store.GetTrunk(ctx, req.TrunkID); terr != nil {
			if errors.Is(terr, store.ErrNotFound) {
				return badField("trunk_id", "no trunk "+req.TrunkID)
			}
			err = terr
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return badField("target", "no "+string(req.Kind)+" "+req.Target)
	case err != nil:
		s.log.Error("number target", "target", req.Target, "err", err)
		return &apiError{status: http.StatusInternalServerError, code: "internal", msg: "internal error"}
	}
	return nil
}

func (s *Server) listNumbers(w http.ResponseWriter, r *http.Request) {
	opt, e := listOptions(r.URL.Query())
	if e != nil {
		e.write(w)
		return
	}
	ns, next, err := s.store.ListNumbers(r.Context(), opt)
	s.writePage(w, "numbers", ns, next, err)
}

func (s *Server) createNumber(w http.ResponseWriter, r *http.Request, req *numberRequest) {
	s.putNumber(w, r, req, false)
}

func (s *Server) replaceNumber(w http.ResponseWriter, r *http.Request, req *numberRequest) {
	id, err := store.NormalizeNumber(r.PathValue("id"))
	if err != nil {
		notFound("number", r.PathValue("id")).write(w)
		return
	}
	if req.Number == "" {
		req.Number = id
	}
	if n, err := store.NormalizeNumber(req.Number); err == nil && n != id {
		pathMismatch("number", id).write(w)
		return
	}
	s.putNumber(w, r, req, true)
}

// putNumber creates (replace false: 409 if the number exists, with or
// without its '+') or replaces (404 if it does not) a number.
func (s *Server) putNumber(w http.ResponseWriter, r *http.Request, req *numberRequest, replace bool) {
	if e := req.check(); e != nil {
		e.write(w)
		return
	}
	if e := s.targetExists(r, req); e != nil {
		e.write(w)
		return
	}
	// The existence check and the write must not interleave with another
	// request's (PutNumber itself would just overwrite).
	s.resMu.Lock()
	defer s.resMu.Unlock()
	old, err := s.store.LookupNumber(r.Context(), req.Number)
	switch {
	case err == nil && !replace:
		writeError(w, http.StatusConflict, "conflict", "number "+old.Number+" already exists; PUT /v1/numbers/"+old.Number+" replaces it")
		return
	case errors.Is(err, store.ErrNotFound) && replace:
		notFound("number", req.Number).write(w)
		return
	case err != nil && !errors.Is(err, store.ErrNotFound):
		s.storeErr(w, "number "+req.Number, err, nil)
		return
	case err == nil:
		req.Number = old.Number // replace the row as stored, '+' or not
	}
	n := &store.Number{Number: req.Number, Kind: req.Kind, Target: req.Target, TrunkID: req.TrunkID}
	if err := s.store.PutNumber(r.Context(), n); err != nil {
		s.storeErr(w, "number "+req.Number, err, []fieldHint{{"", "target"}})
		return
	}
	if !replace {
		w.Header().Set("Location", "/v1/numbers/"+n.Number)
		writeJSON(w, http.StatusCreated, n)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (s *Server) getNumber(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n, err := s.store.LookupNumber(r.Context(), id)
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			err = store.ErrNotFound // not a number: no such number
		}
		s.storeErr(w, "number "+id, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (s *Server) deleteNumber(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.store.DeleteNumber(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			err = store.ErrNotFound
		}
		s.storeErr(w, "number "+id, err, nil)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
