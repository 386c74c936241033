package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// userTurn is the caller's turn being collected: VAD boundaries and the STT
// transcript, until the endpoint commits it.
type userTurn struct {
	start     time.Time
	speechEnd time.Time // last VAD end; zero while speaking
	speaking  bool
	// tentative: opened by speech over the agent that has not (yet)
	// interrupted; it becomes a real turn only if it does.
	tentative     bool
	finals        []string
	partial       string
	awaitingFinal bool      // Finalize sent, no final since
	finalizeAt    time.Time // when we asked
	finalAt       time.Time // last final received
	committed     bool
	kind          string
	turn          int // transcript index once committed
	// histLen is the history's length before the commit appended the
	// caller's words (to undo it when the caller goes on).
	histLen int
}

func newUserTurn(at time.Time) *userTurn {
	return &userTurn{start: at, kind: KindSpeech, turn: -1}
}

func (u *userTurn) text() string { return joinText(append(slices.Clone(u.finals), u.partial)...) }

// deadline is when the loop must next look at the turn's endpoint.
func (u *userTurn) deadline(s *Session) time.Time {
	if u.committed || u.speaking || u.speechEnd.IsZero() {
		if u.tentative && !u.speaking && u.awaitingFinal {
			return u.finalizeAt.Add(s.opt.STTFinalTimeout)
		}
		return time.Time{}
	}
	d := u.speechEnd.Add(endpointSilence(u.text(), s.def.Endpointing))
	if u.waitsForFinal() {
		if f := u.finalizeAt.Add(s.opt.STTFinalTimeout); f.After(d) {
			d = f
		}
	}
	return d
}

// waitsForFinal: the STT still owes us words (a partial not yet final, or
// nothing at all yet).
func (u *userTurn) waitsForFinal() bool {
	return u.awaitingFinal && (u.partial != "" || len(u.finals) == 0)
}

// onSpeechEnd is the VAD's end of caller speech.
func (s *Session) onSpeechEnd(at time.Time) {
	ignored := s.segIgnored
	s.segIgnored = false
	if ignored {
		return
	}
	if s.rt != nil {
		s.rt.onSpeechEnd(at)
		return
	}
	s.callerActive(at)
	u := s.user
	if u == nil {
		return
	}
	u.speaking = false
	u.speechEnd = at
	u.awaitingFinal = true
	u.finalizeAt = s.now()
	if !s.utterances {
		s.stt.finalize() // an utterance recognizer's was sent with its last frame
	}
	// The final transcript may have come before the VAD's hangover ran out.
	s.maybeSpeculate()
	if b := s.barge; b != nil && !b.committed {
		if s.def.BargeIn.MinWords > 0 {
			return // wait for the words before deciding
		}
		s.onBargeInEnd()
	} else if b != nil {
		s.resumeIfBackchannel()
	}
}

// onSTTEvent handles the recognizer's events.
func (s *Session) onSTTEvent(ev STTEvent) {
	if s.failure != nil {
		return
	}
	if s.ending != nil {
		s.onWordsWhileEnding(ev)
		return
	}
	now := s.now()
	u := s.user
	switch ev.Type {
	case STTPartial:
		if u == nil {
			return
		}
		u.partial = strings.TrimSpace(ev.Text)
		s.emit(Event{Type: EventPartial, Text: u.text()})
	case STTFinal:
		text := strings.TrimSpace(ev.Text)
		if u == nil {
			s.onLateFinal(text, now)
			return
		}
		if text != "" {
			u.finals = append(u.finals, text)
		}
		u.partial = ""
		u.awaitingFinal = false
		u.finalAt = now
		s.emit(Event{Type: EventPartial, Text: u.text()})
		s.maybeSpeculate()
	case STTUtteranceEnd:
		if u != nil && u.partial == "" {
			u.awaitingFinal = false
		}
	default:
		return
	}
	if u == nil {
		return
	}
	if b := s.barge; b != nil {
		if b.committed {
			if contentWords(u.text(), s.def.BargeIn.BackchannelWords) > 0 {
				s.confirmBargeIn()
			} else {
				s.resumeIfBackchannel()
			}
			return
		}
		s.checkBargeIn(now)
		if s.barge == b && !u.speaking && !u.awaitingFinal {
			s.onBargeInEnd() // its words are in and did not interrupt
		}
	}
}

// onWordsWhileEnding keeps what the caller says over a goodbye or a
// transfer's announcement: the conversation is over, but its record (and
// the history, should a transfer fail and the model speak again) holds
// every word.
func (s *Session) onWordsWhileEnding(ev STTEvent) {
	text := strings.TrimSpace(ev.Text)
	if ev.Type != STTFinal || contentWords(text, s.def.BargeIn.BackchannelWords) == 0 || s.echoOfAgent(text, s.now()) {
		return
	}
	now := s.now()
	s.addTurn(Turn{Role: RoleUser, Kind: KindSpeech, Text: text, Start: now, End: now, Final: true})
	// A transfer tool's result must follow its call in the history: the
	// words then stay in the transcript only.
	if pt := s.ending.toolCall; pt == nil || pt.done {
		s.history = append(s.history, Message{Role: RoleUser, Content: text})
	}
}

