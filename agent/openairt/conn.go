// Package openairt speaks the OpenAI Realtime API over a websocket, both as
// a speech-to-speech brain (agent.Realtime) and as a streaming transcriber
// (agent.STT). Audio is G.711 µ-law at 8 kHz both ways ("audio/pcmu"), so
// nothing is resampled: frames go out as they come from RTP and the model's
// audio goes to the playout queue as it arrives.
//
// The client sends the GA protocol by default and, with Config.Beta, the
// beta one (OpenAI-Beta: realtime=v1) that some compatible servers still
// speak. It understands the server events of both.
package openairt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/agent/internal/textutil"
)

// DefaultBaseURL is OpenAI's API root; "/realtime" is appended.
const DefaultBaseURL = "wss://api.openai.com/v1"

// Defaults when Config leaves a field empty.
const (
	DefaultModel              = "gpt-realtime"
	DefaultVoice              = "alloy"
	DefaultTranscriptionModel = "gpt-4o-mini-transcribe"
)

// Config configures a client.
type Config struct {
	// BaseURL is the API root: ws(s)://, or http(s):// which is turned into
	// the matching websocket scheme.
	BaseURL string
	// APIKey is sent as a bearer token; it never appears in errors.
	APIKey string
	// Model is the speech-to-speech model (Realtime only).
	Model string
	// Voice is used when RealtimeOptions.Voice is empty.
	Voice string
	// TranscriptionModel transcribes the caller (the STT client's model, and
	// the Realtime client's caller transcripts).
	TranscriptionModel string
	// Language (BCP 47) is a transcription hint when the options give none.
	Language string
	// Beta speaks the beta protocol instead of GA.
	Beta bool
	// VAD tunes the server's voice activity detection; zero values keep
	// the server's defaults.
	VAD VAD
	// HandshakeTimeout bounds connecting, and again the server's answer to
	// the session configuration; 0 means 10 s.
	HandshakeTimeout time.Duration
	// Dialer overrides the websocket dialer (proxies, TLS); nil means
	// websocket.DefaultDialer's settings.
	Dialer *websocket.Dialer
}

// VAD is the server_vad turn detection setting.
type VAD struct {
	Threshold       float64 // 0..1 activation threshold
	PrefixPaddingMS int     // audio kept before detected speech
	SilenceMS       int     // silence that ends a turn
}

// Error is a failure reported by the server or of the connection. Its text
// never contains the API key.
type Error struct {
	// Code and Type are the server's ("invalid_request_error", ...), or
	// empty for transport failures.
	Code, Type string
	Message    string
	// StatusCode is the HTTP status of a refused handshake.
	StatusCode int
	// Fatal means the connection is gone: the event channel closes next.
	Fatal bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("openai realtime: ")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, "HTTP %d: ", e.StatusCode)
	}
	if e.Code != "" {
		b.WriteString(e.Code + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

func (c Config) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout > 0 {
		return c.HandshakeTimeout
	}
	return 10 * time.Second
}

func (c Config) endpoint(query url.Values) (string, error) {
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("openai realtime: base URL %q: want ws(s)://host[:port]/path", textutil.Redact(base, c.APIKey))
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("openai realtime: base URL %q: scheme must be ws, wss, http or https", textutil.Redact(base, c.APIKey))
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/realtime"
	q := u.Query()
	for k, v := range query {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// outQueue bounds client events waiting for the socket: 5 s of 20 ms audio
// frames. A full queue means the network stalled; senders get an error
// instead of blocking the media path.
const outQueue = 256

const (
	writeTimeout = 10 * time.Second
	readLimit    = 16 << 20
)

var errClosed = errors.New("openai realtime: session closed")

// deliver sends v on ch unless the owner is gone.
func deliver[T any](c *conn, ch chan<- T, v T) bool {
	select {
	case ch <- v:
		return true
	case <-c.owner.Done():
		return false
	}
}

// conn is one websocket to the Realtime API: a writer goroutine drains the
// queue of client events, a reader goroutine hands each server event to
// handle. Both end with ctx.
type conn struct {
	ws  *websocket.Conn
	key string
	// owner ends when the owner closes the session or cancels its context;
	// ctx, its child, also ends when the connection fails (the cause says
	// how). Deliveries to the owner wait on owner, so a failure can still
	// be reported.
	owner       context.Context
	ownerCancel context.CancelFunc
	ctx         context.Context
	cancel      context.CancelCauseFunc
	out         chan []byte
	wg          sync.WaitGroup
}

func dial(ctx context.Context, cfg Config, query url.Values, header http.Header) (*conn, error) {
	endpoint, err := cfg.endpoint(query)
	if err != nil {
		return nil, err
	}
	d := websocket.DefaultDialer
	if cfg.Dialer != nil {
		d = cfg.Dialer
	}
	dd := *d
	dd.HandshakeTimeout = cfg.handshakeTimeout()
	if header == nil {
		header = http.Header{}
	}
	if cfg.APIKey != "" {
		header.Set("Authorization", "Bearer "+cfg.APIKey)
	}
	ws, resp, err := dd.DialContext(ctx, endpoint, header)
	if err != nil {
		e := &Error{Fatal: true, Message: textutil.Redact(err.Error(), cfg.APIKey)}
		if resp != nil {
			e.StatusCode = resp.StatusCode
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			e.Message = handshakeMessage(resp.Status, body)
			e.Message = textutil.Truncate(textutil.Redact(e.Message, cfg.APIKey), 300)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, e
	}
	ws.SetReadLimit(readLimit)
	c := &conn{ws: ws, key: cfg.APIKey, out: make(chan []byte, outQueue)}
	c.owner, c.ownerCancel = context.WithCancel(ctx)
	c.ctx, c.cancel = context.WithCancelCause(c.owner)
	return c, nil
}

// handshakeMessage prefers the API's {"error":{"message"}} over raw body text.
func handshakeMessage(status string, body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		return s
	}
	return status
}

// configure sends the session update and waits for the server to accept
// it, so a session that would carry garbage audio (a format or voice the
// server refuses) fails at Start rather than mid-call. It runs before start.
func (c *conn) configure(update any, timeout time.Duration) error {
	b, err := json.Marshal(update)
	if err != nil {
		return fmt.Errorf("openai realtime: encoding the session: %w", err)
	}
	deadline := time.Now().Add(timeout)
	c.ws.SetWriteDeadline(deadline)
	c.ws.SetReadDeadline(deadline)
	defer c.ws.SetReadDeadline(time.Time{})
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return &Error{Fatal: true, Message: "sending the session: " + textutil.Truncate(textutil.Redact(err.Error(), c.key), 300)}
	}
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return &Error{Fatal: true, Message: "waiting for the session: " + textutil.Truncate(textutil.Redact(err.Error(), c.key), 300)}
		}
		var ev serverEvent
		if json.Unmarshal(msg, &ev) != nil {
			return &Error{Fatal: true, Message: "malformed server event: " + textutil.Truncate(string(msg), 120)}
		}
		switch ev.Type {
		case "session.updated", "transcription_session.updated":
			return nil
		case "error":
			e := serverError("session refused", ev).(*Error)
			e.Fatal = true
			return e
		}
	}
}

