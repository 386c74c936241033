package media

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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

	// RTCP (RFC 3550). With RTCPMux (a=rtcp-mux, RFC 5761) RTCP shares Conn
	// and Remote. Otherwise RTCPConn, if set, is the RTCP socket (the RTP
	// port + 1, see PortRange.ListenPair), owned and closed by the Stream,
	// and reports go to RemoteRTCP (default: Remote's port + 1). With
	// neither, the stream sends and reads no RTCP. RTCP is accepted from
	// the Remote IP on any port.
	RTCPMux      bool
	RTCPConn     *net.UDPConn
	RemoteRTCP   *net.UDPAddr
	RTCPInterval time.Duration // mean report interval, default DefaultRTCPInterval
	CNAME        string        // SDES CNAME, default "voxbridge-<ssrc>"

	// MinDelay and MaxDelay bound the jitter buffer (ReceiverConfig).
	MinDelay, MaxDelay time.Duration

	// Recorder, if set, gets one stereo frame per 20 ms tick: the audio
	// played out from the peer on the left (silence before its first
	// packet) and what the stream sent on the right. The Stream does not
	// close it.
	Recorder *Recorder

	// Tap, if set, sees every datagram read or written (RTP and RTCP).
	Tap Tap

	// Latch, if its Window is set, follows a NATed peer whose RTP comes
	// from another address than the SDP named (see latch.go).
	Latch LatchConfig
}

// Stats are cumulative counters of a stream.
type Stats struct {
	PacketsIn, PacketsOut, PacketsLost uint64 // lost = expected minus received sequence numbers (RFC 3550)
	BytesIn, BytesOut                  uint64 // UDP payload bytes (RTP header included)
	Dropped                            uint64 // datagrams from a wrong source, unparseable, or with an unknown payload type
	FramesDropped                      uint64 // frames dropped because the Frames consumer was slow
	DTMFIn                             uint64 // distinct inbound DTMF events
	PacketsLate                        uint64 // valid packets not played: late or duplicate (counted in PacketsIn)

	// Receive is the jitter buffer's view of the inbound stream.
	Receive ReceiveStats

	// Send pacing: how late packets left against their 20 ms schedule.
	SendLateP99MS, SendLateMaxMS float64
	SendLate                     LatenessHistogram

	// RTCP. The Remote* fields come from the peer's reports about our
	// stream; RTTMS from LSR/DLSR (RFC 3550 §6.4.1). Zero until known.
	RTCPSent, RTCPReceived uint64
	RTTMS                  float64
	RemoteLossFraction     float64 // fraction of our packets lost in the peer's last report interval
	RemoteLost             int64   // cumulative packets of ours the peer lost
	RemoteJitterMS         float64
	RemoteBye              bool

	// Estimated listening quality of what we receive (EModel): loss
	// includes late packets; delay is RTT/2 + jitter buffer + 20 ms.
	// Zero before anything was received.
	RFactor, MOS float64
}

type counters struct {
	packetsIn, packetsOut  atomic.Uint64
	bytesIn, bytesOut      atomic.Uint64
	payloadOut             atomic.Uint64
	dropped, framesDropped atomic.Uint64
}

