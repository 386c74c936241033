package agent

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/voxbridge/voxbridge/media/vad"
)

// speech is one stretch of agent audio on its way to the caller: a canned
// phrase or one LLM round's reply. Audio arrives in pieces (from the TTS or
// the cache), is queued for playout in order, and is tracked until it has
// been sent, so an interruption knows exactly what the caller heard.
type speech struct {
	kind  string
	text  strings.Builder // what is being said (grows with the LLM)
	words []WordTiming    // alignment, offsets from the start of pcm
	pcm   []int16         // all audio received so far
	enq   int             // pcm[:enq] has been handed to the call
	// complete: no more audio will arrive.
	complete bool
	chunks   []*playChunk

	firstPacket time.Time
	heard       int  // samples heard, set when flushed
	flushed     bool // its queued audio was flushed (it may resume)
	resumedFrom int  // where playback resumed after a flush
	interrupted bool // cut for good by a barge-in (or the end of the call)
	// sharedPCM: pcm belongs to the cache and must not be appended to.
	sharedPCM bool
	// waitFiller: a filler said because the model was slow to start; the
	// reply's latency is measured to the reply itself, not to it.
	waitFiller bool

	// stopTTS ends the synthesis of a canned phrase.
	stopTTS func()

	itemID string // the realtime model's item it voices
	turn   int    // transcript index of the agent turn this belongs to
	round  *round // the LLM round it voices, nil for canned phrases
}

type playChunk struct {
	off, n    int
	done      <-chan struct{}
	started   <-chan time.Time
	startedAt time.Time
	finished  bool
}

// addAudio appends received audio and its word timings (offsets from the
// start of the stream's audio, which is the speech's).
func (sp *speech) addAudio(pcm []int16, words []WordTiming) {
	sp.words = append(sp.words, words...)
	if sp.sharedPCM {
		sp.pcm = slices.Clone(sp.pcm)
		sp.sharedPCM = false
	}
	sp.pcm = append(sp.pcm, pcm...)
}

// sent reports whether every received sample has been queued and sent.
func (sp *speech) sent() bool {
	if !sp.complete || sp.enq < len(sp.pcm) {
		return false
	}
	for _, c := range sp.chunks {
		if !c.finished {
			return false
		}
	}
	return true
}

// heardAt is how many samples had gone out by at, from the chunks' start
// times: chunks play back to back, one packet per 20 ms from when their
// first packet left, and start on a packet boundary (see pump), so the
// count is whole packets sent, the one that left at at included. That is
// exactly where a paused speech resumes: nothing skipped, nothing repeated.
func (sp *speech) heardAt(at time.Time) int {
	h := sp.resumedFrom
	for _, c := range sp.chunks {
		if c.startedAt.IsZero() {
			select {
			case t, ok := <-c.started:
				if ok {
					c.startedAt = t
				}
			default:
			}
		}
		if c.startedAt.IsZero() || c.startedAt.After(at) {
			continue
		}
		packets := int(at.Sub(c.startedAt)/vad.FrameDuration) + 1
		played := min(c.n, packets*vad.FrameSamples)
		h = max(h, c.off+played)
	}
	return h
}

// heardText is the text the caller heard, given sp.heard samples.
func (sp *speech) heardText() string {
	total := time.Duration(0)
	if sp.complete {
		total = samplesDur(len(sp.pcm))
	}
	return heardText(sp.text.String(), sp.words, samplesDur(sp.heard), total)
}

func samplesDur(n int) time.Duration { return time.Duration(n) * time.Second / vad.SampleRate }

func (s *Session) cacheKey(text string) CacheKey {
	return PhraseKey(s.def.TTS, text, s.def.Voice, s.def.Language)
}

func (s *Session) ttsOptions() TTSOptions {
	o := TTSOptions{Voice: s.def.Voice, Language: s.def.Language}
	if o.Voice == "" && s.def.TTS != nil {
		o.Voice = s.def.TTS.Voice
	}
	return o
}

