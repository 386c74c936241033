package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Channel depths. Frames holds one second so a consumer can hiccup without
// loss; DTMF is rare but must not be lost to a brief stall.
const (
	framesBuffer = 50
	dtmfBuffer   = 16
)

// StreamConfig describes one negotiated RTP audio stream.
type StreamConfig struct {
	Conn            *net.UDPConn // bound local socket; the Stream owns it and closes it on Close
	Remote          *net.UDPAddr // where to send RTP; RTP is accepted ONLY from this address (IP and port)
	Codec           Codec
	DTMFPayloadType uint8        // RFC 4733 telephone-event PT, 0 = not negotiated
	Logger          *slog.Logger // may be nil
}

// Stats are cumulative counters of a stream.
type Stats struct {
	PacketsIn, PacketsOut, PacketsLost uint64 // lost = gaps in inbound sequence numbers
	BytesIn, BytesOut                  uint64 // UDP payload bytes (RTP header included)
	Dropped                            uint64 // packets from a wrong source, unparseable, or with an unknown payload type
	FramesDropped                      uint64 // frames dropped because the Frames consumer was slow
	DTMFIn                             uint64 // distinct inbound DTMF events
	PacketsLate                        uint64 // valid packets not played: late, duplicate or out of sequence (counted in PacketsIn)
}

type counters struct {
	packetsIn, packetsOut, packetsLost atomic.Uint64
	bytesIn, bytesOut                  atomic.Uint64
	dropped, framesDropped, dtmfIn     atomic.Uint64
	late                               atomic.Uint64
}

// Stream is one RTP audio stream: a reader turning inbound packets into 20 ms
// frames and DTMF events, and a clock sending one packet every 20 ms from a
// playout queue.
type Stream struct {
	conn   *net.UDPConn
	local  netip.AddrPort
	remote netip.AddrPort // unmapped, so it compares equal to what ReadFrom reports
	codec  Codec
	dtmfPT uint8
	log    *slog.Logger

	frames chan []int16
	dtmf   chan DTMFEvent
	done   chan struct{}
	stats  counters

	rx rxState // reader goroutine only
	tx txState // clock goroutine only

	mu        sync.Mutex // guards everything below
	started   bool
	closing   bool
	stopped   bool // queues released; Enqueue/SendDTMF answer immediately
	cancel    context.CancelFunc
	queue     []*chunk
	queued    int // samples left in queue
	dtmfQ     []*dtmfJob
	closeOnce sync.Once
	closeErr  error
}

// NewStream checks cfg and prepares a stream; nothing runs until Start.
func NewStream(cfg StreamConfig) (*Stream, error) {
	if cfg.Conn == nil {
		return nil, errors.New("media: stream needs a Conn")
	}
	if cfg.Remote == nil {
		return nil, errors.New("media: stream needs a Remote address")
	}
	if !cfg.Codec.valid() || cfg.Codec.PayloadType > 127 {
		return nil, fmt.Errorf("media: unsupported codec %v", cfg.Codec)
	}
	if cfg.DTMFPayloadType > 127 || (cfg.DTMFPayloadType != 0 && cfg.DTMFPayloadType == cfg.Codec.PayloadType) {
		return nil, fmt.Errorf("media: bad telephone-event payload type %d", cfg.DTMFPayloadType)
	}
	remote := cfg.Remote.AddrPort()
	if !remote.IsValid() || remote.Port() == 0 {
		return nil, fmt.Errorf("media: bad remote address %v", cfg.Remote)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var local netip.AddrPort
	if la, ok := cfg.Conn.LocalAddr().(*net.UDPAddr); ok {
		local = la.AddrPort()
	}
	s := &Stream{
		conn:   cfg.Conn,
		local:  local,
		remote: unmap(remote),
		codec:  cfg.Codec,
		dtmfPT: cfg.DTMFPayloadType,
		log:    log,
		frames: make(chan []int16, framesBuffer),
		dtmf:   make(chan DTMFEvent, dtmfBuffer),
		done:   make(chan struct{}),
	}
	s.tx.init()
	return s, nil
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Start launches the reader and the 20 ms send clock; both end when ctx is
// done or Close is called. Later calls do nothing.
func (s *Stream) Start(ctx context.Context) {
	s.mu.Lock()
	if s.started || s.closing {
		s.mu.Unlock()
		return
	}
	s.started = true
	ctx, s.cancel = context.WithCancel(ctx)
	s.mu.Unlock()

	readerDone := make(chan struct{})
	go s.readLoop(ctx, readerDone)
	go s.clockLoop(ctx, readerDone)
}

// shutdown runs once, on the clock goroutine, when the stream's context ends:
// closing the socket is what unblocks the reader.
func (s *Stream) shutdown(readerDone <-chan struct{}) {
	err := s.conn.Close()
	<-readerDone
	s.release()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.closeErr = err
	}
	close(s.done)
}

// release wakes every waiter on the queues; nothing will be sent any more.
func (s *Stream) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for _, c := range s.queue {
		close(c.done)
	}
	for _, j := range s.dtmfQ {
		close(j.done)
	}
	s.queue, s.dtmfQ, s.queued = nil, nil, 0
}