// Stream is one RTP audio stream: a reader pushing inbound packets into a
// jitter buffer, and a clock (shared with other streams, see clock.go)
// that every 20 ms sends one packet from a playout queue and takes one
// frame of playout for Frames. With RTCP configured it reports every few
// seconds and says BYE when it stops; a separate RTCP socket is read by the
// clock on Linux (rtcppoll_linux.go) and by a second reader elsewhere.
type Stream struct {
	conn         *net.UDPConn
	rtcpConn     *net.UDPConn    // nil: RTCP on conn (mux) or none
	rtcpRaw      syscall.RawConn // rtcpConn, when its clock polls it instead of a reader goroutine
	local        netip.AddrPort
	remote       netip.AddrPort // unmapped, so it compares equal to what ReadFrom reports
	remoteRTCP   netip.AddrPort // invalid: no RTCP
	rtcpMux      bool
	rtcpInterval time.Duration
	cname        string
	codec        Codec
	dtmfPT       uint8
	log          *slog.Logger
	rx           *Receiver
	rec          *Recorder
	tap          atomic.Pointer[Tap] // Config.Tap, or SetTap's; nil: none
	// midRec is a second recorder set while the stream runs
	// (SetRecorder), fed like rec from the next tick on.
	midRec atomic.Pointer[Recorder]
	gate   gate // mute and hold (gate.go)

	// addrs is where RTP and RTCP go now: remote and remoteRTCP until
	// SetRemote or NAT learning moves them (peer.go).
	addrs   atomic.Pointer[peerAddrs]
	sendOff atomic.Bool // SetRemoteHold: the clock runs but sends nothing
	latch   latch

	frames chan []int16
	dtmf   chan DTMFEvent
	done   chan struct{}
	stats  counters
	rtcpSt rtcpState

	tx  txState     // clock only
	clk streamClock // clock only

	// echo sends each inbound frame back from the clock (Echo); echoFrame
	// holds the one pulled at the last tick, clock only.
	echo      atomic.Bool
	echoFrame [FrameSamples]int16
	echoHave  bool

	logMu     sync.Mutex
	dropLogAt time.Time
	dropsLog  int

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
	if cfg.RTCPMux && cfg.RTCPConn != nil {
		return nil, errors.New("media: RTCPMux and RTCPConn are exclusive")
	}
	var remoteRTCP netip.AddrPort
	switch {
	case cfg.RTCPMux:
		remoteRTCP = remote
	case cfg.RTCPConn != nil && cfg.RemoteRTCP != nil:
		remoteRTCP = cfg.RemoteRTCP.AddrPort()
		if !remoteRTCP.IsValid() || remoteRTCP.Port() == 0 {
			return nil, fmt.Errorf("media: bad remote RTCP address %v", cfg.RemoteRTCP)
		}
	case cfg.RTCPConn != nil:
		if remote.Port() == 65535 {
			return nil, errors.New("media: remote RTP port 65535 leaves no RTCP port")
		}
		remoteRTCP = netip.AddrPortFrom(remote.Addr(), remote.Port()+1)
	}
	if cfg.RTCPInterval < 0 {
		return nil, fmt.Errorf("media: negative RTCP interval %v", cfg.RTCPInterval)
	}
	if cfg.MinDelay < 0 || cfg.MaxDelay < 0 || (cfg.MaxDelay > 0 && cfg.MaxDelay < cfg.MinDelay) {
		return nil, fmt.Errorf("media: bad jitter buffer bounds %v-%v", cfg.MinDelay, cfg.MaxDelay)
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
		conn:         cfg.Conn,
		rtcpConn:     cfg.RTCPConn,
		local:        local,
		remote:       unmap(remote),
		remoteRTCP:   remoteRTCP,
		rtcpMux:      cfg.RTCPMux,
		rtcpInterval: cmp.Or(cfg.RTCPInterval, DefaultRTCPInterval),
		codec:        cfg.Codec,
		dtmfPT:       cfg.DTMFPayloadType,
		log:          log,
		rec:          cfg.Recorder,
		frames:       make(chan []int16, framesBuffer),
		dtmf:         make(chan DTMFEvent, dtmfBuffer),
		done:         make(chan struct{}),
	}
	if cfg.Tap != nil {
		s.tap.Store(&cfg.Tap)
	}
	s.rx = NewReceiver(ReceiverConfig{
		Codec:           cfg.Codec,
		DTMFPayloadType: cfg.DTMFPayloadType,
		MinDelay:        cfg.MinDelay,
		MaxDelay:        cfg.MaxDelay,
		OnDTMF:          s.onDTMF,
	})
	s.addrs.Store(&peerAddrs{rtp: s.remote, rtcp: remoteRTCP})
	if err := s.latch.init(cfg.Latch); err != nil {
		return nil, err
	}
	s.tx.init()
	s.cname = cfg.CNAME
	if s.cname == "" {
		s.cname = fmt.Sprintf("voxbridge-%08x", s.tx.ssrc)
	}
	return s, nil
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Start launches the reader(s) and the 20 ms clock; they end when ctx is
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
	s.latch.open(time.Now())

	readers := []chan struct{}{make(chan struct{})}
	go s.readLoop(ctx, s.conn, false, readers[0])
	if s.rtcpConn != nil && !s.initRTCPPoll() {
		readers = append(readers, make(chan struct{}))
		go s.readLoop(ctx, s.rtcpConn, true, readers[1])
	}
	s.startClock(ctx, readers)
}

