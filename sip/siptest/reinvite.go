package siptest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
)

// ReinvitePlan says how the phone answers a re-INVITE. The zero value
// accepts it, answering the offer from the call's RTP socket.
type ReinvitePlan struct {
	Reject int // final status instead of 200, e.g. 491
}

// ReinviteOptions shape one re-INVITE the phone sends.
type ReinviteOptions struct {
	// Direction of the offer; "" is sendrecv.
	Direction sdp.Direction
	// OldHold offers the RFC 2543 hold: c=0.0.0.0 and no direction
	// attribute.
	OldHold bool
	// Port, when set, offers this RTP port instead of the call's socket:
	// the phone "moved" (the caller listens on it itself).
	Port int
	// Codecs offered, default PCMU, PCMA.
	Codecs []sdp.Codec
	// NoSDP sends an offerless re-INVITE: the 2xx carries the server's
	// offer and the ACK the phone's answer (sendrecv, from the call's
	// socket or Port).
	NoSDP bool
	// Headers are added as they are (e.g. Session-Expires).
	Headers []sip.Header
	// Update sends UPDATE (RFC 3311) instead of re-INVITE; with NoSDP it
	// is a bare session refresh.
	Update bool
}

// ReinviteResult is the server's final answer.
type ReinviteResult struct {
	Code     int
	Reason   string
	Response *sip.Response
	// SDP is the body of a 2xx, parsed; Media what it negotiates.
	SDP   *sdp.Session
	Media sdp.Negotiated
}

// reinviteState is a phone's re-INVITE bookkeeping.
type reinviteState struct {
	mu       sync.Mutex
	plan     func(*sip.Request) ReinvitePlan
	received []*sip.Request
	dialed   map[string]*Call // placed calls by Call-ID; answered ones are in live
}

var reinvites sync.Map // *Phone → *reinviteState

func (p *Phone) re() *reinviteState {
	v, _ := reinvites.LoadOrStore(p, &reinviteState{dialed: map[string]*Call{}})
	return v.(*reinviteState)
}

// trackDialed lets the phone answer re-INVITEs on a call it placed.
func (p *Phone) trackDialed(c *Call) {
	r := p.re()
	r.mu.Lock()
	r.dialed[c.callID] = c
	r.mu.Unlock()
}

// OnReinvite makes the phone answer re-INVITEs as plan says. Without one
// it accepts them.
func (p *Phone) OnReinvite(plan func(*sip.Request) ReinvitePlan) {
	r := p.re()
	r.mu.Lock()
	r.plan = plan
	r.mu.Unlock()
}

// Reinvites returns copies of the in-dialog INVITEs the phone received, in
// order.
func (p *Phone) Reinvites() []*sip.Request {
	r := p.re()
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*sip.Request(nil), r.received...)
}

func (p *Phone) callByID(id string) *Call {
	r := p.re()
	r.mu.Lock()
	c := r.dialed[id]
	r.mu.Unlock()
	if c != nil {
		return c
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.live {
		if c.callID == id {
			return c
		}
	}
	return nil
}

// onReinvite answers a re-INVITE from the server: hold offers get the
// matching direction back (sendonly → recvonly), an offerless one gets our
// offer.
func (p *Phone) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	r := p.re()
	r.mu.Lock()
	r.received = append(r.received, req.Clone())
	plan := r.plan
	r.mu.Unlock()
	respond := func(code int, reason string, body []byte) {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		if body != nil {
			res.AppendHeader(sip.HeaderClone(&p.contact))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			res.SetBody(body)
		}
		_ = tx.Respond(res)
	}
	if plan != nil {
		if pl := plan(req); pl.Reject != 0 {
			respond(pl.Reject, "Rejected", nil)
			return
		}
	}
	c := p.callByID(req.CallID().Value())
	if c == nil || c.stream == nil {
		respond(481, "Call/Transaction Does Not Exist", nil)
		return
	}
	local := c.localSDP(0)
	if len(req.Body()) == 0 {
		local.Codecs = []sdp.Codec{sdp.PCMU, sdp.PCMA}
		local.DTMFPayloadType = 101
		respond(200, "OK", sdp.Build(local))
		return
	}
	offer, err := sdp.Parse(req.Body())
	if err != nil {
		respond(400, "Bad SDP", nil)
		return
	}
	_, answer, err := sdp.Answer(offer, []sdp.Codec{sdp.PCMU, sdp.PCMA}, local)
	if err != nil {
		respond(488, "Not Acceptable Here", nil)
		return
	}
	respond(200, "OK", answer)
}

// localSDP describes the call's side: its RTP socket (or port), the same
// o= session with the next version.
func (c *Call) localSDP(port int) sdp.Local {
	la := c.stream.LocalAddr().AddrPort()
	if port == 0 {
		port = int(la.Port())
	}
	v, _ := sdpVersions.LoadOrStore(c, new(atomic.Uint64))
	return sdp.Local{
		Address:   la.Addr().Unmap(),
		Port:      port,
		SessionID: uint64(len(c.callID)) << 32, // stable per call, value irrelevant
		Version:   1 + v.(*atomic.Uint64).Add(1),
		Ptime:     20,
		UserAgent: "phone",
	}
}

var sdpVersions sync.Map // *Call → *atomic.Uint64

// inDialog is what both sipgo dialog kinds offer for requests in them.
type inDialog interface {
	TransactionRequest(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error)
	WriteRequest(req *sip.Request) error
}

