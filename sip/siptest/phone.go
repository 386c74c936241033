// Package siptest is an in-process SIP phone: it places calls over real
// sockets, sends and hears G.711 audio and DTMF. The end-to-end tests and
// `voxbridge dial` are built on it.
package siptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/sdp"
)

// Phone is a SIP user agent with one UDP listener. It places calls, and it
// can register, answer calls (see OnInvite) and act as a carrier's
// registrar (see ServeRegistrar).
type Phone struct {
	ip      net.IP
	conn    net.PacketConn
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	client  *sipgo.Client
	dialogs *sipgo.DialogClientCache
	inbound *sipgo.DialogServerCache
	contact sip.ContactHeader
	log     *slog.Logger
	wg      sync.WaitGroup

	mu        sync.Mutex
	plan      func(*sip.Request) AnswerPlan
	calls     chan *Call
	live      map[*Call]bool
	invites   []*sip.Request
	cancels   int
	challenge *digestChecker
	registrar *registrarState
	reg       map[string]*registration // by registrar address
	closed    bool
}

// NewPhone listens for SIP on ip (port 0 picks a free one).
func NewPhone(ip string, log *slog.Logger) (*Phone, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr := net.ParseIP(ip)
	if addr == nil {
		return nil, fmt.Errorf("phone: bad IP %q", ip)
	}
	conn, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, fmt.Errorf("phone: listen: %w", err)
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("voxbridge-phone"), sipgo.WithUserAgentHostname(ip))
	if err != nil {
		conn.Close()
		return nil, err
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		conn.Close()
		ua.Close()
		return nil, err
	}
	// Requests leave from the listener, so the server's BYE finds us.
	client, err := sipgo.NewClient(ua,
		sipgo.WithClientHostname(ip), sipgo.WithClientPort(port),
		sipgo.WithClientConnectionAddr(conn.LocalAddr().String()),
		sipgo.WithClientLogger(log))
	if err != nil {
		conn.Close()
		ua.Close()
		return nil, err
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "phone", Host: ip, Port: port}}
	p := &Phone{
		ip:      addr,
		conn:    conn,
		ua:      ua,
		srv:     srv,
		client:  client,
		log:     log,
		contact: contact,
		dialogs: sipgo.NewDialogClientCache(client, contact),
		inbound: sipgo.NewDialogServerCache(client, contact),
		calls:   make(chan *Call, 16),
		live:    map[*Call]bool{},
		reg:     map[string]*registration{},
	}
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := p.dialogs.ReadBye(req, tx); err == nil {
			return
		}
		if err := p.inbound.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = p.inbound.ReadAck(req, tx) })
	srv.OnInvite(p.onInvite)
	srv.OnRegister(p.onRegister)
	srv.OnRefer(p.onRefer)   // refer.go
	srv.OnNotify(p.onNotify) // refer.go
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = srv.ServeUDP(conn)
	}()
	// Requests are sent through the listener, which sipgo only knows once
	// ServeUDP has registered it.
	for i := 0; ; i++ {
		if c, _ := ua.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); c != nil {
			break
		}
		if i == 500 {
			p.Close()
			return nil, errors.New("phone: listener did not start")
		}
		time.Sleep(time.Millisecond)
	}
	return p, nil
}

// Addr is the phone's SIP address.
func (p *Phone) Addr() net.Addr { return p.conn.LocalAddr() }

// Close stops the phone and the calls it answered.
func (p *Phone) Close() {
	p.mu.Lock()
	p.closed = true
	live := make([]*Call, 0, len(p.live))
	for c := range p.live {
		live = append(live, c)
	}
	p.mu.Unlock()
	for _, c := range live {
		c.Close()
	}
	p.conn.Close()
	p.ua.Close()
	p.wg.Wait()
}

// DialOptions shape one call.
type DialOptions struct {
	Codecs []sdp.Codec // offered, in order; default PCMU, PCMA
	NoDTMF bool        // leave telephone-event out of the offer
	// OnProvisional sees every 1xx (e.g. to cancel on 180).
	OnProvisional func(code int)
	// Username and Password answer a 401/407 challenge (digest, with the
	// first algorithm offered).
	Username, Password string
	// Headers are added to the INVITE as they are (e.g. Session-Expires).
	Headers []sip.Header
	// RTCPMux offers a=rtcp-mux (RFC 5761): RTCP shares the RTP socket, so
	// the far end's RTCP never lands on whatever else owns our RTP port+1
	// (many phones on one host, as in a load test).
	RTCPMux bool
}

// DialError is a final non-2xx answer to our INVITE.
type DialError struct {
	Code   int
	Reason string
}

func (e *DialError) Error() string { return fmt.Sprintf("call failed: %d %s", e.Code, e.Reason) }

// dialogSession is what a call needs from either side's sipgo dialog.
type dialogSession interface {
	Context() context.Context
	Bye(ctx context.Context) error
	Close() error
}

