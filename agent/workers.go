package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Provider I/O runs on workers owned by the session, never on its loop:
// starting a stream dials the network, and writes may block. Workers talk
// to the loop only through post, and retry a failing provider a bounded
// number of times before reporting a ProviderFailure.

// backoff is the pause before retry attempt n (n ≥ 2).
func backoff(n int) time.Duration { return time.Duration(100<<min(n-2, 4)) * time.Millisecond }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errKind names how a provider failed.
func errKind(err error, timedOut bool) string {
	switch {
	case timedOut || errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, errStreamClosed):
		return "closed"
	}
	return "error"
}

var errStreamClosed = errors.New("stream closed unexpectedly")

// attemptResult is how one attempt at a provider ended.
type attemptResult struct {
	err      error
	timedOut bool
	// progress: the attempt did useful work (a transcript, a response), so
	// the failures before it no longer count.
	progress bool
	// final: its output already reached the caller, and a retry would
	// repeat it.
	final bool
}

// withRetries runs attempt until one ends without error or ctx ends (nil
// either way), or until more attempts in a row failed than retries allow,
// which is the failure it returns.
func (s *Session) withRetries(ctx context.Context, provider string, retries int, attempt func() attemptResult) *ProviderFailure {
	failures := 0
	timedOut := false
	for {
		// After a timeout the caller has waited long enough: no backoff.
		if failures > 0 && !timedOut && !sleepCtx(ctx, backoff(failures+1)) {
			return nil
		}
		r := attempt()
		if r.err == nil || ctx.Err() != nil {
			return nil
		}
		if r.progress {
			failures = 0
		}
		failures++
		timedOut = r.timedOut
		kind := errKind(r.err, r.timedOut)
		s.log.Warn("agent provider attempt failed", "provider", provider, "failures", failures, "kind", kind, "err", r.err)
		if failures > retries || r.final {
			return &ProviderFailure{Provider: provider, Kind: kind, Attempts: failures, Err: r.err.Error()}
		}
	}
}

// ---- LLM ----

// runLLM streams one round's completion to the loop, retrying when the
// request fails, errs or stays silent before its first event.
func (s *Session) runLLM(ctx context.Context, rd *round, req LLMRequest) {
	f := s.withRetries(ctx, "llm", s.llmRetries, func() attemptResult {
		got, err, timedOut := s.llmAttempt(ctx, rd, req)
		return attemptResult{err: err, timedOut: timedOut, final: got}
	})
	switch {
	case ctx.Err() != nil:
	case f == nil:
		s.post(ctx, func() { s.onLLMDone(rd) })
	default:
		s.post(ctx, func() {
			if s.reply == rd.reply {
				s.fail(f)
			}
		})
	}
}

// llmAttempt runs one request; got says events were delivered. Until the
// first token it may wait llmFirstToken, then LLMTimeout between events.
func (s *Session) llmAttempt(ctx context.Context, rd *round, req LLMRequest) (got bool, err error, timedOut bool) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	limit := s.llmFirstToken
	watchdog := time.AfterFunc(limit, cancel)
	defer watchdog.Stop()
	quiet := func() error {
		if !got {
			return fmt.Errorf("no first token within %v", limit)
		}
		return fmt.Errorf("no reply within %v", limit)
	}
	events, err := s.p.LLM.Stream(actx, req)
	if err != nil {
		if !watchdog.Stop() && ctx.Err() == nil {
			return false, fmt.Errorf("%w: %w", quiet(), err), true
		}
		return false, err, false
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				if !watchdog.Stop() && ctx.Err() == nil {
					return got, quiet(), true
				}
				return got, nil, false
			}
			if ev.Err != nil {
				return got, ev.Err, false
			}
			if ev.Text == "" && ev.ToolCall == nil {
				// Keep-alives and role-only chunks are not a first token.
				if got {
					watchdog.Reset(limit)
				}
				continue
			}
			got = true
			limit = s.opt.LLMTimeout
			watchdog.Reset(limit)
			if !s.post(ctx, func() { s.onLLMEvent(rd, ev) }) {
				return got, ctx.Err(), false
			}
		case <-actx.Done():
			if ctx.Err() != nil {
				return got, ctx.Err(), false
			}
			return got, quiet(), true
		}
	}
}

// ---- TTS ----

// ttsConn is the loop's handle on a synthesis worker: text, flush and close
// are queued without blocking.
type ttsConn struct {
	mu   sync.Mutex
	ops  []ttsOp
	wake chan struct{}
}

type ttsOp struct {
	text  string
	flush bool
	close bool
}

func (c *ttsConn) push(op ttsOp) {
	c.mu.Lock()
	c.ops = append(c.ops, op)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *ttsConn) writeText(t string) { c.push(ttsOp{text: t}) }

// flush asks for everything written to be synthesized.
func (c *ttsConn) flush() { c.push(ttsOp{flush: true}) }

// close says nothing more will be written; the stream closes once the
// audio of every flush has arrived.
func (c *ttsConn) close() { c.push(ttsOp{close: true}) }

func (c *ttsConn) take() []ttsOp {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := c.ops
	c.ops = nil
	return ops
}

