package sip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
	"github.com/icholy/digest"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/store"
)

// Defaults for DialRequest timers.
const (
	DefaultRingTimeout     = 60 * time.Second
	DefaultResponseTimeout = 8 * time.Second
	// cancelWait bounds the wait for the final answer to a CANCELled INVITE
	// (RFC 3261 §9.1 allows an old UAS never to send one).
	cancelWait = 5 * time.Second
	// maxAuthRounds bounds how often one attempt answers challenges.
	maxAuthRounds = 3
)

// ErrNotAllowed is returned (wrapped in a *DialError) for a destination the
// caller may not reach: a trunk for an anonymous caller or an extension not
// allowed to call out, a number outside every trunk's allowed prefixes.
var ErrNotAllowed = errors.New("destination not allowed")

// CallerID is who an outbound call says it is from.
type CallerID struct {
	User string // user part of From: a number or a name
	Name string // display name
}

// DialRequest describes one outbound call. Set exactly one target: URI,
// Binding, or Number with Trunks.
type DialRequest struct {
	// URI is any SIP URI, sent as it is. Challenges to it are never
	// answered: credentials only ever go to their own trunk.
	URI string
	// Binding is a registered contact of an extension (see Contacts): the
	// INVITE goes to the address the registration came from, which is
	// right behind NAT and reuses a TCP phone's connection.
	Binding *store.Registration
	// Number is dialed through Trunks, tried in order: the next one only
	// after a 5xx or no answer at all from the previous one.
	Number string
	Trunks []store.Trunk

	// Caller is on whose behalf the call is placed. Trunk targets need a
	// Caller that MayUseTrunks, or System for calls the operator places
	// (API, tests): the zero value reaches no trunk.
	Caller Identity
	System bool

	// From is shown to the callee; a trunk's configured caller ID wins.
	From CallerID
	// Offer is our SDP offer; Codecs are the codecs it offers, in order,
	// to read the answer with (default PCMU, PCMA).
	Offer  []byte
	Codecs []sdp.Codec
	// RingTimeout ends an unanswered attempt with CANCEL (reason
	// noanswer); default DefaultRingTimeout.
	RingTimeout time.Duration
	// ResponseTimeout gives up on a destination that sends nothing at all,
	// not even 100 Trying, and fails over; default DefaultResponseTimeout.
	ResponseTimeout time.Duration
	// OnProgress sees every provisional response above 100, with the early
	// media SDP when it carries one. It runs on Dial's goroutine: do not
	// block in it.
	OnProgress func(Progress)
}

// Progress is a provisional response to an outbound INVITE.
type Progress struct {
	Code   int
	Reason string
	Trunk  string // the trunk's name, "" when not through a trunk
	// EarlyMedia is the negotiated media of an SDP answer in the
	// provisional response (183 Session Progress, some 180s), nil if none.
	EarlyMedia *sdp.Negotiated
}

// DialError says why an outbound call did not connect. Reason is the
// hangup reason for the call record; Code the SIP status it came from (0
// when there was none).
type DialError struct {
	Reason store.HangupReason
	Code   int
	Status string
	Trunk  string // the last trunk tried, if any
	Err    error  // the cause, for local failures

	failover bool // another trunk may do better: 5xx or no response
}

