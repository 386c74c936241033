// Package fake holds test servers that speak the providers' real wire
// protocols (HTTP, SSE, websockets) on loopback, so tests exercise the real
// client code end to end. Each fake is scripted (what it answers, how fast,
// how it fails) and records what it received.
package fake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/internal/audio"
	"github.com/voxbridge/voxbridge/media"
)

// OpenAIScript scripts an OpenAI-compatible HTTP server: chat completions
// (streamed over SSE), audio transcriptions and speech.
//
// For each endpoint, requests consume the list in order; once it is used up
// the Func (if set) answers, else chat and transcription requests get an
// HTTP 500 naming the unscripted request and speech gets OpenAISpeechTone.
type OpenAIScript struct {
	// APIKey, when set, is required as "Authorization: Bearer <key>".
	// Other requests get a 401 whose message echoes the key they sent, as
	// some gateways do, so tests can check that clients redact it.
	APIKey string

	Chat     []ChatReply
	ChatFunc func(req ChatRequest) ChatReply

	Transcripts    []TranscriptReply
	TranscriptFunc func(req TranscriptionRequest) TranscriptReply

	Speech     []SpeechReply
	SpeechFunc func(req SpeechRequest) SpeechReply

	// Latency applies where a reply leaves its own timing zero.
	Latency OpenAILatency
}

// OpenAILatency are the fake's default delays.
type OpenAILatency struct {
	ChatFirstToken   time.Duration // request received → first SSE chunk
	ChatTokenGap     time.Duration // between chunks
	Transcribe       time.Duration // request received → transcript
	SpeechFirstAudio time.Duration // request received → first audio bytes
	SpeechChunkGap   time.Duration // between audio chunks
}

// OpenAIFault makes one reply fail. Pieces are SSE chunks for chat and
// audio chunks for speech; a transcription has one piece, its reply.
type OpenAIFault struct {
	// Status, when set, answers at once with this HTTP status and an
	// OpenAI error body (Message, or the status text).
	Status  int
	Message string
	// Hang sends nothing more after After pieces until the client gives
	// up; with After 0 not even the response headers go out.
	Hang bool
	// Drop cuts the connection after After pieces (with After 0, before
	// any response).
	Drop bool
	// StreamError (chat) sends an SSE error event after After chunks.
	StreamError string
	After       int
}

// ChatReply is one scripted completion.
type ChatReply struct {
	// Text is streamed as word-sized deltas ("Hello", " there", ",").
	Text string
	// Deltas, when set, are streamed exactly instead of Text.
	Deltas []string
	// ToolCalls follow the text; each call's arguments arrive in pieces.
	// An empty ID gets "call_<n>".
	ToolCalls []agent.ToolCall
	// FinishReason defaults to "tool_calls" with tool calls, else "stop".
	FinishReason string
	// FirstToken and TokenGap override OpenAILatency.
	FirstToken, TokenGap time.Duration
	Fault                OpenAIFault
}

// TranscriptReply is one scripted transcription.
type TranscriptReply struct {
	Text  string
	Delay time.Duration // overrides OpenAILatency.Transcribe
	Fault OpenAIFault
}

// SpeechReply is one scripted synthesis.
type SpeechReply struct {
	// PCM is 24 kHz mono audio; nil means OpenAISpeechTone(input).
	PCM []int16
	// ChunkBytes is the size of each streamed piece; 0 means 4800 (100 ms).
	ChunkBytes           int
	FirstAudio, ChunkGap time.Duration // override OpenAILatency
	Fault                OpenAIFault
}

// ChatRequest is a chat completion request as received.
type ChatRequest struct {
	Model       string
	Messages    []agent.Message
	Tools       []agent.Tool
	Temperature *float64
	MaxTokens   int // max_tokens or max_completion_tokens
	Stream      bool
	Body        []byte // the raw JSON
	// Aborted is set when the client went away before the reply ended
	// (it cancelled, e.g. on barge-in).
	Aborted bool
}

// LastUserText is the content of the last user message, or "".
func (r ChatRequest) LastUserText() string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == agent.RoleUser {
			return r.Messages[i].Content
		}
	}
	return ""
}

