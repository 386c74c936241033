package fake

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/media"
)

// DeepgramOptions script a fake Deepgram live transcription server.
//
// By default the fake listens to the audio it receives: a run of frames
// louder than Threshold is speech (SpeechStarted, interim results revealing
// the utterance's words), and silence after it ends the utterance the way
// Deepgram does (a final result with speech_final after the endpointing
// silence the client asked for, then UtteranceEnd after utterance_end_ms).
// Each detected utterance is given the next entry of Utterances as its
// transcript. With Script set, energy is ignored and the scripted events
// are sent instead. Times are offsets into the received audio, so a script
// plays the same however fast the test machine is.
type DeepgramOptions struct {
	// APIKey, when set, is required as "Authorization: Token <key>";
	// anything else is refused with 401, echoing what was presented.
	APIKey string
	// Utterances are the transcripts of successive detected utterances. An
	// utterance beyond the list is transcribed as "".
	Utterances []string
	// Script replaces energy detection with events at audio offsets.
	Script []DeepgramEvent
	// Threshold is the RMS (0..32768) above which a 20 ms frame is speech;
	// 0 means 500.
	Threshold float64
	// MinSpeech is how long loud audio must last to start an utterance;
	// 0 means 60 ms.
	MinSpeech time.Duration
	// InterimEvery is the audio time between interim results while speech
	// goes on; 0 means 200 ms.
	InterimEvery time.Duration
	// Latency delays every message the fake sends (wall clock), e.g. to
	// make the final arrive 200 ms after the endpoint.
	Latency time.Duration
	// IdleTimeout, when set, closes a stream that receives neither audio nor
	// a text message for this long, with Deepgram's NET-0001 close (1011).
	IdleTimeout time.Duration
	// Failure makes connections fail.
	Failure DeepgramFailure
}

// DeepgramFailure is how the fake misbehaves. The zero value is a healthy
// server.
type DeepgramFailure struct {
	// Status refuses the websocket upgrade with this HTTP status and a
	// Deepgram-style JSON body (e.g. 401, 429, 500).
	Status int
	// DropAfter drops the TCP connection, without a close frame, once this
	// much audio has arrived.
	DropAfter time.Duration
	// CloseAfter closes the stream with CloseCode and CloseReason once this
	// much audio has arrived (e.g. 1011 "NET-0000: ...").
	CloseAfter  time.Duration
	CloseCode   int
	CloseReason string
	// Hang accepts the stream and reads everything but never answers nor
	// closes.
	Hang bool
	// Connections limits the failure to the first N connections (0: all),
	// so a client's retry can succeed.
	Connections int
}

// DeepgramEventKind says what a scripted event sends.
type DeepgramEventKind int

const (
	DeepgramSpeechStarted DeepgramEventKind = iota + 1 // SpeechStarted
	DeepgramInterim                                    // Results, is_final false
	DeepgramFinal                                      // Results, is_final true
	DeepgramSpeechFinal                                // Results, is_final and speech_final true
	DeepgramUtteranceEnd                               // UtteranceEnd
	DeepgramError                                      // an Error message (Text is its description), then close 1011
)

// DeepgramEvent is one scripted message, sent once At of audio has arrived.
type DeepgramEvent struct {
	At   time.Duration
	Kind DeepgramEventKind
	Text string
}

// DeepgramClientMessage is a text message the fake received, with the audio
// offset it arrived at.
type DeepgramClientMessage struct {
	Type string        // "KeepAlive", "Finalize", "CloseStream", or what the client sent
	At   time.Duration // audio received before it
}

// DeepgramSession records one accepted stream.
type DeepgramSession struct {
	Query         url.Values
	Authorization string

	mu       sync.Mutex
	audio    []int16
	messages []DeepgramClientMessage
	sent     []string
	done     chan struct{}
}

// Audio returns the caller audio received so far, decoded to PCM.
func (s *DeepgramSession) Audio() []int16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.audio)
}

