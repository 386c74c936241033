package deepgram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/internal/textutil"
	"github.com/voxbridge/voxbridge/media"
)

// Control messages of the live API.
var (
	msgKeepAlive   = []byte(`{"type":"KeepAlive"}`)
	msgFinalize    = []byte(`{"type":"Finalize"}`)
	msgCloseStream = []byte(`{"type":"CloseStream"}`)
)

const writeTimeout = 5 * time.Second

// outMsg is one message waiting to be sent; audio and control messages
// share one queue so Finalize and CloseStream follow the audio written
// before them.
type outMsg struct {
	audio bool
	data  []byte
}

// stream is one live transcription session. Three goroutines serve it:
// the writer (sends queued messages, KeepAlive, the hang check), the
// reader (turns Deepgram's messages into events) and run, which owns the
// teardown and closes Events last.
type stream struct {
	stt  *STT
	conn *websocket.Conn

	ctx    context.Context // cancelled by the caller's ctx or a Close that timed out
	cancel context.CancelFunc

	send   chan outMsg
	events chan agent.STTEvent
	done   chan struct{} // closed after Events is closed

	closeOnce    sync.Once
	closing      atomic.Bool  // Close was called or the stream ended: no more writes
	closeSent    atomic.Bool  // CloseStream was queued: a server close is expected
	lastRecvNano atomic.Int64 // when the last message arrived, for the hang check

	// heardWords is reader-only: words arrived since the last utterance
	// end, so speech_final and UtteranceEnd for them make one event.
	heardWords bool
}

var _ agent.STTStream = (*stream)(nil)

func newStream(parent context.Context, s *STT, conn *websocket.Conn) *stream {
	ctx, cancel := context.WithCancel(parent)
	st := &stream{
		stt:    s,
		conn:   conn,
		ctx:    ctx,
		cancel: cancel,
		send:   make(chan outMsg, s.cfg.SendBuffer),
		events: make(chan agent.STTEvent, 64),
		done:   make(chan struct{}),
	}
	go st.run()
	return st
}

// Write queues one frame of caller audio, µ-law encoded.
func (st *stream) Write(f agent.Frame) error {
	return st.enqueue(outMsg{audio: true, data: media.PCMU.Encode(nil, f)})
}

// Finalize asks Deepgram to finish everything written so far; the answer
// is an STTFinal (possibly with empty text when nothing was said).
func (st *stream) Finalize() error { return st.enqueue(outMsg{data: msgFinalize}) }

func (st *stream) enqueue(m outMsg) error {
	if st.closing.Load() {
		return &Error{Op: "send", Message: "stream closed"}
	}
	select {
	case st.send <- m:
		return nil
	default:
		return &Error{Op: "send", Message: fmt.Sprintf("%d messages waiting: the connection is stalled", cap(st.send))}
	}
}

// Events delivers recognition events; it is closed when the stream ends,
// after an STTError if the stream failed.
func (st *stream) Events() <-chan agent.STTEvent { return st.events }

// Close sends CloseStream after the audio already written, waits up to
// CloseTimeout for Deepgram's last results (delivered on Events) and ends
// the stream. It is safe to call more than once.
func (st *stream) Close() error {
	st.closeOnce.Do(func() {
		st.closing.Store(true)
		st.closeSent.Store(true)
		select {
		case st.send <- outMsg{data: msgCloseStream}:
		default: // queue full: the connection is stalled, do not wait for it
			st.cancel()
		}
		t := time.NewTimer(st.stt.cfg.CloseTimeout)
		defer t.Stop()
		select {
		case <-st.done:
		case <-t.C:
			st.cancel()
		}
	})
	<-st.done
	return nil
}

