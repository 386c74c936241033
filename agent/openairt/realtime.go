package openairt

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/internal/textutil"
	"github.com/voxbridge/voxbridge/media"
)

// Realtime is the speech-to-speech client: caller audio in, agent audio,
// transcripts and tool calls out, with the server's VAD taking turns.
type Realtime struct{ cfg Config }

var _ agent.Realtime = (*Realtime)(nil)

// NewRealtime checks cfg and returns a client.
func NewRealtime(cfg Config) (*Realtime, error) {
	if _, err := cfg.endpoint(nil); err != nil {
		return nil, err
	}
	return &Realtime{cfg: cfg}, nil
}

// eventBuffer absorbs bursts of audio deltas (the model sends faster than
// real time) without stalling the socket reader.
const eventBuffer = 256

// Start connects, configures the session (µ-law both ways, server VAD,
// instructions, voice, tools, caller transcription) and returns it. A
// refused handshake is returned as an *Error with its HTTP status.
func (r *Realtime) Start(ctx context.Context, opt agent.RealtimeOptions) (agent.RealtimeSession, error) {
	cfg := r.cfg
	model := cfg.Model
	if model == "" {
		model = DefaultModel
	}
	voice := opt.Voice
	if voice == "" {
		voice = cfg.Voice
	}
	if voice == "" {
		voice = DefaultVoice
	}
	lang := opt.Language
	if lang == "" {
		lang = cfg.Language
	}
	tmodel := cfg.TranscriptionModel
	if tmodel == "" {
		tmodel = DefaultTranscriptionModel
	}
	for _, t := range opt.Tools {
		if t.Name == "" {
			return nil, errors.New("openai realtime: a tool has no name")
		}
	}
	tr := &transcription{Model: tmodel, Language: textutil.LanguageCode(lang)}
	var update sessionUpdate
	header := http.Header{}
	if cfg.Beta {
		header.Set("OpenAI-Beta", "realtime=v1")
		update = sessionUpdate{Type: "session.update", Session: betaSession{
			Modalities: []string{"audio", "text"}, Instructions: opt.Instructions, Voice: voice,
			InputAudioFormat: "g711_ulaw", OutputAudioFormat: "g711_ulaw",
			InputAudioTranscription: tr, TurnDetection: cfg.turnDetection(true),
			Tools: wireTools(opt.Tools), ToolChoice: toolChoice(opt.Tools),
		}}
	} else {
		update = sessionUpdate{Type: "session.update", Session: gaSession{
			Type: "realtime", Model: model, OutputModalities: []string{"audio"}, Instructions: opt.Instructions,
			Audio: gaAudio{
				Input:  gaInput{Format: audioFormat{"audio/pcmu"}, Transcription: tr, TurnDetection: cfg.turnDetection(true)},
				Output: &gaOutput{Format: audioFormat{"audio/pcmu"}, Voice: voice},
			},
			Tools: wireTools(opt.Tools), ToolChoice: toolChoice(opt.Tools),
		}}
	}
	c, err := dial(ctx, cfg, url.Values{"model": {model}}, header)
	if err != nil {
		return nil, err
	}
	s := &rtSession{c: c, events: make(chan agent.RealtimeEvent, eventBuffer), calls: map[string]string{}, emitted: map[string]bool{}}
	if err := c.configure(update, cfg.handshakeTimeout()); err != nil {
		c.ws.Close()
		c.ownerCancel()
		return nil, err
	}
	c.start(s.handle, s.end)
	return s, nil
}

func toolChoice(tools []agent.Tool) string {
	if len(tools) == 0 {
		return ""
	}
	return "auto"
}

type rtSession struct {
	c      *conn
	events chan agent.RealtimeEvent

	// Only the reader goroutine touches these.
	calls   map[string]string // function_call item id -> name (older servers omit the name in arguments.done)
	emitted map[string]bool   // call ids already delivered

	closeOnce sync.Once
}

func (s *rtSession) WriteAudio(f agent.Frame) error {
	ulaw := media.PCMU.Encode(make([]byte, 0, len(f)), f)
	return s.c.send(appendAudio{Type: "input_audio_buffer.append", Audio: base64.StdEncoding.EncodeToString(ulaw)})
}

func (s *rtSession) Events() <-chan agent.RealtimeEvent { return s.events }

func (s *rtSession) SendToolResult(callID, output string) error {
	if callID == "" {
		return errors.New("openai realtime: tool result without a call id")
	}
	if err := s.c.send(itemCreate{Type: "conversation.item.create", Item: functionOutput{Type: "function_call_output", CallID: callID, Output: output}}); err != nil {
		return err
	}
	return s.CreateResponse()
}

// Truncate trims the model's memory of item itemID to what was played.
func (s *rtSession) Truncate(itemID string, played time.Duration) error {
	if itemID == "" {
		return errors.New("openai realtime: truncate without an item id")
	}
	return s.c.send(itemTruncate{Type: "conversation.item.truncate", ItemID: itemID, AudioEndMS: max(0, played.Milliseconds())})
}

func (s *rtSession) CreateResponse() error {
	return s.c.send(simpleEvent{Type: "response.create"})
}

// Close ends the session and waits for its goroutines; Events closes.
func (s *rtSession) Close() error {
	s.closeOnce.Do(s.c.close)
	return nil
}