// TranscriptionRequest is an audio transcription request as received.
type TranscriptionRequest struct {
	Model, Language, Prompt, ResponseFormat string
	Filename                                string
	// Audio is the uploaded file decoded to 8 kHz mono.
	Audio []int16
	// Text is what the fake answered ("" for a fault).
	Text string
}

// SpeechRequest is a speech request as received.
type SpeechRequest struct {
	Model, Input, Voice, ResponseFormat, Instructions string
	Speed                                             float64
	// Aborted is set when the client went away before all audio was sent.
	Aborted bool
}

// OpenAI is a running fake. Its URL goes into openai.Config.BaseURL.
type OpenAI struct {
	// URL is the API root, e.g. "http://127.0.0.1:41234/v1".
	URL string

	script OpenAIScript
	srv    *server
	done   chan struct{} // closed at cleanup: ends hanging handlers

	mu     sync.Mutex
	chats  []ChatRequest
	trans  []TranscriptionRequest
	speech []SpeechRequest
	nChat  int // requests answered from the lists
	nTrans int
	nSpeak int
}

// NewOpenAI starts a fake on 127.0.0.1; it stops when the test ends.
func NewOpenAI(tb TB, script OpenAIScript) *OpenAI {
	tb.Helper()
	o := &OpenAI{script: script, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", o.auth(o.handleChat))
	mux.HandleFunc("POST /v1/audio/transcriptions", o.auth(o.handleTranscription))
	mux.HandleFunc("POST /v1/audio/speech", o.auth(o.handleSpeech))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		oaiError(w, http.StatusNotFound, "invalid_request_error", fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path))
	})
	o.srv = newServer(tb, mux)
	o.URL = o.srv.URL + "/v1"
	tb.Cleanup(o.Close)
	return o
}

// Close stops the server, cutting hanging replies. Tests need not call it.
func (o *OpenAI) Close() {
	o.mu.Lock()
	select {
	case <-o.done:
		o.mu.Unlock()
		return
	default:
	}
	close(o.done)
	o.mu.Unlock()
	o.srv.Close()
}

// ChatRequests returns the chat requests received so far, in order.
func (o *OpenAI) ChatRequests() []ChatRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]ChatRequest(nil), o.chats...)
}

// Transcriptions returns the transcription requests received so far.
func (o *OpenAI) Transcriptions() []TranscriptionRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]TranscriptionRequest(nil), o.trans...)
}

// Heard returns the transcripts the fake answered, in order: what "the
// agent heard".
func (o *OpenAI) Heard() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, t := range o.trans {
		out = append(out, t.Text)
	}
	return out
}

// SpeechRequests returns the speech requests received so far.
func (o *OpenAI) SpeechRequests() []SpeechRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]SpeechRequest(nil), o.speech...)
}

// Spoken returns the texts sent for synthesis, in order.
func (o *OpenAI) Spoken() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, s := range o.speech {
		out = append(out, s.Input)
	}
	return out
}

// OpenAISpeechTone is the fake's default voice: a 24 kHz, 440 Hz tone at half
// scale, 65 ms per character of text (about a real voice's pace), at least
// 200 ms.
func OpenAISpeechTone(text string) []int16 {
	d := max(200*time.Millisecond, time.Duration(len([]rune(text)))*65*time.Millisecond)
	return audio.Tone(OpenAISpeechToneHz, 24000, d, 0.5)
}

// OpenAISpeechToneHz is the frequency of OpenAISpeechTone.
const OpenAISpeechToneHz = 440

func (o *OpenAI) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if o.script.APIKey != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || got != o.script.APIKey {
				oaiError(w, http.StatusUnauthorized, "invalid_request_error",
					fmt.Sprintf("Incorrect API key provided: %s. You can find your API key at https://platform.openai.com/account/api-keys.", got))
				return
			}
		}
		h(w, r)
	}
}

// oaiError writes an error in the API's shape.
func oaiError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": nil, "code": nil,
	}})
}

// sleep waits d unless the client goes away or the fake closes.
func (o *OpenAI) sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return r.Context().Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-o.done:
		return false
	}
}

// hang blocks until the client gives up or the fake closes.
func (o *OpenAI) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-o.done:
	}
}

