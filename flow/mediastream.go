package flow

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/store"
)

// The media websocket protocol: a call's audio streams out in 20 ms frames,
// the application streams audio back, with control messages for DTMF, marks
// and clearing queued audio. Text messages are JSON objects with an "event"
// field; with binary framing, audio travels as binary messages instead of
// "media" events.

// Encodings of media frames.
const (
	EncodingPCMU = "pcmu"
	EncodingPCMA = "pcma"
	EncodingL16  = "l16" // 16-bit little-endian PCM, 8 kHz
)

// MediaMessage is one protocol message, in either direction.
type MediaMessage struct {
	Event    string         `json:"event"`
	StreamID string         `json:"stream_id,omitempty"`
	Start    *MediaStart    `json:"start,omitempty"`
	Media    *MediaPayload  `json:"media,omitempty"`
	DTMF     *MediaDTMF     `json:"dtmf,omitempty"`
	Mark     *MediaMark     `json:"mark,omitempty"`
	Stop     *MediaStop     `json:"stop,omitempty"`
	Error    *MediaError    `json:"error,omitempty"`
	Transfer *MediaTransfer `json:"transfer,omitempty"`
}

// MediaStart opens a stream (voxbridge → application).
type MediaStart struct {
	CallID     string            `json:"call_id"`
	Encoding   string            `json:"encoding"`
	SampleRate int               `json:"sample_rate"`
	Direction  string            `json:"direction"`
	Format     string            `json:"format"` // json or binary
	Variables  map[string]string `json:"variables,omitempty"`
}

// MediaPayload carries 20 ms of audio out, or any amount in.
type MediaPayload struct {
	Seq       uint64 `json:"seq,omitempty"`
	Timestamp int64  `json:"timestamp_ms,omitempty"` // since the stream started
	Payload   string `json:"payload"`                // base64 of the encoded audio
}

// MediaDTMF is a key the caller pressed (out) or keys to send (in).
type MediaDTMF struct {
	Digit  string `json:"digit,omitempty"`
	Digits string `json:"digits,omitempty"`
}

// MediaMark names a point in the playout queue; voxbridge echoes it back
// when the audio queued before it has been played.
type MediaMark struct {
	Name string `json:"name"`
}

// MediaStop ends a stream (either direction).
type MediaStop struct {
	Reason string `json:"reason,omitempty"`
}

// MediaError reports a bad message; the stream goes on.
type MediaError struct {
	Message string `json:"message"`
}

// MediaTransfer asks voxbridge to transfer the call (blind) to a number,
// an extension or a sip: URI. The stream ends first (stop, reason
// transfer_requested).
type MediaTransfer struct {
	To string `json:"to"`
}

// Media stream limits.
const (
	mediaSendQueue   = 100 // 2 s of frames: a consumer further behind is dropped
	mediaWriteWait   = 5 * time.Second
	mediaMaxMessage  = 1 << 20
	mediaPingPeriod  = 15 * time.Second
	mediaMaxInAudio  = 60 * time.Second // audio one message may queue
	mediaDialTimeout = 10 * time.Second
)

// MediaStreamOptions shape one media websocket session.
type MediaStreamOptions struct {
	Encoding  string // pcmu (default), pcma, l16
	Binary    bool   // audio as binary messages
	Direction string // in (caller audio to app), out (app audio to caller), both (default)
}

func (o *MediaStreamOptions) normalize() error {
	switch o.Encoding {
	case "":
		o.Encoding = EncodingPCMU
	case EncodingPCMU, EncodingPCMA, EncodingL16:
	default:
		return fmt.Errorf("encoding must be pcmu, pcma or l16, not %q", o.Encoding)
	}
	switch o.Direction {
	case "":
		o.Direction = "both"
	case "in", "out", "both":
	default:
		return fmt.Errorf("direction must be in, out or both, not %q", o.Direction)
	}
	return nil
}

// mediaEnd says why a media stream session ended.
type mediaEnd struct {
	reason     string // "closed", "hangup_requested", "transfer_requested", "slow_consumer", "call_ended", "error"
	err        error
	transferTo string // with transfer_requested
}