// Call is one established call, placed or answered.
type Call struct {
	dlg      dialogSession
	callID   string
	phone    *Phone // set for answered calls, which the phone tracks
	stream   *media.Stream
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	Answered time.Duration // INVITE to 200 OK
	Ringing  time.Duration // INVITE to first 180/183, 0 if none

	mu         sync.Mutex
	heard      []int16
	digitsIn   []rune
	digitsSent []rune
	byUs       bool
}

// Dial calls uri and waits for the answer. Cancelling ctx before the answer
// sends CANCEL.
func (p *Phone) Dial(ctx context.Context, uri string, opt DialOptions) (*Call, error) {
	c, _, err := p.dial(ctx, uri, opt, false)
	return c, err
}

// dial places a call; with early, media starts on the first provisional
// response with an SDP answer, and the audio heard before the 200 is
// returned apart (DialEarlyMedia).
func (p *Phone) dial(ctx context.Context, uri string, opt DialOptions, early bool) (*Call, []int16, error) {
	var recipient sip.Uri
	if err := sip.ParseUri(uri, &recipient); err != nil {
		return nil, nil, fmt.Errorf("dial: bad URI %q: %w", uri, err)
	}
	codecs := opt.Codecs
	if len(codecs) == 0 {
		codecs = []sdp.Codec{sdp.PCMU, sdp.PCMA}
	}
	rtpConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: p.ip})
	if err != nil {
		return nil, nil, fmt.Errorf("dial: rtp socket: %w", err)
	}
	ip, _ := netip.AddrFromSlice(p.ip)
	local := sdp.Local{
		Address:   ip.Unmap(),
		Port:      rtpConn.LocalAddr().(*net.UDPAddr).Port,
		SessionID: rand.Uint64N(1 << 62),
		Version:   1,
		Codecs:    codecs,
		Ptime:     20,
		UserAgent: "phone",
		RTCPMux:   opt.RTCPMux,
	}
	if !opt.NoDTMF {
		local.DTMFPayloadType = 101
	}
	start := time.Now()
	hdrs := append([]sip.Header{sip.NewHeader("Content-Type", "application/sdp")}, opt.Headers...)
	dlg, err := p.dialogs.Invite(ctx, recipient, sdp.Build(local), hdrs...)
	if err != nil {
		rtpConn.Close()
		return nil, nil, fmt.Errorf("dial: invite: %w", err)
	}
	c := &Call{dlg: dlg, callID: dlg.InviteRequest.CallID().Value()}
	fail := func(err error) (*Call, []int16, error) {
		if c.stream != nil {
			c.Close() // closes rtpConn with the stream
		} else {
			rtpConn.Close()
			dlg.Close()
		}
		return nil, nil, err
	}
	var earlySDP []byte
	err = dlg.WaitAnswer(ctx, sipgo.AnswerOptions{Username: opt.Username, Password: opt.Password, OnResponse: func(res *sip.Response) error {
		if !res.IsProvisional() || res.StatusCode == 100 {
			return nil
		}
		if c.Ringing == 0 {
			c.Ringing = time.Since(start)
		}
		if opt.OnProvisional != nil {
			opt.OnProvisional(res.StatusCode)
		}
		if early && c.stream == nil && len(res.Body()) > 0 {
			earlySDP = append([]byte(nil), res.Body()...)
			return c.startMedia(rtpConn, earlySDP, codecs)
		}
		return nil
	}})
	if err != nil {
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return fail(&DialError{Code: de.Res.StatusCode, Reason: de.Res.Reason})
		}
		return fail(fmt.Errorf("dial: %w", err))
	}
	c.Answered = time.Since(start)
	var heardEarly []int16
	if c.stream != nil {
		heardEarly = c.Heard()
	}
	if err := dlg.Ack(ctx); err != nil {
		return fail(fmt.Errorf("dial: ack: %w", err))
	}
	if c.stream == nil {
		if err := c.startMedia(rtpConn, dlg.InviteResponse.Body(), codecs); err != nil {
			_ = dlg.Bye(context.Background())
			return fail(err)
		}
	} else if !bytes.Equal(dlg.InviteResponse.Body(), earlySDP) {
		_ = dlg.Bye(context.Background())
		return fail(fmt.Errorf("dial: the 200's SDP differs from the 183's:\n%s\nvs\n%s", dlg.InviteResponse.Body(), earlySDP))
	}
	p.trackDialed(c) // it answers re-INVITEs (reinvite.go)
	return c, heardEarly, nil
}

func (c *Call) startMedia(conn *net.UDPConn, remoteSDP []byte, ours []sdp.Codec) error {
	ans, err := sdp.Parse(remoteSDP)
	if err != nil {
		return fmt.Errorf("dial: answer SDP: %w", err)
	}
	n, err := sdp.Negotiate(ans, ours)
	if err != nil {
		return fmt.Errorf("dial: answer SDP: %w", err)
	}
	return c.startStream(c.dlg.Context(), conn, n)
}