// onLateFinal takes words that came with no caller turn open: speech the
// VAD did not catch (very soft), speech the agent resumed over because its
// transcript was late, speech too short to interrupt, or speech at the
// agent's start that the echo guard set aside. Words the caller said
// become a turn the model sees whatever the agent is doing: it stops and
// answers them. Only backchannels and the agent's own echo are dropped.
func (s *Session) onLateFinal(text string, now time.Time) {
	if contentWords(text, s.def.BargeIn.BackchannelWords) == 0 {
		return
	}
	if s.echoOfAgent(text, now) {
		s.log.Debug("agent transcript dropped as echo of the agent", "text", text)
		return
	}
	u := newUserTurn(now)
	u.finals = []string{text}
	u.speechEnd, u.finalAt = now, now
	if !s.segEnd.IsZero() && !s.vad.Speaking() {
		// Most likely the words of the last segment the VAD saw: its
		// bounds time the turn (and its voice-to-voice latency).
		u.start, u.speechEnd = s.segStart, s.segEnd
	}
	s.callerActive(now)
	if s.agentAudible() || s.barge != nil || s.reply != nil || len(s.playing) > 0 {
		// As a confirmed barge-in: cut to what was heard.
		s.barge = nil
		s.stopForCaller()
		s.emit(Event{Type: EventBargeIn, Text: "confirmed"})
	}
	s.user = u
	s.emit(Event{Type: EventPartial, Text: text})
	if s.vad.Speaking() {
		return // the endpoint decides once the caller stops
	}
	// The speech ended before its transcript came: no more silence to wait.
	s.commitUserTurn(u, text, now)
}

// echoWindow is how long after the agent fell silent a transcript can
// still be its echo (the recognizer's own delay included).
const echoWindow = 3 * time.Second

// echoOfAgent reports whether text is most likely the agent's own voice
// coming back: at least three words, nearly all of them words the agent
// was saying or said moments ago. A caller repeating a word or two of the
// agent's is not taken for echo.
func (s *Session) echoOfAgent(text string, now time.Time) bool {
	w := words(text)
	if len(w) < 3 {
		return false
	}
	said := map[string]bool{}
	add := func(t string) {
		for _, x := range words(t) {
			said[x] = true
		}
	}
	for _, sp := range s.playing {
		add(sp.text.String())
	}
	for _, r := range s.recentSpeech {
		if now.Sub(r.end) <= echoWindow {
			add(r.text)
		}
	}
	n := 0
	for _, x := range w {
		if said[x] {
			n++
		}
	}
	return n*5 >= len(w)*4
}

// checkEndpoint commits the caller's turn once the silence after it is long
// enough for what they said, and the transcript is in.
func (s *Session) checkEndpoint(now time.Time) {
	u := s.user
	if u == nil || u.committed {
		return
	}
	if u.tentative {
		// Speech over the agent that did not interrupt: once its words are
		// in (or overdue) it is forgotten, unless they are words.
		if s.barge == nil && !u.speaking && due(u.deadline(s), now) {
			s.user = nil
			s.onLateFinal(u.text(), now)
		}
		return
	}
	if u.speaking || u.speechEnd.IsZero() || !due(u.deadline(s), now) {
		return
	}
	text := u.text()
	if contentWords(text, nil) == 0 {
		// Noise, or the STT heard nothing: not a turn. If the STT did not
		// even answer for real speech, it is stuck: get a new stream.
		if u.awaitingFinal && u.speechEnd.Sub(u.start) >= 500*time.Millisecond && s.stt != nil {
			s.log.Warn("agent stt gave no final for speech; restarting it")
			s.stt.hung()
		}
		s.user = nil
		s.resumeHeldReply()
		return
	}
	s.commitUserTurn(u, text, now)
}

// commitUserTurn ends the caller's turn and starts the agent's reply.
func (s *Session) commitUserTurn(u *userTurn, text string, now time.Time) {
	u.committed = true
	turn := Turn{Role: RoleUser, Kind: u.kind, Text: text, Start: u.start, End: u.speechEnd, Final: true}
	if turn.End.IsZero() {
		turn.End = now
	}
	if u.turn >= 0 {
		s.turns[u.turn] = turn
		turn.Index = u.turn
		s.turns[u.turn].Index = u.turn
		s.publishTurn(u.turn)
	} else {
		u.turn = s.addTurn(turn)
	}
	s.user = nil
	lat := &TurnLatency{SpeechEnd: u.speechEnd, Endpoint: now, STTFinal: u.finalAt}
	if r := s.reply; r != nil && r.speculative {
		if r.userText == text {
			// The early reply answered exactly this: keep it.
			r.speculative = false
			r.hold = false
			lat.Speculative = true
			lat.LLMRequest, lat.LLMFirstText, lat.TTSFirstText, lat.TTSFirst = r.lat.LLMRequest, r.lat.LLMFirstText, r.lat.TTSFirstText, r.lat.TTSFirst
			r.lat = lat
			r.userTurn = u
			u.histLen = len(s.history)
			s.history = append(s.history, Message{Role: RoleUser, Content: text})
			r.turn = s.addTurn(Turn{Role: RoleAssistant, Kind: KindReply})
			s.armWaitFiller(r)
			for _, rd := range r.rounds {
				if rd.sp != nil {
					rd.sp.turn = r.turn
				}
			}
			s.pump()
			return
		}
		s.discardReply()
	}
	if r := s.reply; r != nil && r.toolsRunning > 0 && !r.canceling {
		// Tools are still running for the reply the caller spoke over:
		// their results go to the model with these words once they are
		// in (the history takes nothing between a call and its result).
		r.superseded = true
		s.queued = &queuedTurn{u: u, text: text, lat: lat}
		return
	}
	if s.reply != nil {
		// A reply still running is superseded by the new turn.
		s.cancelReply()
	}
	s.answerTurn(u, text, lat)
}

