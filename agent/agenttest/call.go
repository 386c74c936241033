// Package agenttest has small in-process fakes of the agent's interfaces
// for testing sessions: a Call with a 20 ms clock like a media stream, and
// scripted STT, LLM, TTS and Realtime providers with controllable
// latencies and failures. They fake our own interfaces, so they test the
// session's logic; agent/fake serves the providers' real wire protocols for
// testing the clients.
package agenttest

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/agent"
)

const (
	sampleRate   = 8000
	frameSamples = 160
	frameDur     = 20 * time.Millisecond
)

// Call is a fake live call. A goroutine ticks every 20 ms like a media
// stream's clock: each tick delivers one inbound frame (scripted caller
// audio, else silence) and sends one outbound frame from the playout queue.
// Its clock, Now, advances exactly 20 ms per tick and follows the wall
// clock (tick n is sent at start + n×20 ms), so the times it reports are
// exact multiples of the frame and comparable with time.Now.
type Call struct {
	base   time.Time
	frames chan []int16
	digits chan rune
	stop   chan struct{}
	exited chan struct{}

	mu        sync.Mutex
	tick      int64
	inbound   []int16 // caller audio not yet delivered
	queue     []*chunk
	out       []int16 // every sample sent, one frame per tick
	outTicks  int64   // tick of out[0]
	flushes   []time.Time
	dtmf      []string
	hangup    string
	hungUp    bool
	closed    bool
	transfers []Transfer
	vars      map[string]string
	started   []time.Time // first-packet times, in order
	// TransferErr, when set, decides the outcome of a transfer.
	transferErr func(target string) error
	sendDTMFErr error
	// echoGain and echoTicks return the agent's audio to the caller's
	// side, as a phone without echo cancellation does.
	echoGain  float64
	echoTicks int
	inTicks   []bool // per tick: the caller's own audio was loud
}

type chunk struct {
	pcm     []int16
	off     int
	done    chan struct{}
	started chan time.Time
}

// Transfer records a transfer the session asked for.
type Transfer struct {
	Target  string
	Warm    bool
	Summary string
	At      time.Time
}

// Cleaner registers cleanups; *testing.T and *testing.B are Cleaners, and a
// command running a Call gives its own so it does not link testing.
type Cleaner interface{ Cleanup(func()) }

// NewCall starts a fake call; it stops at the end of the test (when tb
// runs its cleanups).
func NewCall(tb Cleaner) *Call {
	c := &Call{
		base:   time.Now(),
		frames: make(chan []int16, 50),
		digits: make(chan rune, 16),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
		vars:   map[string]string{},
	}
	go c.run()
	tb.Cleanup(c.Close)
	return c
}

// Close stops the clock and closes Frames (the call's media ended).
func (c *Call) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.exited
		return
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	<-c.exited
}

func (c *Call) run() {
	defer close(c.exited)
	defer close(c.frames)
	defer close(c.digits)
	// Tick n is due at base + n×20 ms, an absolute schedule as in media, so
	// Now stays on the wall clock; a late wake-up catches up every tick.
	start := c.base
	timer := time.NewTimer(frameDur)
	defer timer.Stop()
	var n int64
	for {
		select {
		case <-c.stop:
			return
		case <-timer.C:
		}
		due := int64(time.Since(start) / frameDur)
		for ; n < due; n++ {
			c.doTick()
		}
		timer.Reset(time.Until(start.Add(time.Duration(n+1) * frameDur)))
	}
}

func (c *Call) doTick() {
	c.mu.Lock()
	c.tick++
	now := c.nowLocked()
	frame := make([]int16, frameSamples)
	k := copy(frame, c.inbound)
	c.inbound = c.inbound[k:]
	c.inTicks = append(c.inTicks, rms(frame) > 200)
	if c.echoGain > 0 {
		// The frame sent echoTicks ago comes back attenuated.
		if i := len(c.out) - c.echoTicks*frameSamples; i >= 0 && len(c.out) >= frameSamples {
			for j := range frame {
				v := float64(frame[j]) + c.echoGain*float64(c.out[i+j])
				frame[j] = int16(max(-32768, min(32767, v)))
			}
		}
	}
	// Outbound: 20 ms from the queue, silence padded.
	out := make([]int16, frameSamples)
	filled := 0
	var dones []chan struct{}
	for filled < frameSamples && len(c.queue) > 0 {
		ch := c.queue[0]
		if ch.off == 0 {
			ch.started <- now
			c.started = append(c.started, now)
		}
		m := copy(out[filled:], ch.pcm[ch.off:])
		ch.off += m
		filled += m
		if ch.off == len(ch.pcm) {
			dones = append(dones, ch.done)
			c.queue = c.queue[1:]
		}
	}
	if len(c.out) == 0 {
		c.outTicks = c.tick
	}
	c.out = append(c.out, out...)
	hungUp := c.hungUp
	c.mu.Unlock()
	for _, d := range dones {
		close(d)
	}
	if hungUp {
		return
	}
	select {
	case c.frames <- frame:
	default:
		// A slow consumer loses the oldest frame, as with media.Stream.
		select {
		case <-c.frames:
		default:
		}
		c.frames <- frame
	}
}