func (s *rtSession) emit(ev agent.RealtimeEvent) { deliver(s.c, s.events, ev) }

// end reports a lost connection (err != nil) and closes Events.
func (s *rtSession) end(err error) {
	if err != nil {
		s.emit(agent.RealtimeEvent{Type: agent.RealtimeError, Err: err})
	}
	close(s.events)
}

func (s *rtSession) fail(msg string) {
	s.emit(agent.RealtimeEvent{Type: agent.RealtimeError, Err: &Error{Message: msg}})
}

// handle maps one server event, accepting GA and beta names alike.
func (s *rtSession) handle(typ string, raw []byte) {
	if typ == "" {
		s.fail(fmt.Sprintf("malformed server event: %s", textutil.Truncate(string(raw), 120)))
		return
	}
	var ev serverEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		s.fail(fmt.Sprintf("malformed %s event: %v", typ, err))
		return
	}
	switch typ {
	case "response.output_audio.delta", "response.audio.delta":
		ulaw, err := base64.StdEncoding.DecodeString(ev.Delta)
		if err != nil {
			s.fail(fmt.Sprintf("%s: audio is not base64: %v", typ, err))
			return
		}
		if len(ulaw) > 0 {
			s.emit(agent.RealtimeEvent{Type: agent.RealtimeAudio, ItemID: ev.ItemID, Audio: media.PCMU.Decode(nil, ulaw)})
		}
	case "response.output_audio_transcript.delta", "response.audio_transcript.delta",
		"response.output_text.delta", "response.text.delta":
		if ev.Delta != "" {
			s.emit(agent.RealtimeEvent{Type: agent.RealtimeAgentText, ItemID: ev.ItemID, Text: ev.Delta})
		}
	case "conversation.item.input_audio_transcription.completed":
		s.emit(agent.RealtimeEvent{Type: agent.RealtimeUserText, ItemID: ev.ItemID, Text: ev.Transcript})
	case "conversation.item.input_audio_transcription.failed":
		s.emit(agent.RealtimeEvent{Type: agent.RealtimeError, ItemID: ev.ItemID, Err: serverError("caller transcription failed", ev)})
	case "input_audio_buffer.speech_started":
		s.emit(agent.RealtimeEvent{Type: agent.RealtimeSpeechStarted, ItemID: ev.ItemID})
	case "input_audio_buffer.speech_stopped":
		s.emit(agent.RealtimeEvent{Type: agent.RealtimeSpeechStopped, ItemID: ev.ItemID})
	case "response.output_item.added", "response.output_item.done":
		if ev.Item != nil && ev.Item.Type == "function_call" {
			s.calls[ev.Item.ID] = ev.Item.Name
		}
	case "response.function_call_arguments.done":
		name := ev.Name
		if name == "" {
			name = s.calls[ev.ItemID]
		}
		s.toolCall(ev.ItemID, agent.ToolCall{ID: ev.CallID, Name: name, Arguments: ev.Arguments})
	case "response.done":
		if ev.Response != nil {
			// Servers that skip the arguments events still list the calls.
			for _, it := range ev.Response.Output {
				if it.Type == "function_call" {
					s.toolCall(it.ID, agent.ToolCall{ID: it.CallID, Name: it.Name, Arguments: it.Arguments})
				}
			}
			if ev.Response.Status == "failed" {
				s.emit(agent.RealtimeEvent{Type: agent.RealtimeError, Err: responseError(ev)})
			}
		}
		s.emit(agent.RealtimeEvent{Type: agent.RealtimeResponseDone})
	case "error":
		s.emit(agent.RealtimeEvent{Type: agent.RealtimeError, Err: serverError("", ev)})
	}
}

func (s *rtSession) toolCall(itemID string, tc agent.ToolCall) {
	if tc.ID == "" {
		tc.ID = itemID
	}
	if tc.ID == "" || s.emitted[tc.ID] {
		return
	}
	if tc.Name == "" {
		s.fail(fmt.Sprintf("function call %s has no name", tc.ID))
		return
	}
	if tc.Arguments == "" {
		tc.Arguments = "{}"
	}
	s.emitted[tc.ID] = true
	s.emit(agent.RealtimeEvent{Type: agent.RealtimeToolCall, ItemID: itemID, ToolCall: &tc})
}

func serverError(prefix string, ev serverEvent) error {
	e := &Error{Message: prefix}
	if ev.Error != nil {
		e.Code, e.Type = ev.Error.Code, ev.Error.Type
		if prefix != "" && ev.Error.Message != "" {
			e.Message = prefix + ": " + ev.Error.Message
		} else if ev.Error.Message != "" {
			e.Message = ev.Error.Message
		}
	}
	if e.Message == "" {
		e.Message = "server reported an error without a message"
	}
	e.Message = textutil.Truncate(e.Message, 300)
	return e
}

func responseError(ev serverEvent) error {
	e := &Error{Message: "response failed"}
	if d := ev.Response.StatusDetails; d != nil && d.Error != nil {
		e.Code, e.Type = d.Error.Code, d.Error.Type
		e.Message = "response failed: " + textutil.Truncate(d.Error.Message, 300)
	}
	return e
}
