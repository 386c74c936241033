package openai

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/internal/audio"
)

// TTS synthesizes with {base}/audio/speech, asking for raw PCM (24 kHz,
// 16-bit little-endian mono) and resampling it once to 8 kHz as the body
// streams in. The endpoint takes whole texts, so a stream cuts the text it
// is given into sentences and clauses and synthesizes them in order, with
// at most one request running ahead of the one being played.
type TTS struct {
	cfg    Config
	client *goopenai.Client
}

var _ agent.TTS = (*TTS)(nil)

// SpeechRate is the sample rate of the endpoint's "pcm" format.
const SpeechRate = 24000

// NewTTS returns a speech client.
func NewTTS(cfg Config) (*TTS, error) {
	c, err := cfg.client()
	if err != nil {
		return nil, err
	}
	return &TTS{cfg: cfg, client: c}, nil
}

// Start opens a synthesis stream; ctx bounds it. TTSOptions.Language is not
// sent: the endpoint speaks whatever language the text is in.
func (t *TTS) Start(ctx context.Context, opt agent.TTSOptions) (agent.TTSStream, error) {
	voice := opt.Voice
	if voice == "" {
		voice = t.cfg.Voice
	}
	if voice == "" {
		voice = DefaultVoice
	}
	sp := splitter{minClause: t.cfg.MinClauseChars, maxLen: t.cfg.MaxSegmentChars}
	if sp.minClause <= 0 {
		sp.minClause = 40
	}
	if sp.maxLen <= 0 {
		sp.maxLen = 250
	}
	switch sp.firstWords = t.cfg.FirstSegmentWords; {
	case sp.firstWords == 0:
		sp.firstWords = 4
	case sp.firstWords < 0:
		sp.firstWords = 0
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &ttsStream{
		tts: t, voice: voice, split: sp, ctx: ctx, cancel: cancel,
		audio:  make(chan agent.TTSChunk, eventBuffer),
		wake:   make(chan struct{}, 1),
		bodies: make(chan fetched),
	}
	s.wg.Add(2)
	go s.fetch()
	go s.play()
	return s, nil
}

// segment is one speech request; final marks the end of a Flush. A final
// segment with no text only carries the mark.
type segment struct {
	text  string
	final bool
}

// fetched is a started request handed from fetch to play.
type fetched struct {
	seg  segment
	body io.ReadCloser
	err  error
	wd   *watchdog // nil for a mark without text
}

type ttsStream struct {
	tts    *TTS
	voice  string
	split  splitter
	ctx    context.Context
	cancel context.CancelFunc
	audio  chan agent.TTSChunk
	wake   chan struct{}
	bodies chan fetched // unbuffered: holds fetch back to one request ahead
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending string    // text not yet cut into a segment
	queue   []segment // cut, not yet requested
	cuts    int       // segments cut so far (the first is cut early)
	closed  bool
}

var errTTSClosed = errors.New("openai speech: stream closed")

// WriteText adds text; every complete sentence or long-enough clause is
// queued for synthesis at once.
func (s *ttsStream) WriteText(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ctx.Err() != nil {
		return errTTSClosed
	}
	s.pending += text
	for {
		sp := s.split
		sp.first = s.cuts == 0 && s.split.firstWords > 0
		seg, rest, ok := sp.next(strings.TrimLeft(s.pending, " \t\r\n"))
		if !ok {
			break
		}
		s.pending = rest
		s.cuts++
		if speakable(seg) {
			s.queue = append(s.queue, segment{text: strings.TrimSpace(seg)})
		}
	}
	s.notify()
	return nil
}

// Flush queues the rest of the text; the last chunk of its audio has Final
// set. A Flush with nothing to say yields one empty Final chunk.
func (s *ttsStream) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ctx.Err() != nil {
		return errTTSClosed
	}
	rest := strings.TrimSpace(s.pending)
	s.pending = ""
	switch {
	case speakable(rest):
		s.queue = append(s.queue, segment{text: rest, final: true})
		s.cuts++
	case len(s.queue) > 0:
		s.queue[len(s.queue)-1].final = true
	default:
		s.queue = append(s.queue, segment{final: true})
	}
	s.notify()
	return nil
}

