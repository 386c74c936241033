package fake

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/media"
)

// RealtimeScript scripts an OpenAI Realtime server (GET {base}/realtime,
// websocket). It serves speech-to-speech sessions (?model=...) and
// transcription sessions (?intent=transcription), GA or beta (chosen by the
// client's OpenAI-Beta header), with µ-law audio.
//
// Turn taking is the server VAD's, run on the audio actually received: a
// 20 ms frame louder than RealtimeSpeechRMS is speech; silence for the
// session's silence_duration_ms (default 500 ms) of received audio ends the
// turn. Audio time, not wall time, so tests are deterministic.
type RealtimeScript struct {
	// APIKey, when set, is required as "Authorization: Bearer <key>";
	// a wrong one is refused with 401 and echoed back in the body.
	APIKey string

	// Responses answer each response in order: after a caller turn, on
	// response.create (greeting, after a tool output). Then ResponseFunc;
	// then a failed response naming the unscripted turn.
	Responses    []RealtimeReply
	ResponseFunc func(turn RealtimeTurn) RealtimeReply

	// UserTranscripts transcribe the caller's turns in order; then
	// TranscriptFunc (given the turn's audio); then "".
	UserTranscripts []string
	TranscriptFunc  func(audio []int16) string

	// FirstAudio delays a response's first audio; ChunkGap paces audio
	// deltas (0: as fast as possible, like the API); AudioChunk is the
	// audio per delta (0: 100 ms). TranscriptDelay delays caller
	// transcripts after the turn ends.
	FirstAudio, ChunkGap, AudioChunk, TranscriptDelay time.Duration

	Fault RealtimeFault
}

// RealtimeFault makes the server fail.
type RealtimeFault struct {
	// HandshakeStatus refuses the websocket upgrade with this status.
	HandshakeStatus int
	// HangHandshake never answers the upgrade request.
	HangHandshake bool
	// RejectSession answers every session update with an error event
	// carrying this message; IgnoreSession never answers them.
	RejectSession string
	IgnoreSession bool
	// DropAfter cuts the connection after this many server events
	// (session.created is the first); 0 never.
	DropAfter int
	// ErrorAfterAudio sends an "error" event after this many appended
	// audio chunks; 0 never.
	ErrorAfterAudio int
	ErrorMessage    string
}

// RealtimeReply is one scripted response.
type RealtimeReply struct {
	// Text is the agent's words, sent as transcript deltas with the audio.
	Text string
	// Audio is 8 kHz; nil means a RealtimeToneHz tone, 65 ms per character
	// of Text (none when Text is empty).
	Audio []int16
	// ToolCalls follow the audio; empty IDs get "call_<n>".
	ToolCalls []agent.ToolCall
	// Fail ends the response with status "failed" and this message.
	Fail string
}

// RealtimeTurn is what ResponseFunc knows when a response starts.
type RealtimeTurn struct {
	N              int    // 1 for the first response
	LastUserText   string // the latest caller transcript
	LastToolOutput string // the latest function_call_output, if any
}

// RealtimeToneHz is the pitch of the default response audio.
const RealtimeToneHz = 520

// RealtimeSpeechRMS is the fake VAD's speech threshold (about -30 dBFS).
const RealtimeSpeechRMS = 1000

// RealtimeSession records one connection.
type RealtimeSession struct {
	Query         url.Values
	Beta          bool // the client sent OpenAI-Beta: realtime=v1
	Transcription bool // a transcription session
	Config        RealtimeConfig
	Audio         []int16  // caller audio received, decoded to PCM
	ClientEvents  []string // types of the client events, in order
	ToolOutputs   []RealtimeToolOutput
	Truncations   []RealtimeTruncation
	Commits       int // input_audio_buffer.commit events
	Responses     int // responses started
	Cancelled     int // responses cut short by barge-in or response.cancel
	Closed        bool
}

// RealtimeConfig is the session configuration the client sent, in one
// shape whatever the protocol version.
type RealtimeConfig struct {
	InputFormat, OutputFormat string // "audio/pcmu" (GA) or "g711_ulaw" (beta)
	Voice, Instructions       string
	Tools                     []agent.Tool
	TurnDetection             string // "server_vad", or "" for none
	SilenceMS                 int
	TranscriptionModel        string
	Language                  string
	Updates                   int // session.update events received
}

