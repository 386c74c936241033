package elevenlabs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/internal/textutil"
	"github.com/voxbridge/voxbridge/media"
)

const writeTimeout = 5 * time.Second

// command is one call of WriteText or Flush, queued for the run goroutine.
type command struct {
	flush bool
	text  string
}

// stream is one synthesis session. ElevenLabs' single-stream websocket
// only says isFinal after the end-of-stream message, so Flush ends the
// current connection (flush, then {"text":""}) and the next WriteText opens
// a new one; to the caller it is one stream whose audio and word offsets
// run on. The run goroutine owns the connections and the writes; one
// reader goroutine per connection turns messages into chunks.
type stream struct {
	tts *TTS
	url string

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	pending []command
	closed  bool // Close was called or the stream ended

	notify chan struct{}
	out    chan agent.TTSChunk
	done   chan struct{}

	// samples is the audio delivered so far, for word offsets. Only the
	// current segment's reader writes it; run starts the next reader after
	// the last one finished.
	samples int64
}

// segment is one websocket connection of the stream.
type segment struct {
	conn  *websocket.Conn
	texts []string // sent on this connection, for a replay (run-only)
	// replay marks a segment that already replays a failed one's text, so
	// a failure is retried once.
	replay   bool
	eosSent  atomic.Bool // the reader extends its deadline once set
	gotAudio atomic.Bool // set by the reader: replaying would repeat speech
	done     chan error  // the reader's result, received by wait
	finished bool        // run-only: done has been received into result
	result   error
	words    wordBuilder // reader-only
}

var _ agent.TTSStream = (*stream)(nil)

func newStream(parent context.Context, t *TTS, url string) *stream {
	ctx, cancel := context.WithCancel(parent)
	return &stream{
		tts:    t,
		url:    url,
		ctx:    ctx,
		cancel: cancel,
		notify: make(chan struct{}, 1),
		out:    make(chan agent.TTSChunk, 16),
		done:   make(chan struct{}),
	}
}

// WriteText queues text to speak; chunks are joined as they are, so LLM
// deltas can be passed straight through.
func (s *stream) WriteText(text string) error {
	if text == "" {
		return nil // an empty text message would end the stream
	}
	return s.push(command{text: text})
}

// Flush has everything written so far synthesized; a chunk with Final set
// follows its audio.
func (s *stream) Flush() error { return s.push(command{flush: true}) }

func (s *stream) push(c command) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return &Error{Op: "send", Message: "stream closed"}
	}
	s.pending = append(s.pending, c)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// take returns the queued commands, consecutive texts joined.
func (s *stream) take() []command {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []command
	for _, c := range s.pending {
		if n := len(out); n > 0 && !c.flush && !out[n-1].flush {
			out[n-1].text += c.text
			continue
		}
		out = append(out, c)
	}
	s.pending = nil
	return out
}

// Audio delivers audio chunks in order; closed when the stream ends, after
// a chunk with Err if it failed.
func (s *stream) Audio() <-chan agent.TTSChunk { return s.out }

// Close stops synthesis at once, dropping audio not yet delivered (what a
// barge-in needs), and waits for the stream's goroutines.
func (s *stream) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	<-s.done
	return nil
}

func (s *stream) dial() (*websocket.Conn, error) {
	h := http.Header{}
	h.Set("xi-api-key", s.tts.cfg.APIKey)
	conn, resp, err := s.tts.dialer.DialContext(s.ctx, s.url, h)
	if err != nil {
		return nil, handshakeError(err, resp, s.tts.cfg.APIKey)
	}
	return conn, nil
}

type initMessage struct {
	Text             string         `json:"text"`
	VoiceSettings    *VoiceSettings `json:"voice_settings,omitempty"`
	GenerationConfig struct {
		ChunkLengthSchedule []int `json:"chunk_length_schedule,omitempty"`
	} `json:"generation_config"`
}

type textMessage struct {
	Text                 string `json:"text"`
	TryTriggerGeneration bool   `json:"try_trigger_generation,omitempty"`
	Flush                bool   `json:"flush,omitempty"`
}

// connect dials a new connection, sends its first message and starts its
// reader.
func (s *stream) connect() (*segment, error) {
	conn, err := s.dial()
	if err != nil {
		return nil, err
	}
	return s.open(conn)
}