// drop cuts the connection under a handler without a proper HTTP ending.
func oaiDrop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // net/http's own way to abort a reply
}

// markAborted records a reply the client abandoned: when the handler ends,
// the request's context is cancelled only if the client went away first.
func (o *OpenAI) markAborted(r *http.Request, mark func()) {
	select {
	case <-r.Context().Done():
		o.mu.Lock()
		mark()
		o.mu.Unlock()
	default:
	}
}

// faultBeforeReply carries out a Hang or Drop due before any response (or,
// for a transcription, at all); true when it did.
func (o *OpenAI) faultBeforeReply(w http.ResponseWriter, r *http.Request, f OpenAIFault) bool {
	switch {
	case f.After > 0:
		return false
	case f.Hang:
		o.hang(r)
		return true
	case f.Drop:
		oaiDrop(w)
		return true
	}
	return false
}

// oaiFaultStatus answers a Status fault; true when it did.
func oaiFaultStatus(w http.ResponseWriter, f OpenAIFault) bool {
	if f.Status == 0 {
		return false
	}
	msg := f.Message
	if msg == "" {
		msg = http.StatusText(f.Status)
	}
	typ := "server_error"
	if f.Status < 500 {
		typ = "invalid_request_error"
	}
	oaiError(w, f.Status, typ, msg)
	return true
}

// ---- chat completions ----

// oaiWireMessage is a chat message as the API takes it.
type oaiWireMessage struct {
	Role       string            `json:"role"`
	Content    json.RawMessage   `json:"content"` // a string or an array of parts
	ToolCallID string            `json:"tool_call_id"`
	ToolCalls  []oaiWireToolCall `json:"tool_calls"`
}

type oaiWireToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaiWireChatRequest struct {
	Model    string           `json:"model"`
	Messages []oaiWireMessage `json:"messages"`
	Tools    []struct {
		Type     string `json:"type"`
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	} `json:"tools"`
	Temperature         *float64 `json:"temperature"`
	MaxTokens           int      `json:"max_tokens"`
	MaxCompletionTokens int      `json:"max_completion_tokens"`
	Stream              bool     `json:"stream"`
}

