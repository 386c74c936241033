package fake

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/media"
)

// ElevenLabsOptions script a fake ElevenLabs stream-input server.
//
// Like the real one it buffers the text it receives and synthesizes when
// the buffer reaches the next length of the client's chunk_length_schedule,
// on try_trigger_generation, on flush, and at the end of input
// ({"text":""}), after which it sends isFinal and closes. A flush alone
// does not produce isFinal (ElevenLabs' single-stream API behaves so).
// The audio is ulaw_8000: by default a tone lasting PerChar for every
// character, so tests can tell the agent's speech by its frequency and
// length; alignment gives every character's time.
type ElevenLabsOptions struct {
	// APIKey, when set, is required in the xi-api-key header; anything else
	// is refused with 401, echoing what was presented.
	APIKey string
	// Synth renders text to 8 kHz PCM; nil means a ToneHz sine of PerChar
	// per character. Alignment spreads the characters evenly over it.
	Synth func(text string) []int16
	// ToneHz is the default synth's frequency; 0 means 440.
	ToneHz float64
	// PerChar is the default synth's audio per character; 0 means 50 ms.
	PerChar time.Duration
	// ChunkDuration is the audio carried by one message; 0 means 200 ms.
	ChunkDuration time.Duration
	// FirstAudioLatency delays a generation's first message after the text
	// that triggered it (wall clock), e.g. 150 ms.
	FirstAudioLatency time.Duration
	// ChunkInterval delays each further message of a generation.
	ChunkInterval time.Duration
	// InactivityTimeout, when set, closes a connection that receives no
	// text for this long the way ElevenLabs does (input_timeout_exceeded,
	// 1008). The client's inactivity_timeout parameter is not used.
	InactivityTimeout time.Duration
	// Failure makes connections fail.
	Failure ElevenLabsFailure
}

// ElevenLabsFailure is how the fake misbehaves. The zero value is healthy.
type ElevenLabsFailure struct {
	// Status refuses the websocket upgrade with this HTTP status.
	Status int
	// DropAfterChunks drops the TCP connection, without a close frame,
	// after this many audio messages.
	DropAfterChunks int
	// DropBeforeAudio drops the TCP connection when the first audio would
	// be sent.
	DropBeforeAudio bool
	// Error, when set, answers the first text with an error message
	// ({"message": Error, "error": "fake_error", "code": 1008}) and a 1008
	// close.
	Error string
	// Hang accepts the stream and reads everything but never answers nor
	// closes.
	Hang bool
	// Connections limits the failure to the first N connections (0: all).
	Connections int
}

// ElevenLabsInit is the first message a client sent.
type ElevenLabsInit struct {
	Text             string         `json:"text"`
	VoiceSettings    map[string]any `json:"voice_settings"`
	GenerationConfig struct {
		ChunkLengthSchedule []int `json:"chunk_length_schedule"`
	} `json:"generation_config"`
}

// ElevenLabsSession records one accepted connection.
type ElevenLabsSession struct {
	VoiceID string
	Query   url.Values
	APIKey  string // the xi-api-key header

	mu      sync.Mutex
	init    ElevenLabsInit
	texts   []string
	flushes int
	ended   bool
	samples int
	done    chan struct{}
}

// Init returns the connection's first message.
func (s *ElevenLabsSession) Init() ElevenLabsInit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.init
}

// Texts returns the text of each message after the first, flush and end
// messages included.
func (s *ElevenLabsSession) Texts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.texts)
}

// Text returns all the text received after the first message, joined.
func (s *ElevenLabsSession) Text() string { return strings.Join(s.Texts(), "") }

// Flushes returns how many messages had flush set.
func (s *ElevenLabsSession) Flushes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushes
}

// Ended reports whether the client sent the end of input ({"text":""}).
func (s *ElevenLabsSession) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// SentAudio returns how much audio the fake has queued to the client.
func (s *ElevenLabsSession) SentAudio() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.samples) * time.Second / media.SampleRate
}

// Done is closed when the connection has ended.
func (s *ElevenLabsSession) Done() <-chan struct{} { return s.done }

// ElevenLabs is a fake of ElevenLabs' text-to-speech stream-input websocket
// on a loopback HTTP server.
type ElevenLabs struct {
	wsFake[ElevenLabsOptions, *ElevenLabsSession]
}

// NewElevenLabs starts a fake ElevenLabs server, closed at the end of the
// test.
func NewElevenLabs(tb TB, opts ElevenLabsOptions) *ElevenLabs {
	tb.Helper()
	e := &ElevenLabs{wsFake[ElevenLabsOptions, *ElevenLabsSession]{name: "elevenlabs", opts: opts}}
	e.host = newSocketHost(tb, e.serve)
	return e
}

// Sessions returns the accepted connections so far, oldest first.
func (e *ElevenLabs) Sessions() []*ElevenLabsSession { return e.sessionList() }

