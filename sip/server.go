// Package sip terminates SIP signaling on top of sipgo: listeners, inbound
// dialogs (legs), SDP offer/answer and in-dialog requests. It never touches
// audio: the flow package reads a leg's negotiated media and drives a media
// stream with it.
package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Methods we implement; used for Allow headers and 405 answers.
var allowedMethods = []string{"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO"}

// knownMethods are RFC methods we recognise but do not (yet) serve: 405.
// Anything else is 501 Not Implemented (RFC 3261 §21.5.2).
var knownMethods = map[string]bool{
	"REGISTER": true, "SUBSCRIBE": true, "NOTIFY": true, "REFER": true,
	"MESSAGE": true, "UPDATE": true, "PRACK": true, "PUBLISH": true,
}

// Config says where the server listens and what it advertises.
type Config struct {
	// UDP and TCP listeners, made by the caller so tests can bind port 0
	// and serve can report the real address.
	UDP net.PacketConn
	TCP net.Listener
	// AdvertiseIP is the address put in Contact headers (and by the flow in
	// SDP). Required.
	AdvertiseIP net.IP
	UserAgent   string
	Logger      *slog.Logger
}

// CallHandler receives every new inbound leg. It runs in its own goroutine
// and must end the leg by answering, rejecting or hanging it up.
type CallHandler func(leg *Leg)

// Server serves SIP for inbound calls.
type Server struct {
	cfg      Config
	log      *slog.Logger
	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	client   *sipgo.Client
	dialogUA *sipgo.DialogUA
	handler  CallHandler

	legs     sync.Map // dialog id → *Leg
	draining atomic.Bool
	wg       sync.WaitGroup // serve goroutines
}

// NewServer builds a server; call Serve to start it.
func NewServer(cfg Config, handler CallHandler) (*Server, error) {
	if cfg.AdvertiseIP == nil {
		return nil, errors.New("sip: advertise IP required")
	}
	if cfg.UDP == nil && cfg.TCP == nil {
		return nil, errors.New("sip: no listener")
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "voxbridge"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(cfg.UserAgent), sipgo.WithUserAgentHostname(cfg.AdvertiseIP.String()))
	if err != nil {
		return nil, fmt.Errorf("sip: user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		return nil, fmt.Errorf("sip: server: %w", err)
	}
	port := 5060
	if cfg.UDP != nil {
		port = cfg.UDP.LocalAddr().(*net.UDPAddr).Port
	} else if cfg.TCP != nil {
		port = cfg.TCP.Addr().(*net.TCPAddr).Port
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(cfg.AdvertiseIP.String()), sipgo.WithClientPort(port), sipgo.WithClientLogger(log))
	if err != nil {
		return nil, fmt.Errorf("sip: client: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		ua:      ua,
		srv:     srv,
		client:  client,
		handler: handler,
		dialogUA: &sipgo.DialogUA{
			Client: client,
			ContactHDR: sip.ContactHeader{
				Address: sip.Uri{Scheme: "sip", User: "voxbridge", Host: cfg.AdvertiseIP.String(), Port: port},
			},
			// In-dialog requests go back where the INVITE came from: right
			// behind NAT and on TCP, where it reuses the caller's connection.
			RewriteContact: true,
		},
	}
	srv.OnInvite(s.onInvite)
	srv.OnAck(s.onAck)
	srv.OnBye(s.onBye)
	srv.OnCancel(s.onCancel)
	srv.OnOptions(s.onOptions)
	srv.OnInfo(s.onInfo)
	srv.OnNoRoute(s.onNoRoute)
	return s, nil
}

// Serve serves the configured listeners until ctx is done, then closes them.
func (s *Server) Serve(ctx context.Context) {
	if s.cfg.UDP != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.srv.ServeUDP(s.cfg.UDP); err != nil && ctx.Err() == nil {
				s.log.Error("sip udp serve", "err", err)
			}
		}()
	}
	if s.cfg.TCP != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.srv.ServeTCP(s.cfg.TCP); err != nil && ctx.Err() == nil {
				s.log.Error("sip tcp serve", "err", err)
			}
		}()
	}
	<-ctx.Done()
	s.Close()
}

// Drain makes the server refuse new calls with 503 while live ones finish.
func (s *Server) Drain() { s.draining.Store(true) }

// Close closes the listeners and the transport layer and waits for the
// serve goroutines.
func (s *Server) Close() {
	if s.cfg.UDP != nil {
		s.cfg.UDP.Close()
	}
	if s.cfg.TCP != nil {
		s.cfg.TCP.Close()
	}
	s.ua.Close()
	s.wg.Wait()
}