// say speaks a canned phrase: from the cache at once, or rendered by the
// TTS (and cached for the next call).
func (s *Session) say(kind, text string) { s.sayWith(kind, text, false) }

// sayWith is say; with builtin, the built-in apology stands in when the TTS
// fails. It returns the speech, nil when nothing can say it.
func (s *Session) sayWith(kind, text string, builtin bool) *speech {
	if pcm, ok := s.cache.Get(s.cacheKey(text)); ok {
		s.playCanned(kind, text, pcm)
		return nil
	}
	if s.p.TTS == nil {
		// Nothing can say it (a realtime agent without a TTS): it is not
		// said, and not put in the transcript as if it had been.
		s.log.Info("agent phrase skipped: no TTS", "kind", kind)
		return nil
	}
	sp := s.newSpeech(kind, text)
	key := s.cacheKey(text)
	ctx, cancel := context.WithCancel(s.ctx)
	sp.stopTTS = cancel
	tc := s.startTTS(ctx, func(ch TTSChunk) {
		if sp.complete {
			return // replaced by the built-in apology
		}
		sp.addAudio(ch.PCM, ch.Words)
		if ch.Final {
			sp.complete = true
			s.cache.Put(key, slices.Clone(sp.pcm))
		}
		s.pump()
	}, func(f *ProviderFailure) {
		s.log.Warn("agent phrase not rendered", "kind", kind, "err", f.Err)
		if builtin {
			s.useBuiltinApology(sp)
			return
		}
		sp.complete = true
		if len(sp.pcm) == 0 {
			// Never heard: neither the history nor the transcript holds it
			// as said.
			s.cutHistory(sp)
			sp.text.Reset()
			if sp.turn >= 0 {
				s.turns[sp.turn].Text = ""
				s.publishTurn(sp.turn)
			}
		}
		s.pump()
		// The TTS failed after its retries: waiting for the next reply to
		// find out again would leave the caller in silence (a greeting
		// nobody hears). The failure path apologizes with the built-in
		// prompt. A realtime agent speaks without it; an ending goes on.
		if s.rt == nil && s.ending == nil {
			s.fail(f)
		}
	})
	tc.writeText(text)
	tc.flush()
	tc.close()
	return sp
}

// playCanned plays already rendered audio.
func (s *Session) playCanned(kind, text string, pcm []int16) {
	sp := s.newSpeech(kind, text)
	sp.pcm, sp.sharedPCM, sp.complete = pcm, true, true
	s.pump()
}

func (s *Session) newSpeech(kind, text string) *speech {
	sp := &speech{kind: kind}
	sp.text.WriteString(text)
	sp.turn = s.addTurn(Turn{Role: RoleAssistant, Kind: kind, Text: text})
	if s.rt == nil && (kind == KindGreeting || kind == KindReminder || kind == KindGoodbye || kind == KindApology) {
		// The model should know what it has said (or, if cut, what was
		// heard). Fillers stay out: they fall between a tool call and its
		// result, where the history allows nothing else.
		s.history = append(s.history, Message{Role: RoleAssistant, Content: text})
	}
	s.playing = append(s.playing, sp)
	return sp
}

// prerender renders a phrase into the cache without playing it.
func (s *Session) prerender(text string) {
	if text == "" {
		return
	}
	key := s.cacheKey(text)
	if _, ok := s.cache.Get(key); ok {
		return
	}
	var pcm []int16
	tc := s.startTTS(s.ctx, func(ch TTSChunk) {
		pcm = append(pcm, ch.PCM...)
		if ch.Final {
			s.cache.Put(key, pcm)
		}
	}, func(f *ProviderFailure) {
		s.log.Warn("agent could not pre-render the apology", "err", f.Err)
	})
	tc.writeText(text)
	tc.flush()
	tc.close()
}