// queuedTurn is a caller turn waiting for the tools of the reply it
// interrupted.
type queuedTurn struct {
	u    *userTurn
	text string
	lat  *TurnLatency
}

// answerTurn puts the caller's words in the history and starts the reply.
func (s *Session) answerTurn(u *userTurn, text string, lat *TurnLatency) {
	u.histLen = len(s.history)
	s.history = append(s.history, Message{Role: RoleUser, Content: text})
	s.startReply(u, lat, false)
}

// flushQueued hands a queued caller turn to the model (answer) or, when
// the conversation cannot answer it now, to the history only.
func (s *Session) flushQueued(answer bool) {
	q := s.queued
	if q == nil {
		return
	}
	s.queued = nil
	if answer {
		s.answerTurn(q.u, q.text, q.lat)
		return
	}
	q.u.histLen = len(s.history)
	s.history = append(s.history, Message{Role: RoleUser, Content: q.text})
}

// stopForCaller stops the reply because the caller spoke over it: its
// audio is cut to what was heard; tools still running keep running (their
// results matter to what the caller says next) and the reply ends with
// them, else it is cancelled now.
func (s *Session) stopForCaller() {
	s.interruptAgent(false)
	if r := s.reply; r != nil && r.toolsRunning > 0 && !r.speculative {
		r.superseded = true
		r.fillerAt = time.Time{}
		return
	}
	s.cancelReply()
}

// maybeSpeculate starts the reply early when the caller's words form a
// complete sentence and they are silent.
func (s *Session) maybeSpeculate() {
	u := s.user
	if !s.def.Endpointing.Speculative || u == nil || u.tentative || u.speaking || u.committed || s.reply != nil {
		return
	}
	text := u.text()
	if !completeSentence(text) || u.waitsForFinal() {
		return
	}
	s.startReply(u, &TurnLatency{SpeechEnd: u.speechEnd, STTFinal: u.finalAt}, true)
	s.reply.userText = text
}

// callerWentOn: speech while the reply was being prepared turned out to be
// the caller continuing. The reply is dropped and the turn reopened when it
// has had no effect yet; otherwise it is an ordinary interruption.
func (s *Session) callerWentOn() {
	r := s.reply
	if r == nil {
		return
	}
	if r.discardable() && r.userTurn != nil {
		prev := r.userTurn
		s.discardReply()
		// Undo the commit: the caller's turn goes on.
		s.history = s.history[:prev.histLen]
		prev.committed = false
		if cur := s.user; cur != nil {
			prev.finals = append(prev.finals, cur.finals...)
			prev.partial = cur.partial
			prev.speaking, prev.speechEnd = cur.speaking, cur.speechEnd
			prev.awaitingFinal, prev.finalizeAt = cur.awaitingFinal, cur.finalizeAt
		}
		s.user = prev
		return
	}
	if s.user != nil {
		s.user.tentative = false
	}
	s.stopForCaller()
}

// resumeHeldReply releases a reply held for caller noise.
func (s *Session) resumeHeldReply() {
	if r := s.reply; r != nil && r.superseded && s.queued == nil {
		// The speech it stopped for had no words: the reply goes on
		// (its next round once its tools are in).
		r.superseded = false
		r.hold = false
		s.maybeFinishReply(r)
		return
	}
	if r := s.reply; r != nil && r.hold && !r.speculative {
		r.hold = false
		s.pump()
	}
}

func (s *Session) dropUserTurn() {
	s.user = nil
	if b := s.barge; b != nil && b.flushed && !b.committed {
		// Paused for speech that is not a turn now: what was said goes on.
		s.barge = nil
		s.resumeHeld()
	}
	s.barge = nil
}

// ---- The agent's reply ----

