package sip

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/store"
)

// Registrar refusals decided inside the store transaction.
var (
	errOutOfOrder = errors.New("out of order CSeq for a binding")
	errTooMany    = errors.New("too many bindings")
)

// onRegister is the registrar (RFC 3261 §10.3): authenticate, then add,
// refresh or remove the extension's bindings, and answer with those in
// force.
func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	if s.store == nil {
		s.respond(req, tx, 405, "Method Not Allowed", s.allowHeader())
		return
	}
	id, ok := s.authenticate(req, tx, false)
	if !ok {
		return
	}
	ext := id.Extension
	to := req.To()
	// A trunk's inbound account cannot register, and an extension only
	// registers its own address of record.
	if ext == nil || to == nil || (to.Address.User != ext.Username && to.Address.User != ext.Number) {
		s.respond(req, tx, 403, "Forbidden")
		return
	}
	cseq := req.CSeq()
	if cseq == nil || req.CallID() == nil {
		s.respond(req, tx, 400, "Bad Request")
		return
	}
	change, code, reason, extra := s.readBindings(req)
	if code != 0 {
		s.respond(req, tx, code, reason, extra...)
		return
	}
	callID := req.CallID().Value()
	now := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	current, err := s.store.UpdateRegistrations(ctx, ext.Number, func(cur []store.Registration) (store.RegistrationChange, error) {
		return decideBindings(cur, change, callID, cseq.SeqNo, s.cfg.Registrar.MaxBindings)
	})
	switch {
	case errors.Is(err, errOutOfOrder):
		s.respond(req, tx, 400, "Out Of Order CSeq")
		return
	case errors.Is(err, errTooMany):
		s.respond(req, tx, 403, "Too Many Registrations")
		return
	case errors.Is(err, store.ErrInvalid):
		// The extension was deleted under us, or a contact we cannot keep.
		s.respond(req, tx, 400, "Bad Contact")
		return
	case err != nil:
		s.log.Error("sip register", "extension", ext.Number, "err", err)
		s.respond(req, tx, 500, "Server Internal Error", sip.NewHeader("Retry-After", "5"))
		return
	}
	s.keep.update(ext.Number, current)
	if len(change.put) > 0 || change.all || len(change.remove) > 0 {
		s.log.Info("sip register", "extension", ext.Number, "source", req.Source(), "bindings", len(current))
	}
	hdrs := make([]sip.Header, 0, len(current)+1)
	for _, r := range current {
		left := max(int(time.Until(r.ExpiresAt).Round(time.Second)/time.Second), 1)
		hdrs = append(hdrs, sip.NewHeader("Contact", "<"+r.Contact+">;expires="+strconv.Itoa(left)))
	}
	hdrs = append(hdrs, sip.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	s.respond(req, tx, 200, "OK", hdrs...)
}

// bindingChange is what one REGISTER asks for.
type bindingChange struct {
	all    bool // "Contact: *" with Expires: 0
	put    []store.Registration
	remove []string
}

// readBindings reads the Contact and Expires headers of a REGISTER. A
// non-zero code is the error answer.
func (s *Server) readBindings(req *sip.Request) (c bindingChange, code int, reason string, extra []sip.Header) {
	defaultExpires := int(s.cfg.Registrar.DefaultExpires / time.Second)
	if h := req.GetHeader("Expires"); h != nil {
		v, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
		if err != nil {
			return c, 400, "Bad Expires", nil
		}
		defaultExpires = int(min(v, 1<<31-1))
	}
	minExp := int(s.cfg.Registrar.MinExpires / time.Second)
	maxExp := int(s.cfg.Registrar.MaxExpires / time.Second)
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = truncate(h.Value(), 200)
	}
	contacts := req.GetHeaders("Contact")
	for _, h := range contacts {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			return c, 400, "Bad Contact", nil
		}
		if ch.Address.Wildcard {
			// RFC 3261 §10.3 step 6: "*" only alone and with Expires: 0.
			if len(contacts) != 1 || req.GetHeader("Expires") == nil || defaultExpires != 0 {
				return c, 400, "Bad Wildcard Contact", nil
			}
			c.all = true
			return c, 0, "", nil
		}
		exp := defaultExpires
		if v, ok := ch.Params.Get("expires"); ok {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return c, 400, "Bad Contact Expires", nil
			}
			exp = int(min(n, 1<<31-1))
		}
		uri := ch.Address.String()
		if ch.Address.Host == "" || len(uri) > 512 {
			return c, 400, "Bad Contact", nil
		}
		if exp == 0 {
			c.remove = append(c.remove, uri)
			continue
		}
		if exp < minExp {
			return c, 423, "Interval Too Brief", []sip.Header{sip.NewHeader("Min-Expires", strconv.Itoa(minExp))}
		}
		c.put = append(c.put, store.Registration{
			Contact:    uri,
			SourceAddr: req.Source(),
			Transport:  strings.ToLower(req.Transport()),
			ExpiresAt:  time.Now().Add(time.Duration(min(exp, maxExp)) * time.Second),
			UserAgent:  ua,
		})
	}
	return c, 0, "", nil
}

// decideBindings applies RFC 3261 §10.3 step 7 to the extension's current
// bindings: for a contact already bound with the same Call-ID, only a
// higher CSeq may change it.
func decideBindings(cur []store.Registration, c bindingChange, callID string, cseq uint32, maxBindings int) (store.RegistrationChange, error) {
	out := store.RegistrationChange{RemoveAll: c.all}
	byContact := make(map[string]store.Registration, len(cur))
	for _, r := range cur {
		byContact[r.Contact] = r
	}
	stale := func(contact string) bool {
		r, ok := byContact[contact]
		return ok && r.CallID == callID && cseq <= r.CSeq
	}
	for _, contact := range c.remove {
		if stale(contact) {
			return out, errOutOfOrder
		}
		if _, ok := byContact[contact]; ok {
			out.Remove = append(out.Remove, contact)
			delete(byContact, contact)
		}
	}
	for _, r := range c.put {
		if stale(r.Contact) {
			return out, errOutOfOrder
		}
		r.CallID, r.CSeq = callID, cseq
		out.Put = append(out.Put, r)
		byContact[r.Contact] = r
	}
	if len(byContact) > maxBindings {
		return out, fmt.Errorf("%w: %d > %d", errTooMany, len(byContact), maxBindings)
	}
	return out, nil
}

// Contacts returns the registered, unexpired bindings of an extension
// (by number), oldest first: where to ring it.
func (s *Server) Contacts(ctx context.Context, extension string) ([]store.Registration, error) {
	if s.store == nil {
		return nil, errors.New("sip: no registrar")
	}
	rs, err := s.store.ListRegistrations(ctx, extension)
	if err != nil {
		return nil, fmt.Errorf("contacts of %s: %w", extension, err)
	}
	return rs, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