// shutdown runs once, when the stream's context ends and its clock has let
// go of it: it says BYE, and closing the sockets unblocks the readers.
func (s *Stream) shutdown(readers []chan struct{}) {
	if s.rtcpRaw != nil {
		// What the peer reported since the clock's last poll (its BYE, say)
		// still counts, as it would have with a reader goroutine.
		buf, oob := make([]byte, readBufSize), make([]byte, 64)
		s.pollRTCP(buf, oob)
	}
	if s.rtcpEnabled() {
		s.sendRTCP(time.Now(), true)
	}
	err := s.closeConns()
	for _, r := range readers {
		<-r
	}
	s.drain()
	s.release()
	close(s.frames)
	close(s.dtmf)
	s.closeErr = err
	close(s.done)
}

// drain plays out what the jitter buffer still holds when the stream stops
// (the last words before a BYE), at once, to Frames and the recording.
func (s *Stream) drain() {
	if !s.rx.started() {
		return
	}
	at := s.tx.nextAt
	limit := int(s.rx.maxDly/int64(FrameDuration)) + 5
	for range limit {
		if s.rx.drained() {
			return
		}
		f := s.rx.Pull(at)
		s.deliver(slices.Clone(f))
		if s.rec != nil {
			s.rec.WriteFrame(f, nil)
		}
		if r := s.midRec.Load(); r != nil {
			r.WriteFrame(f, nil)
		}
		at = at.Add(FrameDuration)
	}
}

func (s *Stream) closeConns() error {
	err := s.conn.Close()
	if s.rtcpConn != nil {
		if err2 := s.rtcpConn.Close(); err == nil {
			err = err2
		}
	}
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
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

// Close stops the goroutines, sends RTCP BYE (if RTCP is on and the stream
// ran), closes the sockets and waits for the goroutines to exit. It is
// idempotent and safe to call concurrently.
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
		s.closeErr = s.closeConns()
		s.release()
		close(s.frames)
		close(s.dtmf)
		close(s.done)
	})
	<-s.done
	return s.closeErr
}

// SetRecorder starts (r) or stops (nil) a recording made while the stream
// runs, next to StreamConfig.Recorder and fed the same way from the next
// tick on. It returns the recorder it replaces; the caller closes that one
// (a tick racing the swap may still write to it, which a closed Recorder
// refuses harmlessly).
func (s *Stream) SetRecorder(r *Recorder) *Recorder { return s.midRec.Swap(r) }

// Done is closed when the stream has stopped.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Frames delivers inbound audio as decoded 20 ms frames (len FrameSamples,
// an owned copy each), one per tick of the stream's clock from the first
// inbound packet on: played out through the jitter buffer, with loss
// concealed and silence where the peer sent none. When the stream stops,
// what the buffer still holds is delivered at once before the channel
// closes, so the last words before a hangup are not lost. The clock never
// blocks on it: when the consumer is slow the oldest frame is dropped and
// counted.
func (s *Stream) Frames() <-chan []int16 { return s.frames }

// Echo, while on, sends the peer back what it sends, frame by frame, from
// the stream's own clock: each inbound frame (after the jitter buffer, as
// Frames would have it) goes out at the next tick, 20 ms later, unless
// queued audio is playing. Frames gets nothing meanwhile. Done on the clock,
// an echo call costs no goroutine wake-up, channel send or copy per frame.
func (s *Stream) Echo(on bool) { s.echo.Store(on) }

// DTMF delivers received digits, one per RFC 4733 event, as soon as the
// event's first packet arrives. Closed when the stream ends.
func (s *Stream) DTMF() <-chan DTMFEvent { return s.dtmf }

// LocalAddr is the address of the stream's socket, for the SDP.
func (s *Stream) LocalAddr() *net.UDPAddr { return net.UDPAddrFromAddrPort(s.local) }