// replyTurn is the agent's answer to one caller turn: one or more LLM
// rounds (more when tools are called), spoken as they stream.
type replyTurn struct {
	turn        int // transcript index of the assistant turn (-1 while speculative)
	userTurn    *userTurn
	userText    string // what a speculative reply answers
	speculative bool
	hold        bool // audio held (speculative, or caller noise)
	lat         *TurnLatency
	latDone     bool
	rounds      []*round
	cur         *round
	// toolsRunning counts tools of this reply not yet finished.
	toolsRunning int
	toolRan      bool // a tool with effects has run: cannot be discarded
	fillerAt     time.Time
	// waitFiller: the filler for a slow first token was said (once per
	// reply).
	waitFiller bool
	ctx        context.Context
	cancel     context.CancelFunc
	done       bool
	// canceling: cancelReply is answering its tools; their results must
	// not start another round.
	canceling bool
	// superseded: the caller spoke over it while its tools ran; it ends
	// when they are in, and the caller's turn (queued) is answered then.
	superseded bool
}

func (r *replyTurn) discardable() bool {
	if r.toolRan {
		return false
	}
	for _, rd := range r.rounds {
		if rd.sp != nil && !rd.sp.firstPacket.IsZero() {
			return false
		}
	}
	return true
}

// round is one LLM request and the speech of its text.
type round struct {
	id        int64
	reply     *replyTurn
	text      strings.Builder
	toolCalls []ToolCall
	llmDone   bool
	tts       *ttsConn
	unflushed int // bytes of text written since the last flush
	flushes   int // flushes sent, each answered by a final chunk
	finals    int
	sp        *speech
	msgIdx    int  // history index of its assistant message, -1 before
	started   bool // the model's first token (text or tool call) arrived
	tools     []*pendingTool
	ctx       context.Context
	cancel    context.CancelFunc
}

// pendingTool is a tool call being executed.
type pendingTool struct {
	round *round // nil in realtime mode
	rec   ToolCallRecord
	done  bool
	// saidSomething: the model spoke along with the call, so end_call needs
	// no goodbye of ours.
	saidSomething bool
}

// markEffect notes that a tool changed something outside the conversation,
// so its reply can no longer be discarded as if it never happened.
func (pt *pendingTool) markEffect() {
	if pt.round != nil {
		pt.round.reply.toolRan = true
	}
}

// startReply begins the agent's answer to u.
func (s *Session) startReply(u *userTurn, lat *TurnLatency, speculative bool) {
	ctx, cancel := context.WithCancel(s.ctx)
	r := &replyTurn{turn: -1, userTurn: u, speculative: speculative, hold: speculative, lat: lat, ctx: ctx, cancel: cancel}
	if !speculative {
		r.turn = s.addTurn(Turn{Role: RoleAssistant, Kind: KindReply})
	}
	s.reply = r
	s.startRound(r)
}

// messagesFor is the conversation a round sends: the history, plus the
// caller's words for a speculative reply (not in the history yet).
func (s *Session) messagesFor(r *replyTurn) []Message {
	msgs := slices.Clone(s.history)
	if r.speculative && r.userTurn != nil {
		msgs = append(msgs, Message{Role: RoleUser, Content: r.userTurn.text()})
	}
	return msgs
}

func (s *Session) startRound(r *replyTurn) {
	ctx, cancel := context.WithCancel(r.ctx)
	rd := &round{id: s.newID(), reply: r, msgIdx: -1, ctx: ctx, cancel: cancel}
	r.rounds = append(r.rounds, rd)
	r.cur = rd
	rd.sp = &speech{kind: KindReply, round: rd, turn: r.turn}
	s.playing = append(s.playing, rd.sp)
	s.armWaitFiller(r)

	req := LLMRequest{Messages: s.messagesFor(r), Tools: s.def.ToolDecls(), Temperature: s.def.Temperature, MaxTokens: s.def.MaxTokens}
	if r.lat != nil && r.lat.LLMRequest.IsZero() {
		r.lat.LLMRequest = s.now()
	}
	// The TTS connects while the LLM thinks.
	rd.tts = s.startTTS(ctx, func(ch TTSChunk) { s.onReplyAudio(rd, ch) }, func(f *ProviderFailure) {
		if s.reply == r && !rd.sp.interrupted {
			s.fail(f)
		}
	})
	s.goWorker(func() { s.runLLM(ctx, rd, req) })
}

func (s *Session) live(rd *round) bool {
	return s.reply == rd.reply && rd.reply.cur == rd && rd.ctx.Err() == nil
}

// onLLMEvent handles one streamed piece of the model's reply.
func (s *Session) onLLMEvent(rd *round, ev LLMEvent) {
	if !s.live(rd) {
		return
	}
	r := rd.reply
	if r.lat != nil && r.lat.LLMFirstText.IsZero() && (ev.Text != "" || ev.ToolCall != nil) {
		r.lat.LLMFirstText = s.now()
	}
	if !rd.started && (ev.Text != "" || ev.ToolCall != nil) {
		rd.started = true
		if r.toolsRunning == 0 && ev.Text == "" {
			r.fillerAt = time.Time{} // a tool call: its own filler rule applies
		}
		// With text, the wait filler stays armed until the reply's first
		// audio: a speech provider that hangs is dead air too.
	}
	if ev.Text != "" {
		if r.lat != nil && r.lat.TTSFirstText.IsZero() {
			r.lat.TTSFirstText = s.now()
		}
		rd.text.WriteString(ev.Text)
		rd.sp.text.WriteString(ev.Text)
		rd.tts.writeText(ev.Text)
		rd.unflushed += len(ev.Text)
		// Each finished sentence is synthesized at once: the first one is
		// heard while the model is still writing the rest.
		if t := strings.TrimSpace(ev.Text); t != "" && strings.ContainsAny(t[len(t)-1:], ".!?;:") {
			rd.flushTTS()
		}
	}
	if ev.ToolCall != nil {
		tc := *ev.ToolCall
		if tc.ID == "" {
			tc.ID = fmt.Sprintf("call_%d_%d", rd.id, len(rd.toolCalls))
		}
		rd.toolCalls = append(rd.toolCalls, tc)
	}
}

