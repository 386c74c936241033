package sip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
)

// MediaChange is a change of a dialog's media by an offer/answer exchange
// after the first one: a re-INVITE or UPDATE from the peer, or Hold/Resume
// from us.
type MediaChange struct {
	Media    sdp.Negotiated // the remote media in force now
	Previous sdp.Negotiated
	// RemoteHold: the peer asked us not to send (sendonly, inactive or
	// c=0.0.0.0); the stream must stop sending until it resumes.
	RemoteHold bool
	// LocalHold: we hold the peer (Hold): it should hear music, not us.
	LocalHold bool
	// AddressChanged: RTP now goes to Media.RemoteAddr. Never set for an
	// unspecified (old-style hold) address, which names nowhere to send.
	AddressChanged bool
	CodecChanged   bool
}

// HoldChanged reports whether either hold state differs from prev's.
func (c MediaChange) HoldChanged(prev MediaChange) bool {
	return c.RemoteHold != prev.RemoteHold || c.LocalHold != prev.LocalHold
}

// ErrOfferPending is returned by Hold and Resume when another offer/answer
// exchange on the dialog has not finished and retries did not help.
var ErrOfferPending = errors.New("offer/answer exchange pending")

// reofferAttempts bounds Hold/Resume's tries against 491 glare.
const reofferAttempts = 4

// session is a dialog's media session after the first offer/answer: our
// SDP, the peer's, hold states, pending exchanges and the session timer.
// Both leg kinds embed one.
type session struct {
	mu       sync.Mutex
	ready    bool // the first exchange is done (answered, ACKed)
	local    sdp.Local
	lastBody []byte // our last SDP, to bump the o= version only on change
	current  sdp.Negotiated
	state    MediaChange // hold states as last reported
	sending  bool        // our re-INVITE is in flight
	// offered is our offer in the 2xx to an offerless re-INVITE, awaiting
	// its answer in the ACK.
	offered  bool
	onChange func(MediaChange)
	deal     timerDeal
	timer    *sessionTimer
	// ownCallID: we made the Call-ID, so glare retries wait 2.1-4 s, else
	// 0-2 s (RFC 3261 §14.1).
	ownCallID bool
}

// dialogPeer is what the session needs from its leg.
type dialogPeer interface {
	// request sends an in-dialog request with body (nil for none).
	request(ctx context.Context, method sip.RequestMethod, body []byte, hdrs ...sip.Header) (sip.ClientTransaction, *sip.Request, error)
	// ack acknowledges a 2xx to our re-INVITE inv.
	ack(inv *sip.Request) error
	contact() sip.Header
	server() *Server
	sipCallID() string
	done() <-chan struct{}
	// expire ends the dialog with BYE because its session expired.
	expire()
}

// start marks the first exchange done: local is our SDP, n the peer's.
func (m *session) start(local sdp.Local, body []byte, n sdp.Negotiated) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ready = true
	m.local = local
	m.lastBody = body
	m.current = n
	m.state = MediaChange{Media: n, RemoteHold: remoteHolds(n)}
}

// media returns the remote media in force, or initial before start.
func (m *session) media(initial sdp.Negotiated) sdp.Negotiated {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.ready {
		return initial
	}
	return m.current
}

func (m *session) setOnChange(f func(MediaChange)) {
	m.mu.Lock()
	m.onChange = f
	m.mu.Unlock()
}

// remoteHolds: the peer will not receive, so we must not send.
func remoteHolds(n sdp.Negotiated) bool {
	return n.RemoteDirection == sdp.SendOnly || n.RemoteDirection == sdp.Inactive ||
		n.RemoteAddr.Addr().IsUnspecified()
}

// render builds our SDP for l, bumping the o= version when the body
// differs from the last one we sent (RFC 3264 §8). Called with m.mu.
func (m *session) render(build func(sdp.Local) []byte) []byte {
	body := build(m.local)
	if string(body) != string(m.lastBody) {
		m.local.Version++
		body = build(m.local)
	}
	m.lastBody = body
	return body
}