// runMediaStream carries the call's audio over ws until either side ends
// it. It owns ws and closes it.
func (c *Call) runMediaStream(ctx context.Context, ws *websocket.Conn, opt MediaStreamOptions, streamID string) mediaEnd {
	if !c.answered.Load() {
		ws.Close()
		return mediaEnd{reason: "error", err: errNotAnswered}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	codec := media.PCMU
	if opt.Encoding == EncodingPCMA {
		codec = media.PCMA
	}

	out := make(chan MediaMessage, mediaSendQueue)
	var (
		endMu sync.Mutex
		end   mediaEnd
	)
	// finish records the first reason the stream ends for; the call
	// ending (the parent context) may race with it.
	finish := func(e mediaEnd) {
		endMu.Lock()
		if end.reason == "" {
			end = e
		}
		endMu.Unlock()
		cancel()
	}
	ended := func() mediaEnd {
		endMu.Lock()
		defer endMu.Unlock()
		return end
	}
	// send never blocks the call: a full queue means the application is
	// not keeping up, and it is dropped.
	send := func(m MediaMessage) {
		select {
		case out <- m:
		default:
			finish(mediaEnd{reason: "slow_consumer"})
		}
	}

	var wg sync.WaitGroup
	ws.SetReadLimit(mediaMaxMessage)
	limitSendBuffer(ws)
	// Writer: the only goroutine that writes to ws.
	wg.Add(1)
	go func() {
		defer wg.Done()
		ping := time.NewTicker(mediaPingPeriod)
		defer ping.Stop()
		write := func(m MediaMessage) error {
			ws.SetWriteDeadline(time.Now().Add(mediaWriteWait))
			if opt.Binary && m.Event == "media" && m.Media != nil {
				b, _ := base64.StdEncoding.DecodeString(m.Media.Payload)
				return ws.WriteMessage(websocket.BinaryMessage, b)
			}
			m.StreamID = streamID
			return ws.WriteJSON(m)
		}
		for {
			select {
			case m := <-out:
				if err := write(m); err != nil {
					finish(mediaEnd{reason: "slow_consumer", err: err})
					return
				}
			case <-ping.C:
				ws.SetWriteDeadline(time.Now().Add(mediaWriteWait))
				if err := ws.WriteMessage(websocket.PingMessage, nil); err != nil {
					finish(mediaEnd{reason: "closed", err: err})
					return
				}
			case <-ctx.Done():
				// Say goodbye when we are the ones ending, best effort.
				reason := "stream ended"
				if e := ended(); e.reason != "" {
					reason = e.reason
				}
				ws.SetWriteDeadline(time.Now().Add(time.Second))
				ws.WriteJSON(MediaMessage{Event: "stop", StreamID: streamID, Stop: &MediaStop{Reason: reason}})
				ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, reason), time.Now().Add(time.Second))
				return
			}
		}
	}()

	send(MediaMessage{Event: "start", Start: &MediaStart{
		CallID: c.ID(), Encoding: opt.Encoding, SampleRate: media.SampleRate,
		Direction: opt.Direction, Format: map[bool]string{false: "json", true: "binary"}[opt.Binary],
		Variables: c.vars(),
	}})

	// Reader: messages from the application.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			kind, data, err := ws.ReadMessage()
			if err != nil {
				finish(mediaEnd{reason: "closed", err: err})
				return
			}
			if kind == websocket.BinaryMessage {
				c.playIncoming(decodeAudio(opt.Encoding, codec, data), opt)
				continue
			}
			var m MediaMessage
			d := json.NewDecoder(strings.NewReader(string(data)))
			d.DisallowUnknownFields()
			if err := d.Decode(&m); err != nil {
				send(mediaErr("bad message: " + err.Error()))
				continue
			}
			if e := c.handleMediaMessage(ctx, m, opt, codec, send); e.reason != "" {
				finish(e)
				return
			}
		}
	}()

	// Caller audio and keys to the application, until the stream ends.
	frames, digits := c.stream.Frames(), c.digits
	if opt.Direction == "out" {
		frames = nil
	}
	var seq uint64
	started := time.Now()
loop:
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				finish(mediaEnd{reason: "call_ended"})
				break loop
			}
			seq++
			send(MediaMessage{Event: "media", Media: &MediaPayload{
				Seq: seq, Timestamp: time.Since(started).Milliseconds(),
				Payload: base64.StdEncoding.EncodeToString(encodeAudio(opt.Encoding, codec, f)),
			}})
		case d := <-digits:
			send(MediaMessage{Event: "dtmf", DTMF: &MediaDTMF{Digit: string(d)}})
		case <-ctx.Done():
			break loop
		}
	}
	// Unblock the reader, then wait for both goroutines.
	ws.SetReadDeadline(time.Now())
	wg.Wait()
	ws.Close()
	e := ended()
	if c.ctx.Err() != nil && e.reason != "hangup_requested" {
		e.reason = "call_ended"
	}
	return e
}

// mediaSendBuffer caps the kernel's send buffer of a media websocket. Left
// to autotune, loopback and LAN sockets buffer megabytes (minutes of audio)
// before a stuck application is noticed; real-time audio that far behind is
// useless, so the bounded queue above should see the backlog instead.
const mediaSendBuffer = 64 << 10