// onLLMDone: the model finished this round.
func (s *Session) onLLMDone(rd *round) {
	if !s.live(rd) {
		return
	}
	r := rd.reply
	rd.llmDone = true
	rd.flushTTS()
	rd.tts.close()
	if rd.flushes == rd.finals {
		rd.sp.complete = true
	}
	if r.speculative {
		// Tools have effects: a speculative reply that wants one waits for
		// the real end of the turn (and is redone then).
		if len(rd.toolCalls) > 0 {
			s.discardReply()
		}
		s.pump()
		return
	}
	s.addRoundMessage(rd)
	if len(rd.toolCalls) > 0 {
		s.runTools(rd)
	}
	s.pump()
	s.maybeFinishReply(r)
}

// flushTTS asks for the text written so far to be spoken.
func (rd *round) flushTTS() {
	if rd.unflushed == 0 {
		return
	}
	rd.unflushed = 0
	rd.flushes++
	rd.tts.flush()
}

// addRoundMessage appends the round's assistant message to the history.
func (s *Session) addRoundMessage(rd *round) {
	if rd.msgIdx >= 0 || (rd.text.Len() == 0 && len(rd.toolCalls) == 0) {
		return
	}
	rd.msgIdx = len(s.history)
	s.history = append(s.history, Message{Role: RoleAssistant, Content: rd.text.String(), ToolCalls: slices.Clone(rd.toolCalls)})
}

// cut records what the caller heard of an interrupted round.
func (rd *round) cut(s *Session, sp *speech) {
	heard := sp.heardText()
	if rd.msgIdx >= 0 {
		s.history[rd.msgIdx].Content = heard
		if heard == "" && len(s.history[rd.msgIdx].ToolCalls) == 0 {
			s.history = slices.Delete(s.history, rd.msgIdx, rd.msgIdx+1)
			rd.msgIdx = -1
		}
	} else if heard != "" && !rd.reply.speculative {
		rd.msgIdx = len(s.history)
		s.history = append(s.history, Message{Role: RoleAssistant, Content: heard})
	}
	if r := rd.reply; r.turn >= 0 {
		t := &s.turns[r.turn]
		t.Interrupted = true
	}
	sp.text.Reset()
	sp.text.WriteString(heard)
}

// onReplyAudio handles TTS audio of a round.
func (s *Session) onReplyAudio(rd *round, ch TTSChunk) {
	if !s.live(rd) && !(s.reply == rd.reply && rd.ctx.Err() == nil) {
		return
	}
	r := rd.reply
	if len(ch.PCM) > 0 && r.lat != nil && r.lat.TTSFirst.IsZero() {
		r.lat.TTSFirst = s.now()
	}
	rd.sp.addAudio(ch.PCM, ch.Words)
	if len(ch.PCM) > 0 && r.toolsRunning == 0 {
		r.fillerAt = time.Time{} // the reply is audible: no filler
	}
	if ch.Final {
		rd.finals++
	}
	if rd.llmDone && rd.finals >= rd.flushes {
		rd.sp.complete = true
	}
	s.pump()
}

// maybeFinishReply moves the reply on: the next round once a round's tool
// results are all in, or the end of the reply once every round has been
// spoken and none called a tool.
func (s *Session) maybeFinishReply(r *replyTurn) {
	if s.reply != r || r.speculative || r.done || r.canceling || r.toolsRunning > 0 {
		return
	}
	if r.superseded {
		if s.queued != nil {
			s.closeReply(r, true)
			s.flushQueued(true)
		}
		return // else the caller's turn is still being collected
	}
	last := r.cur
	if last == nil || !last.llmDone {
		return
	}
	if len(last.toolCalls) > 0 {
		if s.toolsAnswered(last) && s.ending == nil {
			// The model speaks next; its audio queues behind what is playing.
			s.startRound(r)
		}
		return
	}
	for _, rd := range r.rounds {
		if slices.Contains(s.playing, rd.sp) {
			return
		}
	}
	s.closeReply(r, false)
}

func (s *Session) toolsAnswered(rd *round) bool {
	if len(rd.tools) < len(rd.toolCalls) {
		return false
	}
	for _, t := range rd.tools {
		if !t.done {
			return false
		}
	}
	return true
}