// Messages returns the text messages received so far.
func (s *DeepgramSession) Messages() []DeepgramClientMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.messages)
}

// Count returns how many text messages of type typ arrived.
func (s *DeepgramSession) Count(typ string) int {
	n := 0
	for _, m := range s.Messages() {
		if m.Type == typ {
			n++
		}
	}
	return n
}

// Sent returns the JSON messages the fake queued to the client, in order.
func (s *DeepgramSession) Sent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// Done is closed when the connection has ended.
func (s *DeepgramSession) Done() <-chan struct{} { return s.done }

// Deepgram is a fake of Deepgram's live transcription websocket
// (/v1/listen) on a loopback HTTP server.
type Deepgram struct {
	wsFake[DeepgramOptions, *DeepgramSession]
}

// NewDeepgram starts a fake Deepgram server, closed at the end of the test.
func NewDeepgram(tb TB, opts DeepgramOptions) *Deepgram {
	tb.Helper()
	d := &Deepgram{wsFake[DeepgramOptions, *DeepgramSession]{name: "deepgram", opts: opts}}
	d.host = newSocketHost(tb, d.serve)
	return d
}

// Sessions returns the accepted connections so far, oldest first.
func (d *Deepgram) Sessions() []*DeepgramSession { return d.sessionList() }

// WaitSession waits up to timeout for the n-th accepted connection
// (0-based), failing the test if it does not come.
func (d *Deepgram) WaitSession(tb TB, n int, timeout time.Duration) *DeepgramSession {
	tb.Helper()
	return d.waitSession(tb, n, timeout)
}

// SetFailure changes how new connections fail; Failure.Connections counts
// from now.
func (d *Deepgram) SetFailure(f DeepgramFailure) {
	d.update(func(o *DeepgramOptions) { o.Failure = f })
}

func dgRefuse(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("dg-error", strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return -1
		}
		return r
	}, msg))
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"err_code": code, "err_msg": msg, "request_id": uuid.NewString()})
}

func (d *Deepgram) serve(w http.ResponseWriter, r *http.Request) {
	opts, n := d.attempt()
	if f := opts.Failure; f.Connections > 0 && n > f.Connections {
		opts.Failure = DeepgramFailure{}
	}

	if !strings.HasSuffix(r.URL.Path, "/v1/listen") {
		http.NotFound(w, r)
		return
	}
	if auth := r.Header.Get("Authorization"); opts.APIKey != "" && auth != "Token "+opts.APIKey {
		// Echo what was presented, as some gateways do, so tests can check
		// that clients keep keys out of their errors.
		dgRefuse(w, http.StatusUnauthorized, "INVALID_AUTH", fmt.Sprintf("Invalid credentials (got %q).", auth))
		return
	}
	if opts.Failure.Status != 0 {
		dgRefuse(w, opts.Failure.Status, "FAKE_FAILURE", http.StatusText(opts.Failure.Status))
		return
	}
	q := r.URL.Query()
	if enc := q.Get("encoding"); enc != "mulaw" {
		dgRefuse(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("fake supports encoding=mulaw only, got %q", enc))
		return
	}
	if sr := q.Get("sample_rate"); sr != "8000" {
		dgRefuse(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("fake supports sample_rate=8000 only, got %q", sr))
		return
	}
	params, err := dgParseParams(q)
	if err != nil {
		dgRefuse(w, http.StatusBadRequest, "Bad Request", err.Error())
		return
	}
	conn, ok := d.host.upgrade(w, r)
	if !ok {
		return
	}
	defer d.host.release(conn)
	sess := &DeepgramSession{Query: q, Authorization: r.Header.Get("Authorization"), done: make(chan struct{})}
	defer close(sess.done)
	d.addSession(sess)

	c := &dgConn{opts: opts, params: params, sess: sess, conn: conn, out: newOutQueue(conn), requestID: uuid.NewString()}
	defer c.out.shutdown()
	c.serve()
}