// WaitSession waits up to timeout for the n-th accepted connection
// (0-based), failing the test if it does not come.
func (e *ElevenLabs) WaitSession(tb TB, n int, timeout time.Duration) *ElevenLabsSession {
	tb.Helper()
	return e.waitSession(tb, n, timeout)
}

// SetFailure changes how new connections fail; Failure.Connections counts
// from now.
func (e *ElevenLabs) SetFailure(f ElevenLabsFailure) {
	e.update(func(o *ElevenLabsOptions) { o.Failure = f })
}

var elPath = regexp.MustCompile(`/v1/text-to-speech/([A-Za-z0-9_-]+)/stream-input$`)

func elRefuse(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"detail": map[string]string{"status": code, "message": msg}})
}

func (e *ElevenLabs) serve(w http.ResponseWriter, r *http.Request) {
	opts, n := e.attempt()
	if f := opts.Failure; f.Connections > 0 && n > f.Connections {
		opts.Failure = ElevenLabsFailure{}
	}

	m := elPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		http.NotFound(w, r)
		return
	}
	if key := r.Header.Get("xi-api-key"); opts.APIKey != "" && key != opts.APIKey {
		// Echo what was presented, as some gateways do, so tests can check
		// that clients keep keys out of their errors.
		elRefuse(w, http.StatusUnauthorized, "invalid_api_key", fmt.Sprintf("Invalid API key %q", key))
		return
	}
	if opts.Failure.Status != 0 {
		elRefuse(w, opts.Failure.Status, "fake_failure", http.StatusText(opts.Failure.Status))
		return
	}
	q := r.URL.Query()
	if f := q.Get("output_format"); f != "ulaw_8000" {
		elRefuse(w, http.StatusBadRequest, "invalid_output_format", fmt.Sprintf("fake supports output_format=ulaw_8000 only, got %q", f))
		return
	}
	conn, ok := e.host.upgrade(w, r)
	if !ok {
		return
	}
	defer e.host.release(conn)
	sess := &ElevenLabsSession{VoiceID: m[1], Query: q, APIKey: r.Header.Get("xi-api-key"), done: make(chan struct{})}
	defer close(sess.done)
	e.addSession(sess)

	if opts.ToneHz == 0 {
		opts.ToneHz = 440
	}
	if opts.PerChar == 0 {
		opts.PerChar = 50 * time.Millisecond
	}
	if opts.ChunkDuration == 0 {
		opts.ChunkDuration = 200 * time.Millisecond
	}
	c := &elConn{opts: opts, sess: sess, conn: conn, out: newOutQueue(conn)}
	defer c.out.shutdown()
	c.serve()
}

// elConn is one connection's state; only the handler goroutine touches it.
type elConn struct {
	opts     ElevenLabsOptions
	sess     *ElevenLabsSession
	conn     *websocket.Conn
	out      *outQueue
	started  bool
	ended    bool // a close or drop has been queued
	buf      string
	schedule []int
	nextGen  int       // index into schedule
	lastDue  time.Time // keeps messages in order across generations
	chunks   int       // audio messages queued
}

type elClientMsg struct {
	Text                 *string `json:"text"`
	TryTriggerGeneration bool    `json:"try_trigger_generation"`
	Flush                bool    `json:"flush"`
}

func (c *elConn) serve() {
	c.conn.SetCloseHandler(func(int, string) error { return nil })
	for {
		if c.opts.InactivityTimeout > 0 && !c.ended {
			c.conn.SetReadDeadline(time.Now().Add(c.opts.InactivityTimeout))
		}
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.ended {
				c.fail("input_timeout_exceeded", fmt.Sprintf("Have not received new text for %s. Closing the connection.", c.opts.InactivityTimeout))
				select {
				case <-c.out.done:
				case <-time.After(2 * time.Second):
				}
			}
			return
		}
		if c.ended {
			continue
		}
		if typ != websocket.TextMessage {
			c.fail("invalid_message", "binary messages are not accepted")
			continue
		}
		c.onMessage(data)
	}
}

