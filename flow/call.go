package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// storeTimeout bounds one record write so a stuck disk cannot hold a call.
const storeTimeout = 5 * time.Second

// errNotAnswered is returned by media actions run before answer.
var errNotAnswered = errors.New("call not answered")

// Call is one live call: its leg, its media stream and its record.
type Call struct {
	ct     *Controller
	leg    *sip.Leg     // inbound; on an originated call, a description of its OutLeg
	dlg    sip.Dialog   // the call's dialog either way: leg, or orig.dlg
	orig   *origination // set on a call placed by Originate
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	stream *media.Stream // set by answer; only the runner goroutine writes it
	digits chan rune     // DTMF from RTP and SIP INFO, in order; type-ahead
	// mediaUp is closed once the stream runs: watch then collects its DTMF.
	mediaUp chan struct{}
	// keyPressed is signalled after each digit queued, for prompts that a
	// key may cut short.
	keyPressed chan struct{}
	wg         sync.WaitGroup

	// answered is set once the stream exists and the 200 OK was sent;
	// other goroutines (the API) check it before touching stream.
	answered  atomic.Bool
	mediaBusy atomic.Bool // a media websocket is attached
	// earlyOnly makes answer send 183 with our SDP instead of the 200,
	// for connect's early media (earlymedia.go); runner goroutine only.
	earlyOnly bool

	mu          sync.Mutex
	rec         store.Call
	localReason store.HangupReason // why we ended the call, when we did
	variables   map[string]string
	// pendingBridge is an agent's transfer target, answered, waiting for
	// the conversation to end.
	pendingBridge *pendingBridge
	// recorder and recordingID are the call's recording, when on.
	recorder    *media.Recorder
	recordingID string
	// capture is the call's pcap (Config.CaptureDir); set by answer.
	capture *callCapture
	// captureTap is the stream's tap (the capture's, or nil) and
	// transcriptionTap the one installed while a transcription runs (it
	// feeds the transcription, then captureTap); both set by answer.
	captureTap, transcriptionTap media.Tap
	// localHeld: we hold the other party (re-INVITE sendonly; mediachange.go).
	localHeld bool
	// ctl is what the API's live call actions change (control.go).
	ctl callControl
	// transcriber is the live transcription transcribe_start runs; the
	// stream's tap feeds it.
	transcriber atomic.Pointer[transcriber]
	// turns numbers the call's transcript turns, for agents and live
	// transcription alike (turns.go).
	turns turnCounter
	// refers takes REFERs from either party while a bridge runs (refer.go).
	refers referInbox
	// callerKept lets the caller's leg end without ending the call, once
	// the caller asked to transfer its bridged party (refer.go).
	callerKept callerKeep
}

func newInboundCall(ct *Controller, leg *sip.Leg) (*Call, error) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Call{
		ct:         ct,
		leg:        leg,
		dlg:        leg,
		ctx:        ctx,
		cancel:     cancel,
		digits:     make(chan rune, 64),
		mediaUp:    make(chan struct{}),
		keyPressed: make(chan struct{}, 1),
		rec: store.Call{
			SIPCallID:   leg.CallID,
			Direction:   store.DirectionIncoming,
			Source:      leg.From,
			Destination: leg.To,
			SourceAddr:  leg.Source,
			Status:      store.StatusRinging,
		},
	}
	if err := ct.cfg.Store.QueueCreateCall(&c.rec); err != nil {
		cancel()
		return nil, fmt.Errorf("create call record: %w", err)
	}
	c.log = ct.log.With("call_id", c.rec.ID, "sip_call_id", leg.CallID)
	leg.OnRefer(c.callerRefer) // refer.go
	c.variables = map[string]string{
		VarCallID:        c.rec.ID,
		VarCallFrom:      leg.From,
		VarCallTo:        leg.To,
		VarCallDirection: string(store.DirectionIncoming),
		VarCallDigits:    "",
		"call.from_user": leg.FromUser,
		"call.to_user":   leg.ToUser,
	}
	c.log.Info("call incoming", "from", leg.From, "to", leg.To, "source", leg.Source)
	c.publish(EventCallCreated, c.rec)
	return c, nil
}