func (st *stream) run() {
	defer close(st.done)
	defer func() {
		st.closing.Store(true) // writes fail before Events' close says the stream ended
		close(st.events)
	}()
	defer st.cancel()

	wctx, stopWriter := context.WithCancel(st.ctx)
	defer stopWriter()
	readErr := make(chan error, 1)
	writeErr := make(chan error, 1)
	go func() { readErr <- st.readLoop() }()
	go func() { writeErr <- st.writeLoop(wctx) }()

	var err error
	select {
	case err = <-readErr:
		stopWriter()
		<-writeErr
	case err = <-writeErr:
		// A write fails when Deepgram has closed the connection; the
		// reader usually holds the close frame saying why, so give it a
		// moment to report that instead.
		if e, ok := err.(*Error); ok && e.Op == "send" {
			t := time.NewTimer(time.Second)
			select {
			case rerr := <-readErr:
				if rerr != nil {
					err = rerr
				}
				readErr <- nil
			case <-t.C:
			}
			t.Stop()
		}
		st.conn.Close() // unblocks the reader
		<-readErr
	}
	st.conn.Close()
	// The owner logs the failure, with the call it belongs to.
	if err != nil && st.ctx.Err() == nil {
		st.emit(agent.STTEvent{Type: agent.STTError, Err: err, At: time.Now()})
	}
}

// emit delivers ev unless the stream is being torn down.
func (st *stream) emit(ev agent.STTEvent) {
	select {
	case st.events <- ev:
	case <-st.ctx.Done():
	}
}

func (st *stream) writeLoop(ctx context.Context) error {
	cfg := st.stt.cfg
	keepAlive := time.NewTimer(cfg.KeepAlive)
	defer keepAlive.Stop()
	var check <-chan time.Time
	if cfg.ResponseTimeout > 0 {
		t := time.NewTicker(max(cfg.ResponseTimeout/4, 10*time.Millisecond))
		defer t.Stop()
		check = t.C
	}
	// awaitingSince is when audio was first sent after the last message
	// from Deepgram; zero when nothing is outstanding.
	var awaitingSince time.Time
	write := func(m outMsg) error {
		typ := websocket.TextMessage
		if m.audio {
			typ = websocket.BinaryMessage
		}
		st.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := st.conn.WriteMessage(typ, m.data); err != nil {
			return &Error{Op: "send", Message: textutil.Clean(err.Error(), cfg.APIKey)}
		}
		keepAlive.Reset(cfg.KeepAlive)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-st.send:
			if err := write(m); err != nil {
				return err
			}
			if m.audio && (awaitingSince.IsZero() || awaitingSince.UnixNano() < st.lastRecvNano.Load()) {
				awaitingSince = time.Now()
			}
		case <-keepAlive.C:
			if err := write(outMsg{data: msgKeepAlive}); err != nil {
				return err
			}
		case now := <-check:
			if awaitingSince.IsZero() || awaitingSince.UnixNano() < st.lastRecvNano.Load() {
				awaitingSince = time.Time{}
				continue
			}
			if waited := now.Sub(awaitingSince); waited > cfg.ResponseTimeout {
				return &Error{Op: "stream", Message: fmt.Sprintf("no reply for %s while sending audio", waited.Round(time.Millisecond))}
			}
		}
	}
}

// serverMsg is the union of the messages Deepgram sends; Channel is an
// object in Results and an array elsewhere, so it is decoded on demand.
type serverMsg struct {
	Type         string          `json:"type"`
	Channel      json.RawMessage `json:"channel"`
	IsFinal      bool            `json:"is_final"`
	SpeechFinal  bool            `json:"speech_final"`
	FromFinalize bool            `json:"from_finalize"`
	Description  string          `json:"description"`
	Message      string          `json:"message"`
	Variant      string          `json:"variant"`
	ErrCode      string          `json:"err_code"`
	ErrMsg       string          `json:"err_msg"`
}

type resultChannel struct {
	Alternatives []struct {
		Transcript string  `json:"transcript"`
		Confidence float64 `json:"confidence"`
	} `json:"alternatives"`
}