func (e *DialError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dial: %s", e.Reason)
	if e.Code != 0 {
		fmt.Fprintf(&b, " (%d %s)", e.Code, e.Status)
	}
	if e.Trunk != "" {
		fmt.Fprintf(&b, " via trunk %s", e.Trunk)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *DialError) Unwrap() error { return e.Err }

// failureReason maps a final SIP status of an outbound INVITE to a hangup
// reason.
func failureReason(code int) store.HangupReason {
	switch code {
	case 486, 600:
		return store.ReasonBusy
	case 480, 408:
		return store.ReasonNoAnswer
	case 487:
		return store.ReasonCancel
	}
	return store.ReasonFailed
}

// dialTarget is one destination an attempt sends an INVITE to.
type dialTarget struct {
	requestURI  sip.Uri
	to          sip.Uri
	from        sip.Uri
	fromName    string
	destination string // host:port; "" derives it from requestURI
	transport   string // "UDP", "TCP" or "TLS"
	trunk       *store.Trunk
	pai         string
	headers     []store.Header
}

// Dial places an outbound call and returns once it is answered (the ACK
// sent), or with a *DialError. Cancelling ctx before the answer sends
// CANCEL and fails with reason cancel.
func (s *Server) Dial(ctx context.Context, r DialRequest) (*OutLeg, error) {
	if len(r.Offer) == 0 {
		return nil, &DialError{Reason: store.ReasonFailed, Err: errors.New("no SDP offer")}
	}
	if len(r.Codecs) == 0 {
		r.Codecs = SupportedCodecs
	}
	r.RingTimeout = cmpOr(r.RingTimeout, DefaultRingTimeout)
	r.ResponseTimeout = cmpOr(r.ResponseTimeout, DefaultResponseTimeout)
	targets, err := s.dialTargets(r)
	if err != nil {
		return nil, err
	}
	var last *DialError
	for _, t := range targets {
		leg, derr := s.attempt(ctx, r, t)
		if derr == nil {
			return leg, nil
		}
		last = derr
		if !derr.failover || ctx.Err() != nil {
			break
		}
		if t.trunk != nil {
			s.log.Info("sip dial: trying next trunk", "trunk", t.trunk.Name, "err", derr)
		}
	}
	return nil, last
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// dialTargets turns a request into the destinations to try, in order.
func (s *Server) dialTargets(r DialRequest) ([]dialTarget, error) {
	set := 0
	for _, b := range []bool{r.URI != "", r.Binding != nil, r.Number != ""} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, &DialError{Reason: store.ReasonFailed, Err: errors.New("set exactly one of URI, Binding, Number")}
	}
	fromUser := cmpStr(r.From.User, "voxbridge")
	local := sip.Uri{Scheme: "sip", User: fromUser, Host: s.cfg.AdvertiseIP.String()}
	switch {
	case r.URI != "":
		var u sip.Uri
		if err := sip.ParseUri(r.URI, &u); err != nil || u.Host == "" {
			return nil, &DialError{Reason: store.ReasonFailed, Err: fmt.Errorf("bad URI %q", r.URI)}
		}
		tp := "UDP"
		if v, ok := u.UriParams.Get("transport"); ok {
			tp = strings.ToUpper(v)
		}
		to := sip.Uri{Scheme: u.Scheme, User: u.User, Host: u.Host, Port: u.Port}
		return []dialTarget{{requestURI: u, to: to, from: local, fromName: r.From.Name, transport: tp}}, nil
	case r.Binding != nil:
		var u sip.Uri
		if err := sip.ParseUri(r.Binding.Contact, &u); err != nil || u.Host == "" {
			return nil, &DialError{Reason: store.ReasonFailed, Err: fmt.Errorf("bad contact %q", r.Binding.Contact)}
		}
		to := sip.Uri{Scheme: "sip", User: r.Binding.Extension, Host: s.cfg.AdvertiseIP.String()}
		return []dialTarget{{requestURI: u, to: to, from: local, fromName: r.From.Name,
			destination: r.Binding.SourceAddr, transport: strings.ToUpper(r.Binding.Transport)}}, nil
	}
	if !r.System && !r.Caller.MayUseTrunks() {
		return nil, &DialError{Reason: store.ReasonFailed, Code: 403, Status: "Forbidden",
			Err: fmt.Errorf("%w: caller may not use trunks", ErrNotAllowed)}
	}
	var out []dialTarget
	var formatErr error
	for i := range r.Trunks {
		t := &r.Trunks[i]
		if !t.Enabled || t.Host == "" {
			continue
		}
		num, err := FormatNumber(t, r.Number)
		if err != nil {
			formatErr = err
			continue
		}
		host := t.Host
		if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
			host = "[" + host + "]" // IPv6 literal
		}
		port := t.OutboundPort()
		tp := strings.ToUpper(string(t.Transport))
		ruri := sip.Uri{Scheme: "sip", User: num, Host: host, Port: port}
		if tp != "UDP" {
			ruri.UriParams = sip.HeaderParams{{K: "transport", V: strings.ToLower(tp)}}
		}
		from := sip.Uri{Scheme: "sip", User: cmpStr(t.CallerID, fromUser), Host: host}
		pai := ""
		if t.PAI != "" {
			if strings.HasPrefix(t.PAI, "sip:") || strings.HasPrefix(t.PAI, "sips:") || strings.HasPrefix(t.PAI, "tel:") {
				pai = "<" + t.PAI + ">"
			} else {
				pai = "<sip:" + t.PAI + "@" + host + ">"
			}
		}
		out = append(out, dialTarget{
			requestURI:  ruri,
			to:          sip.Uri{Scheme: "sip", User: num, Host: host},
			from:        from,
			fromName:    cmpStr(t.CallerName, r.From.Name),
			destination: net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)),
			transport:   tp,
			trunk:       t,
			pai:         pai,
			headers:     t.Headers,
		})
	}
	if len(out) == 0 {
		err := formatErr
		if err == nil {
			err = fmt.Errorf("%w: no enabled trunk with an outbound host", ErrNotAllowed)
		}
		return nil, &DialError{Reason: store.ReasonFailed, Code: 403, Status: "Forbidden", Err: err}
	}
	return out, nil
}