// RealtimeToolOutput is a function_call_output the client sent.
type RealtimeToolOutput struct{ CallID, Output string }

// RealtimeTruncation is a conversation.item.truncate the client sent.
type RealtimeTruncation struct {
	ItemID     string
	AudioEndMS int64
}

// Realtime is a running fake.
type Realtime struct {
	// URL is the API root for openairt.Config.BaseURL, e.g.
	// "ws://127.0.0.1:41234/v1".
	URL string

	script   RealtimeScript
	srv      *server
	upgrader websocket.Upgrader
	done     chan struct{}
	wg       sync.WaitGroup

	mu        sync.Mutex
	sessions  []*RealtimeSession
	conns     map[*websocket.Conn]bool
	nResp     int // responses answered from the list
	nTurn     int // transcripts answered from the list
	responses int
}

// NewRealtime starts a fake on 127.0.0.1; it stops when the test ends.
func NewRealtime(tb TB, script RealtimeScript) *Realtime {
	tb.Helper()
	f := &Realtime{script: script, done: make(chan struct{}), conns: map[*websocket.Conn]bool{},
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/realtime", f.serve)
	f.srv = newServer(tb, mux)
	f.URL = "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/v1"
	tb.Cleanup(f.Close)
	return f
}

// Close cuts every connection and stops the server. Tests need not call it.
func (f *Realtime) Close() {
	f.mu.Lock()
	select {
	case <-f.done:
		f.mu.Unlock()
		return
	default:
	}
	close(f.done)
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	f.srv.Close()
}

// Sessions returns copies of the sessions seen so far.
func (f *Realtime) Sessions() []RealtimeSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]RealtimeSession, len(f.sessions))
	for i, s := range f.sessions {
		out[i] = *s
		out[i].Audio = append([]int16(nil), s.Audio...)
		out[i].ClientEvents = append([]string(nil), s.ClientEvents...)
		out[i].ToolOutputs = append([]RealtimeToolOutput(nil), s.ToolOutputs...)
		out[i].Truncations = append([]RealtimeTruncation(nil), s.Truncations...)
		out[i].Config.Tools = append([]agent.Tool(nil), s.Config.Tools...)
	}
	return out
}

func (f *Realtime) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	select {
	case <-f.done:
		f.mu.Unlock()
		http.Error(w, "fake closed", http.StatusServiceUnavailable)
		return
	default:
	}
	f.wg.Add(1) // under mu, so never after Close started waiting
	f.mu.Unlock()
	defer f.wg.Done()
	if f.script.APIKey != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || got != f.script.APIKey {
			oaiError(w, http.StatusUnauthorized, "invalid_request_error", "Incorrect API key provided: "+got)
			return
		}
	}
	switch fl := f.script.Fault; {
	case fl.HangHandshake:
		select {
		case <-r.Context().Done():
		case <-f.done:
		}
		return
	case fl.HandshakeStatus != 0:
		oaiError(w, fl.HandshakeStatus, "server_error", http.StatusText(fl.HandshakeStatus))
		return
	}
	q := r.URL.Query()
	sess := &RealtimeSession{Query: q, Beta: r.Header.Get("OpenAI-Beta") == "realtime=v1",
		Transcription: q.Get("intent") == "transcription"}
	if !sess.Transcription && q.Get("model") == "" {
		oaiError(w, http.StatusBadRequest, "invalid_request_error", "missing required parameter: 'model' (or intent=transcription)")
		return
	}
	ws, err := f.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	f.mu.Lock()
	select {
	case <-f.done:
		f.mu.Unlock()
		ws.Close()
		return
	default:
	}
	f.conns[ws] = true
	f.sessions = append(f.sessions, sess)
	f.mu.Unlock()
	c := &rtFakeConn{f: f, ws: ws, sess: sess, silenceMS: 500}
	c.run()
	f.mu.Lock()
	delete(f.conns, ws)
	sess.Closed = true
	f.mu.Unlock()
}

// rtFakeConn is the server side of one session.
type rtFakeConn struct {
	f    *Realtime
	ws   *websocket.Conn
	sess *RealtimeSession

	wmu     sync.Mutex // one writer at a time; guards sent
	sent    int
	dropped bool

	// Reader goroutine state, also read by responses under f.mu.
	silenceMS      int
	createResponse bool
	frame          []int16 // partial 20 ms frame
	inSpeech       bool
	silentFrames   int
	turnID         string  // item id of the caller turn in progress
	speechEnd      int64   // samples received when the last speech frame ended
	buffer         []int16 // uncommitted audio
	samples        int64   // audio received, for audio_start_ms/end_ms
	appends        int
	items          int
	lastUser       string
	lastTool       string
	items2resp     map[string]bool // assistant items, for truncate checks
	resp           *rtResponse     // the response in progress
	respWG         sync.WaitGroup
}

