package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/store"
)

// AgentRegistry is the running server's set of agents (*flow.Agents): what
// the API writes there, calls use at once.
type AgentRegistry interface {
	Get(id string) (agent.Definition, bool)
	IDs() []string // sorted
	Put(d agent.Definition) error
	Remove(id string)
	// File is where a file agent was loaded from; "" for others.
	File(id string) string
	// InUse says whether a live call is talking to the agent.
	InUse(id string) bool
}

// agentRequest is an agent definition as written (agent.Definition's JSON,
// strictly). Provider api_key values are write-only.
type agentRequest agent.Definition

// check validates the definition as calls will use it; 400 invalid_agent
// names the first bad field and lists every problem.
func (r *agentRequest) check() *apiError {
	err := agent.Definition(*r).Validate()
	if err == nil {
		return nil
	}
	e := &apiError{status: http.StatusBadRequest, code: "invalid_agent", msg: err.Error()}
	var ve *agent.ValidationError
	if errors.As(err, &ve) && len(ve.Problems) > 0 {
		field, _, _ := strings.Cut(ve.Problems[0], ": ")
		e.details = map[string]any{"field": field, "problems": ve.Problems}
	}
	return e
}

// providerView is a provider without its key.
type providerView struct {
	agent.ProviderConfig
	APIKeySet bool `json:"api_key_set"`
}

// agentView is an agent as answered: the definition with keys taken out,
// where it comes from, and (for agents made here) its times.
type agentView struct {
	agent.Definition
	STT      *providerView `json:"stt,omitempty"`
	LLM      *providerView `json:"llm,omitempty"`
	TTS      *providerView `json:"tts,omitempty"`
	Realtime *providerView `json:"realtime,omitempty"`
	// Source is "api", "file:<path>" (read-only) or "builtin" (read-only:
	// the default agent serve makes from the environment).
	Source   string     `json:"source"`
	TMCreate *time.Time `json:"tm_create,omitempty"`
	TMUpdate *time.Time `json:"tm_update,omitempty"`
}

func redactProvider(p *agent.ProviderConfig) *providerView {
	if p == nil {
		return nil
	}
	v := &providerView{ProviderConfig: *p, APIKeySet: p.APIKey != ""}
	v.APIKey = ""
	return v
}

func (s *Server) viewAgent(d agent.Definition, stored *store.Agent) agentView {
	v := agentView{Definition: d, STT: redactProvider(d.STT), LLM: redactProvider(d.LLM),
		TTS: redactProvider(d.TTS), Realtime: redactProvider(d.Realtime), Source: "builtin"}
	v.Definition.STT, v.Definition.LLM, v.Definition.TTS, v.Definition.Realtime = nil, nil, nil, nil
	// HTTP tool headers usually carry the tool's own credentials: their
	// values are write-only too (names stay, values answer as "").
	if len(d.HTTPTools) > 0 {
		v.HTTPTools = make([]agent.HTTPTool, len(d.HTTPTools))
		for i, tool := range d.HTTPTools {
			if len(tool.Headers) > 0 {
				h := make(map[string]string, len(tool.Headers))
				for k := range tool.Headers {
					h[k] = ""
				}
				tool.Headers = h
			}
			v.HTTPTools[i] = tool
		}
	}
	switch {
	case s.cfg.Agents.File(d.ID) != "":
		v.Source = "file:" + s.cfg.Agents.File(d.ID)
	case stored != nil:
		v.Source = "api"
		v.TMCreate, v.TMUpdate = &stored.TMCreate, &stored.TMUpdate
	}
	return v
}

// agentsAvailable answers 503 when the server has no agent registry.
func (s *Server) agentsAvailable(w http.ResponseWriter) bool {
	if s.cfg.Agents == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "this server has no agent registry")
		return false
	}
	return true
}

