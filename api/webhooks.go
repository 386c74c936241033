package api

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/voxbridge/voxbridge/store"
)

// webhookRequest is the body of POST /v1/webhooks.
type webhookRequest struct {
	URL string `json:"url"`
	// EventTypes selects events (exact types or "prefix.*"); empty: all.
	EventTypes  []string `json:"event_types"`
	Description string   `json:"description"`
}

// createdWebhook is a new target with its secret, shown this once.
type createdWebhook struct {
	*store.Webhook
	Secret string `json:"secret"`
}

func (req *webhookRequest) check() *apiError {
	u, err := url.Parse(req.URL)
	switch {
	case req.URL == "":
		return badField("url", "required")
	case len(req.URL) > 2048:
		return badField("url", "longer than 2048 bytes")
	case err != nil:
		return badField("url", "not a URL: "+err.Error())
	case u.Scheme != "http" && u.Scheme != "https":
		return badField("url", "must be an http:// or https:// URL")
	case u.Host == "" || u.Hostname() == "":
		return badField("url", "has no host")
	case u.Fragment != "":
		return badField("url", "must not have a #fragment")
	case len(req.Description) > 500:
		return badField("description", "longer than 500 bytes")
	case strings.ContainsFunc(req.Description, func(r rune) bool { return r < ' ' }):
		return badField("description", "contains control characters")
	}
	return checkEventTypes("event_types", req.EventTypes)
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, req *webhookRequest) {
	if e := req.check(); e != nil {
		e.write(w)
		return
	}
	types := req.EventTypes
	if types == nil {
		types = []string{}
	}
	hook := &store.Webhook{URL: req.URL, EventTypes: types, Description: req.Description, Secret: randomToken(secretPrefix)}
	if err := s.store.CreateWebhook(r.Context(), hook); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
			return
		}
		s.log.Error("create webhook", "err", err)
		internalError(w)
		return
	}
	if s.hooks != nil {
		s.hooks.invalidate()
	}
	w.Header().Set("Location", "/v1/webhooks/"+hook.ID)
	writeJSON(w, http.StatusCreated, createdWebhook{Webhook: hook, Secret: hook.Secret})
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) {
	opt, e := listOptions(r.URL.Query())
	if e != nil {
		e.write(w)
		return
	}
	hooks, next, err := s.store.ListWebhooks(r.Context(), opt)
	s.writePage(w, "webhooks", hooks, next, err)
}

func (s *Server) findWebhook(w http.ResponseWriter, r *http.Request) (*store.Webhook, bool) {
	id := r.PathValue("id")
	hook, err := s.store.GetWebhook(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "webhook "+id+" not found")
		return nil, false
	case err != nil:
		s.log.Error("get webhook", "webhook_id", id, "err", err)
		internalError(w)
		return nil, false
	}
	return hook, true
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request) {
	if hook, ok := s.findWebhook(w, r); ok {
		writeJSON(w, http.StatusOK, hook)
	}
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.store.DeleteWebhook(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "webhook "+id+" not found")
		return
	case err != nil:
		s.log.Error("delete webhook", "webhook_id", id, "err", err)
		internalError(w)
		return
	}
	if s.hooks != nil {
		s.hooks.invalidate()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listWebhookDeliveries(w http.ResponseWriter, r *http.Request) {
	opt, e := listOptions(r.URL.Query())
	if e != nil {
		e.write(w)
		return
	}
	if _, ok := s.findWebhook(w, r); !ok {
		return
	}
	ds, next, err := s.store.ListWebhookDeliveries(r.Context(), r.PathValue("id"), opt)
	s.writePage(w, "webhook deliveries", ds, next, err)
}