type rtResponse struct {
	id       string
	cancel   chan struct{} // closed to cut the response short
	finished chan struct{} // closed as response.done goes out
	once     sync.Once
	fonce    sync.Once
}

// finish marks the response over; before response.done is sent, so a
// client that answers it with response.create is not refused.
func (r *rtResponse) finish() { r.fonce.Do(func() { close(r.finished) }) }

// active reports whether the response is still being generated.
func (r *rtResponse) active() bool {
	select {
	case <-r.cancel:
		return false
	case <-r.finished:
		return false
	default:
		return true
	}
}

func (r *rtResponse) stop() { r.once.Do(func() { close(r.cancel) }) }

func (c *rtFakeConn) beta() bool { return c.sess.Beta }

// send writes one server event; false once the connection is gone.
func (c *rtFakeConn) send(ev map[string]any) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dropped {
		return false
	}
	c.sent++
	ev["event_id"] = fmt.Sprintf("event_%d", c.sent)
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.ws.WriteJSON(ev); err != nil {
		c.dropped = true
		return false
	}
	if d := c.f.script.Fault.DropAfter; d > 0 && c.sent >= d {
		c.dropped = true
		c.ws.UnderlyingConn().Close() // no close frame: a cut line
		return false
	}
	return true
}

func (c *rtFakeConn) errorEvent(typ, code, msg string) {
	c.send(map[string]any{"type": "error", "error": map[string]any{"type": typ, "code": code, "message": msg, "param": nil}})
}

func (c *rtFakeConn) run() {
	defer c.ws.Close()
	defer c.respWG.Wait()
	defer c.stopResponse(false)
	c.items2resp = map[string]bool{}
	created := "session.created"
	if c.beta() && c.sess.Transcription {
		created = "transcription_session.created"
	}
	if !c.send(map[string]any{"type": created, "session": map[string]any{"id": "sess_fake", "object": "realtime.session"}}) {
		return
	}
	c.ws.SetReadLimit(16 << 20)
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var ev struct {
			Type    string          `json:"type"`
			Audio   string          `json:"audio"`
			Session json.RawMessage `json:"session"`
			Item    struct {
				Type   string `json:"type"`
				CallID string `json:"call_id"`
				Output string `json:"output"`
			} `json:"item"`
			ItemID     string `json:"item_id"`
			AudioEndMS *int64 `json:"audio_end_ms"`
		}
		if err := json.Unmarshal(msg, &ev); err != nil || ev.Type == "" {
			c.errorEvent("invalid_request_error", "invalid_json", "The server could not parse the client event.")
			continue
		}
		c.f.mu.Lock()
		c.sess.ClientEvents = append(c.sess.ClientEvents, ev.Type)
		c.f.mu.Unlock()
		switch ev.Type {
		case "session.update", "transcription_session.update":
			c.sessionUpdate(ev.Type, ev.Session)
		case "input_audio_buffer.append":
			c.appendAudio(ev.Audio)
		case "input_audio_buffer.commit":
			c.f.mu.Lock()
			c.sess.Commits++
			c.f.mu.Unlock()
			if len(c.buffer) == 0 {
				c.errorEvent("invalid_request_error", "input_audio_buffer_commit_empty",
					"Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has 0.00ms of audio.")
				continue
			}
			c.endTurn(false)
		case "input_audio_buffer.clear":
			c.buffer = nil
			c.send(map[string]any{"type": "input_audio_buffer.cleared"})
		case "conversation.item.create":
			if ev.Item.Type != "function_call_output" || ev.Item.CallID == "" {
				c.errorEvent("invalid_request_error", "invalid_value", "fake realtime: only function_call_output items with a call_id are served")
				continue
			}
			c.f.mu.Lock()
			c.sess.ToolOutputs = append(c.sess.ToolOutputs, RealtimeToolOutput{CallID: ev.Item.CallID, Output: ev.Item.Output})
			c.f.mu.Unlock()
			c.lastTool = ev.Item.Output
			c.items++
			c.send(map[string]any{"type": c.itemAdded(), "item": map[string]any{
				"id": fmt.Sprintf("item_out_%d", c.items), "type": "function_call_output", "call_id": ev.Item.CallID, "output": ev.Item.Output}})
		case "response.create":
			if c.sess.Transcription {
				c.errorEvent("invalid_request_error", "invalid_event", "responses are not available in a transcription session")
				continue
			}
			c.startResponse()
		case "response.cancel":
			c.stopResponse(true)
		case "conversation.item.truncate":
			if !c.items2resp[ev.ItemID] || ev.AudioEndMS == nil || *ev.AudioEndMS < 0 {
				c.errorEvent("invalid_request_error", "item_truncate_invalid_item_id", fmt.Sprintf("Item %q is not an assistant audio item or audio_end_ms is missing", ev.ItemID))
				continue
			}
			c.f.mu.Lock()
			c.sess.Truncations = append(c.sess.Truncations, RealtimeTruncation{ItemID: ev.ItemID, AudioEndMS: *ev.AudioEndMS})
			c.f.mu.Unlock()
			c.send(map[string]any{"type": "conversation.item.truncated", "item_id": ev.ItemID, "content_index": 0, "audio_end_ms": *ev.AudioEndMS})
		default:
			c.errorEvent("invalid_request_error", "invalid_event", fmt.Sprintf("Invalid value: '%s'. Supported values are client events of the Realtime API.", ev.Type))
		}
	}
}