// pump queues received audio for playout, in order: a speech's audio goes
// out only once every speech before it has all been queued, and nothing
// goes out while a barge-in holds the agent.
func (s *Session) pump() {
	if s.barge != nil && s.barge.flushed {
		return
	}
	if s.reply != nil && s.reply.hold {
		return
	}
	for _, sp := range s.playing {
		end := len(sp.pcm)
		if !sp.complete {
			// Whole packets only until the speech is complete, so every
			// chunk starts on a packet boundary and heardAt is exact; the
			// remainder goes with the next piece of audio.
			end = sp.enq + (end-sp.enq)/vad.FrameSamples*vad.FrameSamples
		}
		if sp.enq < end {
			pcm := sp.pcm[sp.enq:end]
			n := len(pcm)
			if r := n % vad.FrameSamples; r != 0 {
				// The speech's last packet is padded with silence, so the
				// next speech starts on a boundary too (once per speech).
				pcm = append(slices.Clip(pcm), make([]int16, vad.FrameSamples-r)...)
			}
			done, started := s.call.EnqueueStarted(pcm)
			sp.chunks = append(sp.chunks, &playChunk{off: sp.enq, n: n, done: done, started: started})
			sp.enq = end
		}
		if !sp.complete {
			break
		}
	}
	s.reap()
}

// playoutChans are the channels the loop waits on: the first chunk whose
// start time is unknown, and the first chunk not yet sent.
func (s *Session) playoutChans() (<-chan time.Time, <-chan struct{}) {
	var started <-chan time.Time
	var done <-chan struct{}
	for _, sp := range s.playing {
		for _, c := range sp.chunks {
			if started == nil && c.startedAt.IsZero() && !c.finished {
				started = c.started
			}
			if done == nil && !c.finished {
				done = c.done
			}
		}
	}
	return started, done
}

func (s *Session) onChunkStarted(t time.Time, ok bool) {
	for _, sp := range s.playing {
		for _, c := range sp.chunks {
			if c.startedAt.IsZero() && !c.finished {
				if ok {
					c.startedAt = t
					s.onFirstAudio(sp, t)
				} else {
					c.finished = true // closed: it will never start
				}
				s.reap()
				return
			}
		}
	}
}

func (s *Session) onChunkDone() {
	for _, sp := range s.playing {
		for _, c := range sp.chunks {
			if !c.finished {
				c.finished = true
				if c.startedAt.IsZero() {
					select {
					case t := <-c.started:
						c.startedAt = t
						s.onFirstAudio(sp, t)
					default:
					}
				}
				s.reap()
				return
			}
		}
	}
}

// onFirstAudio notes the first packet of a speech: the start of its turn,
// the echo guard, and the turn's voice-to-voice latency.
func (s *Session) onFirstAudio(sp *speech, t time.Time) {
	if !sp.firstPacket.IsZero() {
		return
	}
	sp.firstPacket = t
	if s.agentSince.IsZero() {
		s.agentSince = t
	}
	if sp.turn >= 0 && s.turns[sp.turn].Start.IsZero() {
		s.turns[sp.turn].Start = t
		s.publishTurn(sp.turn)
	}
	if r := s.reply; r != nil && r.lat != nil && r.lat.FirstPacket.IsZero() && (sp.round != nil && sp.round.reply == r || sp.kind == KindFiller && !sp.waitFiller) {
		r.lat.FirstPacket = t
		s.recordLatency(r)
	}
	if s.rt != nil {
		s.rt.onFirstAudio(sp, t)
	}
}

// reap retires speeches that have been sent completely, in order, and
// moves the conversation on when the agent has fallen silent.
func (s *Session) reap() {
	reaped := false
	for len(s.playing) > 0 {
		sp := s.playing[0]
		if !sp.sent() {
			break
		}
		s.playing = s.playing[1:]
		reaped = true
		s.lastReminder = sp.kind == KindReminder
		s.speechDone(sp, s.now())
	}
	if reaped && len(s.playing) == 0 {
		s.agentSince = time.Time{}
		s.afterPlayout()
	}
}