// publish puts a call event on the controller's bus.
func (c *Call) publish(typ string, data any) { c.ct.cfg.Bus.Publish(typ, c.rec.ID, data) }

// ID is the call's record id.
func (c *Call) ID() string { return c.rec.ID }

// update changes the record under the lock and queues its write. f runs
// with c.mu held: it must not call methods that take it. The write is
// queued under the lock too, so the record's versions land in the order
// they were made.
func (c *Call) update(f func(r *store.Call)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.rec)
	if err := c.ct.cfg.Store.QueueUpdateCall(&c.rec); err != nil {
		c.log.Error("update call record", "err", err)
	}
}

func now() *time.Time {
	t := time.Now().UTC()
	return &t
}

// run executes the flow, then ends the call and writes its final record.
func (c *Call) run(p *program) {
	defer c.finish()
	if err := c.leg.NegotiateErr; err != nil {
		c.log.Info("call refused: no common codec", "err", err)
		c.setLocalReason(store.ReasonCodec)
		_ = c.leg.Reject(488, "Not Acceptable Here")
		return
	}
	if rp := c.replacesProgram(); rp != nil {
		p = rp // an INVITE with Replaces takes another call's place (refer.go)
	}
	// An originated call rang at the callee, before it was answered.
	if c.orig == nil && c.leg.Ringing() == nil {
		c.update(func(r *store.Call) { r.TMRinging = now() })
		c.publish(EventCallRinging, nil)
	}
	c.wg.Add(1)
	go c.watch()

	c.update(func(r *store.Call) { r.FlowID = p.flow.ID })
	rn := &run{c: c, loops: map[loopKey]int{}}
	err := c.runControlled(func(ctx context.Context) error { return rn.runFlow(ctx, p) })
	// A bridge the API set up may end in a switch to another flow.
	for fs := (*flowSwitch)(nil); errors.As(err, &fs); {
		err = c.runControlled(func(ctx context.Context) error { return rn.runFlow(ctx, fs.p) })
	}
	switch {
	case err == nil, errors.Is(err, errStop), c.ctx.Err() != nil:
	default:
		c.log.Error("flow failed", "err", err)
		c.warn("flow: " + err.Error())
		c.setLocalReason(store.ReasonFailed)
	}
}

func (c *Call) setLocalReason(r store.HangupReason) {
	c.mu.Lock()
	if c.localReason == "" {
		c.localReason = r
	}
	c.mu.Unlock()
}

// endReason is why the call's other legs end with it: why we ended it,
// else normal.
func (c *Call) endReason() store.HangupReason {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.localReason == "" {
		return store.ReasonNormal
	}
	return c.localReason
}

// stop ends the call from outside the runner (shutdown, API).
func (c *Call) stop(reason store.HangupReason) {
	c.setLocalReason(reason)
	_ = c.hangup(reason)
}

// closeRecord marks the record hung up by us for reason, unless it already
// is, and reports whether it did. It is for calls the process must leave
// without their flow finishing.
func (c *Call) closeRecord(reason store.HangupReason) bool {
	closed := false
	c.update(func(r *store.Call) {
		if r.Status == store.StatusHangup {
			return
		}
		closed = true
		r.Status, r.TMHangup = store.StatusHangup, now()
		r.HangupBy, r.HangupReason = store.HangupByLocal, reason
	})
	return closed
}