// Agents are listed from the registry (file agents are not in the store),
// by id; the page token is the last id of the previous page.
const agentPageToken = "agents:"

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) {
	if !s.agentsAvailable(w) {
		return
	}
	opt, e := listOptions(r.URL.Query())
	if e != nil {
		e.write(w)
		return
	}
	size := opt.PageSize
	if size == 0 {
		size = store.DefaultPageSize
	}
	size = min(size, store.MaxPageSize)
	after := ""
	if opt.PageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(opt.PageToken)
		id, ok := strings.CutPrefix(string(b), agentPageToken)
		if err != nil || !ok || id == "" {
			badField("page_token", "malformed; pass the next_page_token of the previous page as it is").write(w)
			return
		}
		after = id
	}
	ids := s.cfg.Agents.IDs()
	i := sort.SearchStrings(ids, after)
	if i < len(ids) && ids[i] == after {
		i++
	}
	ids = ids[i:]
	next := ""
	if len(ids) > size {
		ids = ids[:size]
		next = base64.RawURLEncoding.EncodeToString([]byte(agentPageToken + ids[size-1]))
	}
	views := make([]agentView, 0, len(ids))
	for _, id := range ids {
		d, ok := s.cfg.Agents.Get(id)
		if !ok {
			continue // deleted meanwhile
		}
		stored, err := s.storedAgent(r, id)
		if err != nil {
			s.storeErr(w, "agent "+id, err, nil)
			return
		}
		views = append(views, s.viewAgent(d, stored))
	}
	writeJSON(w, http.StatusOK, pageBody{Result: views, NextPageToken: next})
}

