package siptest

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/sdp"
)

// AnswerPlan says how the phone answers one incoming INVITE. The zero
// value answers at once, playing silence.
type AnswerPlan struct {
	// Challenge, when 401 or 407, first asks for digest credentials
	// (Username and Password in Realm, with Algorithm, default MD5) and
	// answers 403 to wrong ones.
	Challenge                 int
	Realm, Username, Password string
	Algorithm                 string
	// RingFor rings, with a 180 every RingEvery (default 1 s), before the
	// final answer. A CANCEL meanwhile ends the call with 487.
	RingFor, RingEvery time.Duration
	// EarlyMedia sends 183 Session Progress with the SDP answer first and
	// plays the tone from then on.
	EarlyMedia bool
	// Reject, when not 0, is the final answer instead of 200.
	Reject int
	// ToneHz is played for as long as the call lasts; 0 plays silence.
	ToneHz float64
	// Codecs are the ones the phone accepts, by preference (default PCMU,
	// PCMA).
	Codecs []sdp.Codec
}

// OnInvite makes the phone answer incoming INVITEs as plan says for each.
// Answered calls are delivered on Calls. Without a plan, INVITEs get 480.
func (p *Phone) OnInvite(plan func(req *sip.Request) AnswerPlan) {
	p.mu.Lock()
	p.plan = plan
	p.mu.Unlock()
}

// AutoAnswer answers every call at once and plays a tone of toneHz.
func (p *Phone) AutoAnswer(toneHz float64) {
	p.OnInvite(func(*sip.Request) AnswerPlan { return AnswerPlan{ToneHz: toneHz} })
}

// Calls delivers the calls the phone answered (the 200 acknowledged).
func (p *Phone) Calls() <-chan *Call { return p.calls }

// Invites returns copies of every INVITE the phone received, in order,
// challenged ones included.
func (p *Phone) Invites() []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sip.Request(nil), p.invites...)
}

// Cancels is how many pending INVITEs were cancelled.
func (p *Phone) Cancels() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cancels
}

func (p *Phone) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.invites = append(p.invites, req.Clone())
	planFn := p.plan
	p.wg.Add(1)
	p.mu.Unlock()
	defer p.wg.Done()

	respond := func(code int, reason string, hdrs ...sip.Header) {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		_ = tx.Respond(res)
	}
	if to := req.To(); to != nil && to.Params.Has("tag") {
		p.onReinvite(req, tx) // reinvite.go
		return
	}
	if planFn == nil {
		respond(480, "Temporarily Unavailable")
		return
	}
	plan := planFn(req)
	if plan.Challenge == 401 || plan.Challenge == 407 {
		chalHdr, credHdr, reason := "WWW-Authenticate", "Authorization", "Unauthorized"
		if plan.Challenge == 407 {
			chalHdr, credHdr, reason = "Proxy-Authenticate", "Proxy-Authorization", "Proxy Authentication Required"
		}
		checker := p.checker(plan.Realm, plan.Username, plan.Password, plan.Algorithm)
		present, ok := checker.verify(req, credHdr)
		switch {
		case !present:
			respond(plan.Challenge, reason, sip.NewHeader(chalHdr, checker.challenge()))
			return
		case !ok:
			respond(403, "Forbidden")
			return
		}
	}
	codecs := plan.Codecs
	if len(codecs) == 0 {
		codecs = []sdp.Codec{sdp.PCMU, sdp.PCMA}
	}
	offer, err := sdp.Parse(req.Body())
	if err != nil {
		respond(400, "Bad SDP")
		return
	}
	rtpConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: p.ip})
	if err != nil {
		respond(500, "No RTP Socket")
		return
	}
	ip, _ := netip.AddrFromSlice(p.ip)
	neg, answer, err := sdp.Answer(offer, codecs, sdp.Local{
		Address:   ip.Unmap(),
		Port:      rtpConn.LocalAddr().(*net.UDPAddr).Port,
		SessionID: rand.Uint64N(1 << 62),
		Version:   1,
		UserAgent: "phone",
	})
	if err != nil {
		rtpConn.Close()
		respond(488, "Not Acceptable Here")
		return
	}
	dlg, err := p.inbound.ReadInvite(req, tx)
	if err != nil {
		rtpConn.Close()
		respond(400, "Bad Request")
		return
	}
	tx.OnCancel(func(*sip.Request) {
		p.mu.Lock()
		p.cancels++
		p.mu.Unlock()
	})
	c := &Call{dlg: dlg, callID: req.CallID().Value(), phone: p}
	start := time.Now()
	if plan.EarlyMedia {
		if err := dlg.Respond(183, "Session Progress", answer, sip.NewHeader("Content-Type", "application/sdp")); err != nil {
			rtpConn.Close()
			dlg.Close()
			return
		}
		if err := p.startAnswered(c, rtpConn, neg, plan.ToneHz); err != nil {
			rtpConn.Close()
			dlg.Close()
			return
		}
		rtpConn = nil // the stream owns it now
	}
	fail := func() {
		if rtpConn != nil {
			rtpConn.Close()
		}
		if c.stream != nil {
			c.Close()
		} else {
			dlg.Close()
		}
	}
	every := plan.RingEvery
	if every <= 0 {
		every = time.Second
	}
	for {
		if err := dlg.Respond(180, "Ringing", nil); err != nil {
			fail() // cancelled, or the transaction died
			return
		}
		left := plan.RingFor - time.Since(start)
		if left <= 0 {
			break
		}
		select {
		case <-dlg.Context().Done(): // CANCEL: sipgo answered 487
			fail()
			return
		case <-time.After(min(every, left)):
		}
	}
	if plan.Reject != 0 {
		_ = dlg.Respond(plan.Reject, "Rejected", nil)
		fail()
		return
	}
	if err := dlg.RespondSDP(answer); err != nil {
		fail()
		return
	}
	c.Answered = time.Since(start)
	if c.stream == nil {
		if err := p.startAnswered(c, rtpConn, neg, plan.ToneHz); err != nil {
			fail()
			_ = dlg.Bye(context.Background())
			return
		}
	}
	select {
	case p.calls <- c:
	default: // nobody collects answered calls; they still run
	}
}

// startAnswered starts an answered call's media with a tone and tracks the
// call so Close ends it.
func (p *Phone) startAnswered(c *Call, conn *net.UDPConn, n sdp.Negotiated, toneHz float64) error {
	if err := c.startStream(c.dlg.Context(), conn, n); err != nil {
		return err
	}
	p.mu.Lock()
	p.live[c] = true
	p.mu.Unlock()
	if toneHz > 0 {
		c.wg.Add(1)
		go c.playTone(toneHz)
	}
	return nil
}

// playTone keeps about half a second of tone queued until the call ends:
// the stream's clock paces it.
func (c *Call) playTone(hz float64) {
	defer c.wg.Done()
	chunk := media.Tone(hz, time.Second, 0.3)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if c.stream.Queued() < 500*time.Millisecond {
			c.stream.Enqueue(chunk)
		}
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checker returns the phone's digest checker for these credentials.
func (p *Phone) checker(realm, user, pass, alg string) *digestChecker {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.challenge; c != nil && c.user == user && c.pass == pass && (realm == "" || c.realm == realm) {
		return c
	}
	p.challenge = newDigestChecker(realm, user, pass, alg)
	return p.challenge
}