// dgParams are the listen parameters the fake honours.
type dgParams struct {
	interim      bool
	vadEvents    bool
	endpointing  time.Duration // <0: disabled
	utteranceEnd time.Duration // 0: off
}

func dgParseParams(q url.Values) (dgParams, error) {
	p := dgParams{endpointing: 10 * time.Millisecond} // Deepgram's default
	p.interim = q.Get("interim_results") == "true"
	p.vadEvents = q.Get("vad_events") == "true"
	if v := q.Get("endpointing"); v != "" {
		if v == "false" {
			p.endpointing = -1
		} else {
			ms, err := strconv.Atoi(v)
			if err != nil || ms < 0 {
				return p, fmt.Errorf("endpointing=%q: want milliseconds or false", v)
			}
			p.endpointing = time.Duration(ms) * time.Millisecond
		}
	}
	if v := q.Get("utterance_end_ms"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 1000 {
			return p, fmt.Errorf("utterance_end_ms=%q: want at least 1000", v)
		}
		if !p.interim {
			return p, errors.New("utterance_end_ms needs interim_results=true")
		}
		p.utteranceEnd = time.Duration(ms) * time.Millisecond
	}
	return p, nil
}

// dgConn is one stream's state; only the handler goroutine touches it.
type dgConn struct {
	opts      DeepgramOptions
	params    dgParams
	sess      *DeepgramSession
	conn      *websocket.Conn
	out       *outQueue
	requestID string
	ended     bool // a close or drop has been queued: ignore further input

	samples int     // audio received, in samples
	carry   []int16 // partial frame awaiting the rest

	// Energy detection.
	speaking   bool
	loudRun    time.Duration
	start      time.Duration // current utterance's first loud frame
	lastLoud   time.Duration // end of its last loud frame
	text       string
	next       int           // index into Utterances
	lastSent   time.Duration // audio offset of the last result, for silence keepalives
	lastResult time.Duration // last interim
	ueDue      bool          // an UtteranceEnd is owed after lastLoud
	// Script playback.
	script      []DeepgramEvent
	lastInterim string // scripted words not yet finalized, for Finalize
}

func (c *dgConn) now() time.Duration {
	return time.Duration(c.samples) * time.Second / media.SampleRate
}

func (c *dgConn) serve() {
	c.script = slices.Clone(c.opts.Script)
	slices.SortStableFunc(c.script, func(a, b DeepgramEvent) int { return int(a.At - b.At) })
	if c.opts.Threshold == 0 {
		c.opts.Threshold = 500
	}
	if c.opts.MinSpeech == 0 {
		c.opts.MinSpeech = 60 * time.Millisecond
	}
	if c.opts.InterimEvery == 0 {
		c.opts.InterimEvery = 200 * time.Millisecond
	}
	c.conn.SetCloseHandler(func(int, string) error { return nil }) // the client hung up; just stop
	for {
		if c.opts.IdleTimeout > 0 && !c.ended {
			c.conn.SetReadDeadline(time.Now().Add(c.opts.IdleTimeout))
		}
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.ended {
				c.closeWith(websocket.CloseInternalServerErr, "NET-0001: Deepgram did not receive audio data or a text message within the timeout window.")
				c.waitOut()
			}
			return
		}
		if c.ended {
			continue
		}
		if typ == websocket.BinaryMessage {
			c.onAudio(data)
			continue
		}
		c.onText(data)
	}
}

// waitOut lets the queue send what is due (a close frame) before the
// handler returns.
func (c *dgConn) waitOut() {
	select {
	case <-c.out.done:
	case <-time.After(2 * time.Second):
	}
}

func (c *dgConn) send(v any) {
	if c.opts.Failure.Hang || c.ended {
		return
	}
	b, _ := json.Marshal(v)
	c.sess.mu.Lock()
	c.sess.sent = append(c.sess.sent, string(b))
	c.sess.mu.Unlock()
	c.out.push(outItem{due: time.Now().Add(c.opts.Latency), data: b})
	c.lastSent = c.now()
}