func limitSendBuffer(ws *websocket.Conn) {
	c := ws.UnderlyingConn()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.SetWriteBuffer(mediaSendBuffer)
	}
}

func mediaErr(msg string) MediaMessage {
	return MediaMessage{Event: "error", Error: &MediaError{Message: msg}}
}

// handleMediaMessage applies one message from the application; a result
// with a reason ends the stream.
func (c *Call) handleMediaMessage(ctx context.Context, m MediaMessage, opt MediaStreamOptions, codec media.Codec, send func(MediaMessage)) mediaEnd {
	switch m.Event {
	case "media":
		if m.Media == nil {
			send(mediaErr("media: missing media object"))
			return mediaEnd{}
		}
		b, err := base64.StdEncoding.DecodeString(m.Media.Payload)
		if err != nil {
			send(mediaErr("media: payload is not base64"))
			return mediaEnd{}
		}
		c.playIncoming(decodeAudio(opt.Encoding, codec, b), opt)
	case "mark":
		if m.Mark == nil || m.Mark.Name == "" {
			send(mediaErr("mark: name required"))
			return mediaEnd{}
		}
		// An empty chunk's channel closes when everything queued before
		// it has been sent: exactly when the mark is reached. A flush
		// (clear) also reaches it.
		done := c.stream.Enqueue(nil)
		name := m.Mark.Name
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			select {
			case <-done:
				send(MediaMessage{Event: "mark", Mark: &MediaMark{Name: name}})
			case <-ctx.Done():
			}
		}()
	case "clear":
		c.stream.Flush()
	case "dtmf":
		if m.DTMF == nil {
			send(mediaErr("dtmf: missing dtmf object"))
			return mediaEnd{}
		}
		digits := strings.ToUpper(m.DTMF.Digits + m.DTMF.Digit)
		if err := checkDigits(digits); err != nil || digits == "" {
			send(mediaErr(fmt.Sprintf("dtmf: bad digits %q", digits)))
			return mediaEnd{}
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := c.sendDigits(ctx, digits, 100*time.Millisecond, 100*time.Millisecond); err != nil && ctx.Err() == nil {
				send(mediaErr("dtmf: " + err.Error()))
			}
		}()
	case "transfer":
		if m.Transfer == nil {
			send(mediaErr("transfer: missing transfer object"))
			break
		}
		to := strings.TrimSpace(m.Transfer.To)
		if _, err := c.ct.destinationOf(ctx, to); err != nil {
			send(mediaErr("transfer: " + err.Error()))
			break
		}
		return mediaEnd{reason: "transfer_requested", transferTo: to}
	case "hangup":
		return mediaEnd{reason: "hangup_requested"}
	case "stop":
		return mediaEnd{reason: "closed"}
	default:
		send(mediaErr(fmt.Sprintf("unknown event %q", m.Event)))
	}
	return mediaEnd{}
}

// playIncoming queues the application's audio, within bounds.
func (c *Call) playIncoming(pcm []int16, opt MediaStreamOptions) {
	if opt.Direction == "in" || len(pcm) == 0 {
		return
	}
	if max := int(mediaMaxInAudio.Seconds()) * media.SampleRate; len(pcm) > max {
		pcm = pcm[:max]
	}
	c.stream.Enqueue(pcm)
}

func encodeAudio(enc string, codec media.Codec, pcm []int16) []byte {
	if enc == EncodingL16 {
		b := make([]byte, 2*len(pcm))
		for i, s := range pcm {
			b[2*i], b[2*i+1] = byte(s), byte(uint16(s)>>8)
		}
		return b
	}
	return codec.Encode(nil, pcm)
}