// startStream runs the call's media until ctx (the dialog's) ends.
func (c *Call) startStream(ctx context.Context, conn *net.UDPConn, n sdp.Negotiated) error {
	codec, err := media.CodecByName(n.Codec.Name, n.Codec.PayloadType)
	if err != nil {
		return err
	}
	st, err := media.NewStream(media.StreamConfig{
		Conn:            conn,
		Remote:          net.UDPAddrFromAddrPort(n.RemoteAddr),
		Codec:           codec,
		DTMFPayloadType: n.DTMFPayloadType,
		RTCPMux:         n.RTCPMux, // both sides agreed to it
	})
	if err != nil {
		return err
	}
	c.stream = st
	// The call lives until either side says BYE.
	c.ctx, c.cancel = context.WithCancel(ctx)
	st.Start(c.ctx)
	c.wg.Add(1)
	go c.listen()
	return nil
}

// listen keeps everything heard, on one timeline, until the call ends.
func (c *Call) listen() {
	defer c.wg.Done()
	frames, digits := c.stream.Frames(), c.stream.DTMF()
	for frames != nil || digits != nil {
		select {
		case f, ok := <-frames:
			if !ok {
				frames = nil
				continue
			}
			c.mu.Lock()
			c.heard = append(c.heard, f...)
			c.mu.Unlock()
		case ev, ok := <-digits:
			if !ok {
				digits = nil
				continue
			}
			c.mu.Lock()
			c.digitsIn = append(c.digitsIn, ev.Digit)
			c.mu.Unlock()
		}
	}
}

// Heard returns a copy of all audio received so far (8 kHz mono).
func (c *Call) Heard() []int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int16(nil), c.heard...)
}

// HeardLen is how many samples have been received so far.
func (c *Call) HeardLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.heard)
}

// Play queues audio; the channel closes when it has been sent.
func (c *Call) Play(pcm []int16) <-chan struct{} { return c.stream.Enqueue(pcm) }

// SendDTMF sends an RFC 4733 digit.
func (c *Call) SendDTMF(d rune, dur time.Duration) (<-chan struct{}, error) {
	done, err := c.stream.SendDTMF(d, dur)
	if err == nil {
		c.mu.Lock()
		c.digitsSent = append(c.digitsSent, d)
		c.mu.Unlock()
	}
	return done, err
}

// CallID is the call's SIP Call-ID.
func (c *Call) CallID() string { return c.callID }

// Done is closed when the call has ended, by either side.
func (c *Call) Done() <-chan struct{} { return c.ctx.Done() }

// RemoteHungUp reports whether the other side sent BYE.
func (c *Call) RemoteHungUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ctx.Err() != nil && !c.byUs
}

// Hangup sends BYE (if the call is still up) and stops media.
func (c *Call) Hangup(ctx context.Context) error {
	var err error
	if c.ctx.Err() == nil {
		c.mu.Lock()
		c.byUs = true
		c.mu.Unlock()
		err = c.dlg.Bye(ctx)
	}
	c.Close()
	return err
}

// Close stops media and waits for the call's goroutines, without signaling.
func (c *Call) Close() {
	c.cancel()
	c.stream.Close()
	c.wg.Wait()
	c.dlg.Close()
	if c.phone != nil {
		c.phone.mu.Lock()
		delete(c.phone.live, c)
		c.phone.mu.Unlock()
	}
}

// Summary is what `voxbridge dial` prints.
type Summary struct {
	AnswerMS    float64 `json:"answer_ms"`
	PacketsIn   uint64  `json:"packets_in"`
	PacketsOut  uint64  `json:"packets_out"`
	PacketsLost uint64  `json:"packets_lost"`
	DigitsSent  string  `json:"digits_sent"`
	DigitsHeard string  `json:"digits_heard"`
	HeardMS     int     `json:"heard_ms"`
	RemoteBye   bool    `json:"remote_hangup"`
}

// Summary reports the call's numbers so far.
func (c *Call) Summary() Summary {
	st := c.stream.Stats()
	c.mu.Lock()
	defer c.mu.Unlock()
	return Summary{
		AnswerMS:    float64(c.Answered.Microseconds()) / 1000,
		PacketsIn:   st.PacketsIn,
		PacketsOut:  st.PacketsOut,
		PacketsLost: st.PacketsLost,
		DigitsSent:  string(c.digitsSent),
		DigitsHeard: string(c.digitsIn),
		HeardMS:     len(c.heard) * 1000 / media.SampleRate,
		RemoteBye:   c.ctx.Err() != nil && !c.byUs,
	}
}

// QuietLibraryLogs silences sipgo's own logger (it logs every garbage
// message a test sends) unless VOXBRIDGE_TEST_LOG is set. Call it from
// TestMain, before any server starts.
func QuietLibraryLogs() {
	if os.Getenv("VOXBRIDGE_TEST_LOG") == "" {
		sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	}
}