func (s *ttsStream) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *ttsStream) Audio() <-chan agent.TTSChunk { return s.audio }

// Close stops synthesis, aborts requests in flight and waits for them.
func (s *ttsStream) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// fetch starts requests in segment order. Handing a body to play blocks
// until play has finished the previous one, so one request at most runs
// ahead of what is being played.
func (s *ttsStream) fetch() {
	defer s.wg.Done()
	for {
		seg, ok := s.nextSegment()
		if !ok {
			return
		}
		f := fetched{seg: seg}
		if seg.text != "" {
			f.wd = newWatchdog(s.ctx, s.tts.cfg.timeout())
			f.body, f.err = s.request(f.wd.ctx, seg.text)
			f.err = f.wd.explain(f.err)
			f.wd.pause() // until play starts reading it
		}
		select {
		case s.bodies <- f:
		case <-s.ctx.Done():
			if f.body != nil {
				f.body.Close()
			}
			if f.wd != nil {
				f.wd.stop()
			}
			return
		}
	}
}

func (s *ttsStream) nextSegment() (segment, bool) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			seg := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return seg, true
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return segment{}, false
		}
	}
}

func (s *ttsStream) request(ctx context.Context, text string) (io.ReadCloser, error) {
	resp, err := s.tts.client.CreateSpeech(ctx, goopenai.CreateSpeechRequest{
		Model:          goopenai.SpeechModel(s.tts.cfg.model(DefaultTTSModel)),
		Input:          text,
		Voice:          goopenai.SpeechVoice(s.voice),
		ResponseFormat: goopenai.SpeechResponseFormatPcm,
	})
	if err != nil {
		return nil, err
	}
	return resp.ReadCloser, nil
}

// play reads each body as it arrives and emits 8 kHz chunks. A failed
// request or a broken body ends the stream with an error chunk.
func (s *ttsStream) play() {
	defer s.wg.Done()
	defer close(s.audio)
	defer s.cancel() // a failed stream stops fetch too
	for {
		var f fetched
		select {
		case f = <-s.bodies:
		case <-s.ctx.Done():
			return
		}
		if f.err != nil {
			f.wd.stop()
			s.fail(f.err)
			return
		}
		if f.body == nil {
			if !s.emit(agent.TTSChunk{Final: true}) {
				return
			}
			continue
		}
		f.wd.kick()
		err := f.wd.explain(s.playBody(f))
		f.body.Close()
		f.wd.stop()
		if err != nil {
			s.fail(err)
			return
		}
	}
}

// minChunk is one 20 ms frame at 8 kHz: smaller reads are held back so the
// consumer is not flooded with slivers.
const minChunk = 160

func (s *ttsStream) playBody(f fetched) error {
	rs, err := audio.NewResampler(SpeechRate, 8000)
	if err != nil {
		return err
	}
	buf := make([]byte, 8192)
	var carry []byte // an odd trailing byte from the previous read
	var out []int16
	for {
		n, rerr := f.body.Read(buf)
		f.wd.kick()
		if n > 0 {
			data := append(carry, buf[:n]...)
			in := audio.PCMSamples(nil, data)
			carry = append(carry[:0], data[len(in)*2:]...)
			out = rs.Process(out, in)
			if len(out) >= minChunk {
				if !s.emit(agent.TTSChunk{PCM: out}) {
					return nil
				}
				out = nil
			}
		}
		if errors.Is(rerr, io.EOF) {
			out = rs.Flush(out)
			if len(out) > 0 || f.seg.final {
				s.emit(agent.TTSChunk{PCM: out, Final: f.seg.final})
			}
			return nil
		}
		if rerr != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			return rerr
		}
	}
}

func (s *ttsStream) emit(c agent.TTSChunk) bool {
	select {
	case s.audio <- c:
		return true
	case <-s.ctx.Done():
		return false
	}
}

func (s *ttsStream) fail(err error) {
	if s.ctx.Err() != nil {
		return
	}
	s.emit(agent.TTSChunk{Err: wrapErr("speech", s.tts.cfg.APIKey, err)})
}