// open sends the first message on conn and starts its reader.
func (s *stream) open(conn *websocket.Conn) (*segment, error) {
	seg := &segment{conn: conn, done: make(chan error, 1)}
	m := initMessage{Text: " ", VoiceSettings: s.tts.cfg.VoiceSettings}
	m.GenerationConfig.ChunkLengthSchedule = s.tts.cfg.ChunkLengthSchedule
	if err := s.write(seg, m); err != nil {
		conn.Close()
		return nil, err
	}
	go func() { seg.done <- s.readLoop(seg) }()
	return seg, nil
}

// wait returns the result of seg's reader, waiting for it once.
func (s *stream) wait(seg *segment) error {
	if !seg.finished {
		seg.result, seg.finished = <-seg.done, true
	}
	return seg.result
}

func (s *stream) write(seg *segment, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return &Error{Op: "send", Message: err.Error()}
	}
	seg.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := seg.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return &Error{Op: "send", Message: textutil.Clean(err.Error(), s.tts.cfg.APIKey), replayable: true}
	}
	return nil
}

// emit delivers c unless the stream is being torn down.
func (s *stream) emit(c agent.TTSChunk) bool {
	select {
	case s.out <- c:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// fail reports err as the stream's last chunk; the stream's owner logs
// it, with the call it belongs to.
func (s *stream) fail(err error) {
	if s.ctx.Err() != nil {
		return
	}
	s.emit(agent.TTSChunk{Err: err})
}

// hangUp ends seg's connection and waits for its reader. It sends a close
// frame, not the end of input, which would have the rest synthesized.
func (s *stream) hangUp(seg *segment) {
	dl := time.Now().Add(250 * time.Millisecond)
	seg.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), dl)
	seg.conn.Close()
	s.wait(seg)
}

func (s *stream) run(conn *websocket.Conn) {
	defer close(s.done)
	defer func() {
		// Writes fail from here on, before Audio's close says so.
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.out)
	}()
	defer s.cancel()

	seg, err := s.open(conn)
	if err != nil {
		s.fail(err)
		return
	}
	defer func() {
		if seg != nil {
			s.hangUp(seg)
		}
	}()
	for {
		var segDone <-chan error
		if seg != nil && !seg.finished {
			segDone = seg.done
		}
		select {
		case <-s.ctx.Done():
			return
		case err := <-segDone:
			seg.result, seg.finished = err, true
			if err == nil { // isFinal came and its chunk went out
				seg.conn.Close()
				seg = nil
				continue
			}
			if len(seg.texts) == 0 && replayable(err) {
				// ElevenLabs drops idle connections; reopen when text comes.
				s.tts.log.Debug("elevenlabs idle connection closed", "reason", err)
				seg.conn.Close()
				seg = nil
				continue
			}
			if seg, err = s.replace(seg, err); err != nil {
				s.fail(err)
				return
			}
		case <-s.notify:
			for _, c := range s.take() {
				if err := s.do(&seg, c); err != nil {
					s.fail(err)
					return
				}
			}
		}
	}
}

// replace ends the failed segment seg and, when that cannot repeat or lose
// speech (no audio came on it, and it is not itself a replay), opens a new
// connection that resends its text. Otherwise it returns the failure.
func (s *stream) replace(seg *segment, cause error) (*segment, error) {
	seg.conn.Close()
	if err := s.wait(seg); err != nil {
		cause = err // the reader knows why better than a failed write
	}
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	if seg.gotAudio.Load() || seg.replay || !replayable(cause) {
		return nil, cause
	}
	s.tts.log.Debug("elevenlabs connection failed before audio; resending its text", "reason", cause)
	n, err := s.connect()
	if err != nil {
		return nil, err
	}
	n.replay = len(seg.texts) > 0
	for _, t := range seg.texts {
		if err := s.sendText(n, t); err != nil {
			n.conn.Close()
			s.wait(n)
			return nil, err
		}
	}
	return n, nil
}

func (s *stream) sendText(seg *segment, text string) error {
	seg.texts = append(seg.texts, text)
	return s.write(seg, textMessage{Text: text, TryTriggerGeneration: s.tts.cfg.TryTriggerGeneration})
}

