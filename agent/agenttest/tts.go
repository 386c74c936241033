package agenttest

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/agent"
)

// TTS is a fake synthesizer. Each word becomes a tone at ToneFor(word)
// lasting PerChar per letter (default 25 ms), followed by 40 ms of silence;
// a flush's audio starts FirstAudio after the flush and comes in chunks of
// Chunk (default 100 ms), all at once (faster than real time, like real
// providers). With Align, chunks carry word timings.
type TTS struct {
	FirstAudio time.Duration
	PerChar    time.Duration
	Chunk      time.Duration
	Align      bool
	// FailStarts makes the first n Start calls fail; FailAudio makes the
	// first n streams fail instead of answering their first flush.
	FailStarts, FailAudio int
	// Fail, when set, fails every Start whose returned error is non-nil.
	Fail func() error

	mu      sync.Mutex
	starts  int
	flushed []string
}

// Starts reports how many streams were started (including failed ones).
func (t *TTS) Starts() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.starts
}

// Spoken returns the text of every flush, in order.
func (t *TTS) Spoken() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.flushed)
}

// Render is the audio and word timings the fake makes for text.
func (t *TTS) Render(text string) ([]int16, []agent.WordTiming) {
	per := t.PerChar
	if per <= 0 {
		per = 25 * time.Millisecond
	}
	var pcm []int16
	var words []agent.WordTiming
	for _, w := range strings.Fields(text) {
		start := time.Duration(len(pcm)) * time.Second / sampleRate
		n := samples(per * time.Duration(len([]rune(w))))
		f := ToneFor(w)
		for i := 0; i < n; i++ {
			pcm = append(pcm, int16(0.3*32767*math.Sin(2*math.Pi*f*float64(i)/sampleRate)))
		}
		end := time.Duration(len(pcm)) * time.Second / sampleRate
		words = append(words, agent.WordTiming{Word: w, Start: start, End: end})
		pcm = append(pcm, make([]int16, samples(40*time.Millisecond))...)
	}
	return pcm, words
}

// Start implements agent.TTS.
func (t *TTS) Start(ctx context.Context, _ agent.TTSOptions) (agent.TTSStream, error) {
	t.mu.Lock()
	t.starts++
	if t.Fail != nil {
		if err := t.Fail(); err != nil {
			t.mu.Unlock()
			return nil, err
		}
	}
	if t.FailStarts > 0 {
		t.FailStarts--
		t.mu.Unlock()
		return nil, errors.New("fake tts: start refused")
	}
	fail := false
	if t.FailAudio > 0 {
		t.FailAudio--
		fail = true
	}
	t.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	st := &ttsStream{tts: t, ctx: ctx, cancel: cancel, in: make(chan string, 256), audio: make(chan agent.TTSChunk, 16), fail: fail}
	go st.run()
	return st, nil
}

type ttsStream struct {
	tts    *TTS
	ctx    context.Context
	cancel context.CancelFunc
	in     chan string // text; "\x00" is a flush
	audio  chan agent.TTSChunk
	fail   bool
}

func (st *ttsStream) put(s string) error {
	select {
	case st.in <- s:
		return nil
	case <-st.ctx.Done():
		return errors.New("fake tts: stream closed")
	}
}

func (st *ttsStream) WriteText(text string) error { return st.put(text) }
func (st *ttsStream) Flush() error                { return st.put("\x00") }
func (st *ttsStream) Audio() <-chan agent.TTSChunk {
	return st.audio
}
func (st *ttsStream) Close() error {
	st.cancel()
	return nil
}

func (st *ttsStream) run() {
	defer close(st.audio)
	chunk := st.tts.Chunk
	if chunk <= 0 {
		chunk = 100 * time.Millisecond
	}
	var text strings.Builder
	var offset time.Duration // of the stream's audio so far
	for {
		var s string
		select {
		case <-st.ctx.Done():
			return
		case s = <-st.in:
		}
		if s != "\x00" {
			text.WriteString(s)
			continue
		}
		flushed := text.String()
		text.Reset()
		st.tts.mu.Lock()
		st.tts.flushed = append(st.tts.flushed, strings.TrimSpace(flushed))
		st.tts.mu.Unlock()
		if d := st.tts.FirstAudio; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-st.ctx.Done():
				t.Stop()
				return
			}
		}
		if st.fail {
			select {
			case st.audio <- agent.TTSChunk{Err: errors.New("fake tts: synthesis failed")}:
			case <-st.ctx.Done():
			}
			return
		}
		pcm, words := st.tts.Render(flushed)
		n := samples(chunk)
		for i := 0; i < len(pcm) || i == 0; i += n {
			end := min(i+n, len(pcm))
			c := agent.TTSChunk{PCM: pcm[i:end], Final: end == len(pcm)}
			if st.tts.Align {
				for _, w := range words {
					at := time.Duration(i) * time.Second / sampleRate
					until := time.Duration(end) * time.Second / sampleRate
					if w.Start >= at && w.Start < until {
						w.Start += offset
						w.End += offset
						c.Words = append(c.Words, w)
					}
				}
			}
			select {
			case st.audio <- c:
			case <-st.ctx.Done():
				return
			}
			if end == len(pcm) {
				break
			}
		}
		offset += time.Duration(len(pcm)) * time.Second / sampleRate
	}
}