func decodeAudio(enc string, codec media.Codec, b []byte) []int16 {
	if enc == EncodingL16 {
		pcm := make([]int16, len(b)/2)
		for i := range pcm {
			pcm[i] = int16(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
		}
		return pcm
	}
	return codec.Decode(nil, b)
}

// MediaStreamOption connects the call to an application's websocket.
type MediaStreamOption struct {
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers,omitempty"`
	Encoding  string            `json:"encoding,omitempty"`
	Direction string            `json:"direction,omitempty"`
	Binary    bool              `json:"binary,omitempty"`
	// FallbackTargetID runs when the application cannot be reached.
	FallbackTargetID string `json:"fallback_target_id,omitempty"`
}

func init() { actionTypes["media_stream"] = define(compileMediaStream) }

func compileMediaStream(o *MediaStreamOption) (step, error) {
	if !strings.Contains(o.URL, "${") {
		if !strings.HasPrefix(o.URL, "ws://") && !strings.HasPrefix(o.URL, "wss://") {
			return step{}, badField("url", "%q is not a ws:// or wss:// URL", o.URL)
		}
	}
	opt := MediaStreamOptions{Encoding: o.Encoding, Direction: o.Direction, Binary: o.Binary}
	if err := opt.normalize(); err != nil {
		if strings.HasPrefix(err.Error(), "encoding") {
			return step{}, badField("encoding", "%v", err)
		}
		return step{}, badField("direction", "%v", err)
	}
	for k := range o.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			return step{}, badField("headers", "bad header name %q", k)
		}
	}
	st := seq(-1, nil) // runs as long as the application keeps it
	if o.FallbackTargetID != "" {
		st.jumps = []string{o.FallbackTargetID}
	}
	st.exec = func(ctx context.Context, r *run) (string, error) {
		u := r.c.expand(o.URL)
		h := http.Header{}
		for k, v := range o.Headers {
			h.Set(k, strings.NewReplacer("\r", "", "\n", "").Replace(r.c.expand(v)))
		}
		dctx, cancel := context.WithTimeout(ctx, mediaDialTimeout)
		ws, res, err := websocket.DefaultDialer.DialContext(dctx, u, h)
		cancel()
		if res != nil && res.Body != nil {
			res.Body.Close()
		}
		if err != nil {
			r.c.warn("media_stream: cannot connect to " + redactURL(u) + ": " + err.Error())
			if o.FallbackTargetID != "" {
				return o.FallbackTargetID, nil
			}
			return "", fmt.Errorf("connect %s: %w", redactURL(u), err)
		}
		if !r.c.mediaBusy.CompareAndSwap(false, true) {
			ws.Close()
			return "", errMediaStreamBusy
		}
		end := r.c.runMediaStream(ctx, ws, opt, r.c.ID()+"/"+fmt.Sprint(r.seq))
		r.c.mediaBusy.Store(false)
		r.c.log.Info("media stream ended", "reason", end.reason, "err", end.err)
		r.c.setVar("media_stream.end", end.reason)
		switch end.reason {
		case "hangup_requested":
			if err := r.c.hangup(store.ReasonNormal); err != nil {
				return "", err
			}
			return "", errStop
		case "transfer_requested":
			// As the transfer action does: bridged when it answers (the
			// flow ends with the bridge), else the flow goes on with
			// ${transfer.result}.
			dst, err := r.c.ct.destinationOf(ctx, end.transferTo)
			if err != nil {
				return "", fmt.Errorf("media_stream: transfer: %w", err)
			}
			st, err := compileTransfer(&TransferOption{Destination: dst})
			if err != nil {
				return "", fmt.Errorf("media_stream: transfer: %w", err)
			}
			return st.exec(ctx, r)
		case "slow_consumer":
			r.c.warn("media_stream: application too slow; disconnected")
		}
		return "", nil
	}
	return st, nil
}

// errMediaStreamBusy refuses a second media stream on one call: two
// consumers would split the caller's audio between them.
var errMediaStreamBusy = errors.New("a media stream is already attached to this call")

// AttachMediaStream runs the media websocket protocol on ws (already
// upgraded by the API) for a live, answered call, until either side ends
// it. The flow keeps running: attach while it waits (e.g. in sleep), not
// while another action consumes the caller's audio.
func (ct *Controller) AttachMediaStream(ctx context.Context, callID string, ws *websocket.Conn, opt MediaStreamOptions) error {
	if err := opt.normalize(); err != nil {
		ws.Close()
		return err
	}
	ct.mu.Lock()
	c := ct.calls[callID]
	ct.mu.Unlock()
	if c == nil {
		ws.Close()
		return ErrCallNotFound
	}
	if !c.mediaBusy.CompareAndSwap(false, true) {
		ws.Close()
		return errMediaStreamBusy
	}
	defer c.mediaBusy.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel) // the call ending ends the stream
	defer stop()
	end := c.runMediaStream(ctx, ws, opt, callID+"/api")
	c.log.Info("attached media stream ended", "reason", end.reason, "err", end.err)
	c.setVar("media_stream.attached_end", end.reason)
	vars := c.vars() // outside update: it holds c.mu
	c.update(func(r *store.Call) { r.Variables = vars })
	switch end.reason {
	case "hangup_requested":
		c.stop(store.ReasonNormal)
	case "transfer_requested":
		// As the API's transfer action: rings while the flow goes on.
		if err := c.apiTransfer(CallAction{Action: ActionTransfer, To: end.transferTo}); err != nil {
			c.warn("media stream transfer: " + err.Error())
		}
	}
	return nil
}

// ErrCallNotFound is returned for a call id that is not live here.
var ErrCallNotFound = errors.New("call not found or not live")