// closeReply finalises the reply's transcript turn.
func (s *Session) closeReply(r *replyTurn, interrupted bool) {
	if r.done {
		return
	}
	r.done = true
	r.cancel()
	if s.reply == r {
		s.reply = nil
	}
	if r.turn >= 0 {
		t := &s.turns[r.turn]
		var parts []string
		for _, rd := range r.rounds {
			parts = append(parts, rd.sp.text.String())
		}
		t.Text = joinText(parts...)
		t.End = s.now()
		t.Interrupted = t.Interrupted || interrupted
		t.Final = true
		if t.Text == "" && len(t.ToolCalls) == 0 && t.Start.IsZero() {
			// Nothing was said or done: the turn never happened.
			t.Kind = KindReply
		}
		s.publishTurn(r.turn)
	}
	if r.lat != nil && !r.latDone {
		s.recordLatency(r)
	}
	if s.user == nil && len(s.playing) == 0 {
		s.waitingSince = s.now()
	}
}

// cancelReply stops the reply's LLM and TTS and closes its turn with what
// was heard.
func (s *Session) cancelReply() {
	r := s.reply
	if r == nil {
		return
	}
	for _, rd := range r.rounds {
		if slices.Contains(s.playing, rd.sp) {
			s.playing = slices.DeleteFunc(s.playing, func(sp *speech) bool { return sp == rd.sp })
			switch {
			case rd.sp.firstPacket.IsZero():
				rd.sp.heard = 0
			case !rd.sp.flushed:
				// Cut without a flush (the call ended): what went out by now.
				rd.sp.heard = rd.sp.heardAt(s.now())
			}
			rd.cut(s, rd.sp)
		}
		rd.cancel()
	}
	// A tool still running would add its result after the caller's next
	// words, which no model accepts: it is answered now, and its late
	// result dropped.
	r.canceling = true
	for _, rd := range r.rounds {
		for _, pt := range rd.tools {
			if !pt.done && (s.ending == nil || s.ending.toolCall != pt) {
				s.completeTool(pt, toolError("interrupted before the result arrived"), errors.New("interrupted"))
			}
		}
	}
	s.closeReply(r, true)
	// A caller turn waiting for those tools is in the history all the same.
	s.flushQueued(false)
}

// discardReply drops a reply nobody heard, as if it never started.
func (s *Session) discardReply() {
	r := s.reply
	if r == nil {
		return
	}
	for _, rd := range r.rounds {
		s.playing = slices.DeleteFunc(s.playing, func(sp *speech) bool { return sp == rd.sp })
		rd.cancel()
	}
	r.cancel()
	r.done = true
	s.reply = nil
	if r.turn >= 0 {
		// Only the last turn can be this reply's.
		if r.turn == len(s.turns)-1 {
			s.turns = s.turns[:r.turn]
		}
	}
	s.pump()
}

// recordLatency stores the reply's latency row.
func (s *Session) recordLatency(r *replyTurn) {
	if r.latDone || r.lat == nil {
		return
	}
	r.latDone = true
	r.lat.Turn = r.turn
	r.lat.finish()
	s.latency = append(s.latency, *r.lat)
	l := *r.lat
	s.emit(Event{Type: EventLatency, Latency: &l})
}

// ---- Transcript ----

func (s *Session) addTurn(t Turn) int {
	t.Index = len(s.turns)
	s.turns = append(s.turns, t)
	s.publishTurn(t.Index)
	return t.Index
}

func (s *Session) publishTurn(i int) {
	if s.opt.OnEvent == nil || i < 0 || i >= len(s.turns) {
		return
	}
	t := s.turns[i]
	t.ToolCalls = slices.Clone(t.ToolCalls)
	s.emit(Event{Type: EventTurn, Turn: &t})
}

// ---- Tools ----

// runTools executes a round's tool calls. Quick ones finish here; HTTP
// tools and transfers run on workers and report back.
func (s *Session) runTools(rd *round) {
	r := rd.reply
	for _, tc := range rd.toolCalls {
		pt := &pendingTool{round: rd, rec: ToolCallRecord{ID: tc.ID, Name: tc.Name, Arguments: tc.Arguments, Start: s.now()}, saidSomething: rd.text.Len() > 0}
		rd.tools = append(rd.tools, pt)
		r.toolsRunning++
		s.execTool(pt)
	}
	if r.toolsRunning > 0 && r.fillerAt.IsZero() && s.def.FillerAfterMS >= 0 {
		r.fillerAt = s.now().Add(time.Duration(s.def.FillerAfterMS) * time.Millisecond)
	}
}

// armWaitFiller starts the wait after which a slow model's silence is
// covered by a filler, once per reply.
func (s *Session) armWaitFiller(r *replyTurn) {
	if r.speculative || r.waitFiller || s.def.FillerAfterMS < 0 || !r.fillerAt.IsZero() {
		return
	}
	r.fillerAt = s.now().Add(time.Duration(s.def.FillerAfterMS) * time.Millisecond)
}

