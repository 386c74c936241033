package media

import (
	"container/heap"
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The send clocks of all streams run on a few shared goroutines, one per
// CPU: each keeps its streams in a heap by next due time, sleeps until the
// first is due and ticks every stream that is. A goroutine and a timer per
// stream would cost 50 wake-ups a second each; profiles of 500 echo streams
// put that at a fifth of the server's CPU, and every runnable goroutine
// lengthens the queue the clocks wait in. A shard's goroutine exits when it
// has no streams left, so none outlives the streams it serves. A shard
// notices a cancelled stream when it next comes due (within a frame) and
// shuts it down on a goroutine of its own, so the stream's state is never
// touched by two goroutines.

// maxCatchUp bounds the burst sent after a late wake-up. A short stall is
// repaired by sending the missed packets; a long one (VM pause, suspend) is
// skipped over so the peer's jitter buffer is not flooded.
const maxCatchUp = 10

// streamClock is a stream's place in its shard.
type streamClock struct {
	done    <-chan struct{} // the stream's context
	readers []chan struct{}
	start   time.Time // packet n is due at start + n*FrameDuration
	sent    int64
	next    time.Time // when the stream is next due
	index   int       // in the shard's heap
	shard   *clockShard
	polled  time.Time // when the RTCP socket was last polled (rtcppoll_linux.go)
}

// rtcpPollInterval is how often a clock reads a stream's RTCP socket when
// no goroutine waits on it: reports come every few seconds, and their
// arrival times are the kernel's, so this only delays their bookkeeping.
const rtcpPollInterval = 100 * time.Millisecond

type clockShard struct {
	mu      sync.Mutex
	pending []*Stream // added, not yet in the heap
	running bool
	wake    chan struct{} // cap 1: new streams

	// Scratch space for polling RTCP sockets, used by run only.
	rtcpBuf [readBufSize]byte
	rtcpOOB [64]byte
}

var (
	shardsOnce sync.Once
	shards     []*clockShard
	nextShard  atomic.Uint32
)

// startClock hands s to a shard; its first packet is due now.
func (s *Stream) startClock(ctx context.Context, readers []chan struct{}) {
	shardsOnce.Do(func() {
		shards = make([]*clockShard, runtime.GOMAXPROCS(0))
		for i := range shards {
			shards[i] = &clockShard{wake: make(chan struct{}, 1)}
		}
	})
	c := shards[int(nextShard.Add(1))%len(shards)]
	s.clk = streamClock{done: ctx.Done(), readers: readers, start: time.Now(), shard: c}
	s.clk.next = s.clk.start
	s.scheduleRTCP(s.clk.start)
	c.mu.Lock()
	c.pending = append(c.pending, s)
	if !c.running {
		c.running = true
		go c.run()
	}
	c.mu.Unlock()
	select { // wake the shard: the new stream is due now
	case c.wake <- struct{}{}:
	default:
	}
}

// run is the shard's goroutine. It owns the heap; other goroutines only
// append to pending.
func (c *clockShard) run() {
	var h clockHeap
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		for _, s := range c.pending {
			heap.Push(&h, s)
		}
		c.pending = c.pending[:0]
		if h.Len() == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		for h.Len() > 0 {
			now := time.Now()
			s := h[0]
			if s.clk.next.After(now) {
				break
			}
			select {
			case <-s.clk.done:
				// Its context ended: it leaves the shard (at most a frame
				// after the cancel) and shuts down on its own goroutine,
				// which waits for its readers.
				heap.Pop(&h)
				go s.shutdown(s.clk.readers)
				continue
			default:
			}
			s.clockStep(now)
			heap.Fix(&h, 0)
		}
		if h.Len() == 0 {
			continue
		}
		// Go 1.23 timers: Reset discards a pending expiry, so a wake that
		// raced the timer leaves nothing stale behind to drain.
		timer.Reset(time.Until(h[0].clk.next))
		select {
		case <-timer.C:
		case <-c.wake:
		}
	}
}

// clockStep sends every packet due by now (a few at most after a late
// wake-up), each followed by a frame of inbound playout and a frame of
// recording, then any RTCP report due.
func (s *Stream) clockStep(now time.Time) {
	k := &s.clk
	due := int64(now.Sub(k.start)/FrameDuration) + 1
	if behind := due - k.sent; behind > maxCatchUp {
		skip := behind - maxCatchUp
		k.sent += skip
		// Keep the RTP timestamp on the wall clock so the peer sees a gap, not a squeeze.
		s.tx.ts += uint32(skip * FrameSamples)
	}
	for ; k.sent < due; k.sent++ {
		at := k.start.Add(time.Duration(k.sent) * FrameDuration)
		s.tx.nextAt = at
		out := s.tick(at)
		in := s.pullFrame(at)
		if s.rec != nil {
			// Best effort: a failing disk must not stop the call.
			if err := s.rec.WriteFrame(in, out); err != nil && !errors.Is(err, ErrRecorderClosed) {
				s.logRecordError(err)
			}
		}
		if r := s.midRec.Load(); r != nil {
			if err := r.WriteFrame(in, out); err != nil && !errors.Is(err, ErrRecorderClosed) {
				s.logRecordError(err)
			}
		}
	}
	k.next = k.start.Add(time.Duration(k.sent) * FrameDuration)
	s.tx.nextAt = k.next
	s.maybeSendRTCP(now)
	if s.rtcpRaw != nil && now.Sub(k.polled) >= rtcpPollInterval {
		k.polled = now
		s.pollRTCP(k.shard.rtcpBuf[:], k.shard.rtcpOOB[:])
	}
}

// clockHeap orders streams by next due time.
type clockHeap []*Stream

func (h clockHeap) Len() int           { return len(h) }
func (h clockHeap) Less(i, j int) bool { return h[i].clk.next.Before(h[j].clk.next) }
func (h clockHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].clk.index, h[j].clk.index = i, j
}
func (h *clockHeap) Push(x any) {
	s := x.(*Stream)
	s.clk.index = len(*h)
	*h = append(*h, s)
}
func (h *clockHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}
