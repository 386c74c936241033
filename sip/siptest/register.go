package siptest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// RegisterOptions shape one REGISTER.
type RegisterOptions struct {
	// Expires is the expiry asked for, rounded to seconds; 0 removes the
	// phone's binding.
	Expires time.Duration
	// All removes every binding of the user ("Contact: *", Expires: 0).
	All bool
	// Algorithm picks the digest challenge to answer: "MD5" or "SHA-256";
	// "" answers the first one offered.
	Algorithm string
	// Contact overrides the phone's own contact URI.
	Contact string
	// AuthUser is the digest user name when it differs from the address
	// of record's user.
	AuthUser string
}

// RegisterResult is the registrar's final answer.
type RegisterResult struct {
	Code   int
	Reason string
	// Bindings are the contacts the 200 lists, with their expiry.
	Bindings map[string]time.Duration
	// MinExpires is the Min-Expires of a 423, else 0.
	MinExpires int
	// Challenges is how many 401s came before the final answer.
	Challenges int
}

// RegisterError is a final non-2xx answer to a REGISTER.
type RegisterError struct {
	Code   int
	Reason string
}

func (e *RegisterError) Error() string { return fmt.Sprintf("register: %d %s", e.Code, e.Reason) }

// registration keeps Call-ID and CSeq across a phone's REGISTERs to one
// registrar, as RFC 3261 §10.2.4 wants for refreshes.
type registration struct {
	callID  string
	fromTag string
	cseq    uint32
}

// Register registers user at registrar ("host:port") for an hour,
// answering the digest challenge with password.
func (p *Phone) Register(ctx context.Context, registrar, user, password string) error {
	_, err := p.RegisterWith(ctx, registrar, user, password, RegisterOptions{Expires: time.Hour})
	return err
}

// Unregister removes the phone's binding for user.
func (p *Phone) Unregister(ctx context.Context, registrar, user, password string) error {
	_, err := p.RegisterWith(ctx, registrar, user, password, RegisterOptions{})
	return err
}

// RegisterWith sends one REGISTER (two with the challenge) and returns the
// final answer; a non-2xx one is also returned as a *RegisterError.
func (p *Phone) RegisterWith(ctx context.Context, registrar, user, password string, opt RegisterOptions) (*RegisterResult, error) {
	host, port, err := sip.ParseAddr(registrar)
	if err != nil {
		return nil, fmt.Errorf("register: registrar %q: %w", registrar, err)
	}
	p.mu.Lock()
	reg := p.reg[registrar+"|"+user]
	if reg == nil {
		reg = &registration{callID: sip.GenerateTagN(24), fromTag: sip.GenerateTagN(12), cseq: 1}
		p.reg[registrar+"|"+user] = reg
	}
	p.mu.Unlock()

	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: host, Port: port})
	aor := sip.Uri{Scheme: "sip", User: user, Host: host}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", reg.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	callID := sip.CallIDHeader(reg.callID)
	req.AppendHeader(&callID)
	expires := int(opt.Expires.Round(time.Second) / time.Second)
	switch {
	case opt.All:
		req.AppendHeader(sip.NewHeader("Contact", "*"))
		expires = 0
	case opt.Contact != "":
		req.AppendHeader(sip.NewHeader("Contact", "<"+opt.Contact+">"))
	default:
		req.AppendHeader(&sip.ContactHeader{Address: p.contactFor(user)})
	}
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	req.AppendHeader(sip.NewHeader("User-Agent", "voxbridge-phone"))
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	req.SetBody(nil)

	result := &RegisterResult{}
	answered := false
	for {
		p.mu.Lock()
		seq := reg.cseq
		reg.cseq++
		p.mu.Unlock()
		req.RemoveHeader("CSeq")
		req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.REGISTER})
		req.RemoveHeader("Via")
		res, err := p.client.Do(ctx, req, sipgo.ClientRequestAddVia, p.fromListener)
		if err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
		result.Code, result.Reason = res.StatusCode, res.Reason
		if res.StatusCode == 401 && !answered && password != "" {
			answered = true
			result.Challenges++
			authUser := user
			if opt.AuthUser != "" {
				authUser = opt.AuthUser
			}
			cred, err := answerChallenge(res, "WWW-Authenticate", opt.Algorithm, req, authUser, password)
			if err != nil {
				return result, fmt.Errorf("register: %w", err)
			}
			req.RemoveHeader("Authorization")
			req.AppendHeader(sip.NewHeader("Authorization", cred))
			continue
		}
		if res.StatusCode == 401 {
			result.Challenges++
		}
		if res.StatusCode == 423 {
			result.MinExpires, _ = strconv.Atoi(strings.TrimSpace(headerOf(res, "Min-Expires")))
		}
		if !res.IsSuccess() {
			return result, &RegisterError{Code: res.StatusCode, Reason: res.Reason}
		}
		result.Bindings = map[string]time.Duration{}
		for _, h := range res.GetHeaders("Contact") {
			ch, ok := h.(*sip.ContactHeader)
			if !ok {
				continue
			}
			secs, _ := strconv.Atoi(ch.Params.GetOr("expires", "0"))
			result.Bindings[ch.Address.String()] = time.Duration(secs) * time.Second
		}
		return result, nil
	}
}

// contactFor is the phone's contact URI when registered as user.
func (p *Phone) contactFor(user string) sip.Uri {
	u := p.contact.Address
	u.User = user
	return u
}

// ContactURI is the contact the phone registers as user.
func (p *Phone) ContactURI(user string) string {
	u := p.contactFor(user)
	return u.String()
}

// fromListener sends the request from the phone's listener, so replies and
// later requests find it.
func (p *Phone) fromListener(c *sipgo.Client, req *sip.Request) error {
	a := p.conn.LocalAddr().String()
	host, port, err := sip.ParseAddr(a)
	if err != nil {
		return err
	}
	req.Laddr = sip.Addr{IP: p.ip, Port: port, Hostname: host}
	return nil
}

// answerChallenge computes the credentials for a challenge in res.
func answerChallenge(res *sip.Response, hdr, alg string, req *sip.Request, user, password string) (string, error) {
	var chal *digest.Challenge
	for _, h := range res.GetHeaders(hdr) {
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			continue
		}
		if alg == "" || strings.EqualFold(c.Algorithm, alg) {
			chal = c
			break
		}
	}
	if chal == nil {
		return "", errors.New("no matching challenge")
	}
	cred, err := digest.Digest(chal, digest.Options{Method: string(req.Method), URI: req.Recipient.String(),
		Username: user, Password: password})
	if err != nil {
		return "", err
	}
	return cred.String(), nil
}

func headerOf(res *sip.Response, name string) string {
	if h := res.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}