// do carries out one command on the current segment *cur, opening or
// replacing it as needed.
func (s *stream) do(cur **segment, c command) error {
	if c.flush {
		if *cur == nil || len((*cur).texts) == 0 {
			// Nothing to synthesize: the caller still gets its Final.
			if !s.emit(agent.TTSChunk{Final: true}) {
				return s.ctx.Err()
			}
			return nil
		}
		return s.finish(cur)
	}
	if *cur == nil {
		seg, err := s.connect()
		if err != nil {
			return err
		}
		*cur = seg
	}
	err := s.sendText(*cur, c.text)
	if err == nil {
		return nil
	}
	// The text is in seg.texts: a replacement resends it.
	seg, err := s.replace(*cur, err)
	*cur = seg
	return err
}

// finish flushes the current segment, ends its input and waits for the
// isFinal that follows the last audio, replacing a connection that fails
// before any audio.
func (s *stream) finish(cur **segment) error {
	for {
		seg := *cur
		err := s.endInput(seg)
		if err == nil {
			select {
			case err = <-seg.done:
				seg.result, seg.finished = err, true
			case <-s.ctx.Done():
				return s.ctx.Err() // run's teardown hangs up *cur
			}
			if err == nil {
				seg.conn.Close()
				*cur = nil
				return nil
			}
		}
		n, err := s.replace(seg, err)
		*cur = n
		if err != nil {
			return err
		}
	}
}

func (s *stream) endInput(seg *segment) error {
	if err := s.write(seg, textMessage{Text: " ", Flush: true}); err != nil {
		return err
	}
	// Before the write: the answer may come before the next statement.
	seg.eosSent.Store(true)
	seg.conn.SetReadDeadline(time.Now().Add(s.tts.cfg.ResponseTimeout))
	return s.write(seg, textMessage{Text: ""})
}

// serverMsg is what ElevenLabs sends: audio with timings, the final
// marker, or an error.
type serverMsg struct {
	Audio               *string    `json:"audio"`
	IsFinal             *bool      `json:"isFinal"`
	Alignment           *alignment `json:"alignment"`
	NormalizedAlignment *alignment `json:"normalizedAlignment"`
	Error               string     `json:"error"`
	Message             string     `json:"message"`
}

// alignment gives each character's start and duration in ms, relative to
// the audio of the message it comes with. The single-stream API spells the
// durations charsDurationsMs, the multi-stream one charDurationsMs.
type alignment struct {
	Chars            []string  `json:"chars"`
	CharStartTimesMs []float64 `json:"charStartTimesMs"`
	CharsDurationsMs []float64 `json:"charsDurationsMs"`
	CharDurationsMs  []float64 `json:"charDurationsMs"`
}

func (s *stream) readLoop(seg *segment) error {
	key := s.tts.cfg.APIKey
	for {
		typ, data, err := seg.conn.ReadMessage()
		if err != nil {
			return s.readError(seg, err)
		}
		if seg.eosSent.Load() {
			seg.conn.SetReadDeadline(time.Now().Add(s.tts.cfg.ResponseTimeout))
		}
		if typ != websocket.TextMessage {
			return &Error{Op: "stream", Message: fmt.Sprintf("unexpected binary message of %d bytes", len(data))}
		}
		var m serverMsg
		if err := json.Unmarshal(data, &m); err != nil {
			return &Error{Op: "stream", Message: textutil.Clean(fmt.Sprintf("bad message %.200q: %v", data, err), key)}
		}
		if m.Error != "" || (m.Message != "" && m.Audio == nil && m.IsFinal == nil) {
			msg := m.Message
			if msg == "" {
				msg = m.Error
			}
			return &Error{Op: "stream", Code: m.Error, Message: textutil.Clean(msg, key), replayable: m.Error == "input_timeout_exceeded"}
		}
		chunk, err := s.decode(seg, &m)
		if err != nil {
			return err
		}
		final := m.IsFinal != nil && *m.IsFinal
		if final {
			chunk.Words = append(chunk.Words, seg.words.flush()...)
			chunk.Final = true
		}
		if (len(chunk.PCM) > 0 || chunk.Final || len(chunk.Words) > 0) && !s.emit(chunk) {
			return s.ctx.Err()
		}
		if final {
			return nil
		}
	}
}