// start runs the writer, the reader and the closer. handle gets each server
// event in order; end runs once when the reader stops, with nil when the
// owner closed the session or cancelled its context.
func (c *conn) start(handle func(typ string, raw []byte), end func(err error)) {
	c.wg.Add(3)
	go c.write()
	go func() {
		defer c.wg.Done()
		<-c.ctx.Done()
		// Unblocks the reader; WriteControl may run beside the writer.
		c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.ws.Close()
	}()
	go func() {
		defer c.wg.Done()
		end(c.read(handle))
	}()
}

func (c *conn) read(handle func(typ string, raw []byte)) error {
	for {
		kind, msg, err := c.ws.ReadMessage()
		if err != nil {
			if cause := context.Cause(c.ctx); cause != nil {
				var f failure
				if errors.As(cause, &f) {
					return f.err // the writer failed first
				}
				return nil // the owner closed or cancelled
			}
			e := &Error{Fatal: true, Message: "connection lost: " + textutil.Truncate(textutil.Redact(err.Error(), c.key), 300)}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				e.Message = textutil.Truncate(textutil.Redact(fmt.Sprintf("server closed the connection (%d %s)", ce.Code, ce.Text), c.key), 300)
			}
			c.cancel(failure{e}) // later sends report it too
			return e
		}
		if kind != websocket.TextMessage {
			continue // the API sends JSON text only
		}
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(msg, &head); err != nil || head.Type == "" {
			handle("", msg) // the owner reports malformed input
			continue
		}
		handle(head.Type, msg)
	}
}

// failure marks a cancel cause that is an error to report (a failed write)
// rather than the owner stopping.
type failure struct{ err error }

func (f failure) Error() string { return f.err.Error() }

func (c *conn) write() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case msg := <-c.out:
			c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
				c.cancel(failure{&Error{Fatal: true, Message: "sending: " + textutil.Truncate(textutil.Redact(err.Error(), c.key), 300)}})
				return
			}
		}
	}
}

// send queues a client event without blocking.
func (c *conn) send(v any) error {
	if c.ctx.Err() != nil {
		var f failure
		if errors.As(context.Cause(c.ctx), &f) {
			return f.err
		}
		return errClosed
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("openai realtime: encoding %T: %w", v, err)
	}
	select {
	case c.out <- b:
		return nil
	default:
		return errors.New("openai realtime: send queue full (network stalled)")
	}
}

// close stops the connection and waits for its goroutines.
func (c *conn) close() {
	c.ownerCancel()
	c.wg.Wait()
}