func (c *Call) nowLocked() time.Time { return c.base.Add(time.Duration(c.tick) * frameDur) }

// Now is the call's clock: start + ticks × 20 ms. Pass it as the session's
// Options.Now.
func (c *Call) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

// Tick is the number of frames exchanged so far.
func (c *Call) Tick() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tick
}

// TimeOfTick is the clock at tick n.
func (c *Call) TimeOfTick(n int64) time.Time { return c.base.Add(time.Duration(n) * frameDur) }

// Say queues caller audio; it is delivered from the next tick on, after any
// audio queued before. It returns the tick that will carry its first frame
// and the one that carries its last sample.
func (c *Call) Say(pcm []int16) (first, last int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pending := (len(c.inbound) + frameSamples - 1) / frameSamples
	first = c.tick + int64(pending) + 1
	c.inbound = append(c.inbound, pcm...)
	// Frames are padded: the speech ends in the frame holding its last sample.
	last = first + int64((len(pcm)+frameSamples-1)/frameSamples) - 1
	return first, last
}

// Press queues DTMF digits as the caller pressing keys.
func (c *Call) Press(digits string) {
	for _, d := range digits {
		c.digits <- d
	}
}

// Frames implements agent.Call.
func (c *Call) Frames() <-chan []int16 { return c.frames }

// Digits implements agent.Call.
func (c *Call) Digits() <-chan rune { return c.digits }

// EnqueueStarted implements agent.Call.
func (c *Call) EnqueueStarted(pcm []int16) (<-chan struct{}, <-chan time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := &chunk{pcm: slices.Clone(pcm), done: make(chan struct{}), started: make(chan time.Time, 1)}
	if c.closed || c.hungUp || len(pcm) == 0 {
		close(ch.done)
		return ch.done, ch.started
	}
	c.queue = append(c.queue, ch)
	return ch.done, ch.started
}

// Flush implements agent.Call.
func (c *Call) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.queue {
		close(ch.done)
	}
	c.queue = nil
	c.flushes = append(c.flushes, c.nowLocked())
}

// SendDTMF implements agent.Call.
func (c *Call) SendDTMF(digits string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sendDTMFErr != nil {
		return c.sendDTMFErr
	}
	c.dtmf = append(c.dtmf, digits)
	return nil
}

// Hangup implements agent.Call: it records the reason and ends the call's
// media, as a BYE would.
func (c *Call) Hangup(reason string) error {
	c.mu.Lock()
	if c.hungUp {
		c.mu.Unlock()
		return errors.New("already hung up")
	}
	c.hungUp = true
	c.hangup = reason
	c.mu.Unlock()
	go c.Close()
	return nil
}

// Transfer implements agent.Call.
func (c *Call) Transfer(ctx context.Context, t agent.TransferRequest) error {
	c.mu.Lock()
	fn := c.transferErr
	c.transfers = append(c.transfers, Transfer{Target: t.Target, Warm: t.Warm, Summary: t.Summary, At: c.nowLocked()})
	c.mu.Unlock()
	if fn != nil {
		return fn(t.Target)
	}
	return ctx.Err()
}

// SetVariable implements agent.Call.
func (c *Call) SetVariable(key, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vars[key] = value
}

// FailTransfers makes transfers fail with what fn returns.
func (c *Call) FailTransfers(fn func(target string) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.transferErr = fn
}

// HangupReason reports whether and why the session hung up.
func (c *Call) HangupReason() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hangup, c.hungUp
}

// Transfers returns the transfers asked for.
func (c *Call) Transfers() []Transfer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.transfers)
}

// SentDTMF returns the digit strings the session sent.
func (c *Call) SentDTMF() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.dtmf)
}

// Variables returns the variables the session set.
func (c *Call) Variables() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.vars))
	for k, v := range c.vars {
		out[k] = v
	}
	return out
}

// Flushes returns when the playout queue was flushed.
func (c *Call) Flushes() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.flushes)
}

// FirstPackets returns the first-packet time of every chunk that started.
func (c *Call) FirstPackets() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.started)
}

// Outbound returns everything sent to the caller (silence included), one
// 20 ms frame per tick, and the tick of its first frame.
func (c *Call) Outbound() ([]int16, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.out), c.outTicks
}

// Queued reports how many samples wait in the playout queue.
func (c *Call) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ch := range c.queue {
		n += len(ch.pcm) - ch.off
	}
	return n
}

// Echo returns the agent's audio to the session delayed by delay and
// attenuated by db (negative), mixed with the caller's own, from the next
// tick on.
func (c *Call) Echo(db float64, delay time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.echoGain = math.Pow(10, db/20)
	c.echoTicks = max(1, int(delay/frameDur))
}

// CallerActive returns, per tick from the first, whether the caller's own
// audio (echo excluded) was loud in it: the inbound timeline, aligned with
// Outbound's frames.
func (c *Call) CallerActive() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.inTicks)
}