func oaiDecodeChat(body []byte) (ChatRequest, error) {
	var wr oaiWireChatRequest
	if err := json.Unmarshal(body, &wr); err != nil {
		return ChatRequest{}, fmt.Errorf("We could not parse the JSON body of your request: %v", err)
	}
	if wr.Model == "" {
		return ChatRequest{}, fmt.Errorf("you must provide a model parameter")
	}
	if len(wr.Messages) == 0 {
		return ChatRequest{}, fmt.Errorf("[] is too short - 'messages'")
	}
	req := ChatRequest{Model: wr.Model, Temperature: wr.Temperature, Stream: wr.Stream, Body: body,
		MaxTokens: max(wr.MaxTokens, wr.MaxCompletionTokens)}
	calls := map[string]bool{} // tool call ids an assistant message made
	for i, m := range wr.Messages {
		msg := agent.Message{Role: m.Role, ToolCallID: m.ToolCallID}
		if len(m.Content) > 0 && string(m.Content) != "null" {
			if err := json.Unmarshal(m.Content, &msg.Content); err != nil {
				var parts []struct {
					Type string `json:"type"`
					Text string `json:"text"`
				}
				if err := json.Unmarshal(m.Content, &parts); err != nil {
					return req, fmt.Errorf("messages[%d].content: expected a string or an array of parts", i)
				}
				for _, p := range parts {
					msg.Content += p.Text
				}
			}
		}
		switch m.Role {
		case agent.RoleSystem, agent.RoleUser, "developer":
		case agent.RoleAssistant:
			for _, tc := range m.ToolCalls {
				if tc.ID == "" || tc.Function.Name == "" {
					return req, fmt.Errorf("messages[%d].tool_calls: id and function.name are required", i)
				}
				calls[tc.ID] = true
				msg.ToolCalls = append(msg.ToolCalls, agent.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
			}
		case agent.RoleTool:
			if !calls[m.ToolCallID] {
				return req, fmt.Errorf("messages[%d]: messages with role 'tool' must be a response to a preceding message with 'tool_calls' (tool_call_id %q)", i, m.ToolCallID)
			}
			if msg.Content == "" {
				return req, fmt.Errorf("messages[%d].content: tool messages need content", i)
			}
		default:
			return req, fmt.Errorf("messages[%d].role: %q is not one of system, developer, user, assistant, tool", i, m.Role)
		}
		req.Messages = append(req.Messages, msg)
	}
	for i, t := range wr.Tools {
		if t.Type != "function" || t.Function.Name == "" {
			return req, fmt.Errorf("tools[%d]: want type function with a name", i)
		}
		req.Tools = append(req.Tools, agent.Tool{Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters})
	}
	return req, nil
}

func (o *OpenAI) handleChat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		return
	}
	req, err := oaiDecodeChat(body)
	if err != nil {
		oaiError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	o.mu.Lock()
	o.chats = append(o.chats, req)
	n := len(o.chats)
	defer o.markAborted(r, func() { o.chats[n-1].Aborted = true })
	reply, ok := ChatReply{}, false
	if o.nChat < len(o.script.Chat) {
		reply, ok = o.script.Chat[o.nChat], true
		o.nChat++
	}
	o.mu.Unlock()
	if !ok && o.script.ChatFunc != nil {
		reply, ok = o.script.ChatFunc(req), true
	}
	if !ok {
		oaiError(w, http.StatusInternalServerError, "server_error", fmt.Sprintf("fake openai: no chat reply scripted for request %d", n))
		return
	}
	if oaiFaultStatus(w, reply.Fault) {
		return
	}
	first, gap := reply.FirstToken, reply.TokenGap
	if first == 0 {
		first = o.script.Latency.ChatFirstToken
	}
	if gap == 0 {
		gap = o.script.Latency.ChatTokenGap
	}
	chunks := oaiChatChunks(req.Model, reply)
	if !req.Stream {
		if !o.sleep(r, first) {
			return
		}
		o.writeCompletion(w, req.Model, reply)
		return
	}
	if !o.sleep(r, first) || o.faultBeforeReply(w, r, reply.Fault) {
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	f := reply.Fault
	for i, c := range chunks {
		if i == f.After && i > 0 || f.StreamError != "" && i == f.After {
			switch {
			case f.Hang:
				fl.Flush()
				o.hang(r)
				return
			case f.Drop:
				fl.Flush()
				oaiDrop(w)
				return
			case f.StreamError != "":
				b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": f.StreamError, "type": "server_error", "param": nil, "code": nil}})
				fmt.Fprintf(w, "data: %s\n\n", b)
				fl.Flush()
				return
			}
		}
		if i > 0 && !o.sleep(r, gap) {
			return
		}
		fmt.Fprintf(w, "data: %s\n\n", c)
		fl.Flush()
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	fl.Flush()
}

// oaiChatChunks renders a reply as the API's stream: a role chunk, content
// deltas, tool-call deltas (id and name first, then arguments in pieces),
// and a chunk with the finish reason.
func oaiChatChunks(model string, reply ChatReply) [][]byte {
	created := time.Now().Unix()
	chunk := func(delta map[string]any, finish any) []byte {
		b, _ := json.Marshal(map[string]any{
			"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model,
			"system_fingerprint": "fp_fake",
			"choices":            []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}},
		})
		return b
	}
	out := [][]byte{chunk(map[string]any{"role": "assistant", "content": "", "refusal": nil}, nil)}
	deltas := reply.Deltas
	if deltas == nil {
		deltas = SplitTokens(reply.Text)
	}
	for _, d := range deltas {
		out = append(out, chunk(map[string]any{"content": d}, nil))
	}
	for i, tc := range reply.ToolCalls {
		id := tc.ID
		if id == "" {
			id = fmt.Sprintf("call_%d", i)
		}
		out = append(out, chunk(map[string]any{"tool_calls": []any{map[string]any{
			"index": i, "id": id, "type": "function", "function": map[string]any{"name": tc.Name, "arguments": ""},
		}}}, nil))
		for _, piece := range oaiSplitN(tc.Arguments, 3) {
			out = append(out, chunk(map[string]any{"tool_calls": []any{map[string]any{
				"index": i, "function": map[string]any{"arguments": piece},
			}}}, nil))
		}
	}
	out = append(out, chunk(map[string]any{}, oaiFinishReason(reply)))
	return out
}