// commit takes n as the peer's media and returns the change to report, or
// ok false when nothing the flow cares about changed. Called with m.mu.
func (m *session) commit(n sdp.Negotiated, localHold bool) (MediaChange, func(MediaChange), bool) {
	prev := m.current
	ch := MediaChange{
		Media:      n,
		Previous:   prev,
		RemoteHold: remoteHolds(n),
		LocalHold:  localHold,
		CodecChanged: !strings.EqualFold(n.Codec.Name, prev.Codec.Name) ||
			n.Codec.PayloadType != prev.Codec.PayloadType,
	}
	if a := n.RemoteAddr; !a.Addr().IsUnspecified() && a != prev.RemoteAddr {
		ch.AddressChanged = true
	}
	// An old-style hold names 0.0.0.0: keep the real address for the
	// resume, which may not repeat it.
	if n.RemoteAddr.Addr().IsUnspecified() {
		n.RemoteAddr, n.RemoteRTCPAddr = prev.RemoteAddr, prev.RemoteRTCPAddr
		ch.Media = n
	}
	m.current = n
	changed := ch.AddressChanged || ch.CodecChanged || ch.HoldChanged(m.state)
	m.state = ch
	return ch, m.onChange, changed
}

// ourCodecs is what we offer in a re-offer: the codec in use first (so a
// refresh or hold does not switch codecs), then the others we support.
func (m *session) ourCodecs() []sdp.Codec {
	out := []sdp.Codec{m.current.Codec}
	for _, c := range SupportedCodecs {
		if !strings.EqualFold(c.Name, m.current.Codec.Name) {
			out = append(out, c)
		}
	}
	return out
}

// offerBody is our re-offer for the current state. Called with m.mu.
func (m *session) offerBody(localHold bool) []byte {
	return m.render(func(l sdp.Local) []byte {
		l.Codecs = m.ourCodecs()
		l.DTMFPayloadType = m.current.DTMFPayloadType
		if l.DTMFPayloadType == 0 {
			l.DTMFPayloadType = 101
		}
		l.Direction = sdp.SendRecv
		if localHold {
			l.Direction = sdp.SendOnly
		}
		l.RTCPMux = m.current.RTCPMux
		return sdp.Build(l)
	})
}

// onOffer answers a re-INVITE or UPDATE from the peer (RFC 3264 §8, RFC
// 3311): hold and resume, a new address or codec, or a session refresh.
func (m *session) onOffer(p dialogPeer, req *sip.Request, tx sip.ServerTransaction) {
	s := p.server()
	respond := func(code int, reason string, body []byte, hdrs ...sip.Header) {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		if code >= 200 && code < 300 {
			res.AppendHeader(p.contact())
		}
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		if body != nil {
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			res.SetBody(body)
		}
		if err := tx.Respond(res); err != nil {
			s.log.Debug("sip respond", "call_id", p.sipCallID(), "method", req.Method, "code", code, "err", err)
		}
	}
	ask := readTimerAsk(req)
	if ask.bad {
		respond(400, "Bad Session-Expires", nil)
		return
	}
	if minSE := s.cfg.SessionTimer.tooBrief(ask); minSE > 0 {
		respond(422, "Session Interval Too Small", nil, sip.NewHeader("Min-SE", fmt.Sprint(int(minSE/time.Second))))
		return
	}
	isInvite := req.Method == sip.INVITE
	body := req.Body()
	if len(body) > 0 {
		if h := req.ContentType(); h != nil {
			ct := strings.ToLower(strings.TrimSpace(strings.SplitN(h.Value(), ";", 2)[0]))
			if ct != "application/sdp" {
				respond(415, "Unsupported Media Type", nil, sip.NewHeader("Accept", "application/sdp"))
				return
			}
		}
	}

	m.mu.Lock()
	switch {
	case !m.ready:
		// Still in the first exchange (our 2xx unacknowledged).
		m.mu.Unlock()
		respond(491, "Request Pending", nil)
		return
	case m.sending:
		// Glare: both sides re-offered; each backs off and retries.
		m.mu.Unlock()
		respond(491, "Request Pending", nil)
		return
	case m.offered:
		m.mu.Unlock()
		if isInvite {
			// RFC 3261 §14.2: a second re-INVITE while one is in progress.
			respond(500, "Server Internal Error", nil, sip.NewHeader("Retry-After", fmt.Sprint(rand.IntN(10))))
		} else {
			respond(491, "Request Pending", nil)
		}
		return
	}
	deal := m.deal
	if ask.expires > 0 || ask.supported {
		deal = s.cfg.SessionTimer.answerTimer(ask)
	}
	localHold := m.state.LocalHold

	if len(body) == 0 {
		if !isInvite {
			// An UPDATE without an offer refreshes the session.
			m.deal = deal
			m.mu.Unlock()
			respond(200, "OK", nil, deal.headers()...)
			m.refreshed(deal)
			return
		}
		// An offerless re-INVITE: we offer in the 2xx, the ACK answers.
		offer := m.offerBody(localHold)
		m.offered = true
		m.deal = deal
		m.mu.Unlock()
		respond(200, "OK", offer, deal.headers()...)
		m.refreshed(deal)
		return
	}

	offer, err := sdp.Parse(body)
	if err != nil {
		m.mu.Unlock()
		respond(400, "Malformed SDP", nil)
		return
	}
	var n sdp.Negotiated
	answer := m.render(func(l sdp.Local) []byte {
		l.Direction = sdp.SendRecv
		if localHold {
			l.Direction = sdp.SendOnly
		}
		var b []byte
		n, b, err = sdp.Answer(offer, SupportedCodecs, l)
		return b
	})
	if err != nil {
		m.mu.Unlock()
		// The session goes on with its old media (RFC 3261 §14.2).
		s.log.Info("sip re-offer refused", "call_id", p.sipCallID(), "method", req.Method, "err", err)
		if errors.Is(err, sdp.ErrMalformed) { // as for an initial INVITE
			respond(400, "Malformed SDP", nil)
			return
		}
		respond(488, "Not Acceptable Here", nil, sip.NewHeader("Accept", "application/sdp"))
		return
	}
	m.deal = deal
	ch, onChange, changed := m.commit(n, localHold)
	m.mu.Unlock()
	respond(200, "OK", answer, deal.headers()...)
	m.refreshed(deal)
	if changed {
		s.log.Info("sip media changed", "call_id", p.sipCallID(), "method", req.Method,
			"remote", ch.Media.RemoteAddr, "codec", ch.Media.Codec.Name, "remote_hold", ch.RemoteHold, "direction", ch.Media.RemoteDirection)
		if onChange != nil {
			onChange(ch)
		}
	}
}