// Close stops the goroutines, closes the socket and waits for the goroutines
// to exit. It is idempotent and safe to call concurrently.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		started, cancel := s.started, s.cancel
		s.mu.Unlock()
		if started {
			cancel()
			return
		}
		// Never started: no goroutines to stop, do their exit work here.
		err := s.conn.Close()
		s.release()
		close(s.frames)
		close(s.dtmf)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = err
		}
		close(s.done)
	})
	<-s.done
	return s.closeErr
}

// Done is closed when the stream has stopped.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Frames delivers inbound audio as decoded 20 ms frames (len FrameSamples, an
// owned copy each). The reader never blocks on it: when the consumer is slow
// the oldest frame is dropped and counted. Closed when the stream ends.
func (s *Stream) Frames() <-chan []int16 { return s.frames }

// DTMF delivers received digits, one per RFC 4733 event. Closed when the
// stream ends.
func (s *Stream) DTMF() <-chan DTMFEvent { return s.dtmf }

// LocalAddr is the address of the stream's socket, for the SDP.
func (s *Stream) LocalAddr() *net.UDPAddr { return net.UDPAddrFromAddrPort(s.local) }

// Stats returns a snapshot of the counters.
func (s *Stream) Stats() Stats {
	c := &s.stats
	return Stats{
		PacketsIn:     c.packetsIn.Load(),
		PacketsOut:    c.packetsOut.Load(),
		PacketsLost:   c.packetsLost.Load(),
		BytesIn:       c.bytesIn.Load(),
		BytesOut:      c.bytesOut.Load(),
		Dropped:       c.dropped.Load(),
		FramesDropped: c.framesDropped.Load(),
		DTMFIn:        c.dtmfIn.Load(),
		PacketsLate:   c.late.Load(),
	}
}

// txState is the sender's RTP state, owned by the clock goroutine.
type txState struct {
	ssrc     uint32
	seq      uint16
	ts       uint32
	marker   bool // set the marker on the next packet
	hdr      rtp.Header
	buf      []byte
	frame    []int16
	dones    []chan struct{}
	errLogAt time.Time
}

func (t *txState) init() {
	// Random SSRC, sequence and timestamp (RFC 3550 §5.1) so streams are
	// distinguishable and known-plaintext guesses are harder.
	t.ssrc = rand.Uint32()
	t.seq = uint16(rand.Uint32())
	t.ts = rand.Uint32()
	t.marker = true
	t.hdr = rtp.Header{Version: 2, SSRC: t.ssrc}
	t.buf = make([]byte, 0, 12+FrameSamples)
	t.frame = make([]int16, FrameSamples)
}
