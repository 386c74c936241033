package openai

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/internal/audio"
	"github.com/voxbridge/voxbridge/agent/internal/textutil"
)

// STT transcribes utterances cut by our own VAD: frames are buffered and
// each Finalize uploads them as one 8 kHz WAV to {base}/audio/transcriptions.
// There are no partials, speech events or confidences (the endpoint gives
// none); speech start and end come from the local VAD. A failed upload ends
// the stream with an STTError event, like a dropped websocket would.
type STT struct {
	cfg    Config
	client *goopenai.Client
}

var _ agent.STT = (*STT)(nil)

// NewSTT returns a transcription client.
func NewSTT(cfg Config) (*STT, error) {
	c, err := cfg.client()
	if err != nil {
		return nil, err
	}
	return &STT{cfg: cfg, client: c}, nil
}

// maxUtterance bounds what one stream buffers between Finalizes (a caller
// who never pauses, or a session that forgot to Finalize). The API's own
// upload limit is 25 MB; 5 minutes of 8 kHz PCM is 4.8 MB.
const maxUtterance = 5 * 60 * 8000

// Start opens a stream; ctx bounds its uploads.
// UtteranceBased tells the session to write only the caller's speech, cut
// by its VAD, and to Finalize each utterance: this API transcribes whole
// recordings, so silence between utterances would only cost upload time.
func (s *STT) UtteranceBased() bool { return true }

var _ agent.UtteranceSTT = (*STT)(nil)

func (s *STT) Start(ctx context.Context, opt agent.STTOptions) (agent.STTStream, error) {
	lang := opt.Language
	if lang == "" {
		lang = s.cfg.Language
	}
	ctx, cancel := context.WithCancel(ctx)
	st := &sttStream{
		stt: s, ctx: ctx, cancel: cancel, lang: textutil.LanguageCode(lang),
		events: make(chan agent.STTEvent, eventBuffer),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	go st.run()
	return st, nil
}

type sttStream struct {
	stt    *STT
	ctx    context.Context
	cancel context.CancelFunc
	lang   string
	events chan agent.STTEvent
	wake   chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	buf    []int16   // audio since the last Finalize
	queue  [][]int16 // utterances waiting for upload, in order
	closed bool
}

func (st *sttStream) Write(f agent.Frame) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || st.ctx.Err() != nil {
		return errors.New("openai transcribe: stream closed")
	}
	if len(st.buf)+len(f) > maxUtterance {
		return errors.New("openai transcribe: utterance longer than 5 minutes; call Finalize")
	}
	st.buf = append(st.buf, f...)
	return nil
}

// Finalize queues everything written since the last Finalize for upload.
// An empty utterance sends nothing and yields no event.
func (st *sttStream) Finalize() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || st.ctx.Err() != nil {
		return errors.New("openai transcribe: stream closed")
	}
	if len(st.buf) == 0 {
		return nil
	}
	st.queue = append(st.queue, st.buf)
	st.buf = nil
	select {
	case st.wake <- struct{}{}:
	default:
	}
	return nil
}

func (st *sttStream) Events() <-chan agent.STTEvent { return st.events }

// Close abandons pending uploads and waits for the worker to stop.
func (st *sttStream) Close() error {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	st.cancel()
	<-st.done
	return nil
}

// run uploads utterances one at a time, so finals arrive in speaking order.
func (st *sttStream) run() {
	defer close(st.done)
	defer close(st.events)
	defer st.cancel() // after a failure, Write and Finalize report it
	for {
		select {
		case <-st.ctx.Done():
			return
		case <-st.wake:
		}
		for {
			st.mu.Lock()
			if len(st.queue) == 0 {
				st.mu.Unlock()
				break
			}
			pcm := st.queue[0]
			st.queue = st.queue[1:]
			st.mu.Unlock()
			if !st.transcribe(pcm) {
				return
			}
		}
	}
}

// transcribe uploads one utterance and reports the result; false means the
// stream is over.
func (st *sttStream) transcribe(pcm []int16) bool {
	wd := newWatchdog(st.ctx, st.stt.cfg.timeout())
	defer wd.stop()
	resp, err := st.stt.client.CreateTranscription(wd.ctx, goopenai.AudioRequest{
		Model:    st.stt.cfg.model(DefaultSTTModel),
		FilePath: "utterance.wav", // names the part; the bytes come from Reader
		Reader:   bytes.NewReader(audio.EncodeWAV(pcm, 8000)),
		Language: st.lang,
		Format:   goopenai.AudioResponseFormatJSON,
	})
	if st.ctx.Err() != nil {
		return false
	}
	err = wd.explain(err)
	ev := agent.STTEvent{Type: agent.STTFinal, Text: strings.TrimSpace(resp.Text), At: time.Now()}
	if err != nil {
		ev = agent.STTEvent{Type: agent.STTError, Err: wrapErr("transcribe", st.stt.cfg.APIKey, err), At: time.Now()}
	}
	select {
	case st.events <- ev:
	case <-st.ctx.Done():
		return false
	}
	return err == nil
}
