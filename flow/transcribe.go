package flow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/providers"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/vad"
)

// Directions transcribe_start listens to.
const (
	TranscribeIn   = "in"   // the caller (role user)
	TranscribeOut  = "out"  // what we send the caller: prompts, a bridged callee (role assistant)
	TranscribeBoth = "both" // both, as two recognition streams
)

// TranscribeStartOption transcribes the call live, without an agent, until
// transcribe_stop or hangup, while the flow goes on. Turns are stored like
// an agent's (GET /v1/calls/{id}/transcript) and published as
// transcript.partial and transcript.final events.
type TranscribeStartOption struct {
	// AgentID names the agent whose speech-to-text settings (provider,
	// endpoint, key, language) transcribe. Give it or Provider.
	AgentID string `json:"agent_id,omitempty"`
	// Provider is a speech-to-text provider (deepgram, openai,
	// openai-realtime) used with its standard endpoint and environment key,
	// for servers without an agent.
	Provider string `json:"provider,omitempty"`
	// Language is a BCP 47 tag; default: the agent's, else the provider's.
	Language string `json:"language,omitempty"`
	// Direction is in (default), out or both.
	Direction string `json:"direction,omitempty"`
}

// Transcription tuning.
const (
	// transcribeEndpoint is the silence after speech that closes a turn
	// (our VAD's hangover, then Finalize).
	transcribeEndpoint = 600 * time.Millisecond
	// transcribeDrain bounds the wait for the last finals after stop or
	// hangup, so the call's end is never held longer.
	transcribeDrain = 3 * time.Second
	// transcribeQueue is how many packets a direction may have waiting
	// (2 s); more are dropped rather than blocking the media path.
	transcribeQueue = 100
	// loudDB and minLoudDBFS mark a frame as part of speech for a turn's
	// end: the VAD's own defaults for a loud frame.
	loudDB      = 7
	minLoudDBFS = -55
	// maxGapFill is the longest RTP timestamp gap filled with silence to
	// keep the timeline; longer ones resync.
	maxGapFill = time.Second
)