func cmpStr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// FormatNumber writes number the way trunk t wants it: its number format
// and tech prefix. It fails with ErrNotAllowed when the number is outside
// the trunk's allowed prefixes.
func FormatNumber(t *store.Trunk, number string) (string, error) {
	n, err := store.NormalizeNumber(number)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotAllowed, err)
	}
	digits := strings.TrimPrefix(n, "+")
	if len(t.AllowedPrefixes) > 0 {
		ok := false
		for _, p := range t.AllowedPrefixes {
			if strings.HasPrefix(digits, strings.TrimPrefix(p, "+")) {
				ok = true
				break
			}
		}
		if !ok {
			return "", fmt.Errorf("%w: %s is outside trunk %s's allowed prefixes", ErrNotAllowed, n, t.Name)
		}
	}
	switch t.Format {
	case store.NumberE164NoPlus:
		n = digits
	case store.NumberAsDialed:
	default:
		n = "+" + digits
	}
	return t.TechPrefix + n, nil
}

// acquireTrunk takes one of the trunk's concurrent call slots.
func (s *Server) acquireTrunk(t *store.Trunk) bool {
	s.trunkMu.Lock()
	defer s.trunkMu.Unlock()
	if t.MaxCalls > 0 && s.trunkCalls[t.ID] >= t.MaxCalls {
		return false
	}
	s.trunkCalls[t.ID]++
	return true
}

func (s *Server) releaseTrunk(t *store.Trunk) {
	s.trunkMu.Lock()
	defer s.trunkMu.Unlock()
	if s.trunkCalls[t.ID]--; s.trunkCalls[t.ID] <= 0 {
		delete(s.trunkCalls, t.ID)
	}
}

// TrunkCalls reports the live outbound calls through the trunk with id.
func (s *Server) TrunkCalls(id string) int {
	s.trunkMu.Lock()
	defer s.trunkMu.Unlock()
	return s.trunkCalls[id]
}

// buildInvite makes the INVITE of one attempt.
func (s *Server) buildInvite(r DialRequest, t dialTarget) *sip.Request {
	req := sip.NewRequest(sip.INVITE, t.requestURI)
	from := &sip.FromHeader{DisplayName: t.fromName, Address: t.from, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	to := &sip.ToHeader{Address: t.to, Params: sip.NewParams()}
	callID := sip.CallIDHeader(uuid.NewString())
	cseq := &sip.CSeqHeader{SeqNo: 1 + rand.Uint32N(1<<15), MethodName: sip.INVITE}
	maxFwd := sip.MaxForwardsHeader(70)
	contact := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "voxbridge", Host: s.cfg.AdvertiseIP.String(), Port: s.port}}
	if t.transport != "UDP" {
		contact.Address.UriParams = sip.HeaderParams{{K: "transport", V: strings.ToLower(t.transport)}}
	}
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(cseq)
	req.AppendHeader(&maxFwd)
	req.AppendHeader(contact)
	if t.pai != "" {
		req.AppendHeader(sip.NewHeader("P-Asserted-Identity", t.pai))
	}
	for _, h := range t.headers {
		req.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	req.AppendHeader(sip.NewHeader("Allow", strings.Join(allowedMethods, ", ")))
	req.AppendHeader(sip.NewHeader("User-Agent", s.cfg.UserAgent))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(r.Offer)
	s.route(req, t.destination, t.transport)
	return req
}