// hangup ends the call from our side.
func (c *Call) hangup(reason store.HangupReason) error {
	c.setLocalReason(reason)
	select {
	case <-c.dlg.Done():
	default:
		c.update(func(r *store.Call) { r.Status = store.StatusTerminating })
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	err := c.dlg.Hangup(ctx)
	c.cancel()
	return err
}

// finish makes sure the leg has ended, stops media and writes the final
// record.
func (c *Call) finish() {
	select {
	case <-c.dlg.Done():
	default:
		c.setLocalReason(store.ReasonNormal)
		if err := c.hangup(store.ReasonNormal); err != nil {
			c.log.Warn("hangup", "err", err)
		}
	}
	c.cancel()
	c.ctl.close() // no API action starts a goroutine after this
	if c.stream != nil {
		c.stream.Close()
	}
	c.wg.Wait()
	c.finishRecording()
	c.finishCapture()

	end := c.dlg.EndInfo()
	vars := c.vars()
	c.mu.Lock()
	local := c.localReason
	c.mu.Unlock()
	c.update(func(r *store.Call) {
		r.Status = store.StatusHangup
		r.TMHangup = now()
		r.HangupBy, r.HangupReason, r.SIPCode = hangupOf(end, local)
		r.Variables = vars
		if c.stream != nil {
			st := c.stream.Stats()
			r.RTPPacketsIn, r.RTPPacketsOut, r.RTPPacketsLost = st.PacketsIn, st.PacketsOut, st.PacketsLost
			r.Quality = qualityOf(st)
		}
	})
	c.mu.Lock()
	final := c.rec
	c.mu.Unlock()
	c.publish(EventCallHangup, final)
	c.log.Info("call ended", "hangup_by", final.HangupBy, "reason", final.HangupReason)
}

// hangupOf maps how the leg ended, and why we ended it if we did, to the
// record's typed fields.
func hangupOf(end sip.EndInfo, local store.HangupReason) (store.HangupBy, store.HangupReason, int) {
	if end.By == sip.EndLocal {
		if local == "" {
			local = store.ReasonNormal
		}
		return store.HangupByLocal, local, end.Code
	}
	switch end.Cause {
	case sip.CauseCancel:
		return store.HangupByRemote, store.ReasonCancel, 487
	case sip.CauseBye:
		return store.HangupByRemote, store.ReasonNormal, 0
	default:
		return store.HangupByRemote, store.ReasonFailed, end.Code
	}
}

// answer opens the media stream on the address the offer named and sends
// 200 OK with our SDP answer.
func (c *Call) answer(ctx context.Context) error {
	if c.stream != nil {
		return c.answerAfterEarlyMedia() // earlymedia.go; nil once answered
	}
	n := c.leg.Negotiated
	codec, err := media.CodecByName(n.Codec.Name, n.Codec.PayloadType)
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	cfg := media.StreamConfig{
		Remote:          net.UDPAddrFromAddrPort(n.RemoteAddr),
		Codec:           codec,
		DTMFPayloadType: n.DTMFPayloadType,
		Logger:          c.log,
	}
	// RTCP on the RTP socket when the offer muxes it, else on the port
	// above, to the address the offer named.
	if c.orig != nil {
		cfg.Conn = c.orig.takeConn() // the socket our offer named
	} else if n.RTCPMux {
		cfg.RTCPMux = true
		cfg.Conn, err = c.ct.cfg.Ports.Listen(c.ct.cfg.BindIP)
	} else {
		cfg.Conn, cfg.RTCPConn, err = c.ct.cfg.Ports.ListenPair(c.ct.cfg.BindIP)
		if n.RemoteRTCPAddr.IsValid() {
			cfg.RemoteRTCP = net.UDPAddrFromAddrPort(n.RemoteRTCPAddr)
		}
	}
	if err != nil {
		return fmt.Errorf("answer: rtp port: %w", err)
	}
	conn := cfg.Conn
	closeConns := func() {
		cfg.Conn.Close()
		if cfg.RTCPConn != nil {
			cfg.RTCPConn.Close()
		}
	}
	if c.ct.cfg.RecordAll || c.orig.recording() {
		cfg.Recorder = c.startRecording()
	}
	if c.orig == nil {
		cfg.Latch = natLatch // mediachange.go
	}
	c.captureTap = c.startCapture(n.RemoteAddr.Addr())
	c.transcriptionTap = c.transcribeTap(conn, c.captureTap)
	cfg.Tap = c.captureTap
	stream, err := media.NewStream(cfg)
	if err != nil {
		closeConns()
		return fmt.Errorf("answer: %w", err)
	}
	c.stream = stream
	c.watchMediaChanges()
	stream.Start(c.ctx)
	if c.mediaUp != nil {
		close(c.mediaUp) // watch collects the stream's DTMF from now on
	}

	port := conn.LocalAddr().(*net.UDPAddr).Port
	if c.earlyOnly && c.orig == nil {
		// The stream runs; the caller gets 183 now and the 200 when the
		// callee answers (earlymedia.go).
		return c.leg.Progress(c.ct.mediaIPFor(n.RemoteAddr.Addr()), port)
	}
	// An originated call's callee has answered our offer: nothing to send.
	if c.orig == nil {
		if err := c.leg.Answer(c.ct.mediaIPFor(n.RemoteAddr.Addr()), port); err != nil {
			return err
		}
	}
	c.markAnswered(codec.Name, port)
	return nil
}

// markAnswered records the answer: the 200 is out (or, on an originated
// call, the callee's came in) and the stream at local port runs.
func (c *Call) markAnswered(codec string, port int) {
	n := c.leg.Negotiated
	c.answered.Store(true)
	c.update(func(r *store.Call) {
		r.Status = store.StatusProgressing
		r.TMProgressing = now()
		r.Codec = codec
	})
	c.publish(EventCallAnswered, map[string]any{"codec": codec})
	c.log.Info("call answered", "codec", codec, "remote_media", n.RemoteAddr.String(), "local_port", port, "dtmf_pt", n.DTMFPayloadType)
}

// watch is the call's one goroutine beside the runner: the caller hanging
// up (or cancelling) ends everything the call runs, and once the stream
// runs it merges RFC 4733 and SIP INFO digits into the call's digit queue
// and its record. One goroutine for both, as every call pays for its stack.
func (c *Call) watch() {
	defer c.wg.Done()
	up, dlgDone := c.mediaUp, c.dlg.Done()
	var (
		rtp  <-chan media.DTMFEvent
		info <-chan rune
	)
	for {
		var d rune
		select {
		case <-dlgDone:
			if !c.callerKept.left() {
				c.cancel()
			}
			return // no keys from a caller who left
		case <-up:
			up = nil
			rtp, info = c.stream.DTMF(), c.dlg.InfoDTMF()
			continue
		case ev, ok := <-rtp:
			if !ok {
				rtp = nil
				continue
			}
			d = ev.Digit
		case d = <-info:
		case <-c.ctx.Done():
			return
		}
		c.log.Info("dtmf", "digit", string(d))
		c.publish(EventDTMF, map[string]string{"digit": string(d)})
		c.update(func(r *store.Call) { r.DTMF += string(d) })
		select {
		case c.digits <- d:
		default: // nobody is reading digits; the record still has them
		}
		select {
		case c.keyPressed <- struct{}{}:
		default:
		}
	}
}

// play queues audio and waits until it has been sent.
func (c *Call) play(ctx context.Context, pcm []int16) error {
	if c.stream == nil {
		return errNotAnswered
	}
	done := c.stream.Enqueue(pcm)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		c.stream.Flush()
		return ctx.Err()
	}
}

// echo sends the caller's audio back until a key, the timeout or hangup.
func (c *Call) echo(ctx context.Context, d time.Duration, endOnDTMF bool) error {
	if c.stream == nil {
		return errNotAnswered
	}
	t := time.NewTimer(d)
	defer t.Stop()
	var digits <-chan rune
	if endOnDTMF {
		digits = c.digits
	}
	// The stream's clock echoes; this goroutine only waits for the end.
	c.stream.Echo(true)
	defer c.stream.Flush()
	defer c.stream.Echo(false)
	select {
	case <-c.stream.Done():
		return nil
	case <-digits:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