func (c *rtFakeConn) itemAdded() string {
	if c.beta() {
		return "conversation.item.created"
	}
	return "conversation.item.added"
}

// sessionUpdate reads either protocol's session shape into RealtimeConfig.
func (c *rtFakeConn) sessionUpdate(typ string, raw json.RawMessage) {
	switch fl := c.f.script.Fault; {
	case fl.IgnoreSession:
		return
	case fl.RejectSession != "":
		c.errorEvent("invalid_request_error", "invalid_value", fl.RejectSession)
		return
	}
	var s struct {
		Type         string `json:"type"`
		Instructions string `json:"instructions"`
		Voice        string `json:"voice"`
		Tools        []struct {
			Type        string          `json:"type"`
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"tools"`
		// GA
		Audio struct {
			Input struct {
				Format        struct{ Type string } `json:"format"`
				Transcription *struct {
					Model    string `json:"model"`
					Language string `json:"language"`
				} `json:"transcription"`
				TurnDetection *struct {
					Type              string `json:"type"`
					SilenceDurationMS int    `json:"silence_duration_ms"`
					CreateResponse    *bool  `json:"create_response"`
				} `json:"turn_detection"`
			} `json:"input"`
			Output struct {
				Format struct{ Type string } `json:"format"`
				Voice  string                `json:"voice"`
			} `json:"output"`
		} `json:"audio"`
		// beta
		InputAudioFormat        string `json:"input_audio_format"`
		OutputAudioFormat       string `json:"output_audio_format"`
		InputAudioTranscription *struct {
			Model    string `json:"model"`
			Language string `json:"language"`
		} `json:"input_audio_transcription"`
		TurnDetection *struct {
			Type              string `json:"type"`
			SilenceDurationMS int    `json:"silence_duration_ms"`
			CreateResponse    *bool  `json:"create_response"`
		} `json:"turn_detection"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		c.errorEvent("invalid_request_error", "invalid_value", "session: "+err.Error())
		return
	}
	cfg := RealtimeConfig{Instructions: s.Instructions}
	td := s.TurnDetection
	if c.beta() {
		if (typ == "transcription_session.update") != c.sess.Transcription {
			c.errorEvent("invalid_request_error", "invalid_event", typ+" does not match this session's kind")
			return
		}
		cfg.InputFormat, cfg.OutputFormat, cfg.Voice = s.InputAudioFormat, s.OutputAudioFormat, s.Voice
		if t := s.InputAudioTranscription; t != nil {
			cfg.TranscriptionModel, cfg.Language = t.Model, t.Language
		}
	} else {
		want := "realtime"
		if c.sess.Transcription {
			want = "transcription"
		}
		if typ != "session.update" || s.Type != want {
			c.errorEvent("invalid_request_error", "invalid_value", fmt.Sprintf("session.type must be %q for this session, got %q", want, s.Type))
			return
		}
		cfg.InputFormat, cfg.OutputFormat, cfg.Voice = s.Audio.Input.Format.Type, s.Audio.Output.Format.Type, s.Audio.Output.Voice
		if t := s.Audio.Input.Transcription; t != nil {
			cfg.TranscriptionModel, cfg.Language = t.Model, t.Language
		}
		td = s.Audio.Input.TurnDetection
	}
	for _, t := range s.Tools {
		cfg.Tools = append(cfg.Tools, agent.Tool{Name: t.Name, Description: t.Description, Parameters: t.Parameters})
	}
	ulaw := map[string]bool{"audio/pcmu": true, "g711_ulaw": true}
	if !ulaw[cfg.InputFormat] || (!c.sess.Transcription && !ulaw[cfg.OutputFormat]) {
		c.errorEvent("invalid_request_error", "invalid_value",
			fmt.Sprintf("fake realtime: only µ-law audio is served (input %q, output %q)", cfg.InputFormat, cfg.OutputFormat))
		return
	}
	c.createResponse = !c.sess.Transcription
	if td != nil {
		cfg.TurnDetection, cfg.SilenceMS = td.Type, td.SilenceDurationMS
		if td.SilenceDurationMS > 0 {
			c.silenceMS = td.SilenceDurationMS
		}
		if td.CreateResponse != nil {
			c.createResponse = *td.CreateResponse && !c.sess.Transcription
		}
	}
	c.f.mu.Lock()
	cfg.Updates = c.sess.Config.Updates + 1
	c.sess.Config = cfg
	c.f.mu.Unlock()
	updated := "session.updated"
	if typ == "transcription_session.update" {
		updated = "transcription_session.updated"
	}
	c.send(map[string]any{"type": updated, "session": json.RawMessage(raw)})
}

func (c *rtFakeConn) appendAudio(b64 string) {
	ulaw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		c.errorEvent("invalid_request_error", "invalid_value", "audio: invalid base64")
		return
	}
	pcm := media.PCMU.Decode(nil, ulaw)
	c.f.mu.Lock()
	c.sess.Audio = append(c.sess.Audio, pcm...)
	c.f.mu.Unlock()
	c.appends++
	if n := c.f.script.Fault.ErrorAfterAudio; n > 0 && c.appends == n {
		msg := c.f.script.Fault.ErrorMessage
		if msg == "" {
			msg = "The server had an error while processing your request."
		}
		c.errorEvent("server_error", "server_error", msg)
	}
	c.buffer = append(c.buffer, pcm...)
	if c.sess.Config.TurnDetection != "server_vad" {
		c.samples += int64(len(pcm))
		return
	}
	c.frame = append(c.frame, pcm...)
	for len(c.frame) >= media.FrameSamples {
		fr := c.frame[:media.FrameSamples]
		c.samples += media.FrameSamples
		speech := media.RMS(fr) > RealtimeSpeechRMS
		if speech {
			c.speechEnd = c.samples
		}
		switch {
		case speech && !c.inSpeech:
			c.inSpeech, c.silentFrames = true, 0
			c.items++
			c.turnID = fmt.Sprintf("item_user_%d", c.items)
			c.send(map[string]any{"type": "input_audio_buffer.speech_started",
				"audio_start_ms": (c.samples - media.FrameSamples) / 8, "item_id": c.turnID})
			c.stopResponse(true) // interrupt_response
		case speech:
			c.silentFrames = 0
		case c.inSpeech:
			c.silentFrames++
			if c.silentFrames*20 >= c.silenceMS {
				c.inSpeech = false
				c.send(map[string]any{"type": "input_audio_buffer.speech_stopped",
					"audio_end_ms": c.speechEnd / 8, "item_id": c.turnID})
				c.endTurn(c.createResponse)
			}
		}
		c.frame = c.frame[media.FrameSamples:]
	}
}