// route sets where a request we originate goes and, over UDP, makes it
// leave from our SIP listener.
func (s *Server) route(req *sip.Request, destination, transport string) {
	req.SetTransport(transport)
	if destination != "" {
		req.SetDestination(destination)
	}
	if transport == "UDP" && s.cfg.UDP != nil {
		s.udpAddr.Copy(&req.Laddr)
	}
}

// attempt sends the INVITE to one target and follows it to an answer or a
// failure.
func (s *Server) attempt(ctx context.Context, r DialRequest, t dialTarget) (*OutLeg, *DialError) {
	trunkName := ""
	if t.trunk != nil {
		trunkName = t.trunk.Name
		if !s.acquireTrunk(t.trunk) {
			return nil, &DialError{Reason: store.ReasonFailed, Code: 503, Status: "Trunk At Capacity", Trunk: trunkName, failover: true}
		}
	}
	fail := func(e *DialError) (*OutLeg, *DialError) {
		if t.trunk != nil {
			s.releaseTrunk(t.trunk)
		}
		e.Trunk = trunkName
		return nil, e
	}
	inv := s.buildInvite(r, t)
	tx, err := s.sendRequest(ctx, inv)
	if err != nil {
		return fail(&DialError{Reason: store.ReasonFailed, Err: err, failover: true})
	}
	established := false
	defer func() {
		// After a 2xx the transaction stays up on its own (Timer M), so
		// that a retransmitted 2xx still finds it and gets its ACK.
		if !established {
			tx.Terminate()
		}
	}()

	ring := time.NewTimer(r.RingTimeout)
	defer ring.Stop()
	noResponse := time.NewTimer(r.ResponseTimeout)
	defer noResponse.Stop()
	var (
		cancelReason store.HangupReason // set once we decided to CANCEL
		cancelSent   bool
		cancelTx     sip.ClientTransaction
		cancelTimer  <-chan time.Time
		gotResponse  bool
		answered     = map[string]bool{} // nonces we already answered
		authRounds   int
		ctxDone      = ctx.Done()
	)
	defer func() {
		// The CANCEL's own 200 interests nobody; its transaction ends
		// with the attempt.
		if cancelTx != nil {
			cancelTx.Terminate()
		}
	}()
	startCancel := func(reason store.HangupReason) {
		if cancelReason == "" {
			cancelReason = reason
		}
		ring.Stop()
		ctxDone = nil
		// RFC 3261 §9.1: CANCEL only once a provisional response came.
		if gotResponse && !cancelSent {
			cancelSent = true
			cancelTx = s.sendCancel(inv)
			cancelTimer = time.After(cancelWait)
		}
	}
	for {
		select {
		case res := <-tx.Responses():
			if !gotResponse {
				gotResponse = true
				noResponse.Stop()
			}
			switch {
			case res.StatusCode < 200:
				if cancelReason != "" {
					startCancel(cancelReason)
					continue
				}
				if res.StatusCode > 100 && r.OnProgress != nil {
					r.OnProgress(s.progress(res, r.Codecs, trunkName))
				}
			case res.StatusCode < 300:
				leg, derr := s.established(inv, tx, res, r, t)
				if derr != nil {
					derr.Trunk = trunkName
					return nil, derr // the leg ended itself, trunk slot included
				}
				established = true
				if cancelReason != "" {
					// Answered while we were cancelling: the call exists,
					// so end it properly.
					hctx, cancel := context.WithTimeout(context.Background(), cancelWait)
					_ = leg.Hangup(hctx)
					cancel()
					return nil, &DialError{Reason: cancelReason, Trunk: trunkName}
				}
				return leg, nil
			case (res.StatusCode == 401 || res.StatusCode == 407) && cancelReason == "":
				next, aerr := s.answerChallenge(inv, res, t, answered, &authRounds)
				if aerr != nil {
					s.log.Info("sip dial: challenge not answered", "call_id", callID(inv), "trunk", trunkName, "err", aerr)
					return fail(&DialError{Reason: store.ReasonFailed, Code: res.StatusCode, Status: res.Reason, Err: aerr})
				}
				tx.Terminate()
				inv = next
				if tx, err = s.sendRequest(ctx, inv); err != nil {
					return fail(&DialError{Reason: store.ReasonFailed, Err: err, failover: true})
				}
				gotResponse = false
				noResponse.Reset(r.ResponseTimeout)
			default:
				if cancelReason != "" {
					return fail(&DialError{Reason: cancelReason, Code: res.StatusCode, Status: res.Reason})
				}
				return fail(&DialError{Reason: failureReason(res.StatusCode), Code: res.StatusCode, Status: res.Reason,
					failover: res.StatusCode >= 500 && res.StatusCode < 600})
			}
		case <-tx.Done():
			if cancelReason != "" {
				return fail(&DialError{Reason: cancelReason})
			}
			return fail(&DialError{Reason: store.ReasonFailed, Code: 408, Status: "Request Timeout",
				Err: fmt.Errorf("transaction ended: %w", tx.Err()), failover: true})
		case <-noResponse.C:
			if cancelReason != "" {
				return fail(&DialError{Reason: cancelReason})
			}
			return fail(&DialError{Reason: store.ReasonFailed, Code: 408, Status: "Request Timeout",
				Err: errors.New("no response"), failover: true})
		case <-ring.C:
			startCancel(store.ReasonNoAnswer)
		case <-ctxDone:
			startCancel(store.ReasonCancel)
		case <-cancelTimer:
			return fail(&DialError{Reason: cancelReason})
		}
	}
}

