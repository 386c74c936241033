package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/voxbridge/voxbridge/store"
)

// Shared by the trunk, extension, number and agent routes.

// defaultSIPRealm is the SIP server's default digest realm (sip.DefaultRealm).
const defaultSIPRealm = "voxbridge"

// fieldHint names the request field a store validation message is about:
// the store's messages start with the thing they refuse ("host ...",
// "caller ID ..."), not a JSON path.
type fieldHint struct{ prefix, field string }

// storeErr answers an error from a store write: 400 (naming the field when
// a hint matches), 404, 409 or 500.
func (s *Server) storeErr(w http.ResponseWriter, what string, err error, hints []fieldHint) {
	switch {
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", what+" already exists: "+conflictDetail(err))
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", what+" not found")
	case errors.Is(err, store.ErrInvalid):
		invalidFromStore(err, hints).write(w)
	default:
		s.log.Error("store "+what, "err", err)
		internalError(w)
	}
}

// conflictDetail keeps the part of a conflict error a client can act on
// (the taken user name), not the SQL.
func conflictDetail(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "user name "); i >= 0 {
		return msg[i:]
	}
	return "the same key is taken"
}

// invalidFromStore turns a store ErrInvalid into a 400 naming the field.
func invalidFromStore(err error, hints []fieldHint) *apiError {
	msg := err.Error()
	if i := strings.LastIndex(msg, store.ErrInvalid.Error()+": "); i >= 0 {
		msg = msg[i+len(store.ErrInvalid.Error())+2:]
	}
	for _, h := range hints {
		if strings.HasPrefix(msg, h.prefix) {
			return badField(h.field, msg)
		}
	}
	return &apiError{status: http.StatusBadRequest, code: "invalid_argument", msg: msg}
}

// notFound is the 404 of one resource.
func notFound(what, id string) *apiError {
	return &apiError{status: http.StatusNotFound, code: "not_found", msg: what + " " + id + " not found"}
}

// pathMismatch refuses a body whose key disagrees with the path.
func pathMismatch(field, id string) *apiError {
	return badField(field, "does not match the path; leave it out or make it "+id)
}

func (s *Server) realm() string {
	if s.cfg.SIPRealm != "" {
		return s.cfg.SIPRealm
	}
	return defaultSIPRealm
}