// onAck reads the answer in the ACK to our offer in a 2xx to an offerless
// re-INVITE. It reports whether the ACK was for such an offer.
func (m *session) onAck(p dialogPeer, req *sip.Request) bool {
	m.mu.Lock()
	if !m.offered {
		m.mu.Unlock()
		return false
	}
	m.offered = false
	body := req.Body()
	if len(body) == 0 {
		m.mu.Unlock()
		// RFC 3261 §13.2.2.4 wants the dialog ended; keeping the old
		// media is kinder and what phones expect of us.
		p.server().log.Info("sip ack without the answer to our offer", "call_id", p.sipCallID())
		return true
	}
	var ch MediaChange
	var onChange func(MediaChange)
	changed := false
	answer, err := sdp.Parse(body)
	if err == nil {
		var n sdp.Negotiated
		if n, err = sdp.Negotiate(answer, SupportedCodecs); err == nil {
			ch, onChange, changed = m.commit(n, m.state.LocalHold)
		}
	}
	m.mu.Unlock()
	if err != nil {
		p.server().log.Info("sip bad answer in ack", "call_id", p.sipCallID(), "err", err)
		return true
	}
	if changed && onChange != nil {
		onChange(ch)
	}
	return true
}

// refreshed restarts the session timer after a refresh.
func (m *session) refreshed(d timerDeal) {
	if m.timer != nil {
		m.timer.refreshed(d)
	}
}

// reoffer sends a re-INVITE with our offer, localHold deciding its
// direction, retrying after 491 with RFC 3261 §14.1's random wait. It
// reports the change to the flow like a peer's offer would be.
func (m *session) reoffer(ctx context.Context, p dialogPeer, localHold bool) error {
	var lastErr error
	for attempt := range reofferAttempts {
		if attempt > 0 {
			if err := sleepCtx(ctx, p.done(), m.glareWait()); err != nil {
				return err
			}
		}
		code, err := m.reofferOnce(ctx, p, localHold)
		if err == nil {
			return nil
		}
		lastErr = err
		if code != 491 && !errors.Is(err, ErrOfferPending) {
			return err
		}
	}
	return fmt.Errorf("re-invite %s: %w", p.sipCallID(), errors.Join(ErrOfferPending, lastErr))
}