// sendRequest starts a client transaction for a request built by us.
func (s *Server) sendRequest(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	// The transaction lives on after this returns; ctx only bounds setting
	// up the connection (a TCP or TLS dial).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	tx, err := s.client.TransactionRequest(cctx, req, sipgo.ClientRequestAddVia)
	if err != nil {
		return nil, fmt.Errorf("send %s: %w", req.Method, err)
	}
	return tx, nil
}

// asIs sends a request with the headers it has: no Via or other header is
// added.
func asIs(*sipgo.Client, *sip.Request) error { return nil }

// sendCancel sends CANCEL for inv (RFC 3261 §9.1): same Request-URI,
// Call-ID, From, To, CSeq number and top Via as the INVITE.
// The caller terminates the returned transaction (nil if none started).
func (s *Server) sendCancel(inv *sip.Request) sip.ClientTransaction {
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	for _, name := range []string{"Via", "From", "To", "Call-ID", "Route", "Max-Forwards"} {
		if h := inv.GetHeader(name); h != nil {
			c.AppendHeader(sip.HeaderClone(h))
		}
	}
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	c.SetBody(nil)
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())
	c.Laddr = inv.Laddr
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := s.client.TransactionRequest(ctx, c, asIs)
	if err != nil {
		s.log.Info("sip cancel", "call_id", callID(inv), "err", err)
		return nil
	}
	return tx
}

// answerChallenge builds the next INVITE with credentials for a 401/407.
// Credentials are only ever sent for a trunk's own target.
func (s *Server) answerChallenge(inv *sip.Request, res *sip.Response, t dialTarget, answered map[string]bool, rounds *int) (*sip.Request, error) {
	if t.trunk == nil || t.trunk.Username == "" || t.trunk.Password == "" {
		return nil, errors.New("no credentials for this destination")
	}
	return withCredentials(inv, res, t.trunk.Username, t.trunk.Password, answered, rounds)
}

// withCredentials returns a copy of req, with the next CSeq and no Via,
// answering the challenge in res (401 or 407). Each challenge (nonce) is
// answered once: the same nonce again means the credentials were refused.
func withCredentials(req *sip.Request, res *sip.Response, username, password string, answered map[string]bool, rounds *int) (*sip.Request, error) {
	chalHdr, credHdr := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		chalHdr, credHdr = "Proxy-Authenticate", "Proxy-Authorization"
	}
	chal, err := pickChallenge(res, chalHdr)
	if err != nil {
		return nil, err
	}
	if answered[chal.Nonce] {
		return nil, errors.New("credentials refused")
	}
	if *rounds++; *rounds > maxAuthRounds {
		return nil, errors.New("too many challenges")
	}
	answered[chal.Nonce] = true
	next := req.Clone()
	cred, err := digest.Digest(chal, digest.Options{Method: string(req.Method), URI: next.Recipient.String(),
		Username: username, Password: password})
	if err != nil {
		return nil, err
	}
	next.RemoveHeader("Via")
	next.RemoveHeader(credHdr)
	next.AppendHeader(sip.NewHeader(credHdr, cred.String()))
	next.CSeq().SeqNo++
	return next, nil
}