// LiveLegs returns the legs whose dialogs have not ended.
func (s *Server) LiveLegs() []*Leg {
	var out []*Leg
	s.legs.Range(func(_, v any) bool {
		out = append(out, v.(*Leg))
		return true
	})
	return out
}

func (s *Server) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, headers ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range headers {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("sip respond", "code", code, "method", req.Method, "err", err)
	}
}

func allowHeader() sip.Header {
	return sip.NewHeader("Allow", strings.Join(allowedMethods, ", "))
}

func (s *Server) lookup(req *sip.Request) *Leg {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return nil
	}
	v, ok := s.legs.Load(id)
	if !ok {
		return nil
	}
	return v.(*Leg)
}

func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil {
		if _, hasTag := to.Params.Get("tag"); hasTag {
			s.onReinvite(req, tx)
			return
		}
	}
	if s.draining.Load() {
		s.respond(req, tx, 503, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
		return
	}
	if req.Contact() == nil {
		s.respond(req, tx, 400, "Missing Contact")
		return
	}
	offer, negotiated, negErr, code, reason := readOffer(req)
	if code != 0 {
		s.log.Info("sip invite refused", "call_id", callID(req), "source", req.Source(), "code", code, "reason", reason)
		s.respond(req, tx, code, reason, sip.NewHeader("Accept", "application/sdp"))
		return
	}
	dlg, err := s.dialogUA.ReadInvite(req, tx)
	if err != nil {
		s.respond(req, tx, 400, "Bad Request")
		return
	}
	s.respond(req, tx, 100, "Trying")

	leg := newLeg(s, req, dlg, tx, offer, negotiated, negErr)
	s.legs.Store(dlg.ID, leg)
	// sipgo answers the CANCEL with 200 and the INVITE with 487 itself.
	tx.OnCancel(func(*sip.Request) { leg.end(EndRemote, CauseCancel, 487) })
	go s.handler(leg)

	// sipgo requires the INVITE transaction to be answered before this
	// handler returns, so wait for the flow's final answer or the end of the
	// transaction (CANCEL, transport failure).
	select {
	case <-leg.final:
	case <-leg.done:
	case <-tx.Done():
		if !leg.finalStarted() {
			leg.end(EndRemote, CauseTransport, 0)
		}
	}
}

// onReinvite keeps established calls alive across session refreshes by
// answering with the SDP we already gave. Hold and media changes are the
// business of a later change.
func (s *Server) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	leg := s.lookup(req)
	if leg == nil {
		s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	answer := leg.localSDP()
	if answer == nil {
		s.respond(req, tx, 491, "Request Pending")
		return
	}
	res := sip.NewSDPResponseFromRequest(req, answer)
	res.AppendHeader(sip.HeaderClone(&s.dialogUA.ContactHDR))
	if err := tx.Respond(res); err != nil {
		s.log.Debug("sip re-invite respond", "call_id", leg.CallID, "err", err)
	}
}

func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	leg := s.lookup(req)
	if leg == nil {
		return // ACKs get no response; a stray one is simply dropped
	}
	_ = leg.dlg.ReadAck(req, tx)
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	leg := s.lookup(req)
	if leg == nil {
		s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	if err := leg.dlg.ReadBye(req, tx); err != nil {
		s.respond(req, tx, 500, "Server Internal Error")
		return
	}
	leg.end(EndRemote, CauseBye, 0)
}

// onCancel only sees CANCELs that matched no pending INVITE: sipgo's
// transaction layer answers the others itself.
func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
}

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	s.respond(req, tx, 200, "OK",
		allowHeader(),
		sip.NewHeader("Accept", "application/sdp, application/dtmf-relay, application/dtmf"),
		sip.NewHeader("Accept-Language", "en"),
	)
}

func (s *Server) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	leg := s.lookup(req)
	if leg == nil {
		s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	digit, ok, err := ParseInfoDTMF(ct, req.Body())
	switch {
	case err != nil:
		s.respond(req, tx, 400, "Bad DTMF")
	case !ok:
		s.respond(req, tx, 415, "Unsupported Media Type", sip.NewHeader("Accept", "application/dtmf-relay, application/dtmf"))
	default:
		leg.pushInfoDTMF(digit)
		s.respond(req, tx, 200, "OK")
	}
}

func (s *Server) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	if knownMethods[string(req.Method)] {
		s.respond(req, tx, 405, "Method Not Allowed", allowHeader())
		return
	}
	s.respond(req, tx, 501, "Not Implemented", allowHeader())
}

func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}