func (m *session) glareWait() time.Duration {
	if m.ownCallID {
		return 2100*time.Millisecond + time.Duration(rand.IntN(191))*10*time.Millisecond
	}
	return time.Duration(rand.IntN(201)) * 10 * time.Millisecond
}

func sleepCtx(ctx context.Context, done <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
		return ErrLegEnded
	}
}

// reofferOnce is one re-INVITE; code is its final status (0 if none came).
func (m *session) reofferOnce(ctx context.Context, p dialogPeer, localHold bool) (int, error) {
	m.mu.Lock()
	if !m.ready {
		m.mu.Unlock()
		return 0, fmt.Errorf("re-invite %s: not answered", p.sipCallID())
	}
	if m.sending || m.offered {
		m.mu.Unlock()
		return 0, ErrOfferPending
	}
	m.sending = true
	offer := m.offerBody(localHold)
	hdrs := []sip.Header{sip.NewHeader("Content-Type", "application/sdp")}
	if m.deal.interval > 0 {
		// We refresh with this request: say so (RFC 4028 §7.4).
		hdrs = append(hdrs, sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=uac", int(m.deal.interval/time.Second))),
			sip.NewHeader("Supported", "timer"))
	}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.sending = false
		m.mu.Unlock()
	}()

	select {
	case <-p.done():
		return 0, fmt.Errorf("re-invite %s: %w", p.sipCallID(), ErrLegEnded)
	default:
	}
	tx, inv, err := p.request(ctx, sip.INVITE, offer, hdrs...)
	if err != nil {
		return 0, fmt.Errorf("re-invite %s: %w", p.sipCallID(), err)
	}
	res, err := finalResponse(ctx, tx) // works for INVITE too: 1xx skipped
	if err != nil {
		tx.Terminate()
		return 0, fmt.Errorf("re-invite %s: %w", p.sipCallID(), err)
	}
	if !res.IsSuccess() {
		tx.Terminate()
		return res.StatusCode, fmt.Errorf("re-invite %s: %d %s", p.sipCallID(), res.StatusCode, res.Reason)
	}
	// A 2xx sent again means our ACK was lost.
	tx.OnRetransmission(func(re *sip.Response) {
		if re.IsSuccess() {
			_ = p.ack(inv)
		}
	})
	if err := p.ack(inv); err != nil {
		return res.StatusCode, fmt.Errorf("re-invite %s: ack: %w", p.sipCallID(), err)
	}
	answer, err := sdp.Parse(res.Body())
	var n sdp.Negotiated
	if err == nil {
		n, err = sdp.Negotiate(answer, m.ourCodecsLocked())
	}
	if err != nil {
		// The peer accepted but answered nonsense: keep the old media.
		return res.StatusCode, fmt.Errorf("re-invite %s: answer: %w", p.sipCallID(), err)
	}
	m.mu.Lock()
	ch, onChange, changed := m.commit(n, localHold)
	deal := m.deal
	m.mu.Unlock()
	m.refreshed(deal)
	if changed && onChange != nil {
		onChange(ch)
	}
	return res.StatusCode, nil
}

func (m *session) ourCodecsLocked() []sdp.Codec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ourCodecs()
}