// pickChallenge chooses the strongest digest challenge we support among a
// response's headers: SHA-256, else MD5.
func pickChallenge(res *sip.Response, name string) (*digest.Challenge, error) {
	var best *digest.Challenge
	for _, h := range res.GetHeaders(name) {
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			continue
		}
		c.Algorithm = strings.ToUpper(c.Algorithm)
		for i := range c.QOP {
			c.QOP[i] = strings.TrimSpace(c.QOP[i])
		}
		switch c.Algorithm {
		case algSHA256:
			return c, nil
		case algMD5, "":
			if best == nil {
				best = c
			}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no usable %s challenge", name)
	}
	return best, nil
}

// progress describes a provisional response for OnProgress.
func (s *Server) progress(res *sip.Response, ours []sdp.Codec, trunk string) Progress {
	p := Progress{Code: res.StatusCode, Reason: res.Reason, Trunk: trunk}
	if body := res.Body(); len(body) > 0 {
		if sess, err := sdp.Parse(body); err == nil {
			if n, err := sdp.Negotiate(sess, ours); err == nil {
				p.EarlyMedia = &n
			}
		}
	}
	return p
}

// established ACKs a 2xx and makes the OutLeg. On failure the leg has
// ended, which frees its trunk slot.
func (s *Server) established(inv *sip.Request, tx sip.ClientTransaction, res *sip.Response, r DialRequest, t dialTarget) (*OutLeg, *DialError) {
	o := &OutLeg{
		CallID:    callID(inv),
		Trunk:     t.trunk,
		Source:    res.Source(),
		Transport: t.transport,
		srv:       s,
		invite:    inv,
		response:  res,
		offer:     r.Offer,
		done:      make(chan struct{}),
		dtmf:      make(chan rune, 32),
		cseq:      inv.CSeq().SeqNo,
	}
	o.From = inv.From().Address.String()
	o.To = inv.To().Address.String()
	o.destination = t.destination
	remoteTag, _ := res.To().Params.Get("tag")
	localTag, _ := inv.From().Params.Get("tag")
	if remoteTag == "" {
		o.end(EndRemote, CauseTransport, res.StatusCode)
		return nil, &DialError{Reason: store.ReasonFailed, Code: res.StatusCode, Err: errors.New("2xx without a To tag")}
	}
	// Keyed as lookupOut computes it from requests the far end sends:
	// Call-ID, our tag, their tag.
	id := sip.DialogIDMake(o.CallID, localTag, remoteTag)
	o.id = id
	ack := o.newRequest(sip.ACK, inv.CSeq().SeqNo)
	_ = sipgo.ClientRequestAddVia(s.client, ack)
	// A 2xx sent again means our ACK was lost: send it again, every time.
	// The hook goes in before the first ACK leaves, or the 2xx it provokes
	// could beat it.
	ackAgain := ack.Clone()
	tx.OnRetransmission(func(re *sip.Response) {
		if re.IsSuccess() {
			if err := s.client.WriteRequest(ackAgain.Clone(), asIs); err != nil {
				s.log.Debug("sip ack retransmission", "call_id", o.CallID, "err", err)
			}
		}
	})
	// Known before the ACK leaves: the far end may send INFO or BYE the
	// moment it arrives, and those must find the leg.
	s.outLegs.Store(id, o)
	if err := s.client.WriteRequest(ack, asIs); err != nil {
		o.end(EndLocal, CauseTransport, res.StatusCode)
		return nil, &DialError{Reason: store.ReasonFailed, Code: res.StatusCode, Err: fmt.Errorf("ack: %w", err)}
	}

	body := res.Body()
	if len(body) == 0 {
		o.end(EndLocal, CauseRejected, res.StatusCode)
		_ = o.bye(context.Background())
		return nil, &DialError{Reason: store.ReasonFailed, Code: 488, Status: "No SDP Answer", Err: errors.New("2xx without SDP")}
	}
	answer, err := sdp.Parse(body)
	if err == nil {
		o.Answer = answer
		o.Negotiated, err = sdp.Negotiate(answer, r.Codecs)
	}
	if err != nil {
		_ = o.Hangup(context.Background())
		return nil, &DialError{Reason: store.ReasonCodec, Code: 488, Status: "Bad SDP Answer", Err: err}
	}
	o.startSession(res)
	return o, nil
}