func (c *dgConn) closeWith(code int, text string) {
	if c.opts.Failure.Hang || c.ended {
		return
	}
	c.ended = true
	c.out.push(outItem{due: time.Now().Add(c.opts.Latency), close: true, closeCode: code, closeText: text})
}

func (c *dgConn) onText(data []byte) {
	var m struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &m); err != nil || m.Type == "" {
		m.Type = "invalid: " + string(data)
	}
	c.sess.mu.Lock()
	c.sess.messages = append(c.sess.messages, DeepgramClientMessage{Type: m.Type, At: c.now()})
	c.sess.mu.Unlock()
	switch m.Type {
	case "Finalize":
		c.finalize(true)
	case "CloseStream":
		c.finalize(false)
		c.send(map[string]any{
			"type": "Metadata", "transaction_key": "deprecated", "request_id": c.requestID,
			"sha256": "", "created": time.Now().UTC().Format(time.RFC3339), "duration": c.now().Seconds(), "channels": 1,
		})
		c.closeWith(websocket.CloseNormalClosure, "")
	}
}

// finalize answers Finalize (and CloseStream): the words heard so far
// become final at once.
func (c *dgConn) finalize(fromFinalize bool) {
	text := ""
	switch {
	case c.opts.Script != nil:
		text, c.lastInterim = c.lastInterim, ""
	case c.speaking:
		text = c.text
		c.speaking, c.ueDue = false, c.params.utteranceEnd > 0
	}
	if text == "" && !fromFinalize {
		return
	}
	c.sendResults(text, true, false, fromFinalize, c.start, c.now())
}

func (c *dgConn) onAudio(data []byte) {
	pcm := media.PCMU.Decode(nil, data)
	c.sess.mu.Lock()
	c.sess.audio = append(c.sess.audio, pcm...)
	c.sess.mu.Unlock()
	pcm = append(c.carry, pcm...)
	for len(pcm) >= media.FrameSamples {
		c.onFrame(pcm[:media.FrameSamples])
		pcm = pcm[media.FrameSamples:]
		if c.ended {
			return
		}
	}
	c.carry = slices.Clone(pcm)
}

func (c *dgConn) onFrame(f []int16) {
	c.samples += len(f)
	end := c.now()
	if fl := c.opts.Failure; fl.DropAfter > 0 && end >= fl.DropAfter {
		c.ended = true
		c.out.push(outItem{close: true}) // closeCode 0: drop without a close frame
		return
	}
	if fl := c.opts.Failure; fl.CloseAfter > 0 && end >= fl.CloseAfter {
		c.closeWith(fl.CloseCode, fl.CloseReason)
		return
	}
	if c.opts.Script != nil {
		c.playScript(end)
		c.silenceResult(end)
		return
	}
	loud := media.RMS(f) >= c.opts.Threshold
	switch {
	case loud && !c.speaking:
		c.loudRun += media.FrameDuration
		if c.loudRun >= c.opts.MinSpeech {
			c.speaking, c.ueDue = true, false
			c.start = end - c.loudRun
			c.lastLoud, c.lastResult = end, end
			c.text = ""
			if c.next < len(c.opts.Utterances) {
				c.text = c.opts.Utterances[c.next]
			}
			c.next++
			if c.params.vadEvents {
				c.send(map[string]any{"type": "SpeechStarted", "channel": []int{0}, "timestamp": c.start.Seconds()})
			}
		}
	case loud:
		c.lastLoud = end
	case !c.speaking:
		c.loudRun = 0
	}
	if c.speaking {
		silence := end - c.lastLoud
		switch {
		case c.params.endpointing >= 0 && silence >= max(c.params.endpointing, media.FrameDuration):
			c.speaking, c.loudRun, c.ueDue = false, 0, c.params.utteranceEnd > 0
			c.sendResults(c.text, true, true, false, c.start, c.lastLoud)
		case c.params.endpointing < 0 && silence >= 500*time.Millisecond:
			c.speaking, c.loudRun, c.ueDue = false, 0, c.params.utteranceEnd > 0
			c.sendResults(c.text, true, false, false, c.start, c.lastLoud)
		case c.params.interim && end-c.lastResult >= c.opts.InterimEvery:
			c.lastResult = end
			c.sendResults(dgPrefix(c.text, end-c.start), false, false, false, c.start, end)
		}
		return
	}
	if c.ueDue && end-c.lastLoud >= c.params.utteranceEnd {
		c.ueDue = false
		c.send(map[string]any{"type": "UtteranceEnd", "channel": []int{0, 1}, "last_word_end": c.lastLoud.Seconds()})
		return
	}
	c.silenceResult(end)
}

