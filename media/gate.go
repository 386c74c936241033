package media

import (
	"slices"
	"sync"
	"sync/atomic"
)

// gate is a stream's mute and hold state, applied by its clock. Producers
// (prompts, an agent, a bridge) and consumers of Frames keep working
// unchanged: the clock substitutes what goes out and what comes in, so
// mute and hold hold whatever the call is doing.
type gate struct {
	muteIn, muteOut atomic.Bool
	held            atomic.Bool

	mu      sync.Mutex // guards loop; the clock holds it only to copy a frame
	loop    []int16    // what the peer hears while held; empty: silence
	loopOff int
	zero    [FrameSamples]int16 // a silent inbound frame, never written
}

// SetMute silences what the stream receives (in: Frames and the recording
// get silence) and what it sends (out: the peer hears silence; queued
// audio still plays out, unheard), from the next tick on. DTMF events go
// through either way: they are signalling.
func (s *Stream) SetMute(in, out bool) {
	s.gate.muteIn.Store(in)
	s.gate.muteOut.Store(out)
}

// Muted reports the mute state SetMute set.
func (s *Stream) Muted() (in, out bool) { return s.gate.muteIn.Load(), s.gate.muteOut.Load() }

// HoldPeer puts the peer on hold from the next tick: it hears loop (repeated;
// nil means silence) instead of the playout queue, which keeps its place
// and resumes on UnholdPeer, and what it says reaches neither Frames nor the
// recording. Holding again changes the loop. (SetRemoteHold is the other
// way round: the peer holding us.)
func (s *Stream) HoldPeer(loop []int16) {
	g := &s.gate
	g.mu.Lock()
	g.loop, g.loopOff = slices.Clone(loop), 0
	g.mu.Unlock()
	g.held.Store(true)
}

// UnholdPeer ends HoldPeer: the queue plays on from where it paused.
func (s *Stream) UnholdPeer() { s.gate.held.Store(false) }

// PeerHeld reports whether HoldPeer holds the peer.
func (s *Stream) PeerHeld() bool { return s.gate.held.Load() }

// Recording returns the recorder SetRecorder set, or nil.
func (s *Stream) Recording() *Recorder { return s.midRec.Load() }

// holdFrame fills frame with the hold loop when the stream is held; false
// means it is not and the queue plays. Clock only.
func (g *gate) holdFrame(frame []int16) bool {
	if !g.held.Load() {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.loop) == 0 {
		clear(frame)
		return true
	}
	for n := 0; n < len(frame); {
		k := copy(frame[n:], g.loop[g.loopOff:])
		n += k
		g.loopOff = (g.loopOff + k) % len(g.loop)
	}
	return true
}

// outFrame silences a frame about to be sent when muted out. Clock only.
func (g *gate) outFrame(frame []int16) {
	if g.muteOut.Load() {
		clear(frame)
	}
}

// inFrame is what the stream delivers for the received frame f: silence
// when muted in or held. Clock only.
func (g *gate) inFrame(f []int16) []int16 {
	if g.muteIn.Load() || g.held.Load() {
		return g.zero[:len(f)]
	}
	return f
}