// runTimer starts the session timer of deal, if any, for the dialog's
// life.
func (m *session) runTimer(p dialogPeer, deal timerDeal) {
	m.mu.Lock()
	m.deal = deal
	t := newSessionTimer()
	m.timer = t
	m.mu.Unlock()
	s := p.server()
	s.lifeMu.Lock()
	if s.closed {
		s.lifeMu.Unlock()
		return
	}
	s.bg.Add(1)
	s.lifeMu.Unlock()
	go func() {
		defer s.bg.Done()
		t.run(deal, p.done(), s.stop, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
			defer cancel()
			go func() { // Close must not wait out a refresh
				select {
				case <-s.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := m.refresh(ctx, p)
			if err != nil {
				s.log.Info("sip session refresh failed", "call_id", p.sipCallID(), "err", err)
			}
			return err == nil
		}, func() {
			s.log.Info("sip session expired", "call_id", p.sipCallID())
			p.expire()
		})
	}()
}

// refresh is our session refresh: a re-INVITE with the SDP in force.
func (m *session) refresh(ctx context.Context, p dialogPeer) error {
	m.mu.Lock()
	hold := m.state.LocalHold
	m.mu.Unlock()
	return m.reoffer(ctx, p, hold)
}

// hold and resume are Hold and Resume for either leg kind.
func (m *session) hold(ctx context.Context, p dialogPeer, on bool) error {
	return m.reoffer(ctx, p, on)
}

// --- the inbound leg ---

type legPeer struct{ l *Leg }

func (p legPeer) request(ctx context.Context, method sip.RequestMethod, body []byte, hdrs ...sip.Header) (sip.ClientTransaction, *sip.Request, error) {
	req := sip.NewRequest(method, p.target())
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	req.SetBody(body)
	tx, err := p.l.dlg.TransactionRequest(ctx, req)
	return tx, req, err
}

// target is the caller's Contact, where in-dialog requests go.
func (p legPeer) target() sip.Uri {
	inv := p.l.dlg.InviteRequest
	if c := inv.Contact(); c != nil {
		return *c.Address.Clone()
	}
	return *inv.From().Address.Clone()
}

func (p legPeer) ack(inv *sip.Request) error {
	ack := sip.NewRequest(sip.ACK, inv.Recipient)
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.ACK})
	ack.SetBody(nil)
	// buildReq (via WriteRequest) sets the dialog's headers and the
	// re-INVITE's CSeq, which is the dialog's last.
	return p.l.dlg.WriteRequest(ack)
}

func (p legPeer) contact() sip.Header   { return sip.HeaderClone(&p.l.srv.dialogUA.ContactHDR) }
func (p legPeer) server() *Server       { return p.l.srv }
func (p legPeer) sipCallID() string     { return p.l.CallID }
func (p legPeer) done() <-chan struct{} { return p.l.done }

func (p legPeer) expire() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bye := sip.NewRequest(sip.BYE, p.target())
	bye.AppendHeader(sip.NewHeader("Reason", `SIP;cause=408;text="Session Timer Expired"`))
	err := p.l.dlg.WriteBye(ctx, bye)
	p.l.end(EndLocal, CauseSessionExpired, 408)
	if err != nil {
		p.l.srv.log.Debug("sip bye", "call_id", p.l.CallID, "err", err)
	}
}

// OnMediaChange sets f to hear of every media change after the answer:
// hold and resume either way, a new address or codec. f runs on SIP's
// goroutine right after the 2xx (or the ACK's answer): apply it to the
// stream quickly and do slow work elsewhere. Set it before Answer.
func (l *Leg) OnMediaChange(f func(MediaChange)) { l.sess.setOnChange(f) }

// Hold puts the caller on hold: a re-INVITE offering sendonly. Our stream
// should keep sending (music on hold).
func (l *Leg) Hold(ctx context.Context) error { return l.sess.hold(ctx, legPeer{l}, true) }

// Resume takes the caller off hold: a re-INVITE offering sendrecv.
func (l *Leg) Resume(ctx context.Context) error { return l.sess.hold(ctx, legPeer{l}, false) }

// sdpResponse is the 2xx to the initial INVITE: our answer and what we
// decided about session timers.
func (l *Leg) sdpResponse(body []byte) (*sip.Response, timerDeal) {
	inv := l.dlg.InviteRequest
	res := sip.NewSDPResponseFromRequest(inv, body)
	deal := l.srv.cfg.SessionTimer.answerTimer(readTimerAsk(inv))
	for _, h := range deal.headers() {
		res.AppendHeader(h)
	}
	return res, deal
}

// startSession is called once the caller ACKed our answer.
func (l *Leg) startSession(local sdp.Local, body []byte, deal timerDeal) {
	l.sess.start(local, body, l.Negotiated)
	if deal.interval > 0 {
		l.sess.runTimer(legPeer{l}, deal)
	}
}

// --- the outbound leg ---

type outPeer struct{ o *OutLeg }