// silenceResult keeps answering through silence with empty finals, as
// Deepgram does (clients use the answers to tell a live server from a hung
// one).
func (c *dgConn) silenceResult(end time.Duration) {
	if end-c.lastSent >= time.Second && !c.ended {
		c.sendResults("", true, false, false, end-time.Second, end)
	}
}

// dgPrefix reveals an utterance's words as speech goes on: one word per
// 250 ms, never the whole utterance before it ends.
func dgPrefix(text string, spoken time.Duration) string {
	words := strings.Fields(text)
	n := min(1+int(spoken/(250*time.Millisecond)), len(words)-1)
	if n <= 0 {
		return ""
	}
	return strings.Join(words[:n], " ")
}

func (c *dgConn) playScript(now time.Duration) {
	for len(c.script) > 0 && c.script[0].At <= now {
		ev := c.script[0]
		c.script = c.script[1:]
		switch ev.Kind {
		case DeepgramSpeechStarted:
			c.send(map[string]any{"type": "SpeechStarted", "channel": []int{0}, "timestamp": ev.At.Seconds()})
		case DeepgramInterim:
			c.lastInterim = ev.Text
			c.sendResults(ev.Text, false, false, false, ev.At, now)
		case DeepgramFinal, DeepgramSpeechFinal:
			c.lastInterim = ""
			c.sendResults(ev.Text, true, ev.Kind == DeepgramSpeechFinal, false, ev.At, now)
		case DeepgramUtteranceEnd:
			c.send(map[string]any{"type": "UtteranceEnd", "channel": []int{0, 1}, "last_word_end": ev.At.Seconds()})
		case DeepgramError:
			c.send(map[string]any{"type": "Error", "description": ev.Text, "message": ev.Text, "variant": "fake"})
			c.closeWith(websocket.CloseInternalServerErr, "NET-0000: "+ev.Text)
			return
		}
	}
}

// sendResults sends a Results message shaped like Deepgram's, words spread
// evenly over [from, to].
func (c *dgConn) sendResults(text string, isFinal, speechFinal, fromFinalize bool, from, to time.Duration) {
	words := []map[string]any{}
	fields := strings.Fields(text)
	if to < from {
		to = from
	}
	step := (to - from) / time.Duration(max(len(fields), 1))
	for i, w := range fields {
		s := from + time.Duration(i)*step
		words = append(words, map[string]any{
			"word": strings.ToLower(strings.Trim(w, ".,?!;:")), "punctuated_word": w,
			"start": s.Seconds(), "end": (s + step).Seconds(), "confidence": 0.98,
		})
	}
	confidence := 0.0
	if text != "" {
		confidence = 0.98
	}
	c.send(map[string]any{
		"type": "Results", "channel_index": []int{0, 1},
		"start": from.Seconds(), "duration": (to - from).Seconds(),
		"is_final": isFinal, "speech_final": speechFinal, "from_finalize": fromFinalize,
		"channel": map[string]any{"alternatives": []map[string]any{{
			"transcript": text, "confidence": confidence, "words": words,
		}}},
		"metadata": map[string]any{
			"request_id": c.requestID, "model_uuid": "00000000-0000-0000-0000-000000000000",
			"model_info": map[string]any{"name": "fake", "version": "1", "arch": "fake"},
		},
	})
}