// endTurn commits the buffer as a caller item, transcribes it and, in a
// speech-to-speech session with create_response, answers.
func (c *rtFakeConn) endTurn(respond bool) {
	audio := c.buffer
	c.buffer = nil
	id := c.turnID
	c.turnID = ""
	if id == "" {
		c.items++
		id = fmt.Sprintf("item_user_%d", c.items)
	}
	c.send(map[string]any{"type": "input_audio_buffer.committed", "item_id": id, "previous_item_id": nil})
	c.send(map[string]any{"type": c.itemAdded(), "item": map[string]any{"id": id, "type": "message", "role": "user",
		"content": []any{map[string]any{"type": "input_audio", "transcript": nil}}}})
	c.f.mu.Lock()
	text, ok := "", false
	if c.f.nTurn < len(c.f.script.UserTranscripts) {
		text, ok = c.f.script.UserTranscripts[c.f.nTurn], true
		c.f.nTurn++
	}
	c.f.mu.Unlock()
	if !ok && c.f.script.TranscriptFunc != nil {
		text = c.f.script.TranscriptFunc(audio)
	}
	if !c.sleep(c.f.script.TranscriptDelay, nil) {
		return
	}
	for _, d := range SplitTokens(text) {
		c.send(map[string]any{"type": "conversation.item.input_audio_transcription.delta", "item_id": id, "content_index": 0, "delta": d})
	}
	c.send(map[string]any{"type": "conversation.item.input_audio_transcription.completed", "item_id": id, "content_index": 0, "transcript": text})
	c.lastUser = text
	if respond {
		c.startResponse()
	}
}