func (p outPeer) request(ctx context.Context, method sip.RequestMethod, body []byte, hdrs ...sip.Header) (sip.ClientTransaction, *sip.Request, error) {
	o := p.o
	o.mu.Lock()
	o.cseq++
	seq := o.cseq
	o.mu.Unlock()
	req := o.newRequest(method, seq)
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	req.SetBody(body)
	tx, err := o.srv.client.TransactionRequest(ctx, req, sipgo.ClientRequestAddVia)
	return tx, req, err
}

func (p outPeer) ack(inv *sip.Request) error {
	o := p.o
	ack := o.newRequest(sip.ACK, inv.CSeq().SeqNo)
	_ = sipgo.ClientRequestAddVia(o.srv.client, ack)
	return o.srv.client.WriteRequest(ack, asIs)
}

func (p outPeer) contact() sip.Header   { return sip.HeaderClone(p.o.invite.Contact()) }
func (p outPeer) server() *Server       { return p.o.srv }
func (p outPeer) sipCallID() string     { return p.o.CallID }
func (p outPeer) done() <-chan struct{} { return p.o.done }

func (p outPeer) expire() {
	o := p.o
	o.end(EndLocal, CauseSessionExpired, 408)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.bye(ctx); err != nil {
		o.srv.log.Debug("sip bye", "call_id", o.CallID, "err", err)
	}
}

// OnMediaChange: see Leg.OnMediaChange.
func (o *OutLeg) OnMediaChange(f func(MediaChange)) { o.sess.setOnChange(f) }

// Hold puts the callee on hold: a re-INVITE offering sendonly.
func (o *OutLeg) Hold(ctx context.Context) error { return o.sess.hold(ctx, outPeer{o}, true) }

// Resume takes the callee off hold: a re-INVITE offering sendrecv.
func (o *OutLeg) Resume(ctx context.Context) error { return o.sess.hold(ctx, outPeer{o}, false) }

// startSession is called once the OutLeg is established: our offer was
// answered. A Session-Expires in the 2xx starts the session timer.
func (o *OutLeg) startSession(res *sip.Response) {
	o.sess.ownCallID = true
	local := localFromOffer(o.offer)
	o.sess.start(local, o.offer, o.Negotiated)
	ask := readTimerAsk(res)
	if ask.expires == 0 {
		return
	}
	// Roles are the INVITE's: refresher=uac is us.
	deal := timerDeal{interval: ask.expires, weRefresh: ask.refresher == "uac"}
	o.sess.runTimer(outPeer{o}, deal)
}

// localFromOffer recovers our sdp.Local from the offer we sent, so a
// re-offer keeps its o= session id and address.
func localFromOffer(offer []byte) sdp.Local {
	l := sdp.Local{Version: 1, Ptime: 20}
	sess, err := sdp.Parse(offer)
	if err != nil {
		return l
	}
	l.SessionID, l.Version, l.UserAgent = sess.Origin.SessionID, sess.Origin.Version, sess.Origin.Username
	for _, m := range sess.Media {
		if !strings.EqualFold(m.Type, "audio") {
			continue
		}
		l.Port = m.Port
		c := m.Connection
		if c == "" {
			c = sess.Connection
		}
		l.Address, _ = netip.ParseAddr(c)
		if m.Ptime > 0 {
			l.Ptime = m.Ptime
		}
		break
	}
	return l
}

// onUpdate hands an UPDATE (RFC 3311) to its dialog's session.
func (s *Server) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	if out := s.lookupOut(req); out != nil {
		out.sess.onOffer(outPeer{out}, req, tx)
		return
	}
	if leg := s.lookup(req); leg != nil {
		leg.sess.onOffer(legPeer{leg}, req, tx)
		return
	}
	s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
}

// checkSessionTimer answers an initial INVITE whose Session-Expires is
// unreadable (400) or too small (422 with our Min-SE); false means it did.
func (s *Server) checkSessionTimer(req *sip.Request, tx sip.ServerTransaction) bool {
	ask := readTimerAsk(req)
	if ask.bad {
		s.respond(req, tx, 400, "Bad Session-Expires")
		return false
	}
	if minSE := s.cfg.SessionTimer.tooBrief(ask); minSE > 0 {
		s.respond(req, tx, 422, "Session Interval Too Small", sip.NewHeader("Min-SE", fmt.Sprint(int(minSE/time.Second))))
		return false
	}
	return true
}