// decode turns one message's audio and timings into a chunk.
func (s *stream) decode(seg *segment, m *serverMsg) (agent.TTSChunk, error) {
	var c agent.TTSChunk
	if m.Audio != nil && *m.Audio != "" {
		ulaw, err := base64.StdEncoding.DecodeString(*m.Audio)
		if err != nil {
			return c, &Error{Op: "stream", Message: fmt.Sprintf("audio is not base64: %v", err)}
		}
		c.PCM = media.PCMU.Decode(nil, ulaw)
		seg.gotAudio.Store(len(c.PCM) > 0 || seg.gotAudio.Load())
	}
	a := m.Alignment
	if a == nil || len(a.Chars) == 0 {
		a = m.NormalizedAlignment
	}
	base := time.Duration(s.samples) * time.Second / media.SampleRate
	if a != nil && len(a.Chars) > 0 {
		words, err := seg.words.add(a, base)
		if err != nil {
			return c, err
		}
		c.Words = words
	}
	s.samples += int64(len(c.PCM))
	return c, nil
}

func (s *stream) readError(seg *segment, err error) error {
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	key := s.tts.cfg.APIKey
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure: // 1006 is gorilla's name for EOF
		msg := ce.Text
		if msg == "" {
			msg = "closed by ElevenLabs"
		}
		e := &Error{Op: "stream", CloseCode: ce.Code, Message: textutil.Clean(msg, key), replayable: true}
		if ce.Code == websocket.CloseNormalClosure && seg.eosSent.Load() {
			e.Message = "closed before isFinal"
		}
		return e
	case errors.As(err, &ne) && ne.Timeout() && seg.eosSent.Load():
		return &Error{Op: "stream", Message: fmt.Sprintf("no reply for %s after flush", s.tts.cfg.ResponseTimeout)}
	}
	return &Error{Op: "stream", Message: textutil.Clean("connection lost: "+err.Error(), key), replayable: true}
}

// wordBuilder groups aligned characters into words separated by
// whitespace. A word is reported once complete (its end known), with the
// chunk in which it completes; its times are offsets into the stream.
type wordBuilder struct {
	word       strings.Builder
	start, end time.Duration
	open       bool
}

func (w *wordBuilder) add(a *alignment, base time.Duration) ([]agent.WordTiming, error) {
	durs := a.CharsDurationsMs
	if durs == nil {
		durs = a.CharDurationsMs
	}
	if len(a.CharStartTimesMs) != len(a.Chars) || len(durs) != len(a.Chars) {
		return nil, &Error{Op: "stream", Message: fmt.Sprintf("alignment has %d chars, %d start times and %d durations",
			len(a.Chars), len(a.CharStartTimesMs), len(durs))}
	}
	var out []agent.WordTiming
	for i, ch := range a.Chars {
		st, d := a.CharStartTimesMs[i], durs[i]
		if math.IsNaN(st) || math.IsNaN(d) || st < 0 || d < 0 || st > 1e9 || d > 1e9 {
			return nil, &Error{Op: "stream", Message: fmt.Sprintf("alignment time out of range at char %d", i)}
		}
		start := base + time.Duration(st*float64(time.Millisecond))
		if strings.TrimSpace(ch) == "" || !hasPrintable(ch) {
			if w.open {
				out = append(out, w.take())
			}
			continue
		}
		if !w.open {
			w.open, w.start = true, start
			w.word.Reset()
		}
		w.word.WriteString(ch)
		w.end = start + time.Duration(d*float64(time.Millisecond))
	}
	return out, nil
}

func hasPrintable(s string) bool {
	for _, r := range s {
		if !unicode.IsSpace(r) && unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

func (w *wordBuilder) take() agent.WordTiming {
	w.open = false
	return agent.WordTiming{Word: w.word.String(), Start: w.start, End: w.end}
}

// flush returns the word still open at the end of the audio.
func (w *wordBuilder) flush() []agent.WordTiming {
	if !w.open {
		return nil
	}
	return []agent.WordTiming{w.take()}
}