func (st *stream) readLoop() error {
	key := st.stt.cfg.APIKey
	for {
		typ, data, err := st.conn.ReadMessage()
		if err != nil {
			return st.readError(err)
		}
		st.lastRecvNano.Store(time.Now().UnixNano())
		if typ != websocket.TextMessage {
			return &Error{Op: "stream", Message: fmt.Sprintf("unexpected binary message of %d bytes", len(data))}
		}
		var m serverMsg
		if err := json.Unmarshal(data, &m); err != nil {
			return &Error{Op: "stream", Message: textutil.Clean(fmt.Sprintf("bad message %q: %v", data, err), key)}
		}
		if err := st.handle(&m, data); err != nil {
			return err
		}
	}
}

// readError classifies the end of the connection: expected after
// CloseStream or our own teardown, a failure otherwise.
func (st *stream) readError(err error) error {
	if st.ctx.Err() != nil {
		return nil
	}
	var ce *websocket.CloseError
	isClose := errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure // 1006 is gorilla's name for EOF
	if st.closeSent.Load() && (!isClose || ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseNoStatusReceived) {
		return nil
	}
	if isClose {
		msg := ce.Text
		if msg == "" {
			msg = "closed by Deepgram"
		}
		return &Error{Op: "stream", CloseCode: ce.Code, Message: textutil.Clean(msg, st.stt.cfg.APIKey)}
	}
	return &Error{Op: "stream", Message: textutil.Clean("connection lost: "+err.Error(), st.stt.cfg.APIKey)}
}

func (st *stream) handle(m *serverMsg, raw []byte) error {
	now := time.Now()
	switch m.Type {
	case "Results":
		var ch resultChannel
		if err := json.Unmarshal(m.Channel, &ch); err != nil {
			return &Error{Op: "stream", Message: fmt.Sprintf("bad Results channel: %v", err)}
		}
		var text string
		var conf float64
		if len(ch.Alternatives) > 0 {
			text, conf = ch.Alternatives[0].Transcript, ch.Alternatives[0].Confidence
		}
		if text != "" {
			st.heardWords = true
		}
		switch {
		case !m.IsFinal:
			if text != "" {
				st.emit(agent.STTEvent{Type: agent.STTPartial, Text: text, Confidence: conf, At: now})
			}
		// Empty finals arrive for every stretch of silence; only the answer
		// to Finalize is worth passing on.
		case text != "" || m.FromFinalize:
			st.emit(agent.STTEvent{Type: agent.STTFinal, Text: text, Confidence: conf, At: now})
		}
		// speech_final is Deepgram's endpoint: report it as the utterance's
		// end, and let a later UtteranceEnd for the same words pass silently.
		if m.IsFinal && m.SpeechFinal {
			st.utteranceEnd(now)
		}
	case "SpeechStarted":
		st.emit(agent.STTEvent{Type: agent.STTSpeechStarted, At: now})
	case "UtteranceEnd":
		st.utteranceEnd(now)
	case "Metadata", "Warning":
		if m.Type == "Warning" {
			st.stt.log.Warn("deepgram warning", "message", textutil.Clean(string(raw), st.stt.cfg.APIKey))
		}
	case "Error":
		msg := m.Description
		if msg == "" {
			msg = m.Message
		}
		if m.Variant != "" {
			msg = m.Variant + ": " + msg
		}
		return &Error{Op: "stream", Message: textutil.Clean(msg, st.stt.cfg.APIKey)}
	case "":
		if m.ErrCode != "" || m.ErrMsg != "" {
			return &Error{Op: "stream", Message: textutil.Clean(m.ErrCode+": "+m.ErrMsg, st.stt.cfg.APIKey)}
		}
		return &Error{Op: "stream", Message: textutil.Clean(fmt.Sprintf("message without a type: %.200q", raw), st.stt.cfg.APIKey)}
	default:
		st.stt.log.Debug("deepgram message ignored", "type", m.Type)
	}
	return nil
}

func (st *stream) utteranceEnd(now time.Time) {
	if !st.heardWords {
		return
	}
	st.heardWords = false
	st.emit(agent.STTEvent{Type: agent.STTUtteranceEnd, At: now})
}