// startTTS starts a synthesis worker. onChunk and onFail run on the loop.
func (s *Session) startTTS(ctx context.Context, onChunk func(TTSChunk), onFail func(*ProviderFailure)) *ttsConn {
	c := &ttsConn{wake: make(chan struct{}, 1)}
	s.goWorker(func() { s.runTTS(ctx, c, onChunk, onFail) })
	return c
}

func (s *Session) runTTS(ctx context.Context, c *ttsConn, onChunk func(TTSChunk), onFail func(*ProviderFailure)) {
	st := &ttsState{}
	f := s.withRetries(ctx, "tts", s.retries, func() attemptResult {
		err, timedOut := s.ttsAttempt(ctx, c, st, onChunk)
		// After a wait for first audio the caller has been in silence
		// TTSTimeout already: another such wait is not worth it.
		return attemptResult{err: err, timedOut: timedOut, final: st.delivered || timedOut}
	})
	if f != nil {
		s.post(ctx, func() { onFail(f) })
	}
}

// ttsState survives retries: every op so far is replayed on a new stream.
type ttsState struct {
	log       []ttsOp
	delivered bool
	closing   bool
}

func (s *Session) ttsAttempt(ctx context.Context, c *ttsConn, st *ttsState, onChunk func(TTSChunk)) (err error, timedOut bool) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.startWithTimeout(actx, cancel, func(ctx context.Context) (any, error) {
		return s.p.TTS.Start(ctx, s.ttsOptions())
	})
	if err != nil {
		return err, errors.Is(err, context.DeadlineExceeded)
	}
	tts := stream.(TTSStream)
	defer tts.Close()
	audio := tts.Audio()
	owed := 0 // flushes whose final chunk has not arrived
	var firstAudio *time.Timer
	var firstAudioC <-chan time.Time
	armWait := func() {
		if firstAudio == nil {
			firstAudio = time.NewTimer(s.opt.TTSTimeout)
			firstAudioC = firstAudio.C
		} else {
			firstAudio.Reset(s.opt.TTSTimeout)
			firstAudioC = firstAudio.C
		}
	}
	defer func() {
		if firstAudio != nil {
			firstAudio.Stop()
		}
	}()
	apply := func(op ttsOp) error {
		switch {
		case op.close:
			st.closing = true
		case op.flush:
			owed++
			armWait()
			return tts.Flush()
		default:
			return tts.WriteText(op.text)
		}
		return nil
	}
	for _, op := range st.log {
		if err := apply(op); err != nil {
			return err, false
		}
	}
	for {
		if st.closing && owed == 0 {
			return nil, false
		}
		select {
		case <-ctx.Done():
			return ctx.Err(), false
		case <-c.wake:
			for _, op := range c.take() {
				st.log = append(st.log, op)
				if err := apply(op); err != nil {
					return err, false
				}
			}
		case ch, ok := <-audio:
			if !ok {
				return errStreamClosed, false
			}
			if ch.Err != nil {
				return ch.Err, false
			}
			if len(ch.PCM) > 0 {
				st.delivered = true
				if firstAudio != nil {
					firstAudio.Stop()
					firstAudioC = nil
				}
			}
			if ch.Final && owed > 0 {
				owed--
				if owed > 0 {
					armWait()
				}
			}
			if !s.post(ctx, func() { onChunk(ch) }) {
				return ctx.Err(), false
			}
		case <-firstAudioC:
			return fmt.Errorf("no audio within %v", s.opt.TTSTimeout), true
		}
	}
}

// startWithTimeout bounds a provider's Start (a dial that hangs) without
// tying the stream's lifetime to the timeout: on timeout it cancels ctx
// (the attempt's, through cancel) and waits for Start to give up.
func (s *Session) startWithTimeout(ctx context.Context, cancel context.CancelFunc, start func(context.Context) (any, error)) (any, error) {
	type res struct {
		v   any
		err error
	}
	ch := make(chan res, 1)
	go func() {
		v, err := start(ctx)
		ch <- res{v, err}
	}()
	t := time.NewTimer(s.opt.LLMTimeout)
	defer t.Stop()
	var r res
	timedOut := false
	select {
	case r = <-ch:
		return r.v, r.err
	case <-t.C:
		timedOut = true
	case <-ctx.Done():
	}
	cancel()
	r = <-ch // a Start that ignores its context would hang here
	if r.err == nil {
		if c, ok := r.v.(interface{ Close() error }); ok {
			c.Close()
		}
	}
	if timedOut {
		return nil, fmt.Errorf("start: %w", context.DeadlineExceeded)
	}
	return nil, context.Cause(ctx)
}

// ---- STT ----

// sttConn is the loop's handle on the recognition worker: frames and
// finalize requests queue in order without blocking; if the provider
// stalls, the oldest frames are dropped.
type sttConn struct {
	mu      sync.Mutex
	ops     []sttOp
	frames  int // frames in ops
	restart bool
	stopped bool
	wake    chan struct{}
	dropped int
	// unanswered (owned by the worker) holds what was written and has no
	// transcript yet: for an utterance recognizer each Finalize's
	// utterance until its final comes, for a continuous one the audio
	// since the last final. A new stream after a failure gets it again,
	// so a dropped upload or connection costs time, not the caller's
	// words.
	unanswered []sttOp
	// keep bounds unanswered, in ops.
	keep int
}

