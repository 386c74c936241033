package flow

import (
	"context"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/sdp"
)

// earlyRelay plays ringing destinations' early media (a 183 with SDP, then
// RTP before the answer) to the caller, who first gets 183 with our SDP.
// The first destination to send early media is heard; when it fails, the
// next one still ringing that sent some. Only the runner goroutine uses it,
// apart from legs, which dialLeg sends to.
type earlyRelay struct {
	legs chan *bLeg // legs whose early media stream runs
	seen []*bLeg    // every such leg of this ring, in order
	src  *bLeg      // the one relayed now
	halt chan struct{}
	done chan struct{}
}

// earlyLegsQueued bounds the legs waiting to be noticed; more than this
// ringing at once with early media only lose their turn to be heard.
const earlyLegsQueued = 64

func newEarlyRelay() *earlyRelay { return &earlyRelay{legs: make(chan *bLeg, earlyLegsQueued)} }

// earlyRelayOf is the relay attempts share, nil when early media is off.
func earlyRelayOf(attempts []dialAttempt) *earlyRelay {
	for _, a := range attempts {
		if a.early != nil {
			return a.early
		}
	}
	return nil
}

// startEarlyMedia opens b's stream toward the early media's address and
// hands b to the relay. It runs on Dial's goroutine and must not block.
func (b *bLeg) startEarlyMedia(n sdp.Negotiated, e *earlyRelay) {
	// The call's context, not the ring's: the stream goes on into the
	// bridge if b answers; failed and end close it otherwise.
	if err := b.openStream(b.c.ctx, n); err != nil {
		b.log.Warn("connect: early media not relayed", "err", err)
		return
	}
	b.log.Info("connect: early media", "remote_media", n.RemoteAddr.String(), "codec", n.Codec.Name)
	select {
	case e.legs <- b:
	default:
	}
}

// nextResult waits for the next attempt to end, playing early media that
// starts meanwhile.
func (c *Call) nextResult(ctx context.Context, results <-chan dialResult, e *earlyRelay) dialResult {
	var legs chan *bLeg
	if e != nil {
		legs = e.legs
	}
	for {
		select {
		case res := <-results:
			if res.b == nil && e != nil {
				e.fallback(c)
			}
			return res
		case b := <-legs:
			c.playEarly(ctx, e, b)
		}
	}
}

// playEarly relays b's early media to the caller unless another leg's is
// playing, first sending the caller 183 with our SDP when it has no
// stream yet.
func (c *Call) playEarly(ctx context.Context, e *earlyRelay, b *bLeg) {
	e.seen = append(e.seen, b)
	if e.src != nil && !streamDone(e.src.stream) {
		return
	}
	if c.stream == nil {
		c.earlyOnly = true
		err := c.answer(ctx)
		c.earlyOnly = false
		if err != nil {
			c.log.Warn("connect: early media to the caller", "err", err)
			return
		}
	}
	e.relay(c.stream, b)
}

// fallback moves to the next leg still ringing when the relayed one has
// failed (its stream is closed before its result is sent).
func (e *earlyRelay) fallback(c *Call) {
	if e.src == nil || !streamDone(e.src.stream) {
		return
	}
	e.stop()
	for _, b := range e.seen {
		if !streamDone(b.stream) {
			e.relay(c.stream, b)
			return
		}
	}
}

// relay copies b's frames to the caller's stream until stop.
func (e *earlyRelay) relay(to *media.Stream, b *bLeg) {
	e.src = b
	e.halt, e.done = make(chan struct{}), make(chan struct{})
	frames, halt, done := b.stream.Frames(), e.halt, e.done
	go func() {
		defer close(done)
		for {
			select {
			case f, ok := <-frames:
				if !ok {
					return
				}
				relayFrame(to, f)
			case <-halt:
				return
			}
		}
	}()
}

// stop ends the relay and waits for it, so the bridge is the only reader
// of the winner's frames. Safe on a nil relay.
func (e *earlyRelay) stop() {
	if e == nil || e.src == nil {
		return
	}
	close(e.halt)
	<-e.done
	e.src = nil
}

func streamDone(s *media.Stream) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// answerAfterEarlyMedia sends the 200 a caller is owed once early media
// opened its stream and sent 183; nil when the call is answered already.
func (c *Call) answerAfterEarlyMedia() error {
	if c.answered.Load() || c.orig != nil {
		return nil
	}
	n := c.leg.Negotiated
	port := c.stream.LocalAddr().Port
	if err := c.leg.Answer(c.ct.mediaIPFor(n.RemoteAddr.Addr()), port); err != nil {
		return err
	}
	c.markAnswered(c.stream.Codec().Name, port)
	return nil
}