// spokenText is a speech the agent finished, for echo detection.
type spokenText struct {
	text string
	end  time.Time
}

// speechDone closes a speech's part of the transcript.
func (s *Session) speechDone(sp *speech, at time.Time) {
	if t := sp.text.String(); t != "" {
		s.recentSpeech = append(s.recentSpeech, spokenText{t, at})
		if len(s.recentSpeech) > 4 {
			s.recentSpeech = slices.Delete(s.recentSpeech, 0, 1)
		}
	}
	if sp.turn >= 0 && sp.round == nil {
		t := &s.turns[sp.turn]
		t.End = at
		if sp.interrupted {
			t.Interrupted = true
			t.Text = sp.heardText()
		}
		t.Final = true
		s.publishTurn(sp.turn)
	}
}

// afterPlayout runs when the agent has nothing left to say.
func (s *Session) afterPlayout() {
	if s.ending != nil {
		s.runEnding()
		return
	}
	if r := s.reply; r != nil {
		s.maybeFinishReply(r)
	}
	// Waiting for the caller starts when the agent stops talking; a
	// reminder is not a new start, or the silence timeout would never come.
	if s.reply == nil && s.user == nil && !s.lastReminder {
		s.waitingSince = s.now()
	}
}

// agentAudible reports whether agent audio is queued or playing.
func (s *Session) agentAudible() bool {
	if s.barge != nil && s.barge.flushed {
		return false
	}
	for _, sp := range s.playing {
		for _, c := range sp.chunks {
			if !c.finished {
				return true
			}
		}
	}
	return false
}

// interruptAgent flushes the playout queue and records what the caller
// heard of each speech. With hold, the speeches are kept so they can
// resume; without, they end here, cut to what was heard.
func (s *Session) interruptAgent(hold bool) {
	if len(s.playing) == 0 {
		return
	}
	now := s.now()
	flush := false
	for _, sp := range s.playing {
		if !sp.flushed {
			flush = true
		}
	}
	if flush {
		s.call.Flush()
	}
	for _, sp := range s.playing {
		if sp.flushed {
			continue // heard was fixed at the flush
		}
		sp.heard = sp.heardAt(now)
		sp.flushed = true
		// Flushed chunks never send again; resuming queues new ones.
		for _, c := range sp.chunks {
			c.finished = true
		}
	}
	if hold {
		return
	}
	playing := s.playing
	s.playing = nil
	s.agentSince = time.Time{}
	for _, sp := range playing {
		sp.interrupted = sp.heard < len(sp.pcm) || !sp.complete
		sp.complete = true
		s.speechDone(sp, now)
		if sp.round != nil {
			sp.round.cut(s, sp)
		} else if sp.interrupted {
			s.cutHistory(sp)
		}
	}
}

// cutHistory replaces a canned phrase in the history with what was heard.
func (s *Session) cutHistory(sp *speech) {
	full := sp.text.String()
	for i := len(s.history) - 1; i >= 0; i-- {
		m := &s.history[i]
		if m.Role == RoleAssistant && m.Content == full && len(m.ToolCalls) == 0 {
			if h := sp.heardText(); h != "" {
				m.Content = h
			} else {
				s.history = slices.Delete(s.history, i, i+1)
			}
			return
		}
	}
}

// ---- Barge-in ----

// bargeIn is caller speech over the agent that may become an interruption.
// The agent pauses at the speech's onset (flushed) so it stops within a
// frame or two of the caller starting, not after the minimum speech; the
// barge-in is committed once the minimum is reached, else the agent resumes
// where it paused when the speech ends short or is only a backchannel.
type bargeIn struct {
	start     time.Time // when the caller started (VAD)
	flushed   bool      // the agent's audio was flushed and is held
	committed bool      // long enough to interrupt: resumes only on no words
	flushAt   time.Time
	resumeAt  time.Time
	thinking  bool // it began while the reply was not yet audible
}