func (c *elConn) onMessage(data []byte) {
	if !c.started {
		var init ElevenLabsInit
		if err := json.Unmarshal(data, &init); err != nil || init.Text != " " {
			c.fail("invalid_message", `the first message must have text " "`)
			return
		}
		c.started = true
		c.schedule = init.GenerationConfig.ChunkLengthSchedule
		if len(c.schedule) == 0 {
			c.schedule = []int{120, 160, 250, 290} // ElevenLabs' default
		}
		c.sess.mu.Lock()
		c.sess.init = init
		c.sess.mu.Unlock()
		return
	}
	var m elClientMsg
	if err := json.Unmarshal(data, &m); err != nil || m.Text == nil {
		c.fail("invalid_message", "a message must have text")
		return
	}
	c.sess.mu.Lock()
	c.sess.texts = append(c.sess.texts, *m.Text)
	if m.Flush {
		c.sess.flushes++
	}
	if *m.Text == "" {
		c.sess.ended = true
	}
	c.sess.mu.Unlock()
	if c.opts.Failure.Error != "" {
		c.fail("fake_error", c.opts.Failure.Error)
		return
	}
	if *m.Text == "" { // end of input: synthesize the rest, then isFinal
		c.generate(c.buf)
		c.buf = ""
		c.send(map[string]any{"audio": nil, "isFinal": true, "normalizedAlignment": nil, "alignment": nil}, false)
		c.closeWith(websocket.CloseNormalClosure, "")
		return
	}
	c.buf += *m.Text
	switch {
	case m.Flush:
		c.generate(c.buf)
		c.buf = ""
	case utf8.RuneCountInString(c.buf) >= c.schedule[min(c.nextGen, len(c.schedule)-1)] || m.TryTriggerGeneration:
		// Generate whole words; the partial last one waits for the rest.
		cut := strings.LastIndexAny(c.buf, " \t\n")
		if cut <= 0 {
			return
		}
		c.generate(c.buf[:cut+1])
		c.buf = c.buf[cut+1:]
	}
}

func (c *elConn) fail(code, msg string) {
	if c.ended || c.opts.Failure.Hang {
		return
	}
	c.send(map[string]any{"message": msg, "error": code, "code": websocket.ClosePolicyViolation}, false)
	c.closeWith(websocket.ClosePolicyViolation, msg)
}

func (c *elConn) closeWith(code int, text string) {
	if c.ended || c.opts.Failure.Hang {
		return
	}
	c.ended = true
	c.out.push(outItem{due: c.lastDue, close: true, closeCode: code, closeText: text})
}

// send queues v; first marks the first message of a generation.
func (c *elConn) send(v any, first bool) {
	if c.ended || c.opts.Failure.Hang {
		return
	}
	due := time.Now()
	if first {
		due = due.Add(c.opts.FirstAudioLatency)
	} else if !c.lastDue.IsZero() {
		due = c.lastDue.Add(c.opts.ChunkInterval)
	}
	if due.Before(c.lastDue) {
		due = c.lastDue
	}
	c.lastDue = due
	b, _ := json.Marshal(v)
	c.out.push(outItem{due: due, data: b})
}

type elAlignment struct {
	Chars            []string `json:"chars"`
	CharStartTimesMs []int    `json:"charStartTimesMs"`
	CharsDurationsMs []int    `json:"charsDurationsMs"`
}

// generate synthesizes text and queues it in ChunkDuration messages, each
// with the alignment of the characters that start in it.
func (c *elConn) generate(text string) {
	if strings.TrimSpace(text) == "" {
		return
	}
	c.nextGen++
	if c.opts.Failure.DropBeforeAudio && !c.ended {
		c.ended = true
		c.out.push(outItem{due: c.lastDue, close: true})
		return
	}
	var pcm []int16
	if c.opts.Synth != nil {
		pcm = c.opts.Synth(text)
	} else {
		pcm = media.Tone(c.opts.ToneHz, c.opts.PerChar*time.Duration(utf8.RuneCountInString(text)), 0.3)
	}
	chars := strings.Split(text, "")
	total := time.Duration(len(pcm)) * time.Second / media.SampleRate
	per := total / time.Duration(len(chars))
	chunk := int(int64(c.opts.ChunkDuration) * media.SampleRate / int64(time.Second))
	next := 0 // first character not yet aligned
	for off := 0; off < len(pcm); off += chunk {
		end := min(off+chunk, len(pcm))
		from := time.Duration(off) * time.Second / media.SampleRate
		to := time.Duration(end) * time.Second / media.SampleRate
		var a elAlignment
		for ; next < len(chars) && time.Duration(next)*per < to; next++ {
			a.Chars = append(a.Chars, chars[next])
			a.CharStartTimesMs = append(a.CharStartTimesMs, int((time.Duration(next)*per-from)/time.Millisecond))
			a.CharsDurationsMs = append(a.CharsDurationsMs, int(per/time.Millisecond))
		}
		msg := map[string]any{
			"audio":   base64.StdEncoding.EncodeToString(media.PCMU.Encode(nil, pcm[off:end])),
			"isFinal": nil, "alignment": a, "normalizedAlignment": a,
		}
		c.send(msg, off == 0)
		c.sess.mu.Lock()
		c.sess.samples += end - off
		c.sess.mu.Unlock()
		c.chunks++
		if n := c.opts.Failure.DropAfterChunks; n > 0 && c.chunks >= n {
			c.ended = true
			c.out.push(outItem{due: c.lastDue, close: true}) // no close frame: a dropped connection
			return
		}
	}
}