func oaiFinishReason(reply ChatReply) string {
	switch {
	case reply.FinishReason != "":
		return reply.FinishReason
	case len(reply.ToolCalls) > 0:
		return "tool_calls"
	}
	return "stop"
}

func (o *OpenAI) writeCompletion(w http.ResponseWriter, model string, reply ChatReply) {
	text := reply.Text
	if reply.Deltas != nil {
		text = strings.Join(reply.Deltas, "")
	}
	msg := map[string]any{"role": "assistant", "content": text}
	var calls []any
	for i, tc := range reply.ToolCalls {
		id := tc.ID
		if id == "" {
			id = fmt.Sprintf("call_%d", i)
		}
		calls = append(calls, map[string]any{"id": id, "type": "function", "function": map[string]any{"name": tc.Name, "arguments": tc.Arguments}})
	}
	if calls != nil {
		msg["tool_calls"] = calls
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-fake", "object": "chat.completion", "created": time.Now().Unix(), "model": model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": oaiFinishReason(reply)}},
	})
}

// SplitTokens cuts text into word-sized deltas the way a model streams:
// each word carries its leading space, punctuation comes on its own.
func SplitTokens(text string) []string {
	var out []string
	start := 0
	rs := []rune(text)
	for i := 1; i <= len(rs); i++ {
		if i == len(rs) {
			break
		}
		prev, r := rs[i-1], rs[i]
		if unicode.IsSpace(r) && !unicode.IsSpace(prev) ||
			unicode.IsPunct(r) && !unicode.IsPunct(prev) ||
			!unicode.IsPunct(r) && !unicode.IsSpace(r) && unicode.IsPunct(prev) {
			out = append(out, string(rs[start:i]))
			start = i
		}
	}
	if start < len(rs) {
		out = append(out, string(rs[start:]))
	}
	return out
}

// oaiSplitN cuts s into up to n pieces of similar length (byte-wise, as the API
// does: argument deltas can split anywhere).
func oaiSplitN(s string, n int) []string {
	if len(s) == 0 {
		return nil
	}
	size := (len(s) + n - 1) / n
	var out []string
	for len(s) > size {
		out = append(out, s[:size])
		s = s[size:]
	}
	return append(out, s)
}

// ---- transcriptions ----

func (o *OpenAI) handleTranscription(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		oaiError(w, http.StatusBadRequest, "invalid_request_error", "expected a multipart/form-data body: "+err.Error())
		return
	}
	req := TranscriptionRequest{
		Model: r.FormValue("model"), Language: r.FormValue("language"), Prompt: r.FormValue("prompt"),
		ResponseFormat: r.FormValue("response_format"),
	}
	if req.Model == "" {
		oaiError(w, http.StatusBadRequest, "invalid_request_error", "you must provide a model parameter")
		return
	}
	file, hdr, err := r.FormFile("file")
	if err != nil {
		oaiError(w, http.StatusBadRequest, "invalid_request_error", "you must provide a file parameter")
		return
	}
	defer file.Close()
	req.Filename = hdr.Filename
	data, err := io.ReadAll(file)
	if err == nil {
		req.Audio, err = media.ReadWAV(bytes.NewReader(data))
	}
	if err != nil {
		oaiError(w, http.StatusBadRequest, "invalid_request_error", "Invalid file format. "+err.Error())
		return
	}
	if len(req.Audio) < 800 { // the API's own floor is 0.1 s
		oaiError(w, http.StatusBadRequest, "invalid_request_error", "Audio file is too short. Minimum audio length is 0.1 seconds.")
		return
	}
	o.mu.Lock()
	n := len(o.trans) + 1
	reply, ok := TranscriptReply{}, false
	if o.nTrans < len(o.script.Transcripts) {
		reply, ok = o.script.Transcripts[o.nTrans], true
		o.nTrans++
	}
	o.mu.Unlock()
	if !ok && o.script.TranscriptFunc != nil {
		reply, ok = o.script.TranscriptFunc(req), true
	}
	if ok && reply.Fault.Status == 0 && !reply.Fault.Hang && !reply.Fault.Drop {
		req.Text = reply.Text
	}
	o.mu.Lock()
	o.trans = append(o.trans, req)
	o.mu.Unlock()
	if !ok {
		oaiError(w, http.StatusInternalServerError, "server_error", fmt.Sprintf("fake openai: no transcript scripted for request %d", n))
		return
	}
	if oaiFaultStatus(w, reply.Fault) {
		return
	}
	delay := reply.Delay
	if delay == 0 {
		delay = o.script.Latency.Transcribe
	}
	if !o.sleep(r, delay) || o.faultBeforeReply(w, r, reply.Fault) {
		return
	}
	switch req.ResponseFormat {
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, reply.Text)
	case "", "json", "verbose_json":
		w.Header().Set("Content-Type", "application/json")
		resp := map[string]any{"text": reply.Text}
		if req.ResponseFormat == "verbose_json" {
			resp["task"], resp["language"], resp["duration"] = "transcribe", req.Language, float64(len(req.Audio))/8000
		}
		json.NewEncoder(w).Encode(resp)
	default:
		oaiError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("fake openai: response_format %q is not served", req.ResponseFormat))
	}
}