// onFillerDue says a filler when the reply is still silent: a tool runs
// (with the operator's phrases), or the model has not started answering.
func (s *Session) onFillerDue(r *replyTurn) {
	r.fillerAt = time.Time{}
	if s.ending != nil {
		return
	}
	if r.toolsRunning > 0 {
		if len(s.def.FillerPhrases) > 0 {
			s.say(KindFiller, s.nextFiller())
		}
		return
	}
	rd := r.cur
	if rd == nil || len(rd.sp.pcm) > 0 || len(rd.toolCalls) > 0 || r.hold || r.speculative || r.waitFiller || s.agentAudible() {
		return
	}
	r.waitFiller = true
	n := len(s.playing)
	s.say(KindFiller, s.nextFiller())
	if len(s.playing) == n {
		return // nothing could say it
	}
	// The filler goes before the round's speech, which has nothing queued
	// yet: pump plays speeches in order.
	sp := s.playing[n]
	sp.waitFiller = true
	if i := slices.Index(s.playing, rd.sp); i >= 0 && rd.sp.enq == 0 && len(rd.sp.chunks) == 0 {
		s.playing = slices.Delete(s.playing, len(s.playing)-1, len(s.playing))
		s.playing = slices.Insert(s.playing, i, sp)
		s.fillerFirst(r, sp)
	}
	s.pump()
}

// fillerFirst gives the filler sp, heard before reply r, r's place in the
// transcript: the reply's turn was opened first but nothing of it is final
// or heard yet, so only the two indices swap.
func (s *Session) fillerFirst(r *replyTurn, sp *speech) {
	old, ft := r.turn, sp.turn
	if old < 0 || ft != old+1 {
		return // something came between them: leave the order as it is
	}
	s.turns[old], s.turns[ft] = s.turns[ft], s.turns[old]
	s.turns[old].Index, s.turns[ft].Index = old, ft
	sp.turn, r.turn = old, ft
	for _, p := range s.playing {
		if p != sp && p.turn == old {
			p.turn = ft // the reply's speeches
		}
	}
	if rd := r.cur; rd != nil && rd.sp != nil && rd.sp.turn == old {
		rd.sp.turn = ft
	}
}

// waitFillerText is the filler the next nextFiller call returns.
func (s *Session) waitFillerText() string {
	if len(s.def.FillerPhrases) == 0 {
		return DefaultFiller
	}
	return s.def.FillerPhrases[s.fillerIdx%len(s.def.FillerPhrases)]
}

// nextFiller is the next of the operator's filler phrases, or
// DefaultFiller.
func (s *Session) nextFiller() string {
	if len(s.def.FillerPhrases) == 0 {
		return DefaultFiller
	}
	phrase := s.def.FillerPhrases[s.fillerIdx%len(s.def.FillerPhrases)]
	s.fillerIdx++
	return phrase
}

func (s *Session) execTool(pt *pendingTool) {
	name, args := pt.rec.Name, pt.rec.Arguments
	switch {
	case name == ToolEndCall && s.def.toolEnabled(name):
		pt.markEffect()
		// The goodbye is what the model said with the call; if it said
		// nothing, ours. The ending is set first so the result does not
		// start another round.
		goodbye := ""
		if !pt.saidSomething {
			goodbye = s.def.GoodbyeMessage
		}
		s.endCallAfterReply(EndAgentHangup, goodbye)
		s.completeTool(pt, `{"ok":true}`, nil)
	case name == ToolTransferCall && s.def.toolEnabled(name):
		var a struct {
			Target  string `json:"target"`
			Summary string `json:"summary"`
		}
		if err := parseArgs(args, &a); err != nil {
			s.completeTool(pt, toolError("%v", err), err)
			return
		}
		t, ok := s.def.TransferTarget(a.Target)
		if !ok {
			names := make([]string, 0, len(s.def.TransferTargets))
			for _, t := range s.def.TransferTargets {
				names = append(names, t.Name)
			}
			err := fmt.Errorf("transfer target %q is not allowed", a.Target)
			s.completeTool(pt, toolError("%q is not an allowed transfer target; the only targets are: %s. Tell the caller you cannot transfer there.", a.Target, strings.Join(names, ", ")), err)
			return
		}
		pt.markEffect()
		s.transferTo(t, transferSummary(a.Summary), pt, false)
	case name == ToolSendDTMF && s.def.toolEnabled(name):
		var a struct {
			Digits string `json:"digits"`
		}
		if err := parseArgs(args, &a); err != nil {
			s.completeTool(pt, toolError("%v", err), err)
			return
		}
		a.Digits = strings.ToUpper(strings.TrimSpace(a.Digits))
		if !dtmfDigitsRE.MatchString(a.Digits) {
			err := fmt.Errorf("bad DTMF digits %q", a.Digits)
			s.completeTool(pt, toolError("digits must be 1 to 32 of 0-9 * # A-D"), err)
			return
		}
		pt.markEffect()
		if err := s.call.SendDTMF(a.Digits); err != nil {
			s.completeTool(pt, toolError("sending DTMF failed: %v", err), err)
			return
		}
		s.completeTool(pt, toolResult(map[string]any{"ok": true, "sent": a.Digits}), nil)
	case name == ToolSetVariable && s.def.toolEnabled(name):
		var a struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		}
		if err := parseArgs(args, &a); err != nil {
			s.completeTool(pt, toolError("%v", err), err)
			return
		}
		if !varNameRE.MatchString(a.Name) || len(a.Value) > 4096 {
			err := fmt.Errorf("bad variable %q", a.Name)
			s.completeTool(pt, toolError("the name must be an identifier and the value at most 4096 bytes"), err)
			return
		}
		pt.markEffect()
		s.call.SetVariable(a.Name, a.Value)
		s.setVars[a.Name] = a.Value
		s.vars[a.Name] = a.Value
		s.completeTool(pt, `{"ok":true}`, nil)
	default:
		t, ok := s.def.httpTool(name)
		if !ok {
			err := fmt.Errorf("unknown tool %q", name)
			s.completeTool(pt, toolError("there is no tool called %q", name), err)
			return
		}
		pt.markEffect()
		vars := maps.Clone(s.vars)
		client := s.http
		s.goWorker(func() {
			out, err := callHTTPTool(s.ctx, client, t, args, vars)
			s.post(s.ctx, func() { s.completeTool(pt, out, err) })
		})
	}
}

