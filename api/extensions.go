package api

import (
	"net/http"

	"github.com/voxbridge/voxbridge/store"
)

// extensionRequest is an extension as written. The password is write-only
// and kept only as the digest HA1 hashes for the server's realm.
type extensionRequest struct {
	Number      string `json:"number"`
	Username    string `json:"username"` // default: the number
	DisplayName string `json:"display_name"`
	// Password is required on create; on replace, empty keeps the stored
	// hashes (unless the user name changes: they are made from it).
	Password string `json:"password"`
	CallOut  bool   `json:"call_out"`
	Enabled  *bool  `json:"enabled"` // default true
}

// extensionView is an extension as answered; registrations only on GET of
// one extension.
type extensionView struct {
	store.Extension
	PasswordSet   bool                  `json:"password_set"`
	Registrations *[]store.Registration `json:"registrations,omitempty"`
}

var extensionHints = []fieldHint{
	{"extension number", "number"}, {"user name", "username"}, {"display name", "display_name"},
	{"password", "password"}, {"no password", "password"}, {"realm", "password"},
}

func viewExtension(e store.Extension) extensionView {
	return extensionView{Extension: e, PasswordSet: e.HA1MD5 != "" && e.HA1SHA256 != ""}
}

func (r *extensionRequest) check() *apiError {
	if r.Number == "" {
		return badField("number", "required")
	}
	return nil
}

// apply sets e's fields from r, hashing the password when one is given.
func (r *extensionRequest) apply(e *store.Extension, realm string) *apiError {
	oldUser := e.Username
	e.Username, e.DisplayName, e.CallOut = r.Username, r.DisplayName, r.CallOut
	if e.Username == "" {
		e.Username = e.Number
	}
	e.Enabled = r.Enabled == nil || *r.Enabled
	switch {
	case r.Password != "":
		// The CLI's way (extensions add): only the hashes are kept.
		if err := e.SetPassword(realm, r.Password); err != nil {
			return invalidFromStore(err, extensionHints)
		}
	case e.HA1MD5 == "":
		return badField("password", "required")
	case e.Username != oldUser:
		return badField("password", "required when the user name changes: the stored hashes are made from it")
	}
	return nil
}

func (s *Server) listExtensions(w http.ResponseWriter, r *http.Request) {
	opt, e := listOptions(r.URL.Query())
	if e != nil {
		e.write(w)
		return
	}
	exts, next, err := s.store.ListExtensions(r.Context(), opt)
	views := make([]extensionView, len(exts))
	for i, x := range exts {
		views[i] = viewExtension(x)
	}
	s.writePage(w, "extensions", views, next, err)
}

func (s *Server) createExtension(w http.ResponseWriter, r *http.Request, req *extensionRequest) {
	if e := req.check(); e != nil {
		e.write(w)
		return
	}
	ext := &store.Extension{Number: req.Number}
	if e := req.apply(ext, s.realm()); e != nil {
		e.write(w)
		return
	}
	if err := s.store.CreateExtension(r.Context(), ext); err != nil {
		s.storeErr(w, "extension "+req.Number, err, extensionHints)
		return
	}
	w.Header().Set("Location", "/v1/extensions/"+ext.Number)
	writeJSON(w, http.StatusCreated, viewExtension(*ext))
}

// getExtension answers the extension with its current registrations.
func (s *Server) getExtension(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ext, err := s.store.GetExtension(r.Context(), id)
	if err != nil {
		s.storeErr(w, "extension "+id, err, nil)
		return
	}
	regs, err := s.store.ListRegistrations(r.Context(), id)
	if err != nil {
		s.storeErr(w, "extension "+id, err, nil)
		return
	}
	v := viewExtension(*ext)
	v.Registrations = &regs
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) replaceExtension(w http.ResponseWriter, r *http.Request, req *extensionRequest) {
	id := r.PathValue("id")
	if req.Number != "" && req.Number != id {
		pathMismatch("number", id).write(w)
		return
	}
	req.Number = id
	ext, err := s.store.GetExtension(r.Context(), id)
	if err != nil {
		s.storeErr(w, "extension "+id, err, nil)
		return
	}
	if e := req.apply(ext, s.realm()); e != nil {
		e.write(w)
		return
	}
	if err := s.store.UpdateExtension(r.Context(), ext); err != nil {
		s.storeErr(w, "extension "+id, err, extensionHints)
		return
	}
	writeJSON(w, http.StatusOK, viewExtension(*ext))
}

func (s *Server) deleteExtension(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.store.DeleteExtension(r.Context(), id); err != nil {
		s.storeErr(w, "extension "+id, err, nil)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
