package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Realtime mode: a speech-to-speech model replaces STT, LLM and TTS. The
// session still owns the edge: the local VAD times the caller, agent audio
// goes through the same tracked playout, barge-in flushes at once and tells
// the model how much of its item was heard (Truncate), and tools, DTMF
// rules, timeouts and the transcript work as in the pipeline.

// TextSender is implemented by realtime sessions that accept text from the
// caller's side (DTMF keys reach the model this way).
type TextSender interface {
	SendText(text string) error
}

// rtSession is the loop's side of a realtime conversation.
type rtSession struct {
	s *Session

	mu    sync.Mutex
	ops   []rtOp
	wake  chan struct{}
	audio [][]int16

	// Loop-owned.
	items      map[string]*speech
	responding bool
	speechEnd  time.Time // the caller's last VAD end, for latency
	stopped    time.Time // the server's speech-stopped event
	lat        *TurnLatency
	userTurn   int
}

type rtOp struct {
	toolID, toolOut string
	truncItem       string
	truncAt         time.Duration
	text            string
	create          bool
}

func (r *rtSession) notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *rtSession) push(op rtOp) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
	r.notify()
}

func (r *rtSession) write(f []int16) {
	r.mu.Lock()
	if len(r.audio) >= sttQueueFrames {
		r.audio = r.audio[1:]
	}
	r.audio = append(r.audio, f)
	r.mu.Unlock()
	r.notify()
}

func (r *rtSession) take() ([][]int16, []rtOp) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, o := r.audio, r.ops
	r.audio, r.ops = nil, nil
	return a, o
}

func (r *rtSession) sendText(text string) { r.push(rtOp{text: text}) }

func (s *Session) startRealtime(prompt, greeting string) {
	opt := RealtimeOptions{Instructions: prompt, Voice: s.def.Voice, Language: s.def.Language, Tools: s.def.ToolDecls()}
	if opt.Voice == "" {
		opt.Voice = s.def.Realtime.Voice
	}
	r := &rtSession{s: s, wake: make(chan struct{}, 1), items: map[string]*speech{}, userTurn: -1}
	s.rt = r
	if greeting != "" {
		if s.p.TTS != nil {
			// Rendered (or cached) by our TTS so it plays at once; the model
			// is told it has been said.
			opt.Instructions += "\n\nYou have already greeted the caller with: " + jsonString(greeting)
			s.say(KindGreeting, greeting)
		} else {
			opt.Instructions += "\n\nStart the call by saying exactly: " + jsonString(greeting)
			r.push(rtOp{create: true})
		}
	}
	s.goWorker(func() { s.runRealtime(r, opt) })
}

// runRealtime keeps the model's session open, restarting it on failure.
func (s *Session) runRealtime(r *rtSession, opt RealtimeOptions) {
	f := s.withRetries(s.ctx, "realtime", s.retries, func() attemptResult {
		progress, err := s.rtAttempt(s.ctx, r, opt)
		return attemptResult{err: err, timedOut: errors.Is(err, context.DeadlineExceeded), progress: progress}
	})
	if f != nil {
		s.post(s.ctx, func() { s.fail(f) })
	}
}

func (s *Session) rtAttempt(ctx context.Context, r *rtSession, opt RealtimeOptions) (progress bool, err error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	v, err := s.startWithTimeout(actx, cancel, func(ctx context.Context) (any, error) {
		return s.p.Realtime.Start(ctx, opt)
	})
	if err != nil {
		return false, err
	}
	rs := v.(RealtimeSession)
	defer rs.Close()
	events := rs.Events()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return progress, nil
		case <-r.wake:
			frames, ops := r.take()
			for _, f := range frames {
				if err := rs.WriteAudio(f); err != nil {
					return progress, err
				}
			}
			for _, op := range ops {
				var err error
				switch {
				case op.create:
					err = rs.CreateResponse()
				case op.toolID != "":
					err = rs.SendToolResult(op.toolID, op.toolOut)
				case op.truncItem != "":
					err = rs.Truncate(op.truncItem, op.truncAt)
				case op.text != "":
					if ts, ok := rs.(TextSender); ok {
						err = ts.SendText(op.text)
					} else {
						s.log.Info("agent realtime model cannot take text; keys dropped", "text", op.text)
					}
				}
				if err != nil {
					return progress, err
				}
			}
		case ev, ok := <-events:
			if !ok {
				if lastErr != nil {
					return progress, fmt.Errorf("%w: %w", errStreamClosed, lastErr)
				}
				return progress, errStreamClosed
			}
			if ev.Type == RealtimeError {
				// Many are not fatal (a failed caller transcription, a
				// truncate the server refused); a dead session also closes
				// its events, and that is what restarts it.
				lastErr = ev.Err
				if lastErr == nil {
					lastErr = errors.New("realtime error event")
				}
				s.log.Warn("agent realtime error", "err", lastErr)
				continue
			}
			// Only a finished exchange proves the session works; a session
			// that dies after a few events each time must still run out of
			// retries.
			if ev.Type == RealtimeResponseDone || ev.Type == RealtimeUserText {
				progress = true
			}
			if !s.post(ctx, func() { s.onRealtimeEvent(ev) }) {
				return progress, nil
			}
		}
	}
}

