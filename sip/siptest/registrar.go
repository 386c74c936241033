package siptest

import (
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// RegistrarPlan makes the phone answer REGISTER as a carrier's registrar.
type RegistrarPlan struct {
	// Username and Password in Realm are required (401 challenge, digest
	// with Algorithm, default MD5); an empty Username accepts anyone.
	Realm, Username, Password, Algorithm string
	// Expires is the expiry granted when the REGISTER asks for more;
	// 0 grants what is asked.
	Expires int
	// Reply, when set, answers the n-th authenticated REGISTER (from 1)
	// with code instead of 200, with Retry-After when retryAfter > 0.
	Reply func(n int) (code, retryAfter int)
}

// RegisterRecord is one REGISTER the phone received as a registrar.
type RegisterRecord struct {
	At         time.Time
	Expires    int // as asked
	Authorized bool
	Code       int // what the phone answered
	Contact    string
	CallID     string
	CSeq       uint32
}

type registrarState struct {
	plan       RegistrarPlan
	checker    *digestChecker
	authorized int
	records    []RegisterRecord
}

// ServeRegistrar makes the phone answer REGISTERs as plan says. Without it
// REGISTER gets 405.
func (p *Phone) ServeRegistrar(plan RegistrarPlan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.registrar = &registrarState{plan: plan, checker: newDigestChecker(plan.Realm, plan.Username, plan.Password, plan.Algorithm)}
}

// Registers returns the REGISTERs received so far.
func (p *Phone) Registers() []RegisterRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.registrar == nil {
		return nil
	}
	return append([]RegisterRecord(nil), p.registrar.records...)
}

func (p *Phone) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	p.mu.Lock()
	r := p.registrar
	p.mu.Unlock()
	if r == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
		return
	}
	rec := RegisterRecord{At: time.Now(), Expires: -1}
	if h := req.GetHeader("Expires"); h != nil {
		rec.Expires, _ = strconv.Atoi(strings.TrimSpace(h.Value()))
	}
	if c := req.Contact(); c != nil {
		rec.Contact = c.Address.String()
	}
	if c := req.CallID(); c != nil {
		rec.CallID = c.Value()
	}
	if c := req.CSeq(); c != nil {
		rec.CSeq = c.SeqNo
	}
	res := p.registerAnswer(r, req, &rec)
	rec.Code = res.StatusCode
	p.mu.Lock()
	r.records = append(r.records, rec)
	p.mu.Unlock()
	_ = tx.Respond(res)
}

func (p *Phone) registerAnswer(r *registrarState, req *sip.Request, rec *RegisterRecord) *sip.Response {
	if r.plan.Username != "" {
		present, ok := r.checker.verify(req, "Authorization")
		switch {
		case !present:
			res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
			res.AppendHeader(sip.NewHeader("WWW-Authenticate", r.checker.challenge()))
			return res
		case !ok:
			return sip.NewResponseFromRequest(req, 403, "Forbidden", nil)
		}
	}
	rec.Authorized = true
	p.mu.Lock()
	r.authorized++
	n := r.authorized
	p.mu.Unlock()
	if r.plan.Reply != nil {
		if code, retry := r.plan.Reply(n); code != 200 {
			res := sip.NewResponseFromRequest(req, code, "Refused", nil)
			if retry > 0 {
				res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(retry)))
			}
			return res
		}
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	granted := rec.Expires
	if granted < 0 {
		granted = 3600
	}
	if r.plan.Expires > 0 && granted > r.plan.Expires {
		granted = r.plan.Expires
	}
	if c := req.Contact(); c != nil && granted > 0 {
		res.AppendHeader(sip.NewHeader("Contact", "<"+c.Address.String()+">;expires="+strconv.Itoa(granted)))
	}
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(granted)))
	return res
}