// Bounds of the audio kept for a retry: 30 s of utterances (speech only),
// or 10 s of a continuous stream (silence included).
const (
	maxUnansweredUtterances = 1500
	maxUnansweredStream     = 500
)

// sent notes ops written to the recognizer.
func (c *sttConn) sent(ops []sttOp) {
	c.unanswered = append(c.unanswered, ops...)
	if n := len(c.unanswered) - c.keep; n > 0 {
		c.unanswered = slices.Delete(c.unanswered, 0, n)
	}
}

// answered drops what a final covered: the oldest utterance, or for a
// continuous recognizer everything so far.
func (c *sttConn) answered(utterances bool) {
	if !utterances {
		c.unanswered = c.unanswered[:0]
		return
	}
	for i, op := range c.unanswered {
		if op.frame == nil {
			c.unanswered = slices.Delete(c.unanswered, 0, i+1)
			return
		}
	}
}

// sttOp is a frame to write, or (nil frame) a Finalize.
type sttOp struct{ frame []int16 }

const sttQueueFrames = 150 // 3 s

func (c *sttConn) notify() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *sttConn) write(f []int16) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	if c.frames >= sttQueueFrames {
		for i, op := range c.ops {
			if op.frame != nil {
				c.ops = slices.Delete(c.ops, i, i+1)
				c.frames--
				c.dropped++
				break
			}
		}
	}
	c.ops = append(c.ops, sttOp{frame: f})
	c.frames++
	c.mu.Unlock()
	c.notify()
}

// finalize asks for the final transcript of everything written so far.
func (c *sttConn) finalize() {
	c.mu.Lock()
	c.ops = append(c.ops, sttOp{})
	c.mu.Unlock()
	c.notify()
}

// hung asks for a new stream: the current one stopped answering.
func (c *sttConn) hung() {
	c.mu.Lock()
	c.restart = true
	c.mu.Unlock()
	c.notify()
}

func (c *sttConn) stop() {
	c.mu.Lock()
	c.stopped = true
	c.ops, c.frames = nil, 0
	c.mu.Unlock()
	c.notify()
}

func (c *sttConn) take() (ops []sttOp, restart, stopped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops, restart, stopped = c.ops, c.restart, c.stopped
	c.ops, c.frames, c.restart = nil, 0, false
	return
}

func (s *Session) startSTT() *sttConn {
	c := &sttConn{wake: make(chan struct{}, 1), keep: maxUnansweredStream}
	if s.utterances {
		c.keep = maxUnansweredUtterances
	}
	s.goWorker(func() { s.runSTT(c) })
	return c
}

// runSTT keeps a recognition stream open for the whole call, restarting it
// when it fails; too many failures in a row without a transcript between
// them is a provider failure.
func (s *Session) runSTT(c *sttConn) {
	f := s.withRetries(s.ctx, "stt", s.retries, func() attemptResult {
		progress, err, timedOut := s.sttAttempt(s.ctx, c)
		return attemptResult{err: err, timedOut: timedOut, progress: progress}
	})
	if f != nil {
		s.post(s.ctx, func() { s.fail(f) })
	}
}

var errSTTHung = errors.New("no transcript for speech within the timeout")

func (s *Session) sttAttempt(ctx context.Context, c *sttConn) (progress bool, err error, timedOut bool) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	v, err := s.startWithTimeout(actx, cancel, func(ctx context.Context) (any, error) {
		return s.p.STT.Start(ctx, STTOptions{Language: s.def.Language})
	})
	if err != nil {
		return false, err, errors.Is(err, context.DeadlineExceeded)
	}
	stream := v.(STTStream)
	defer stream.Close()
	events := stream.Events()
	write := func(ops []sttOp) error {
		for _, op := range ops {
			var err error
			if op.frame == nil {
				err = stream.Finalize()
			} else {
				err = stream.Write(op.frame)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := write(c.unanswered); err != nil {
		return progress, err, false
	}
	for {
		select {
		case <-ctx.Done():
			return progress, nil, false
		case <-c.wake:
			ops, restart, stopped := c.take()
			if stopped {
				return progress, nil, false
			}
			if restart {
				return progress, errSTTHung, true
			}
			c.sent(ops)
			if err := write(ops); err != nil {
				return progress, err, false
			}
		case ev, ok := <-events:
			if !ok {
				return progress, errStreamClosed, false
			}
			if ev.Type == STTError {
				err := ev.Err
				if err == nil {
					err = errors.New("stt error event")
				}
				return progress, err, false
			}
			if ev.Type == STTFinal && ev.Text != "" {
				progress = true
			}
			if ev.Type == STTFinal {
				c.answered(s.utterances)
			}
			if !s.post(ctx, func() { s.onSTTEvent(ev) }) {
				return progress, nil, false
			}
		}
	}
}