// storedAgent returns the stored row of an agent made over the API, nil for
// others.
func (s *Server) storedAgent(r *http.Request, id string) (*store.Agent, error) {
	a, err := s.store.GetAgent(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return a, err
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) {
	if !s.agentsAvailable(w) {
		return
	}
	id := r.PathValue("id")
	d, ok := s.cfg.Agents.Get(id)
	if !ok {
		notFound("agent", id).write(w)
		return
	}
	stored, err := s.storedAgent(r, id)
	if err != nil {
		s.storeErr(w, "agent "+id, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, s.viewAgent(d, stored))
}

func (s *Server) createAgent(w http.ResponseWriter, r *http.Request, req *agentRequest) {
	if !s.agentsAvailable(w) {
		return
	}
	if req.ID == "" {
		req.ID = uuid.NewString()
	}
	if e := req.check(); e != nil {
		e.write(w)
		return
	}
	d := agent.Definition(*req)
	s.resMu.Lock()
	defer s.resMu.Unlock()
	if _, ok := s.cfg.Agents.Get(d.ID); ok {
		stored, err := s.storedAgent(r, d.ID)
		switch {
		case err != nil:
			s.storeErr(w, "agent "+d.ID, err, nil)
		case stored == nil:
			s.readOnlyAgent(d.ID).write(w)
		default:
			writeError(w, http.StatusConflict, "conflict", "agent "+d.ID+" already exists; PUT /v1/agents/"+d.ID+" replaces it")
		}
		return
	}
	sa, ok := s.writeAgent(w, r, d, false)
	if !ok {
		return
	}
	w.Header().Set("Location", "/v1/agents/"+d.ID)
	writeJSON(w, http.StatusCreated, s.viewAgent(d, sa))
}

// replaceAgent replaces an agent made over the API. A provider sent
// without api_key (nor api_key_env) keeps the stored key when it is the
// same provider, and an HTTP tool header sent empty keeps its stored value,
// so a GET answer can be edited and sent back.
func (s *Server) replaceAgent(w http.ResponseWriter, r *http.Request, req *agentRequest) {
	if !s.agentsAvailable(w) {
		return
	}
	id := r.PathValue("id")
	if req.ID != "" && req.ID != id {
		pathMismatch("id", id).write(w)
		return
	}
	req.ID = id
	s.resMu.Lock()
	defer s.resMu.Unlock()
	old, e := s.editableAgent(r, id)
	if e != nil {
		e.write(w)
		return
	}
	d := agent.Definition(*req)
	keepKey(d.STT, old.STT)
	keepKey(d.LLM, old.LLM)
	keepKey(d.TTS, old.TTS)
	keepKey(d.Realtime, old.Realtime)
	keepHeaders(d.HTTPTools, old.HTTPTools)
	if e := (*agentRequest)(&d).check(); e != nil {
		e.write(w)
		return
	}
	sa, ok := s.writeAgent(w, r, d, true)
	if ok {
		writeJSON(w, http.StatusOK, s.viewAgent(d, sa))
	}
}

func keepKey(p, old *agent.ProviderConfig) {
	if p != nil && old != nil && p.APIKey == "" && p.APIKeyEnv == "" && p.Provider == old.Provider {
		p.APIKey = old.APIKey
	}
}

// keepHeaders fills header values sent empty from the stored tool of the
// same name: answers show them as "".
func keepHeaders(tools, old []agent.HTTPTool) {
	for i := range tools {
		for _, o := range old {
			if o.Name != tools[i].Name {
				continue
			}
			for k, v := range tools[i].Headers {
				if v == "" && o.Headers[k] != "" {
					tools[i].Headers[k] = o.Headers[k]
				}
			}
		}
	}
}

// deleteAgent deletes an agent made over the API, unless a live call is
// talking to it (409 in_use).
func (s *Server) deleteAgent(w http.ResponseWriter, r *http.Request) {
	if !s.agentsAvailable(w) {
		return
	}
	id := r.PathValue("id")
	s.resMu.Lock()
	defer s.resMu.Unlock()
	if _, e := s.editableAgent(r, id); e != nil {
		e.write(w)
		return
	}
	if s.cfg.Agents.InUse(id) {
		writeError(w, http.StatusConflict, "in_use", "agent "+id+" is talking on a live call; delete it after the call ends")
		return
	}
	if err := s.store.DeleteAgent(r.Context(), id); err != nil {
		s.storeErr(w, "agent "+id, err, nil)
		return
	}
	s.cfg.Agents.Remove(id)
	w.WriteHeader(http.StatusNoContent)
}

// editableAgent returns the definition of an agent the API may change:
// 404 if there is none, 409 read_only for file and built-in agents.
func (s *Server) editableAgent(r *http.Request, id string) (agent.Definition, *apiError) {
	d, ok := s.cfg.Agents.Get(id)
	if !ok {
		return d, notFound("agent", id)
	}
	stored, err := s.storedAgent(r, id)
	switch {
	case err != nil:
		s.log.Error("get agent", "agent_id", id, "err", err)
		return d, &apiError{status: http.StatusInternalServerError, code: "internal", msg: "internal error"}
	case stored == nil || s.cfg.Agents.File(id) != "":
		return d, s.readOnlyAgent(id)
	}
	return d, nil
}

func (s *Server) readOnlyAgent(id string) *apiError {
	where := "is built in (made from the environment at start)"
	if f := s.cfg.Agents.File(id); f != "" {
		where = "is loaded from " + f + "; edit the file and restart"
	}
	return &apiError{status: http.StatusConflict, code: "read_only", msg: "agent " + id + " " + where + "; it is read-only over the API"}
}

// writeAgent stores d and then puts it in the registry, so calls see it
// only once it will survive a restart.
func (s *Server) writeAgent(w http.ResponseWriter, r *http.Request, d agent.Definition, replace bool) (*store.Agent, bool) {
	def, err := json.Marshal(d)
	if err != nil {
		s.log.Error("encode agent", "agent_id", d.ID, "err", err)
		internalError(w)
		return nil, false
	}
	sa := &store.Agent{ID: d.ID, Name: d.Name, Definition: def}
	if replace {
		err = s.store.UpdateAgent(r.Context(), sa)
	} else {
		err = s.store.CreateAgent(r.Context(), sa)
	}
	if err != nil {
		s.storeErr(w, "agent "+d.ID, err, nil)
		return nil, false
	}
	if err := s.cfg.Agents.Put(d); err != nil {
		// Validated above; the registry validates the same way.
		s.log.Error("registry refused a validated agent", "agent_id", d.ID, "err", err)
		internalError(w)
		return nil, false
	}
	return sa, true
}