// OutLeg is an outbound call's dialog, from the answer to its end.
type OutLeg struct {
	CallID    string
	From, To  string // URIs
	Trunk     *store.Trunk
	Source    string // address the answer came from
	Transport string

	Answer     *sdp.Session
	Negotiated sdp.Negotiated

	srv         *Server
	id          string
	invite      *sip.Request
	response    *sip.Response
	offer       []byte
	destination string

	mu    sync.Mutex
	cseq  uint32
	ended bool
	info  EndInfo

	done chan struct{}
	dtmf chan rune

	sess session // re-INVITE, UPDATE, hold, session timer (reinvite.go)

	refer referHooks // REFER in and out (refer.go)
}

// SIPCallID is the dialog's Call-ID.
func (o *OutLeg) SIPCallID() string { return o.CallID }

// Media is the remote media in force: negotiated from the answer, then
// changed by re-INVITEs and UPDATEs.
func (o *OutLeg) Media() sdp.Negotiated { return o.sess.media(o.Negotiated) }

// Done is closed when the leg has ended.
func (o *OutLeg) Done() <-chan struct{} { return o.done }

// EndInfo reports how the leg ended; valid after Done is closed.
func (o *OutLeg) EndInfo() EndInfo {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.info
}

// InfoDTMF delivers digits received as SIP INFO.
func (o *OutLeg) InfoDTMF() <-chan rune { return o.dtmf }

func (o *OutLeg) pushInfoDTMF(d rune) {
	select {
	case o.dtmf <- d:
	default:
	}
}

// Hangup sends BYE and ends the leg.
func (o *OutLeg) Hangup(ctx context.Context) error {
	o.mu.Lock()
	ended := o.ended
	o.mu.Unlock()
	if ended {
		return nil
	}
	o.end(EndLocal, CauseBye, 0)
	if err := o.bye(ctx); err != nil {
		return fmt.Errorf("bye %s: %w", o.CallID, err)
	}
	return nil
}

func (o *OutLeg) bye(ctx context.Context) error {
	o.mu.Lock()
	o.cseq++
	seq := o.cseq
	o.mu.Unlock()
	req := o.newRequest(sip.BYE, seq)
	tx, err := o.srv.client.TransactionRequest(ctx, req, sipgo.ClientRequestAddVia)
	if err != nil {
		return err
	}
	defer tx.Terminate()
	res, err := finalResponse(ctx, tx)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("%d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// finalResponse waits for a non-INVITE transaction's final response.
func finalResponse(ctx context.Context, tx sip.ClientTransaction) (*sip.Response, error) {
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			return nil, fmt.Errorf("no final response: %w", errors.Join(tx.Err(), sip.ErrTransactionTimeout))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// end records how the leg ended; only the first call counts.
func (o *OutLeg) end(by EndBy, cause EndCause, code int) {
	o.mu.Lock()
	if o.ended {
		o.mu.Unlock()
		return
	}
	o.ended = true
	o.info = EndInfo{By: by, Cause: cause, Code: code}
	o.mu.Unlock()
	o.srv.outLegs.Delete(o.id)
	if o.Trunk != nil {
		o.srv.releaseTrunk(o.Trunk)
	}
	close(o.done)
}

// newRequest builds an in-dialog request (RFC 3261 §12.2.1.1): to the
// remote target, through the route set the 2xx recorded, else back to
// where the INVITE went.
func (o *OutLeg) newRequest(method sip.RequestMethod, seq uint32) *sip.Request {
	target := o.invite.Recipient
	if c := o.response.Contact(); c != nil {
		target = c.Address
	}
	req := sip.NewRequest(method, *target.Clone())
	routes := o.response.GetHeaders("Record-Route")
	for i := len(routes) - 1; i >= 0; i-- {
		req.AppendHeader(sip.NewHeader("Route", routes[i].Value()))
	}
	req.AppendHeader(sip.HeaderClone(o.invite.From()))
	req.AppendHeader(sip.HeaderClone(o.response.To()))
	req.AppendHeader(sip.HeaderClone(o.invite.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	req.AppendHeader(sip.HeaderClone(o.invite.Contact()))
	req.SetBody(nil)
	dest := o.destination
	if len(routes) > 0 {
		dest = "" // the first Route decides
	}
	o.srv.route(req, dest, o.Transport)
	return req
}

// onReinvite answers a re-INVITE from the callee (reinvite.go).
func (o *OutLeg) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	o.sess.onOffer(outPeer{o}, req, tx)
}