// onSpeechStart is the VAD's start of caller speech.
func (s *Session) onSpeechStart(at time.Time) {
	s.segIgnored = false
	if s.ending != nil || s.failure != nil {
		s.segIgnored = true
		return
	}
	s.callerActive(at)
	if s.rt != nil {
		s.rt.onSpeechStart(at)
		return
	}
	switch {
	case s.agentAudible():
		if s.def.BargeIn.Disabled || at.Sub(s.agentSince) < time.Duration(s.def.BargeIn.EchoGuardMS)*time.Millisecond {
			// Echo of our own start, or barge-in is off: not the caller's turn.
			s.segIgnored = true
			return
		}
		if s.user == nil {
			s.user = newUserTurn(at)
			s.user.tentative = true
		}
		s.user.speaking = true
		// Pause now: heard is fixed here, and the audio resumes from it.
		s.barge = &bargeIn{start: at, flushed: true, flushAt: s.now()}
		s.interruptAgent(true)
		s.emit(Event{Type: EventBargeIn, Text: "pause"})
	case s.barge != nil && s.barge.flushed:
		// More speech while we hold after a flush.
		if s.user == nil {
			s.user = newUserTurn(at)
			s.user.tentative = true
		}
		s.user.speaking = true
	case s.reply != nil && s.reply.speculative:
		// The caller went on: the early reply is discarded.
		s.discardReply()
		s.continueUserTurn(at)
	case s.reply != nil:
		// The turn was committed but nothing is audible yet: hold the reply
		// until this is either noise or the caller going on.
		s.reply.hold = true
		if s.user == nil {
			s.user = newUserTurn(at)
			s.user.tentative = true
		}
		s.user.speaking = true
		s.barge = &bargeIn{start: at, thinking: true}
	default:
		s.continueUserTurn(at)
	}
}

func (s *Session) continueUserTurn(at time.Time) {
	if s.user == nil {
		s.user = newUserTurn(at)
	}
	s.user.speaking = true
	s.user.speechEnd = time.Time{}
}

// onSpeaking runs on every frame inside caller speech.
func (s *Session) onSpeaking(now time.Time) {
	if s.segIgnored || s.barge == nil || s.barge.committed {
		return
	}
	s.checkBargeIn(now)
}

// checkBargeIn decides whether caller speech over the agent interrupts:
// long enough (or enough words), and not only backchannels.
func (s *Session) checkBargeIn(now time.Time) {
	b, u := s.barge, s.user
	if b == nil || b.committed || u == nil {
		return
	}
	text := u.text()
	cw := contentWords(text, s.def.BargeIn.BackchannelWords)
	var trigger bool
	if n := s.def.BargeIn.MinWords; n > 0 {
		trigger = cw >= n
	} else {
		// Measured to the VAD's last active frame: the hangover's silence
		// is not speech, and counting it would flush for a short "uh-huh".
		long := s.voiceEnd().Sub(b.start) >= time.Duration(s.def.BargeIn.MinSpeechMS)*time.Millisecond
		backchannel := strings.TrimSpace(text) != "" && cw == 0
		trigger = long && !backchannel && u.speaking
	}
	if !trigger {
		return
	}
	if b.thinking {
		s.barge = nil
		s.callerWentOn()
		return
	}
	b.committed = true
	b.resumeAt = now.Add(time.Duration(s.def.BargeIn.ResumeAfterMS) * time.Millisecond)
	if !b.flushed {
		b.flushed, b.flushAt = true, now
		s.interruptAgent(true)
	}
	s.emit(Event{Type: EventBargeIn, Text: "flush"})
	s.log.Debug("agent barge-in", "after", now.Sub(b.start))
	if cw > 0 {
		s.confirmBargeIn()
	}
}