var languageTagRE = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$`)

func init() {
	actionTypes["transcribe_start"] = define(compileTranscribeStart)
	actionTypes["transcribe_stop"] = define(func(*struct{}) (step, error) {
		return seq(transcribeDrain+5*time.Second, func(ctx context.Context, r *run) (string, error) {
			return "", r.c.stopTranscription(ctx)
		}), nil
	})
}

func compileTranscribeStart(o *TranscribeStartOption) (step, error) {
	switch {
	case o.AgentID == "" && o.Provider == "":
		return step{}, badField("agent_id", "required (or provider): whose speech-to-text transcribes")
	case o.AgentID != "" && o.Provider != "":
		return step{}, badField("provider", "give agent_id or provider, not both")
	case o.Provider != "" && !slices.Contains(providers.ProvidersFor(providers.RoleSTT), o.Provider):
		return step{}, badField("provider", "%q is not a speech-to-text provider (want one of %v)", o.Provider, providers.ProvidersFor(providers.RoleSTT))
	}
	if o.Language != "" && !languageTagRE.MatchString(o.Language) {
		return step{}, badField("language", "%q is not a BCP 47 tag like \"en\" or \"en-US\"", o.Language)
	}
	var dirs []string
	switch o.Direction {
	case "", TranscribeIn:
		dirs = []string{TranscribeIn}
	case TranscribeOut:
		dirs = []string{TranscribeOut}
	case TranscribeBoth:
		dirs = []string{TranscribeIn, TranscribeOut}
	default:
		return step{}, badField("direction", "must be in, out or both, not %q", o.Direction)
	}
	return seq(30*time.Second, func(ctx context.Context, r *run) (string, error) {
		return "", r.c.startTranscription(ctx, o, dirs)
	}), nil
}

// transcriber is a call's live transcription: one lane (recognition
// stream) per direction, fed from the call's RTP by transcribeTap.
type transcriber struct {
	c     *Call
	lanes map[string]*transcribeLane // by direction
	stop  chan struct{}              // closed by transcribe_stop
	done  chan struct{}              // closed when every lane has ended
	once  sync.Once
}

// transcribeLane is one direction: packets in, turns out.
type transcribeLane struct {
	role    string
	packets chan tappedPacket
	stt     agent.STTStream
	dropped atomic.Int64 // packets the queue had no room for
}

// tappedPacket is an owned copy of one RTP packet's audio.
type tappedPacket struct {
	at      time.Time
	ts      uint32
	codec   media.Codec
	payload []byte
}

// startTranscription opens the recognition streams and starts feeding them.
func (c *Call) startTranscription(ctx context.Context, o *TranscribeStartOption, dirs []string) error {
	if !c.answered.Load() {
		return errNotAnswered
	}
	if t := c.transcriber.Load(); t != nil {
		select {
		case <-t.done:
		default:
			return errors.New("a transcription is already running: stop it first")
		}
	}
	cfg, lang, err := c.sttConfig(o)
	if err != nil {
		return err
	}
	p, err := c.ct.providersFor(agent.Definition{STT: &cfg})
	if err != nil {
		return fmt.Errorf("transcribe: %w", err)
	}
	if p.STT == nil {
		return errors.New("transcribe: no speech-to-text provider")
	}
	t := &transcriber{c: c, lanes: map[string]*transcribeLane{}, stop: make(chan struct{}), done: make(chan struct{})}
	// The recognition streams outlive this action: they end with the call
	// (after a bounded drain), not with the action's context.
	sctx, cancel := context.WithCancel(context.WithoutCancel(c.ctx))
	// Until they are open, the action's end (a hangup, its timeout) stops
	// a provider that does not answer.
	detach := context.AfterFunc(ctx, cancel)
	defer detach()
	for _, d := range dirs {
		st, err := p.STT.Start(sctx, agent.STTOptions{Language: lang})
		if err != nil {
			for _, l := range t.lanes {
				l.stt.Close()
			}
			cancel()
			return fmt.Errorf("transcribe %s: %w", d, err)
		}
		role := agent.RoleUser
		if d == TranscribeOut {
			role = agent.RoleAssistant
		}
		t.lanes[d] = &transcribeLane{role: role, packets: make(chan tappedPacket, transcribeQueue), stt: st}
	}
	var wg sync.WaitGroup
	for _, l := range t.lanes {
		wg.Add(1)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer wg.Done()
			t.runLane(l)
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		wg.Wait()
		cancel()
		c.stream.SetTap(c.captureTap) // before done: a next transcription sets its own
		close(t.done)
	}()
	c.transcriber.Store(t)
	// Only while a transcription runs does every datagram pass its tap.
	c.stream.SetTap(c.transcriptionTap)
	c.log.Info("transcription started", "provider", cfg.Provider, "directions", fmt.Sprint(dirs), "language", lang)
	return nil
}

// sttConfig picks the provider settings and language for o.
func (c *Call) sttConfig(o *TranscribeStartOption) (agent.ProviderConfig, string, error) {
	lang := o.Language
	if o.Provider != "" {
		return agent.ProviderConfig{Provider: o.Provider, Language: lang}, lang, nil
	}
	id := c.expand(o.AgentID)
	def, ok := c.ct.cfg.Agents.Get(id)
	if !ok {
		return agent.ProviderConfig{}, "", fmt.Errorf("agent %q not found", id)
	}
	if def.STT == nil {
		return agent.ProviderConfig{}, "", fmt.Errorf("agent %q has no stt provider", id)
	}
	cfg := *def.STT
	if lang == "" {
		lang = cfg.Language
	}
	if lang == "" {
		lang = def.Language
	}
	cfg.Language = lang
	return cfg, lang, nil
}

// stopTranscription is transcribe_stop: it waits for the last finals.
func (c *Call) stopTranscription(ctx context.Context) error {
	t := c.transcriber.Load()
	if t == nil {
		return errors.New("no transcription is running")
	}
	t.once.Do(func() { close(t.stop) })
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// transcribeTap wraps the call's capture tap (next) for the time a
// transcription runs (startTranscription installs it on c.stream): it
// copies the audio of RTP packets sent from local (out) and received from
// the stream's peer (in) to their lanes, in the codec in force: a
// re-INVITE or NAT learning may change both after the answer. It never
// blocks the media path.
func (c *Call) transcribeTap(conn *net.UDPConn, next media.Tap) media.Tap {
	var local netip.AddrPort
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		local = la.AddrPort()
	}
	return func(at time.Time, src, dst netip.AddrPort, b []byte) {
		if next != nil {
			next(at, src, dst, b)
		}
		t := c.transcriber.Load()
		if t == nil {
			return
		}
		select {
		case <-t.done:
			return
		default:
		}
		// Installed only once the stream exists (SetTap after answer).
		st := c.stream
		var dir string
		switch {
		case src == local:
			dir = TranscribeOut
		case dst == local && src.Addr().Unmap() == st.Remote().Addr():
			dir = TranscribeIn
		default:
			return // RTCP, or a stray source the stream drops too
		}
		l := t.lanes[dir]
		if l == nil {
			return
		}
		codec := st.Codec()
		var h rtp.Header
		n, err := h.Unmarshal(b)
		if err != nil || h.PayloadType != codec.PayloadType || n > len(b) {
			return // RTCP, telephone-event, or junk
		}
		end := len(b)
		if h.Padding && end > n && int(b[end-1]) <= end-n {
			end -= int(b[end-1])
		}
		select {
		case l.packets <- tappedPacket{at: at, ts: h.Timestamp, codec: codec, payload: slices.Clone(b[n:end])}:
		default:
			l.dropped.Add(1)
		}
	}
}

// runLane decodes one direction's packets into 20 ms frames on a gap-free
// timeline, feeds them to the recognizer and our VAD, and turns the
// recognizer's finals into transcript turns timed by the VAD.
func (t *transcriber) runLane(l *transcribeLane) {
	c := t.c
	det := vad.New(vad.Config{Hangover: transcribeEndpoint})
	var (
		origin      time.Time // wall time of the timeline's start
		samples     int       // on the timeline so far
		lastTS      uint32
		started     bool
		pcm         []int16 // decoded, not yet a whole frame
		speechStart time.Time
		lastLoud    time.Time // end of the last frame well above the noise floor
		firstHeard  time.Time // first partial since the last final, when the VAD heard nothing
		draining    <-chan time.Time
		stopped     = t.stop
		callDone    = c.ctx.Done()
	)
	const maxGap = int(maxGapFill * media.SampleRate / time.Second)
	wallAt := func(offset time.Duration) time.Time { return origin.Add(offset) }
	feed := func(f []int16) {
		ev := det.Process(f)
		if lvl := det.LevelDBFS(); lvl > det.NoiseFloorDBFS()+loudDB && lvl > minLoudDBFS {
			lastLoud = wallAt(det.Elapsed())
		}
		switch ev.Type {
		case vad.SpeechStart:
			if speechStart.IsZero() {
				speechStart = wallAt(ev.At)
			}
		case vad.SpeechEnd:
			if err := l.stt.Finalize(); err != nil {
				c.log.Warn("transcribe: finalize", "role", l.role, "err", err)
			}
		}
		if err := l.stt.Write(f); err != nil && draining == nil {
			c.log.Warn("transcribe: write", "role", l.role, "err", err)
		}
	}
	// A turn runs from the first speech our VAD heard since the last
	// final (else the recognizer's first sign of it) to the last loud
	// frame before the final arrived (the VAD's own end comes a hangover
	// later, often after the recognizer's endpoint).
	final := func(ev agent.STTEvent) {
		start := cmp.Or(speechStart, firstHeard, ev.At)
		end := ev.At
		if lastLoud.After(start) && lastLoud.Before(end) {
			end = lastLoud
		}
		// The next turn starts at the next speech our VAD hears (or, when
		// this speech goes on past the final, at the next partial).
		speechStart, firstHeard = time.Time{}, time.Time{}
		t.putTurn(l.role, ev.Text, start, end)
	}
	events := l.stt.Events()
	startDrain := func() {
		stopped, callDone = nil, nil
		draining = time.After(transcribeDrain)
		if err := l.stt.Finalize(); err != nil {
			c.log.Debug("transcribe: finalize at end", "role", l.role, "err", err)
		}
	}
	defer func() {
		l.stt.Close()
		if n := l.dropped.Load(); n > 0 {
			c.log.Warn("transcribe: packets dropped", "role", l.role, "dropped", n)
		}
	}()
	for {
		select {
		case p := <-l.packets:
			if draining != nil {
				continue
			}
			if !started {
				started, origin, lastTS = true, p.at, p.ts
			}
			// Place the packet on the timeline by its RTP timestamp: fill
			// short gaps with silence, drop late packets, resync on jumps.
			gap := int(int32(p.ts - lastTS))
			switch {
			case gap < 0 && gap >= -maxGap:
				continue // late or duplicate
			case gap > 0 && gap <= maxGap:
				pcm = append(pcm, make([]int16, gap)...)
			case gap != 0:
				// A jump (a new source, a long hold): keep wall times right.
				origin = p.at.Add(-samplesDuration(samples + len(pcm)))
			}
			pcm = p.codec.Decode(pcm, p.payload)
			lastTS = p.ts + uint32(len(p.payload))
			for len(pcm) >= media.FrameSamples {
				feed(pcm[:media.FrameSamples:media.FrameSamples])
				samples += media.FrameSamples
				pcm = pcm[media.FrameSamples:]
			}
			pcm = slices.Clone(pcm)
		case ev, ok := <-events:
			if !ok {
				return
			}
			switch ev.Type {
			case agent.STTPartial:
				if ev.Text == "" {
					continue
				}
				if firstHeard.IsZero() {
					firstHeard = ev.At
				}
				c.publish(EventTranscriptPart, map[string]string{"role": l.role, "text": ev.Text})
			case agent.STTSpeechStarted:
				if firstHeard.IsZero() {
					firstHeard = ev.At
				}
			case agent.STTFinal:
				if ev.Text != "" {
					final(ev)
				}
				if draining != nil {
					return // the answer to our last Finalize: nothing more is coming
				}
			case agent.STTError:
				if draining == nil {
					c.warn(fmt.Sprintf("transcribe %s: %v", l.role, ev.Err))
				}
				return
			}
		case <-stopped:
			startDrain()
		case <-callDone:
			startDrain()
		case <-draining:
			return
		}
	}
}

// putTurn stores one final turn and publishes it.
func (t *transcriber) putTurn(role, text string, start, end time.Time) {
	turn := agent.Turn{Index: t.c.turns.take(), Role: role, Kind: agent.KindSpeech, Text: text, Start: start.UTC(), End: end.UTC(), Final: true}
	t.c.putTurn(turn)
	t.c.publish(EventTranscriptFinal, turn)
}

func samplesDuration(n int) time.Duration {
	return time.Duration(n) * time.Second / media.SampleRate
}