// onSpeechStart: in realtime mode the model's server VAD owns turn-taking
// (it cancels its own response when the caller speaks), so barge-in follows
// its speech-started event; the local VAD only times the caller and keeps
// the echo guard.
func (r *rtSession) onSpeechStart(at time.Time) {
	s := r.s
	if s.agentAudible() && at.Sub(s.agentSince) < time.Duration(s.def.BargeIn.EchoGuardMS)*time.Millisecond {
		s.segIgnored = true
	}
}

func (r *rtSession) onSpeechEnd(at time.Time) {
	r.speechEnd = at
	r.s.callerActive(at)
}

// bargeIn flushes the agent and truncates the items it was saying.
func (r *rtSession) bargeIn() {
	s := r.s
	if len(s.playing) == 0 {
		return
	}
	playing := s.playing
	s.interruptAgent(false)
	for _, sp := range playing {
		if sp.itemID != "" && sp.interrupted {
			r.push(rtOp{truncItem: sp.itemID, truncAt: samplesDur(sp.heard)})
		}
	}
	s.emit(Event{Type: EventBargeIn, Text: "confirmed"})
}

func (s *Session) onRealtimeEvent(ev RealtimeEvent) {
	r := s.rt
	if s.done {
		return
	}
	now := s.now()
	switch ev.Type {
	case RealtimeAudio:
		sp := r.items[ev.ItemID]
		if sp == nil {
			if s.ending != nil && s.ending.started {
				return
			}
			sp = s.newSpeech(KindReply, "")
			sp.itemID = ev.ItemID
			r.items[ev.ItemID] = sp
			r.responding = true
			if r.lat == nil && !r.speechEnd.IsZero() {
				r.lat = &TurnLatency{SpeechEnd: r.speechEnd, Endpoint: r.stopped, TTSFirst: now}
				r.speechEnd = time.Time{}
			}
			if r.lat != nil {
				r.lat.Turn = sp.turn
			}
		}
		if sp.complete {
			return // truncated: the rest of it is not played
		}
		sp.addAudio(ev.Audio, nil)
		s.pump()
	case RealtimeAgentText:
		sp := r.items[ev.ItemID]
		if sp == nil {
			sp = s.newSpeech(KindReply, "")
			sp.itemID = ev.ItemID
			r.items[ev.ItemID] = sp
		}
		if !sp.complete || sp.interrupted {
			sp.text.WriteString(ev.Text)
			if sp.turn >= 0 && !sp.interrupted {
				s.turns[sp.turn].Text = sp.text.String()
				s.publishTurn(sp.turn)
			}
		}
	case RealtimeUserText:
		text := strings.TrimSpace(ev.Text)
		if text == "" {
			return
		}
		end := r.speechEnd
		if end.IsZero() {
			end = now
		}
		s.addTurn(Turn{Role: RoleUser, Kind: KindSpeech, Text: text, End: end, Final: true})
	case RealtimeSpeechStarted:
		guard := time.Duration(s.def.BargeIn.EchoGuardMS) * time.Millisecond
		if s.agentAudible() && !s.segIgnored && !s.def.BargeIn.Disabled && now.Sub(s.agentSince) >= guard {
			r.bargeIn()
		}
	case RealtimeSpeechStopped:
		r.stopped = now
	case RealtimeToolCall:
		if ev.ToolCall == nil {
			return
		}
		tc := *ev.ToolCall
		pt := &pendingTool{rec: ToolCallRecord{ID: tc.ID, Name: tc.Name, Arguments: tc.Arguments, Start: now}}
		pt.saidSomething = len(s.playing) > 0
		s.execTool(pt)
	case RealtimeResponseDone:
		r.responding = false
		for _, sp := range r.items {
			sp.complete = true
		}
		clear(r.items)
		s.pump()
		if s.ending != nil {
			s.runEnding()
		}
	}
}

// onFirstRealtimeAudio completes the latency row of a response.
func (r *rtSession) onFirstAudio(sp *speech, t time.Time) {
	if r.lat == nil || sp.kind != KindReply {
		return
	}
	r.lat.FirstPacket = t
	r.lat.Turn = sp.turn
	r.lat.finish()
	r.s.latency = append(r.s.latency, *r.lat)
	l := *r.lat
	r.s.emit(Event{Type: EventLatency, Latency: &l})
	r.lat = nil
}

// rtToolDone sends a tool's result to the model (which then answers).
func (r *rtSession) toolDone(pt *pendingTool) {
	if pt.rec.Name == ToolEndCall {
		return // the call is ending; no further response is wanted
	}
	if pt.rec.Name == ToolTransferCall && pt.rec.Error == "" {
		return
	}
	r.push(rtOp{toolID: pt.rec.ID, toolOut: pt.rec.Result})
	r.responding = true
}

func (r *rtSession) String() string { return fmt.Sprintf("realtime(%d items)", len(r.items)) }