// completeTool records a tool's result in the history and the transcript
// and moves the reply on.
func (s *Session) completeTool(pt *pendingTool, result string, err error) {
	if pt.done {
		return
	}
	pt.done = true
	pt.rec.Result = result
	pt.rec.End = s.now()
	if err != nil {
		pt.rec.Error = err.Error()
	}
	rec := pt.rec
	s.emit(Event{Type: EventToolCall, Tool: &rec})
	rd := pt.round
	if rd == nil {
		// Realtime: the model keeps the history; the transcript gets the
		// record on the agent's latest turn.
		if i := s.lastAgentTurn(); i >= 0 {
			s.turns[i].ToolCalls = append(s.turns[i].ToolCalls, pt.rec)
			s.publishTurn(i)
		}
		if !s.done {
			s.rt.toolDone(pt)
		}
		return
	}
	r := rd.reply
	r.toolsRunning--
	// Every tool call in the history needs its result, even when the reply
	// was interrupted meanwhile, or the next request is malformed.
	s.addRoundMessage(rd)
	s.history = append(s.history, Message{Role: RoleTool, Content: result, ToolCallID: pt.rec.ID})
	if r.turn >= 0 {
		t := &s.turns[r.turn]
		t.ToolCalls = append(t.ToolCalls, pt.rec)
		s.publishTurn(r.turn)
	}
	if r.toolsRunning == 0 {
		r.fillerAt = time.Time{}
	}
	s.maybeFinishReply(r)
}

func (s *Session) lastAgentTurn() int {
	for i := len(s.turns) - 1; i >= 0; i-- {
		if s.turns[i].Role == RoleAssistant {
			return i
		}
	}
	return -1
}

// endCallAfterReply hangs up once the reply has been spoken.
func (s *Session) endCallAfterReply(reason EndReason, goodbye string) {
	if s.ending != nil {
		return
	}
	s.ending = &ending{reason: reason}
	s.dropUserTurn()
	if goodbye != "" {
		s.say(KindGoodbye, goodbye)
	}
	s.runEnding()
}

// ---- DTMF ----

func (s *Session) onDigit(d rune) {
	if s.ending != nil || s.failure != nil {
		return
	}
	s.callerActive(s.now())
	if a, ok := s.def.DTMF.Keys[string(d)]; ok {
		s.dtmfBuf.Reset()
		s.dtmfAt = time.Time{}
		switch a.Action {
		case "transfer":
			if t, ok := s.def.TransferTarget(a.Target); ok {
				s.interruptAgent(false)
				s.cancelReply()
				s.transferTo(t, "", nil, false)
			}
		case "end_call":
			s.endCall(EndAgentHangup, s.def.GoodbyeMessage, true)
		}
		return
	}
	if s.def.DTMF.Ignore {
		return
	}
	s.dtmfBuf.WriteRune(d)
	s.dtmfAt = s.now().Add(time.Duration(s.def.DTMF.InterDigitMS) * time.Millisecond)
	if d == '#' || s.dtmfBuf.Len() >= 32 {
		s.flushDigits()
	}
}

// flushDigits hands the keys pressed to the model as a caller turn.
func (s *Session) flushDigits() {
	digits := s.dtmfBuf.String()
	s.dtmfBuf.Reset()
	s.dtmfAt = time.Time{}
	if digits == "" || s.ending != nil {
		return
	}
	text := "[DTMF] " + digits
	if s.rt != nil {
		s.rt.sendText(text)
		return
	}
	// Keys are deliberate: they interrupt like words.
	s.barge = nil
	s.interruptAgent(false)
	s.cancelReply()
	now := s.now()
	u := newUserTurn(now)
	u.kind = KindDTMF
	u.speechEnd = time.Time{}
	s.user = nil
	u.committed = true
	u.turn = s.addTurn(Turn{Role: RoleUser, Kind: KindDTMF, Text: text, Start: now, End: now, Final: true})
	u.histLen = len(s.history)
	s.history = append(s.history, Message{Role: RoleUser, Content: text})
	s.startReply(u, &TurnLatency{Endpoint: now}, false)
}

// jsonString quotes s as JSON.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