// ---- speech ----

func (o *OpenAI) handleSpeech(w http.ResponseWriter, r *http.Request) {
	var req SpeechRequest
	var wire struct {
		Model          string  `json:"model"`
		Input          string  `json:"input"`
		Voice          string  `json:"voice"`
		ResponseFormat string  `json:"response_format"`
		Instructions   string  `json:"instructions"`
		Speed          float64 `json:"speed"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&wire); err != nil {
		oaiError(w, http.StatusBadRequest, "invalid_request_error", "We could not parse the JSON body of your request.")
		return
	}
	req = SpeechRequest{Model: wire.Model, Input: wire.Input, Voice: wire.Voice,
		ResponseFormat: wire.ResponseFormat, Instructions: wire.Instructions, Speed: wire.Speed}
	switch {
	case req.Model == "":
		oaiError(w, http.StatusBadRequest, "invalid_request_error", "you must provide a model parameter")
		return
	case strings.TrimSpace(req.Input) == "":
		oaiError(w, http.StatusBadRequest, "invalid_request_error", "input: string too short")
		return
	case req.Voice == "":
		oaiError(w, http.StatusBadRequest, "invalid_request_error", "you must provide a voice parameter")
		return
	case req.ResponseFormat != "pcm":
		oaiError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("fake openai: response_format %q is not served; use pcm", req.ResponseFormat))
		return
	}
	o.mu.Lock()
	o.speech = append(o.speech, req)
	idx := len(o.speech) - 1
	defer o.markAborted(r, func() { o.speech[idx].Aborted = true })
	reply, ok := SpeechReply{}, false
	if o.nSpeak < len(o.script.Speech) {
		reply, ok = o.script.Speech[o.nSpeak], true
		o.nSpeak++
	}
	o.mu.Unlock()
	if !ok && o.script.SpeechFunc != nil {
		reply = o.script.SpeechFunc(req)
	}
	if oaiFaultStatus(w, reply.Fault) {
		return
	}
	pcm := reply.PCM
	if pcm == nil {
		pcm = OpenAISpeechTone(req.Input)
	}
	first, gap, size := reply.FirstAudio, reply.ChunkGap, reply.ChunkBytes
	if first == 0 {
		first = o.script.Latency.SpeechFirstAudio
	}
	if gap == 0 {
		gap = o.script.Latency.SpeechChunkGap
	}
	if size <= 0 {
		size = 4800
	}
	if !o.sleep(r, first) || o.faultBeforeReply(w, r, reply.Fault) {
		return
	}
	data := audio.PCMBytes(nil, pcm)
	w.Header().Set("Content-Type", "audio/pcm")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	f := reply.Fault
	for i := 0; len(data) > 0; i++ {
		if i > 0 && i == f.After && (f.Hang || f.Drop) {
			fl.Flush()
			if f.Hang {
				o.hang(r)
			} else {
				oaiDrop(w)
			}
			return
		}
		if i > 0 && !o.sleep(r, gap) {
			return
		}
		n := min(size, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			return
		}
		fl.Flush()
		data = data[n:]
	}
}