// Stats returns a snapshot of the counters.
func (s *Stream) Stats() Stats {
	c := &s.stats
	rs := s.rx.Stats()
	st := Stats{
		PacketsIn:     c.packetsIn.Load(),
		PacketsOut:    c.packetsOut.Load(),
		PacketsLost:   rs.Lost,
		BytesIn:       c.bytesIn.Load(),
		BytesOut:      c.bytesOut.Load(),
		Dropped:       c.dropped.Load(),
		FramesDropped: c.framesDropped.Load(),
		DTMFIn:        rs.DTMFEvents,
		PacketsLate:   rs.Late + rs.Duplicates,
		Receive:       rs,
	}
	st.SendLate = s.tx.late.snapshot()
	st.SendLateP99MS = float64(st.SendLate.Quantile(0.99)) / float64(time.Millisecond)
	st.SendLateMaxMS = float64(st.SendLate.Max) / float64(time.Millisecond)
	r := &s.rtcpSt
	r.mu.Lock()
	st.RTCPSent, st.RTCPReceived = r.sent, r.received
	if r.haveRTT {
		st.RTTMS = float64(r.rtt) / float64(time.Millisecond)
	}
	if r.haveRemote {
		st.RemoteLossFraction, st.RemoteLost, st.RemoteJitterMS = r.remoteFrac, r.remoteLost, r.remoteJitt
	}
	st.RemoteBye = r.peerBye
	r.mu.Unlock()
	if expected := rs.Packets + rs.Lost; rs.Packets > 0 {
		loss := float64(rs.Lost+rs.Late) / float64(expected)
		delay := time.Duration((st.RTTMS/2 + rs.DelayMSMean) * float64(time.Millisecond))
		st.RFactor, st.MOS = EModel(loss, delay+FrameDuration)
	}
	return st
}

// txState is the sender's RTP state, owned by the stream's clock (and by
// shutdown once the clock has let go).
type txState struct {
	ssrc      uint32
	seq       uint16
	ts        uint32
	nextAt    time.Time // when the packet with timestamp ts is due
	marker    bool      // set the marker on the next packet
	hdr       rtp.Header
	buf       []byte
	frame     []int16
	toneFrame []int16 // the DTMF tone we signal, for the recording
	dones     []chan struct{}
	starts    []chan time.Time
	errLogAt  time.Time
	late      lateHist
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
	t.toneFrame = make([]int16, FrameSamples)
}

// LatenessHistogram counts how late packets left against their 20 ms
// schedule: 0.1 ms buckets to 10 ms, 1 ms buckets to 100 ms, then one
// bucket for the rest. Histograms of many streams Merge into one.
type LatenessHistogram struct {
	Buckets [latenessBuckets]uint32
	Count   uint64
	Max     time.Duration
}

const latenessBuckets = 191

func latenessBucket(d time.Duration) int {
	switch {
	case d < 10*time.Millisecond:
		return int(max(d, 0) / (100 * time.Microsecond))
	case d < 100*time.Millisecond:
		return 100 + int((d-10*time.Millisecond)/time.Millisecond)
	}
	return latenessBuckets - 1
}

// Merge adds o's counts to h.
func (h *LatenessHistogram) Merge(o LatenessHistogram) {
	for i, c := range o.Buckets {
		h.Buckets[i] += c
	}
	h.Count += o.Count
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the upper edge of the bucket holding quantile q (0..1),
// capped at the maximum: at least q of the packets left no later than that.
// A quantile in the open-ended last bucket (100 ms or more) reports Max.
func (h LatenessHistogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(h.Count)))
	var cum uint64
	for i, c := range h.Buckets {
		cum += uint64(c)
		if cum >= max(want, 1) {
			switch {
			case i < 100:
				return min(h.Max, time.Duration(i+1)*100*time.Microsecond)
			case i < len(h.Buckets)-1:
				return min(h.Max, time.Duration(i-89)*time.Millisecond)
			}
			return h.Max
		}
	}
	return h.Max
}

// lateHist is the clock's histogram, written without locks (the clock is
// its only writer) and read by Stats.
type lateHist struct {
	b   [latenessBuckets]atomic.Uint32
	n   atomic.Uint64
	max atomic.Int64
}

func (l *lateHist) add(d time.Duration) {
	d = max(d, 0)
	l.b[latenessBucket(d)].Add(1)
	l.n.Add(1)
	if int64(d) > l.max.Load() {
		l.max.Store(int64(d)) // single writer: no CAS needed
	}
}

func (l *lateHist) snapshot() LatenessHistogram {
	var h LatenessHistogram
	for i := range l.b {
		h.Buckets[i] = l.b[i].Load()
	}
	h.Count = l.n.Load()
	h.Max = time.Duration(l.max.Load())
	return h
}