// target is where the call's in-dialog requests go: the server's Contact.
func (c *Call) target() (sip.Uri, error) {
	switch d := c.dlg.(type) {
	case *sipgo.DialogClientSession:
		if h := d.InviteResponse.Contact(); h != nil {
			return *h.Address.Clone(), nil
		}
	case *sipgo.DialogServerSession:
		if h := d.InviteRequest.Contact(); h != nil {
			return *h.Address.Clone(), nil
		}
	}
	return sip.Uri{}, errors.New("phone: no remote target")
}

// Reinvite sends a re-INVITE on the call and ACKs a 2xx. A non-2xx final
// answer is a result, not an error.
func (c *Call) Reinvite(ctx context.Context, opt ReinviteOptions) (*ReinviteResult, error) {
	d, ok := c.dlg.(inDialog)
	if !ok {
		return nil, errors.New("phone: dialog cannot send requests")
	}
	uri, err := c.target()
	if err != nil {
		return nil, err
	}
	codecs := opt.Codecs
	if len(codecs) == 0 {
		codecs = []sdp.Codec{sdp.PCMU, sdp.PCMA}
	}
	method := sip.INVITE
	if opt.Update {
		method = sip.UPDATE
	}
	req := sip.NewRequest(method, uri)
	for _, h := range opt.Headers {
		req.AppendHeader(h)
	}
	if !opt.NoSDP {
		local := c.localSDP(opt.Port)
		local.Codecs, local.DTMFPayloadType, local.Direction = codecs, 101, opt.Direction
		body := sdp.Build(local)
		if opt.OldHold {
			body = oldHold(local)
		}
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(body)
	}
	tx, err := d.TransactionRequest(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("phone: re-invite: %w", err)
	}
	defer tx.Terminate()
	var res *sip.Response
	for res == nil {
		select {
		case r := <-tx.Responses():
			if r.StatusCode >= 200 {
				res = r
			}
		case <-tx.Done():
			return nil, fmt.Errorf("phone: re-invite: %w", tx.Err())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out := &ReinviteResult{Code: res.StatusCode, Reason: res.Reason, Response: res}
	if !res.IsSuccess() {
		return out, nil // the transaction ACKs a non-2xx itself
	}
	if opt.Update {
		if len(res.Body()) > 0 {
			if out.SDP, err = sdp.Parse(res.Body()); err == nil {
				out.Media, err = sdp.Negotiate(out.SDP, codecs)
			}
		}
		return out, err
	}
	ack := sip.NewRequest(sip.ACK, uri)
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sip.ACK})
	if len(res.Body()) > 0 {
		sess, err := sdp.Parse(res.Body())
		if err != nil {
			return out, fmt.Errorf("phone: re-invite answer: %w", err)
		}
		out.SDP = sess
		if opt.NoSDP {
			local := c.localSDP(opt.Port)
			n, answer, err := sdp.Answer(sess, codecs, local)
			if err != nil {
				return out, fmt.Errorf("phone: answer to the server's offer: %w", err)
			}
			out.Media = n
			ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			ack.SetBody(answer)
		} else if out.Media, err = sdp.Negotiate(sess, codecs); err != nil {
			return out, fmt.Errorf("phone: re-invite answer: %w", err)
		}
	}
	if ack.Body() == nil {
		ack.SetBody(nil)
	}
	if err := d.WriteRequest(ack); err != nil {
		return out, fmt.Errorf("phone: ack: %w", err)
	}
	return out, nil
}

// oldHold renders l as an RFC 2543 hold: c=0.0.0.0, no direction.
func oldHold(l sdp.Local) []byte {
	l.Address = netip.IPv4Unspecified()
	b := sdp.Build(l)
	// Build always writes a direction; the old form has none.
	out := make([]byte, 0, len(b))
	for _, line := range splitLines(b) {
		if string(line) == "a=sendrecv" {
			continue
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return out
}

func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\r' && b[i] != '\n' {
			i++
		}
		lines = append(lines, b[:i])
		for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
			i++
		}
		b = b[i:]
	}
	return lines
}

// Hold puts the server on hold: a re-INVITE offering sendonly. The phone
// keeps sending; the server must stop.
func (c *Call) Hold(ctx context.Context) error {
	return c.expect200(c.Reinvite(ctx, ReinviteOptions{Direction: sdp.SendOnly}))
}

// Resume ends Hold: a re-INVITE offering sendrecv.
func (c *Call) Resume(ctx context.Context) error {
	return c.expect200(c.Reinvite(ctx, ReinviteOptions{}))
}

func (c *Call) expect200(r *ReinviteResult, err error) error {
	if err != nil {
		return err
	}
	if r.Code != 200 {
		return &DialError{Code: r.Code, Reason: r.Reason}
	}
	return nil
}

// ListenRTP opens another RTP socket on the phone's IP, for a re-INVITE
// that moves the call (ReinviteOptions.Port).
func (p *Phone) ListenRTP() (*net.UDPConn, error) {
	return net.ListenUDP("udp", &net.UDPAddr{IP: p.ip})
}

// InviteResponse is the 2xx that established a call the phone placed, nil
// for answered calls.
func (c *Call) InviteResponse() *sip.Response {
	if d, ok := c.dlg.(*sipgo.DialogClientSession); ok {
		return d.InviteResponse
	}
	return nil
}
