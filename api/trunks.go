package api

import (
	"encoding/json"
	"net/http"

	"github.com/voxbridge/voxbridge/store"
)

// trunkRequest is a trunk as written: store.Trunk's fields plus the
// write-only passwords. The read-only fields of an answer (id,
// has_password, inbound_password_set, inbound_realm, the times) are
// accepted, so a GET answer can be edited and sent back, and ignored.
// (Not an embedded store.Trunk: decode errors would name "Trunk.port".)
type trunkRequest struct {
	Name            string         `json:"name"`
	Enabled         *bool          `json:"enabled"` // default true
	Priority        int            `json:"priority"`
	InboundAddrs    []string       `json:"inbound_addrs"`
	InboundUsername string         `json:"inbound_username"`
	Host            string         `json:"host"`
	Port            int            `json:"port"`
	Transport       string         `json:"transport"`
	Username        string         `json:"username"`
	Register        bool           `json:"register"`
	RegisterExpires int            `json:"register_expires"`
	CallerID        string         `json:"caller_id"`
	CallerName      string         `json:"caller_name"`
	PAI             string         `json:"pai"`
	Format          string         `json:"number_format"`
	TechPrefix      string         `json:"tech_prefix"`
	Headers         []store.Header `json:"headers"`
	MaxCalls        int            `json:"max_calls"`
	AllowedPrefixes []string       `json:"allowed_prefixes"`
	// Password answers the carrier's challenges; empty on replace keeps
	// the stored one.
	Password string `json:"password"`
	// InboundPassword goes with inbound_username (stored as HA1 hashes
	// only); empty on replace keeps the stored hashes for the same user.
	InboundPassword string `json:"inbound_password"`

	ID                 string          `json:"id"` // must match the path on replace
	HasPassword        bool            `json:"has_password"`
	InboundPasswordSet bool            `json:"inbound_password_set"`
	InboundRealm       string          `json:"inbound_realm"`
	TMCreate           json.RawMessage `json:"tm_create"`
	TMUpdate           json.RawMessage `json:"tm_update"`
}

// trunkView is a trunk as answered: never a password or hash.
type trunkView struct {
	store.Trunk
	InboundPasswordSet bool `json:"inbound_password_set"`
}

// viewTrunk redacts t. The store refuses an inbound user name without
// hashes, so the user name says whether the inbound password is set.
func viewTrunk(t store.Trunk) trunkView {
	return trunkView{Trunk: t.Redacted(), InboundPasswordSet: t.InboundUsername != ""}
}

// trunkHints map the store's messages (store/trunks.go args) to fields.
var trunkHints = []fieldHint{
	{"name", "name"}, {"inbound address", "inbound_addrs"},
	{"inbound user name without a password", "inbound_password"}, {"inbound user name", "inbound_username"},
	{"inbound password", "inbound_password"}, {"realm", "inbound_password"},
	{"host", "host"}, {"port", "port"}, {"transport", "transport"}, {"user name", "username"},
	{"password", "password"}, {"registering", "register"}, {"register expiry", "register_expires"},
	{"caller ID", "caller_id"}, {"caller name", "caller_name"}, {"P-Asserted-Identity", "pai"},
	{"number format", "number_format"}, {"tech prefix", "tech_prefix"}, {"header", "headers"},
	{"max calls", "max_calls"}, {"allowed prefix", "allowed_prefixes"},
}

func (r *trunkRequest) check() *apiError {
	if r.Name == "" {
		return badField("name", "required")
	}
	if r.InboundPassword != "" && r.InboundUsername == "" {
		return badField("inbound_password", "needs inbound_username")
	}
	return nil
}

// toStore builds the trunk to write; realm is the server's digest realm.
func (r *trunkRequest) toStore(id, realm string) (*store.Trunk, *apiError) {
	if e := r.check(); e != nil {
		return nil, e
	}
	t := store.Trunk{ID: id, Name: r.Name, Enabled: r.Enabled == nil || *r.Enabled, Priority: r.Priority,
		InboundAddrs: r.InboundAddrs, InboundUsername: r.InboundUsername, Host: r.Host, Port: r.Port,
		Transport: store.TrunkTransport(r.Transport), Username: r.Username, Password: r.Password,
		Register: r.Register, RegisterExpires: r.RegisterExpires, CallerID: r.CallerID, CallerName: r.CallerName,
		PAI: r.PAI, Format: store.NumberFormat(r.Format), TechPrefix: r.TechPrefix, Headers: r.Headers,
		MaxCalls: r.MaxCalls, AllowedPrefixes: r.AllowedPrefixes}
	if t.Transport == "" {
		t.Transport = store.TransportUDP
	}
	if t.Format == "" {
		t.Format = store.NumberE164
	}
	if r.InboundPassword != "" {
		if err := t.SetInboundPassword(realm, r.InboundPassword); err != nil {
			return nil, invalidFromStore(err, []fieldHint{{"password", "inbound_password"}, {"user name", "inbound_username"}, {"", "inbound_password"}})
		}
	}
	return &t, nil
}

func (s *Server) listTrunks(w http.ResponseWriter, r *http.Request) {
	opt, e := listOptions(r.URL.Query())
	if e != nil {
		e.write(w)
		return
	}
	ts, next, err := s.store.ListTrunks(r.Context(), opt)
	views := make([]trunkView, len(ts))
	for i, t := range ts {
		views[i] = viewTrunk(t)
	}
	s.writePage(w, "trunks", views, next, err)
}

func (s *Server) createTrunk(w http.ResponseWriter, r *http.Request, req *trunkRequest) {
	t, e := req.toStore("", s.realm())
	if e != nil {
		e.write(w)
		return
	}
	if err := s.store.CreateTrunk(r.Context(), t); err != nil {
		s.storeErr(w, "trunk "+t.Name, err, trunkHints)
		return
	}
	w.Header().Set("Location", "/v1/trunks/"+t.ID)
	writeJSON(w, http.StatusCreated, viewTrunk(*t))
}

func (s *Server) getTrunk(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	t, err := s.store.GetTrunk(r.Context(), id)
	if err != nil {
		s.storeErr(w, "trunk "+id, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, viewTrunk(*t))
}

// replaceTrunk writes every field; empty passwords keep the stored ones.
func (s *Server) replaceTrunk(w http.ResponseWriter, r *http.Request, req *trunkRequest) {
	id := r.PathValue("id")
	if req.ID != "" && req.ID != id {
		pathMismatch("id", id).write(w)
		return
	}
	t, e := req.toStore(id, s.realm())
	if e != nil {
		e.write(w)
		return
	}
	if err := s.store.UpdateTrunk(r.Context(), t); err != nil {
		s.storeErr(w, "trunk "+id, err, trunkHints)
		return
	}
	// UpdateTrunk filled in the kept secrets; read back for the flags.
	stored, err := s.store.GetTrunk(r.Context(), id)
	if err != nil {
		s.storeErr(w, "trunk "+id, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, viewTrunk(*stored))
}

func (s *Server) deleteTrunk(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.store.DeleteTrunk(r.Context(), id); err != nil {
		s.storeErr(w, "trunk "+id, err, nil)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