// sleep waits d; false if the fake closed or cancel fired.
func (c *rtFakeConn) sleep(d time.Duration, cancel <-chan struct{}) bool {
	if d <= 0 {
		select {
		case <-cancel:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-cancel:
		return false
	case <-c.f.done:
		return false
	}
}

func (c *rtFakeConn) startResponse() {
	if c.resp != nil && c.resp.active() {
		c.errorEvent("invalid_request_error", "conversation_already_has_active_response", "Conversation already has an active response in progress.")
		return
	}
	c.f.mu.Lock()
	c.f.responses++
	n := c.f.responses
	c.sess.Responses++
	reply, ok := RealtimeReply{}, false
	if c.f.nResp < len(c.f.script.Responses) {
		reply, ok = c.f.script.Responses[c.f.nResp], true
		c.f.nResp++
	}
	c.f.mu.Unlock()
	if !ok && c.f.script.ResponseFunc != nil {
		reply, ok = c.f.script.ResponseFunc(RealtimeTurn{N: n, LastUserText: c.lastUser, LastToolOutput: c.lastTool}), true
	}
	if !ok {
		reply = RealtimeReply{Fail: fmt.Sprintf("fake realtime: no response scripted for response %d", n)}
	}
	r := &rtResponse{id: fmt.Sprintf("resp_%d", n), cancel: make(chan struct{}), finished: make(chan struct{})}
	c.resp = r
	itemID := fmt.Sprintf("item_agent_%d", n)
	c.items2resp[itemID] = true
	c.respWG.Add(1)
	go func() {
		defer c.respWG.Done()
		defer r.finish()
		c.respond(r, itemID, reply)
	}()
}

// stopResponse cancels the response in progress (barge-in, response.cancel,
// or the connection ending).
func (c *rtFakeConn) stopResponse(count bool) {
	if c.resp == nil || !c.resp.active() {
		return
	}
	c.resp.stop()
	if count {
		c.f.mu.Lock()
		c.sess.Cancelled++
		c.f.mu.Unlock()
	}
}

// respond streams one response: the audio item with its transcript, then
// the function calls, then response.done.
func (c *rtFakeConn) respond(r *rtResponse, itemID string, reply RealtimeReply) {
	s := c.f.script
	names := map[bool]map[string]string{
		false: {"audio": "response.output_audio.delta", "audio.done": "response.output_audio.done",
			"tr": "response.output_audio_transcript.delta", "tr.done": "response.output_audio_transcript.done"},
		true: {"audio": "response.audio.delta", "audio.done": "response.audio.done",
			"tr": "response.audio_transcript.delta", "tr.done": "response.audio_transcript.done"},
	}[c.beta()]
	c.send(map[string]any{"type": "response.created", "response": map[string]any{"id": r.id, "object": "realtime.response", "status": "in_progress", "output": []any{}}})
	done := func(status string, output []any, errMsg string) {
		resp := map[string]any{"id": r.id, "object": "realtime.response", "status": status, "output": output}
		if errMsg != "" {
			resp["status_details"] = map[string]any{"type": "failed", "error": map[string]any{"type": "server_error", "code": "server_error", "message": errMsg}}
		}
		if status == "cancelled" {
			resp["status_details"] = map[string]any{"type": "cancelled", "reason": "turn_detected"}
		}
		r.finish()
		c.send(map[string]any{"type": "response.done", "response": resp})
	}
	if reply.Fail != "" {
		done("failed", []any{}, reply.Fail)
		return
	}
	var output []any
	pcm := reply.Audio
	if pcm == nil && reply.Text != "" {
		pcm = media.Tone(RealtimeToneHz, time.Duration(len([]rune(reply.Text)))*65*time.Millisecond, 0.5)
	}
	if len(pcm) > 0 || reply.Text != "" {
		item := map[string]any{"id": itemID, "object": "realtime.item", "type": "message", "role": "assistant", "status": "in_progress", "content": []any{}}
		c.send(map[string]any{"type": "response.output_item.added", "response_id": r.id, "output_index": 0, "item": item})
		c.send(map[string]any{"type": "response.content_part.added", "response_id": r.id, "item_id": itemID, "output_index": 0, "content_index": 0,
			"part": map[string]any{"type": "audio", "transcript": ""}})
		if !c.sleep(s.FirstAudio, r.cancel) {
			done("cancelled", output, "")
			return
		}
		chunk := int(s.AudioChunk / (time.Second / 8000))
		if chunk <= 0 {
			chunk = 800
		}
		words := SplitTokens(reply.Text)
		nChunks := (len(pcm) + chunk - 1) / chunk
		for i := 0; i < nChunks || len(words) > 0; i++ {
			if i > 0 && !c.sleep(s.ChunkGap, r.cancel) {
				done("cancelled", output, "")
				return
			}
			select {
			case <-r.cancel:
				done("cancelled", output, "")
				return
			default:
			}
			if i < nChunks {
				seg := pcm[i*chunk : min((i+1)*chunk, len(pcm))]
				if !c.send(map[string]any{"type": names["audio"], "response_id": r.id, "item_id": itemID, "output_index": 0, "content_index": 0,
					"delta": base64.StdEncoding.EncodeToString(media.PCMU.Encode(nil, seg))}) {
					return
				}
			}
			// Spread the words over the audio, the rest with the last chunk.
			take := len(words)
			if i < nChunks-1 {
				take = min(len(words), (len(words)+nChunks-1)/nChunks)
			}
			for _, w := range words[:take] {
				c.send(map[string]any{"type": names["tr"], "response_id": r.id, "item_id": itemID, "output_index": 0, "content_index": 0, "delta": w})
			}
			words = words[take:]
		}
		c.send(map[string]any{"type": names["audio.done"], "response_id": r.id, "item_id": itemID, "output_index": 0, "content_index": 0})
		c.send(map[string]any{"type": names["tr.done"], "response_id": r.id, "item_id": itemID, "output_index": 0, "content_index": 0, "transcript": reply.Text})
		item["status"] = "completed"
		item["content"] = []any{map[string]any{"type": "audio", "transcript": reply.Text}}
		c.send(map[string]any{"type": "response.output_item.done", "response_id": r.id, "output_index": 0, "item": item})
		output = append(output, item)
	}
	for i, tc := range reply.ToolCalls {
		id := tc.ID
		if id == "" {
			id = fmt.Sprintf("call_%d", i)
		}
		fnItem := fmt.Sprintf("%s_fc%d", itemID, i)
		item := map[string]any{"id": fnItem, "object": "realtime.item", "type": "function_call", "status": "in_progress",
			"call_id": id, "name": tc.Name, "arguments": ""}
		c.send(map[string]any{"type": "response.output_item.added", "response_id": r.id, "output_index": len(output), "item": item})
		for _, piece := range oaiSplitN(tc.Arguments, 3) {
			c.send(map[string]any{"type": "response.function_call_arguments.delta", "response_id": r.id, "item_id": fnItem,
				"output_index": len(output), "call_id": id, "delta": piece})
		}
		ev := map[string]any{"type": "response.function_call_arguments.done", "response_id": r.id, "item_id": fnItem,
			"output_index": len(output), "call_id": id, "arguments": tc.Arguments}
		if !c.beta() {
			ev["name"] = tc.Name // GA names the function here; beta only in the item
		}
		c.send(ev)
		item["status"], item["arguments"] = "completed", tc.Arguments
		c.send(map[string]any{"type": "response.output_item.done", "response_id": r.id, "output_index": len(output), "item": item})
		output = append(output, item)
	}
	done("completed", output, "")
}
