package openairt

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/internal/textutil"
	"github.com/voxbridge/voxbridge/media"
)

// STT is a streaming transcriber on a Realtime transcription session:
// partial transcripts as the caller speaks, a final per turn, and the
// server VAD's speech start and end.
type STT struct{ cfg Config }

var _ agent.STT = (*STT)(nil)

// NewSTT checks cfg and returns a client.
func NewSTT(cfg Config) (*STT, error) {
	if _, err := cfg.endpoint(nil); err != nil {
		return nil, err
	}
	return &STT{cfg: cfg}, nil
}

// Start connects and configures a transcription session.
func (t *STT) Start(ctx context.Context, opt agent.STTOptions) (agent.STTStream, error) {
	cfg := t.cfg
	lang := opt.Language
	if lang == "" {
		lang = cfg.Language
	}
	model := cfg.TranscriptionModel
	if model == "" {
		model = DefaultTranscriptionModel
	}
	tr := &transcription{Model: model, Language: textutil.LanguageCode(lang)}
	header := http.Header{}
	var update sessionUpdate
	if cfg.Beta {
		header.Set("OpenAI-Beta", "realtime=v1")
		update = sessionUpdate{Type: "transcription_session.update", Session: betaSession{
			InputAudioFormat: "g711_ulaw", InputAudioTranscription: tr, TurnDetection: cfg.turnDetection(false),
		}}
	} else {
		update = sessionUpdate{Type: "session.update", Session: gaSession{
			Type:  "transcription",
			Audio: gaAudio{Input: gaInput{Format: audioFormat{"audio/pcmu"}, Transcription: tr, TurnDetection: cfg.turnDetection(false)}},
		}}
	}
	c, err := dial(ctx, cfg, url.Values{"intent": {"transcription"}}, header)
	if err != nil {
		return nil, err
	}
	s := &sttSession{c: c, events: make(chan agent.STTEvent, eventBuffer), partial: map[string]string{}}
	if err := c.configure(update, cfg.handshakeTimeout()); err != nil {
		c.ws.Close()
		c.ownerCancel()
		return nil, err
	}
	c.start(s.handle, s.end)
	return s, nil
}

type sttSession struct {
	c       *conn
	events  chan agent.STTEvent
	partial map[string]string // item id -> transcript so far (reader only)
	failed  bool              // an STTError went out (reader only)

	closeOnce sync.Once
}

func (s *sttSession) Write(f agent.Frame) error {
	ulaw := media.PCMU.Encode(make([]byte, 0, len(f)), f)
	return s.c.send(appendAudio{Type: "input_audio_buffer.append", Audio: base64.StdEncoding.EncodeToString(ulaw)})
}

// Finalize commits the audio buffer: the server transcribes what it holds
// now instead of waiting for its VAD to hear the turn end.
func (s *sttSession) Finalize() error {
	return s.c.send(simpleEvent{Type: "input_audio_buffer.commit"})
}

func (s *sttSession) Events() <-chan agent.STTEvent { return s.events }

func (s *sttSession) Close() error {
	s.closeOnce.Do(s.c.close)
	return nil
}

func (s *sttSession) emit(ev agent.STTEvent) {
	ev.At = time.Now()
	deliver(s.c, s.events, ev)
}

func (s *sttSession) end(err error) {
	if err != nil && !s.failed {
		s.emit(agent.STTEvent{Type: agent.STTError, Err: err})
	}
	close(s.events)
}

// fatal reports err and ends the stream, as the STT contract asks of an
// STTError.
func (s *sttSession) fatal(err error) {
	if e, ok := err.(*Error); ok {
		e.Fatal = true
	}
	s.failed = true
	s.emit(agent.STTEvent{Type: agent.STTError, Err: err})
	s.c.cancel(failure{err})
}

func (s *sttSession) handle(typ string, raw []byte) {
	if s.c.ctx.Err() != nil {
		return // already failed; the reader is about to stop
	}
	if typ == "" {
		s.fatal(&Error{Message: fmt.Sprintf("malformed server event: %s", textutil.Truncate(string(raw), 120))})
		return
	}
	var ev serverEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		s.fatal(&Error{Message: fmt.Sprintf("malformed %s event: %v", typ, err)})
		return
	}
	switch typ {
	case "input_audio_buffer.speech_started":
		s.emit(agent.STTEvent{Type: agent.STTSpeechStarted})
	case "input_audio_buffer.speech_stopped":
		s.emit(agent.STTEvent{Type: agent.STTUtteranceEnd})
	case "conversation.item.input_audio_transcription.delta":
		if ev.Delta == "" {
			return
		}
		s.partial[ev.ItemID] += ev.Delta
		s.emit(agent.STTEvent{Type: agent.STTPartial, Text: strings.TrimSpace(s.partial[ev.ItemID])})
	case "conversation.item.input_audio_transcription.completed":
		delete(s.partial, ev.ItemID)
		s.emit(agent.STTEvent{Type: agent.STTFinal, Text: strings.TrimSpace(ev.Transcript)})
	case "conversation.item.input_audio_transcription.failed":
		s.fatal(serverError("transcription failed", ev))
	case "error":
		// A commit with nothing buffered (the server VAD already took the
		// turn) is expected after Finalize, not a failure.
		if ev.Error != nil && ev.Error.Code == "input_audio_buffer_commit_empty" {
			return
		}
		s.fatal(serverError("", ev))
	}
}