// voiceEnd is the wall time where the caller's latest speech was last
// active on the VAD's timeline (before any hangover).
func (s *Session) voiceEnd() time.Time {
	return s.frameAt.Add(-(s.vad.Elapsed() - s.vad.LastActive()))
}

// resumeIfBackchannel resumes a flushed agent at once when the
// interruption's words are all in and are only backchannels: the resume
// timer is for interruptions with no words at all.
func (s *Session) resumeIfBackchannel() {
	b, u := s.barge, s.user
	if b == nil || !b.committed || u == nil || u.speaking || u.waitsForFinal() {
		return
	}
	if text := u.text(); strings.TrimSpace(text) != "" && contentWords(text, s.def.BargeIn.BackchannelWords) == 0 {
		s.maybeResume()
	}
}

// confirmBargeIn makes a flushed interruption final: the caller said words.
func (s *Session) confirmBargeIn() {
	b := s.barge
	if b == nil || !b.committed {
		return
	}
	s.barge = nil
	if s.user != nil {
		s.user.tentative = false
	}
	s.stopForCaller()
	s.emit(Event{Type: EventBargeIn, Text: "confirmed"})
}

// maybeResume resumes the agent where it was cut when the interruption
// brought no words. With a recognizer that answers only after the speech
// (per-utterance transcription), the words come well after the resume
// timer: the decision waits for them, up to STTFinalTimeout, or the
// caller's question would be talked over and lost.
func (s *Session) maybeResume() {
	u := s.user
	if u != nil && u.speaking {
		return // decide once the caller stops
	}
	if u != nil && u.waitsForFinal() && !due(u.finalizeAt.Add(s.opt.STTFinalTimeout), s.now()) {
		return
	}
	if u != nil && contentWords(u.text(), s.def.BargeIn.BackchannelWords) > 0 {
		s.confirmBargeIn()
		return
	}
	s.barge = nil
	s.user = nil
	s.resumeHeld()
}

// resumeDeadline is when maybeResume must next look at a committed
// barge-in: the resume timer, or later the bounded wait for the
// interruption's transcript; none while the caller is still speaking (the
// end of their speech decides).
func (s *Session) resumeDeadline() time.Time {
	b, u := s.barge, s.user
	if b == nil || !b.committed {
		return time.Time{}
	}
	if u == nil {
		return b.resumeAt
	}
	if u.speaking {
		return time.Time{}
	}
	if u.waitsForFinal() {
		if f := u.finalizeAt.Add(s.opt.STTFinalTimeout); f.After(b.resumeAt) {
			return f
		}
	}
	return b.resumeAt
}

// resumeHeld plays the held speeches on from exactly where they paused:
// heard counts the whole packets that went out, so nothing is said twice
// and nothing is skipped.
func (s *Session) resumeHeld() {
	resumed := false
	for _, sp := range s.playing {
		if !sp.flushed {
			continue
		}
		sp.enq = min(sp.heard, len(sp.pcm))
		sp.resumedFrom = sp.enq
		sp.chunks = nil
		sp.flushed = false
		resumed = true
	}
	if resumed {
		// The agent starts again, and so can its echo: the echo guard
		// runs from here, or the echo of the resumed audio would pause it
		// again, and again.
		s.agentSince = s.now()
		s.emit(Event{Type: EventBargeIn, Text: "resume"})
	}
	s.pump()
}

// onBargeInEnd runs when caller speech that began over the agent stops
// without having interrupted.
func (s *Session) onBargeInEnd() {
	b := s.barge
	if b == nil || b.committed {
		return
	}
	s.barge = nil
	if s.user != nil && s.user.tentative {
		s.user = nil
	}
	if b.flushed {
		s.resumeHeld()
	}
	if b.thinking && s.reply != nil {
		s.reply.hold = false
		s.pump()
	}
}
