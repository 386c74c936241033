package agenttest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/agent"
)

// Utterance is what the fake STT recognises for one stretch of speech.
type Utterance struct {
	Text string
	// Partial is sent PartialAfter into the speech (default: the first
	// half of Text's words).
	Partial string
}

// STT is a scripted recognizer. It listens to the audio written to it: each
// stretch of loud audio (RMS above 300) is the next Utterance of Script. A
// partial comes PartialAfter into the speech, and the final FinalAfter
// after the speech ended (by its own ear, not the session's VAD). Finalize
// with nothing pending answers an empty final at once, as Deepgram does.
type STT struct {
	Script       []Utterance
	PartialAfter time.Duration // default 100 ms
	FinalAfter   time.Duration // default 200 ms
	// FailStarts makes the first n Start calls fail.
	FailStarts int
	// FailStreams makes the first n streams report an error after their
	// first second of audio.
	FailStreams int
	// Deaf streams accept audio and never say anything (a stuck provider).
	Deaf bool
	// Utterances makes it ask for VAD-cut utterances (agent.UtteranceSTT)
	// instead of a continuous stream.
	Utterances bool

	mu        sync.Mutex
	next      int
	starts    int
	finalizes int
	streams   int
	written   int
}

// UtteranceBased implements agent.UtteranceSTT.
func (s *STT) UtteranceBased() bool { return s.Utterances }

// Written reports how many frames were written to all its streams.
func (s *STT) Written() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written
}

// Starts reports how many streams were started (including failed starts).
func (s *STT) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// Finalizes reports how many times the session asked for a final.
func (s *STT) Finalizes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finalizes
}

// Heard reports how many utterances of the script were recognised.
func (s *STT) Heard() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

func (s *STT) take() (Utterance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next >= len(s.Script) {
		return Utterance{}, false
	}
	u := s.Script[s.next]
	s.next++
	return u, true
}

// Start implements agent.STT.
func (s *STT) Start(ctx context.Context, _ agent.STTOptions) (agent.STTStream, error) {
	s.mu.Lock()
	s.starts++
	if s.FailStarts > 0 {
		s.FailStarts--
		s.mu.Unlock()
		return nil, errors.New("fake stt: start refused")
	}
	fail := false
	if s.FailStreams > 0 {
		s.FailStreams--
		fail = true
	}
	s.streams++
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	st := &sttStream{
		stt:    s,
		ctx:    ctx,
		cancel: cancel,
		in:     make(chan sttInput, 512),
		events: make(chan agent.STTEvent, 64),
		fail:   fail,
	}
	go st.run()
	return st, nil
}

type sttInput struct {
	frame    []int16
	finalize bool
}

type sttStream struct {
	stt    *STT
	ctx    context.Context
	cancel context.CancelFunc
	in     chan sttInput
	events chan agent.STTEvent
	fail   bool
	once   sync.Once
}

func (st *sttStream) Write(f agent.Frame) error {
	st.stt.mu.Lock()
	st.stt.written++
	st.stt.mu.Unlock()
	select {
	case st.in <- sttInput{frame: f}:
		return nil
	case <-st.ctx.Done():
		return errors.New("fake stt: stream closed")
	default:
		return errors.New("fake stt: input overflow")
	}
}

func (st *sttStream) Finalize() error {
	st.stt.mu.Lock()
	st.stt.finalizes++
	st.stt.mu.Unlock()
	select {
	case st.in <- sttInput{finalize: true}:
		return nil
	case <-st.ctx.Done():
		return errors.New("fake stt: stream closed")
	}
}

func (st *sttStream) Events() <-chan agent.STTEvent { return st.events }

func (st *sttStream) Close() error {
	st.cancel()
	return nil
}

func (st *sttStream) emit(ev agent.STTEvent) bool {
	ev.At = time.Now()
	select {
	case st.events <- ev:
		return true
	case <-st.ctx.Done():
		return false
	}
}

// run is the recognizer: it times speech by the audio it is given.
func (st *sttStream) run() {
	defer close(st.events)
	partialAfter, finalAfter := st.stt.PartialAfter, st.stt.FinalAfter
	if partialAfter <= 0 {
		partialAfter = 100 * time.Millisecond
	}
	if finalAfter <= 0 {
		finalAfter = 200 * time.Millisecond
	}
	var (
		speaking    bool
		loud, quiet time.Duration // of the current stretch
		partialSent bool
		utt         Utterance
		have        bool
		audio       time.Duration
	)
	for {
		var in sttInput
		select {
		case <-st.ctx.Done():
			return
		case in = <-st.in:
		}
		if st.stt.Deaf {
			continue
		}
		if in.finalize {
			if !speaking && !st.emit(agent.STTEvent{Type: agent.STTFinal}) {
				return
			}
			continue
		}
		audio += frameDur
		if st.fail && audio >= time.Second {
			st.emit(agent.STTEvent{Type: agent.STTError, Err: errors.New("fake stt: connection reset")})
			return
		}
		if rms(in.frame) > 300 {
			if !speaking {
				speaking, loud, partialSent = true, 0, false
				utt, have = st.stt.take()
				if !st.emit(agent.STTEvent{Type: agent.STTSpeechStarted}) {
					return
				}
			}
			loud += frameDur
			quiet = 0
			if have && !partialSent && loud >= partialAfter {
				partialSent = true
				p := utt.Partial
				if p == "" {
					w := strings.Fields(utt.Text)
					p = strings.Join(w[:(len(w)+1)/2], " ")
				}
				if !st.emit(agent.STTEvent{Type: agent.STTPartial, Text: p}) {
					return
				}
			}
			continue
		}
		if !speaking {
			continue
		}
		quiet += frameDur
		if quiet >= finalAfter {
			speaking = false
			text := ""
			if have {
				text = utt.Text
			}
			if !st.emit(agent.STTEvent{Type: agent.STTFinal, Text: text, Confidence: 0.9}) {
				return
			}
		}
	}
}
