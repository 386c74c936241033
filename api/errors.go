package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
)

// apiError is an error answer: {"error":{"code","message","details"}}.
type apiError struct {
	status  int
	code    string
	msg     string
	details map[string]any
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func (e *apiError) write(w http.ResponseWriter) {
	writeJSON(w, e.status, errorBody{Error: errorDetail{Code: e.code, Message: e.msg, Details: e.details}})
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // answers are not embedded in HTML; keep "<key>" readable
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	(&apiError{status: status, code: code, msg: msg}).write(w)
}

// badField is a 400 about one field of the request, named by its path
// (e.g. "event_types[1]", "page_size").
func badField(field, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_argument", msg: field + ": " + msg,
		details: map[string]any{"field": field}}
}

func internalError(w http.ResponseWriter) {
	writeError(w, http.StatusInternalServerError, "internal", "internal error")
}

// decodeBody reads r's JSON body into v, refusing a body that is not
// declared as JSON (415), too large (413, the route set the limit), empty,
// malformed, of the wrong shape, with unknown fields or with trailing data
// (400, naming the field when there is one).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) *apiError {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			msg: "the body must be JSON, sent with Content-Type: application/json"}
	}
	err = decodeStrict(r.Body, v)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "payload_too_large",
			msg: fmt.Sprintf("the body is larger than %d bytes", tooBig.Limit)}
	}
	var ae *apiError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return ae
	}
	return &apiError{status: http.StatusBadRequest, code: "invalid_argument", msg: "could not read the body: " + err.Error()}
}

// decodeStrict decodes exactly one JSON value from rd into v. Errors are
// *apiError (400) except errors reading rd, which are returned as they are.
func decodeStrict(rd io.Reader, v any) error {
	d := json.NewDecoder(rd)
	d.DisallowUnknownFields()
	err := d.Decode(v)
	if err == nil {
		if _, terr := d.Token(); terr != io.EOF {
			return &apiError{status: http.StatusBadRequest, code: "invalid_argument", msg: "trailing data after the JSON value"}
		}
		return nil
	}
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		tooBig *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooBig):
		return err
	case errors.Is(err, io.EOF):
		return &apiError{status: http.StatusBadRequest, code: "invalid_argument", msg: "the request body is empty"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &apiError{status: http.StatusBadRequest, code: "invalid_argument", msg: "malformed JSON: unexpected end of the body"}
	case errors.As(err, &syntax):
		return &apiError{status: http.StatusBadRequest, code: "invalid_argument",
			msg: fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, syntax)}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return &apiError{status: http.StatusBadRequest, code: "invalid_argument",
				msg: fmt.Sprintf("the body must be a JSON %s, not %s", jsonKind(typ.Type), typ.Value)}
		}
		return badField(field, fmt.Sprintf("must be %s, not %s", jsonKind(typ.Type), typ.Value))
	}
	// encoding/json reports unknown fields only as text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return badField(name, "unknown field")
	}
	return err
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Name() == "RawMessage" {
			return "a JSON value"
		}
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "a " + t.Kind().String()
}
