package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// REFER (RFC 3515) both ways: a peer asking us to transfer its call, and
// us asking a peer to transfer ours. Progress travels in NOTIFYs carrying
// a message/sipfrag status line (Event: refer).

// referSubscription is how long the implicit subscription a REFER creates
// lasts unless a final NOTIFY ends it first.
const referSubscription = 60 * time.Second

// ReferWait bounds how long Refer waits for the final NOTIFY after the peer
// accepted the REFER.
const ReferWait = 60 * time.Second

// Refer is a REFER a peer sent in one of our dialogs. The flow reports the
// transfer's progress with Notify; the 202 and the first NOTIFY (100
// Trying) are sent already.
type Refer struct {
	// Target is the Refer-To URI without its embedded headers; User its
	// user part (an extension, a number or one of our numbers).
	Target string
	User   string
	Host   string
	// Replaces is set for an attended transfer: the dialog (one of ours)
	// whose other party Target's call replaces.
	Replaces *ReplacesID
	// ReferredBy is the Referred-By header, if any.
	ReferredBy string

	peer dialogPeer
	mu   sync.Mutex // orders NOTIFYs: the 100 before the final
	done bool
}

// Notify sends a NOTIFY whose sipfrag is "SIP/2.0 code reason". A final
// code (200 and above) ends the subscription; later calls do nothing.
func (r *Refer) Notify(ctx context.Context, code int, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.notifyLocked(ctx, code, reason)
}

// Finished reports whether a final NOTIFY went out.
func (r *Refer) Finished() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done
}

func (r *Refer) notifyLocked(ctx context.Context, code int, reason string) error {
	if r.done {
		return nil
	}
	state := fmt.Sprintf("active;expires=%d", int(referSubscription/time.Second))
	if code >= 200 {
		r.done = true
		state = "terminated;reason=noresource"
	}
	body := fmt.Appendf(nil, "SIP/2.0 %d %s\r\n", code, reason)
	tx, _, err := r.peer.request(ctx, sip.NOTIFY, body,
		sip.NewHeader("Event", "refer"),
		sip.NewHeader("Subscription-State", state),
		sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"),
		r.peer.contact())
	if err != nil {
		return fmt.Errorf("notify %s: %w", r.peer.sipCallID(), err)
	}
	defer tx.Terminate()
	res, err := finalResponse(ctx, tx)
	if err != nil {
		return fmt.Errorf("notify %s: %w", r.peer.sipCallID(), err)
	}
	if !res.IsSuccess() {
		return fmt.Errorf("notify %s: %d %s", r.peer.sipCallID(), res.StatusCode, res.Reason)
	}
	return nil
}

// ReferHandler takes a REFER a peer sent; it must not block. Returning
// false declines it (603).
type ReferHandler func(*Refer) bool

// referHooks is a dialog's REFER state, embedded in both leg kinds.
type referHooks struct {
	mu      sync.Mutex
	handler ReferHandler
	waiting chan sipfrag // our REFER's NOTIFYs, while Refer waits
}

func (h *referHooks) setHandler(f ReferHandler) {
	h.mu.Lock()
	h.handler = f
	h.mu.Unlock()
}

func (h *referHooks) getHandler() ReferHandler {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.handler
}

// OnRefer sets f to take REFERs the caller sends; without one they are
// declined.
func (l *Leg) OnRefer(f ReferHandler) { l.refer.setHandler(f) }

// OnRefer sets f to take REFERs the callee sends; without one they are
// declined.
func (o *OutLeg) OnRefer(f ReferHandler) { o.refer.setHandler(f) }

// onRefer answers a REFER in one of our dialogs.
func (s *Server) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	var (
		peer  dialogPeer
		hooks *referHooks
	)
	if out := s.lookupOut(req); out != nil {
		peer, hooks = outPeer{out}, &out.refer
	} else if leg := s.lookup(req); leg != nil {
		peer, hooks = legPeer{leg}, &leg.refer
	} else {
		s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	refs := req.GetHeaders("Refer-To")
	if len(refs) == 0 {
		refs = req.GetHeaders("r")
	}
	if len(refs) != 1 {
		s.respond(req, tx, 400, "Exactly One Refer-To Required")
		return
	}
	r, err := parseReferTo(refs[0].Value())
	if err != nil {
		s.log.Info("sip refer refused", "call_id", callID(req), "err", truncate(err.Error(), 200))
		s.respond(req, tx, 400, "Bad Refer-To")
		return
	}
	if h := req.GetHeader("Referred-By"); h != nil {
		r.ReferredBy = h.Value()
	}
	r.peer = peer
	handler := hooks.getHandler()
	// The 100 goes out before the handler can send a final NOTIFY.
	r.mu.Lock()
	if handler == nil || !handler(r) {
		r.mu.Unlock()
		s.respond(req, tx, 603, "Declined")
		return
	}
	s.respond(req, tx, 202, "Accepted")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := r.notifyLocked(ctx, 100, "Trying"); err != nil {
		s.log.Info("sip refer notify", "call_id", callID(req), "err", err)
	}
	cancel()
	r.mu.Unlock()
}

// parseReferTo reads a Refer-To value: name-addr or addr-spec, with an
// optional ?Replaces= header in the URI (RFC 3891 §3).
func parseReferTo(v string) (*Refer, error) {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return nil, errors.New("unclosed <")
		}
		v = v[i+1 : i+j]
	} else if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i] // addr-spec: what follows ';' are header params
	}
	uri, headers, _ := strings.Cut(v, "?")
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return nil, fmt.Errorf("refer-to %q: %w", uri, err)
	}
	if (u.Scheme != "sip" && u.Scheme != "sips") || u.Host == "" {
		return nil, fmt.Errorf("refer-to %q: not a sip URI", uri)
	}
	r := &Refer{Target: uri, User: u.User, Host: u.Host}
	if headers != "" {
		q, err := url.ParseQuery(headers)
		if err != nil {
			return nil, fmt.Errorf("refer-to headers: %w", err)
		}
		for k, vs := range q {
			if strings.EqualFold(k, "Replaces") && len(vs) > 0 {
				id, err := ParseReplaces(vs[0])
				if err != nil {
					return nil, err
				}
				r.Replaces = &id
			}
		}
	}
	return r, nil
}

// sipfrag is a NOTIFY's status line.
type sipfrag struct {
	code   int
	reason string
}

// parseSipfrag reads "SIP/2.0 200 OK" from a message/sipfrag body.
func parseSipfrag(body []byte) (sipfrag, error) {
	line, _, _ := bytes.Cut(body, []byte("\n"))
	f := strings.Fields(strings.TrimSpace(string(line)))
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return sipfrag{}, fmt.Errorf("sipfrag %q: no status line", truncate(string(line), 80))
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || code < 100 || code > 699 {
		return sipfrag{}, fmt.Errorf("sipfrag %q: bad status", truncate(string(line), 80))
	}
	return sipfrag{code: code, reason: strings.Join(f[2:], " ")}, nil
}

// onNotify takes the NOTIFYs about a REFER we sent.
func (s *Server) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	var hooks *referHooks
	if out := s.lookupOut(req); out != nil {
		hooks = &out.refer
	} else if leg := s.lookup(req); leg != nil {
		hooks = &leg.refer
	} else {
		s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	ev := ""
	if h := req.GetHeader("Event"); h != nil {
		ev = h.Value()
	} else if h := req.GetHeader("o"); h != nil {
		ev = h.Value()
	}
	if name, _, _ := strings.Cut(ev, ";"); !strings.EqualFold(strings.TrimSpace(name), "refer") {
		s.respond(req, tx, 489, "Bad Event", sip.NewHeader("Allow-Events", "refer"))
		return
	}
	frag, err := parseSipfrag(req.Body())
	if err != nil {
		s.log.Info("sip notify refused", "call_id", callID(req), "err", err)
		s.respond(req, tx, 400, "Bad Sipfrag")
		return
	}
	hooks.mu.Lock()
	ch := hooks.waiting
	hooks.mu.Unlock()
	if ch == nil {
		// No REFER of ours is waiting (a late NOTIFY): end the subscription.
		s.respond(req, tx, 481, "Subscription Does Not Exist")
		return
	}
	s.respond(req, tx, 200, "OK")
	select {
	case ch <- frag:
	default: // only the final one matters; a flood of 1xx is dropped
	}
}

// ReferResult is how a REFER we sent went.
type ReferResult struct {
	// Code and Reason are the peer's answer to the REFER (202 when it
	// took it on).
	Code   int
	Reason string
	// FinalCode and FinalReason are the final sipfrag status of the
	// transfer (200 when the target answered), 0 when none came.
	FinalCode   int
	FinalReason string
}

// Transferred reports whether the peer accepted and the target answered.
func (r ReferResult) Transferred() bool {
	return r.Code >= 200 && r.Code < 300 && r.FinalCode >= 200 && r.FinalCode < 300
}

// Refer asks the caller to call target instead (a blind transfer by the
// peer) and waits for the outcome. A refused REFER or a failed transfer is
// a result, not an error.
func (l *Leg) Refer(ctx context.Context, target string) (ReferResult, error) {
	return sendRefer(ctx, legPeer{l}, &l.refer, target)
}

// Refer asks the callee to call target instead; see Leg.Refer.
func (o *OutLeg) Refer(ctx context.Context, target string) (ReferResult, error) {
	return sendRefer(ctx, outPeer{o}, &o.refer, target)
}

// SupportsRefer reports whether the callee listed REFER in the Allow header
// of its answer.
func (o *OutLeg) SupportsRefer() bool { return allowsRefer(o.response) }

// SupportsRefer reports whether the caller listed REFER in the Allow header
// of its INVITE.
func (l *Leg) SupportsRefer() bool { return allowsRefer(l.dlg.InviteRequest) }

func allowsRefer(m sip.Message) bool {
	for _, h := range m.GetHeaders("Allow") {
		for m := range strings.SplitSeq(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(m), "REFER") {
				return true
			}
		}
	}
	return false
}

var errReferPending = errors.New("a REFER is already in progress")

func sendRefer(ctx context.Context, p dialogPeer, hooks *referHooks, target string) (ReferResult, error) {
	var u sip.Uri
	if err := sip.ParseUri(target, &u); err != nil || u.Host == "" {
		return ReferResult{}, fmt.Errorf("refer %s: bad target %q", p.sipCallID(), target)
	}
	ch := make(chan sipfrag, 8)
	hooks.mu.Lock()
	if hooks.waiting != nil {
		hooks.mu.Unlock()
		return ReferResult{}, fmt.Errorf("refer %s: %w", p.sipCallID(), errReferPending)
	}
	hooks.waiting = ch
	hooks.mu.Unlock()
	defer func() {
		hooks.mu.Lock()
		hooks.waiting = nil
		hooks.mu.Unlock()
	}()
	tx, _, err := p.request(ctx, sip.REFER, nil,
		sip.NewHeader("Refer-To", "<"+target+">"),
		sip.NewHeader("Referred-By", "<"+contactURI(p)+">"),
		p.contact())
	if err != nil {
		return ReferResult{}, fmt.Errorf("refer %s: %w", p.sipCallID(), err)
	}
	res, err := finalResponse(ctx, tx)
	tx.Terminate()
	if err != nil {
		return ReferResult{}, fmt.Errorf("refer %s: %w", p.sipCallID(), err)
	}
	out := ReferResult{Code: res.StatusCode, Reason: res.Reason}
	if !res.IsSuccess() {
		return out, nil
	}
	wait := time.NewTimer(ReferWait)
	defer wait.Stop()
	for {
		select {
		case f := <-ch:
			if f.code >= 200 {
				out.FinalCode, out.FinalReason = f.code, f.reason
				return out, nil
			}
		case <-wait.C:
			return out, fmt.Errorf("refer %s: no final NOTIFY within %s", p.sipCallID(), ReferWait)
		case <-p.done():
			// The peer hung up without a final NOTIFY: most do that only
			// once the transfer worked, but we cannot know.
			return out, fmt.Errorf("refer %s: dialog ended before the final NOTIFY: %w", p.sipCallID(), ErrLegEnded)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// contactURI is our Contact URI in p's dialog.
func contactURI(p dialogPeer) string {
	if c, ok := p.contact().(*sip.ContactHeader); ok {
		return c.Address.String()
	}
	return "sip:voxbridge@" + p.server().cfg.AdvertiseIP.String()
}
