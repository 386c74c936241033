package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/zaf/g711"
)

// Jitter buffer defaults and tuning. Delays are in samples where the name
// says so; one sample is 125 µs.
const (
	DefaultMinDelay = 20 * time.Millisecond
	DefaultMaxDelay = 200 * time.Millisecond

	cnPayloadType = 13 // RFC 3389 comfort noise, static

	nsPerSample = int64(time.Second) / SampleRate

	// The target delay covers this quantile of the transit spread over
	// the last delayWindowLen audio packets (10 s at 20 ms): a late packet
	// raises it at once, and it falls only as the slow ones leave.
	delayWindowLen = 500
	delayQuantile  = 0.99

	// Playout alignment. A frame is due when the newest packet it needs
	// is due, so playout keeps frames aligned to the sender's packet grid
	// and moves in whole frames: in silence and in quiet frames (quietRMS)
	// whenever it is early or a whole packet late; in speech it inserts a
	// concealed frame when more than insertSamples early and drops one
	// only past forceDropSamples late.
	insertSamples    = 16  // 2 ms
	forceDropSamples = 640 // 80 ms
	quietRMS         = 256

	maxRecords  = 64 // packets waiting for playout: 51 of 10 ms fill the default ring
	initRecords = 16 // what a 20-60 ms buffer of 20 ms packets needs; grows to maxRecords

	// initRingSamples is the ring a Receiver starts with (128 ms, 2 KB):
	// enough for the default 20-60 ms of delay with 20 ms packets. It
	// doubles, up to the size MaxDelay calls for, when a packet needs
	// more, so only streams with real jitter pay for 200 ms of buffer.
	initRingSamples = 1024
	staleSSRC       = 2 * time.Second // a source we switched away from is ignored this long
	maxDTMFDigits   = 1024            // digits kept in ReceiveStats.DTMF
)

// Errors returned by Receiver.Push for datagrams it refuses. They are
// wrapped with detail; match them with errors.Is.
var (
	ErrNotRTP             = errors.New("media: not an RTP packet")
	ErrRTCPPacket         = errors.New("media: RTCP packet on the RTP path")
	ErrBadRTP             = errors.New("media: malformed RTP packet")
	ErrUnknownPayloadType = errors.New("media: unknown payload type")
)

// ReceiverConfig configures a Receiver.
type ReceiverConfig struct {
	// Codec decodes audio packets. The zero value detects PCMU (PT 0) and
	// PCMA (PT 8) packet by packet, as replay of an unknown capture needs.
	Codec Codec
	// DTMFPayloadType is the negotiated RFC 4733 telephone-event type;
	// 0 means none.
	DTMFPayloadType uint8
	// MinDelay and MaxDelay bound the adaptive playout delay (defaults
	// DefaultMinDelay and DefaultMaxDelay).
	MinDelay, MaxDelay time.Duration
	// OnDTMF is called from Push, without locks held, once per received
	// digit, when the event's first packet arrives.
	OnDTMF func(DTMFEvent)
}

// ReceiveStats describe what a Receiver got and what it played.
type ReceiveStats struct {
	SSRC        uint32 // the current source
	PayloadType uint8  // of the last audio packet
	Codec       Codec  // of the last audio packet
	SSRCChanges uint64

	Packets    uint64 // valid RTP packets of the stream (audio, DTMF, comfort noise), duplicates and late ones included
	Lost       uint64 // expected minus received sequence numbers (RFC 3550 A.3), summed over sources
	Late       uint64 // arrived after their playout time: dropped (or only their tail played)
	Duplicates uint64
	Reordered  uint64 // arrived after a packet with a higher sequence number
	Discarded  uint64 // valid but unusable: an unconfirmed sequence jump, or too far ahead to buffer
	Invalid    uint64 // datagrams Push refused: not RTP, malformed, unknown payload type
	Resyncs    uint64 // timeline re-anchored after a timestamp jump, sequence restart or SSRC change

	ConcealedMS   float64 // audio synthesized for lost or late packets, and frames inserted to grow the delay
	JitterMS      float64 // interarrival jitter, RFC 3550 A.8
	DelayMSMean   float64 // added playout delay: time from a packet's arrival to its playout
	DelayMSP95    float64
	TargetDelayMS float64 // the buffer's current target (network spread covered)
	BufferedMS    float64 // audio received and not yet played
	DurationMS    float64 // media time from the first to the end of the last packet
	DTMF          string  // digits received, in order
	DTMFEvents    uint64
}

type holeKind uint8

const (
	holeSilence holeKind = iota // silence suppression, DTMF, before the start: not loss
	holeLoss                    // a packet is missing: conceal
	holeUnknown                 // nothing buffered yet: conceal, decide later whether it was loss
)

// record is a packet waiting for playout; its samples are in the ring.
type record struct {
	start   int64 // timeline position of its first buffered sample
	seq     int64 // extended sequence number in its epoch
	arrival int64 // ns on the receiver's clock
	epoch   uint32
	cn      bool // comfort noise: silence at level from here on
	level   uint8
	marker  bool
}

// Receiver is an adaptive playout jitter buffer for one inbound G.711 RTP
// stream: Push hands it packets as they arrive, Pull takes one 20 ms frame
// per call on the caller's absolute grid. The live Stream and replay use
// the same code, with wall-clock and capture time respectively.
//
// Packets are placed on a sample timeline (the RTP timestamp, unwrapped
// and re-anchored across SSRC changes and jumps), so any ptime, reordering
// and duplicates fall out naturally. A packet's transit time (arrival minus
// media time) against the fastest recent one is its network delay; the
// target playout delay covers a high quantile of it, between MinDelay and
// MaxDelay. Playout follows the target exactly in silence and in whole
// frames (concealed insert or quiet drop) during speech, which also absorbs
// sender clock drift. Lost packets are concealed (G.711 Appendix I style);
// gaps whose sequence numbers all arrived (silence suppression, comfort
// noise, DTMF) play as silence or comfort noise and are not loss.
//
// A Receiver is safe for concurrent use; Push and Pull hold a short lock.
// Decoded audio lives in a preallocated ring, so the steady state allocates
// nothing per packet.
type Receiver struct {
	mu     sync.Mutex
	codec  Codec
	detect bool
	dtmfPT uint8
	minDly int64 // ns
	maxDly int64
	jumpNs int64 // a transit change this big is a timestamp jump
	onDTMF func(DTMFEvent)
	pkt    rtp.Packet // reused by Unmarshal

	t0       time.Time
	clockSet bool

	// Source and sequence state.
	haveSSRC    bool
	ssrc        uint32
	prevSSRC    uint32
	prevValid   bool
	switchedAt  int64
	epoch       uint32
	seq         seqTracker
	closedLost  uint64
	closedExp   uint64
	closedRecv  uint64
	tsSet       bool
	lastTS      uint32 // reference for unwrapping timestamps
	lastExt     int64
	jitter      float64 // RFC 3550 A.8, in timestamp units
	jPrevSet    bool
	jPrevArr    int64
	jPrevExt    int64
	win         delayWindow
	target      int64 // ns
	lastPT      uint8
	lastCodec   Codec
	dtmfTS      [8]uint32 // recent event timestamps, for dedupe
	dtmfN       int
	dtmfIdx     int
	dtmfLast    uint32 // timestamp, duration and code of the newest event
	dtmfLastDur uint16
	dtmfLastEv  byte
	dtmfLastEnd bool
	dtmfDigits  []byte

	// The timeline buffer.
	ring       []int16  // grows (grow) from initRingSamples to ringMax, a power of two
	have       []uint64 // one bit per ring sample: received and not yet played
	mask       int64
	ringMax    int64    // the ring's full size, which bounds what is accepted
	recs       []record // sorted by start
	haveMedia  bool
	mediaSeen  atomic.Bool // haveMedia, for readers without the lock
	outStarted bool
	playTS     int64 // next timeline position to play
	gridRef    int64 // start and length of the newest audio packet: the sender's packet grid
	gridStep   int64
	minStart   int64
	maxEnd     int64

	// Playout state.
	lastSeq      int64
	lastEpoch    uint32
	lastSeqValid bool
	cnActive     bool
	cnLevel      uint8
	noise        uint32
	inSilence    bool
	pending      int64 // concealed samples not yet known to be loss
	plc          plc
	out          [FrameSamples]int16

	// Counters.
	packets, late, dups, reordered uint64
	discarded, invalid, resyncs    uint64
	ssrcChanges, dtmfEvents        uint64
	concealed                      int64        // samples
	delayHist                      [512]uint32  // 1 ms buckets of added delay, the last one open-ended
	delayHSum                      [512]float32 // sum per bucket, so quantiles read the bucket's mean
	delaySum                       float64
	delayN                         uint64
}

// NewReceiver returns a Receiver. Its ring can hold at least MaxDelay plus
// 300 ms of audio, so early packets and long ptimes fit; it starts smaller
// and grows to that when the buffered audio needs it.
func NewReceiver(cfg ReceiverConfig) *Receiver {
	minD, maxD := cfg.MinDelay, cfg.MaxDelay
	if minD <= 0 {
		minD = DefaultMinDelay
	}
	if maxD <= 0 {
		maxD = DefaultMaxDelay
	}
	maxD = max(maxD, minD)
	size := 1
	for size < samplesFor(maxD+300*time.Millisecond) {
		size <<= 1
	}
	r := &Receiver{
		codec:    cfg.Codec,
		detect:   cfg.Codec.Name == "",
		dtmfPT:   cfg.DTMFPayloadType,
		minDly:   int64(minD),
		maxDly:   int64(maxD),
		jumpNs:   max(2*int64(maxD), int64(time.Second)),
		onDTMF:   cfg.OnDTMF,
		win:      newDelayWindow(delayWindowLen),
		target:   int64(minD),
		ringMax:  int64(size),
		recs:     make([]record, 0, initRecords),
		gridStep: FrameSamples,
		noise:    0x9e3779b9,
	}
	r.setRing(make([]int16, min(size, initRingSamples)))
	if !r.detect {
		r.lastCodec, r.lastPT = cfg.Codec, cfg.Codec.PayloadType
	}
	return r
}

func (r *Receiver) setRing(ring []int16) {
	r.ring = ring
	r.have = make([]uint64, (len(ring)+63)/64)
	r.mask = int64(len(ring) - 1)
}

// grow makes the ring hold at least span samples from playTS on (at most
// ringMax), moving what is buffered to its place in the larger ring.
// Everything buffered lies in [playTS, playTS+len(ring)), so that window
// is all there is to move.
func (r *Receiver) grow(span int64) {
	if span <= int64(len(r.ring)) {
		return
	}
	size := int64(len(r.ring))
	for size < span && size < r.ringMax {
		size <<= 1
	}
	old, oldHave, oldMask := r.ring, r.have, r.mask
	r.setRing(make([]int16, size))
	for pos := r.playTS; pos < r.playTS+int64(len(old)); pos++ {
		i := pos & oldMask
		if oldHave[i>>6]&(1<<(i&63)) != 0 {
			j := pos & r.mask
			r.ring[j] = old[i]
			r.have[j>>6] |= 1 << (j & 63)
		}
	}
}

func (r *Receiver) clock(t time.Time) int64 {
	if !r.clockSet {
		r.t0, r.clockSet = t, true
	}
	return int64(t.Sub(r.t0))
}

// Push hands the Receiver one datagram that arrived at arrival. It parses
// it and copies what it keeps, so pkt may be reused as soon as it returns.
// Datagrams that are not RTP of this stream return an error (wrapping
// ErrNotRTP, ErrRTCPPacket, ErrBadRTP or ErrUnknownPayloadType) and are
// counted as Invalid; everything else returns nil.
func (r *Receiver) Push(pkt []byte, arrival time.Time) error {
	r.mu.Lock()
	ev, emit, err := r.push(pkt, arrival)
	r.mu.Unlock()
	if emit && r.onDTMF != nil {
		r.onDTMF(ev)
	}
	return err
}

type pktKind uint8

const (
	kindAudio pktKind = iota
	kindDTMF
	kindCN
)

// classify says what a packet of payload type pt with n payload bytes is,
// and which codec decodes it.
func (r *Receiver) classify(pt uint8, n int) (pktKind, Codec, error) {
	switch {
	case !r.detect && pt == r.codec.PayloadType:
		return r.checkAudio(r.codec, n)
	case r.detect && pt == PCMU.PayloadType:
		return r.checkAudio(PCMU, n)
	case r.detect && pt == PCMA.PayloadType:
		return r.checkAudio(PCMA, n)
	case r.dtmfPT != 0 && pt == r.dtmfPT:
		if n < 4 {
			return 0, Codec{}, fmt.Errorf("%w: telephone-event payload of %d bytes", ErrBadRTP, n)
		}
		return kindDTMF, Codec{}, nil
	case pt == cnPayloadType:
		return kindCN, Codec{}, nil
	}
	return 0, Codec{}, fmt.Errorf("%w %d", ErrUnknownPayloadType, pt)
}

// checkAudio refuses payloads too long for the ring to buffer.
func (r *Receiver) checkAudio(c Codec, n int) (pktKind, Codec, error) {
	if int64(n) > r.ringMax/2 {
		return 0, Codec{}, fmt.Errorf("%w: %d-sample payload", ErrBadRTP, n)
	}
	return kindAudio, c, nil
}

func (r *Receiver) push(b []byte, arrival time.Time) (DTMFEvent, bool, error) {
	var none DTMFEvent
	if len(b) < 12 {
		r.invalid++
		return none, false, fmt.Errorf("%w: %d bytes", ErrNotRTP, len(b))
	}
	if v := b[0] >> 6; v != 2 {
		r.invalid++
		return none, false, fmt.Errorf("%w: version %d", ErrNotRTP, v)
	}
	if b[1] >= 192 && b[1] <= 223 { // RFC 5761 §4: RTCP packet types
		r.invalid++
		return none, false, fmt.Errorf("%w: type %d", ErrRTCPPacket, b[1])
	}
	p := &r.pkt
	if err := p.Unmarshal(b); err != nil {
		r.invalid++
		return none, false, fmt.Errorf("%w: %v", ErrBadRTP, err)
	}
	pt := p.PayloadType
	kind, codec, err := r.classify(pt, len(p.Payload))
	if err != nil {
		r.invalid++
		return none, false, err
	}
	now := r.clock(arrival)

	switch {
	case !r.haveSSRC:
		r.haveSSRC, r.ssrc = true, p.SSRC
	case p.SSRC != r.ssrc:
		if r.prevValid && p.SSRC == r.prevSSRC && now-r.switchedAt < int64(staleSSRC) {
			// A straggler from the source we just left: playing it would
			// flip the timeline back and forth.
			r.packets++
			r.late++
			return none, false, nil
		}
		r.prevSSRC, r.prevValid, r.switchedAt = r.ssrc, true, now
		r.ssrc = p.SSRC
		r.ssrcChanges++
		r.newEpoch(false)
	}
	ext, verdict := r.seq.update(p.SequenceNumber)
	switch verdict {
	case seqDuplicate:
		r.packets++
		r.dups++
		return none, false, nil
	case seqJump:
		r.packets++
		r.discarded++
		return none, false, nil
	case seqRestart:
		r.newEpoch(true)
		ext, verdict = r.seq.update(p.SequenceNumber)
	}
	r.packets++
	if verdict == seqReordered {
		r.reordered++
	}

	// Place the packet on the timeline.
	var pos int64
	anchored := false
	if !r.tsSet {
		pos, anchored = r.anchor(p.Timestamp, now), true
	} else {
		pos = r.lastExt + int64(int32(p.Timestamp-r.lastTS))
	}

	if kind == kindDTMF {
		ev, ok := r.onDTMFPacket(p.Payload, p.Timestamp, arrival)
		return ev, ok, nil
	}

	if kind == kindAudio {
		r.lastPT, r.lastCodec = pt, codec
	}
	transit := now - pos*nsPerSample
	if verdict == seqNew && !anchored && r.win.len() > 0 {
		if d := transit - r.win.min(); d > r.jumpNs || d < -r.jumpNs {
			// The timestamp jumped against the arrival clock (sender
			// restart, splice, or a long stall): re-anchor rather than
			// calling everything after it late or early.
			pos = r.anchor(p.Timestamp, now)
			transit = now - pos*nsPerSample
			r.jPrevSet = false
		}
	}
	if verdict == seqNew {
		r.lastTS, r.lastExt = p.Timestamp, pos
	}
	r.win.add(transit)
	r.updateTarget()
	if kind == kindAudio {
		r.updateJitter(now, pos)
	}

	n := int64(len(p.Payload))
	if kind == kindCN {
		n = 0
	}
	start, end := pos, pos+n
	if !r.haveMedia {
		r.haveMedia = true
		r.mediaSeen.Store(true)
		r.playTS, r.minStart, r.maxEnd = start, start, end
	}
	if !r.outStarted && start < r.playTS && r.maxEnd-start <= r.ringMax {
		r.grow(r.maxEnd - start)
		r.playTS = start // nothing played yet: start from the earliest packet
	}
	payload := p.Payload
	if start < r.playTS {
		r.late++
		r.commitPending() // the hole it was meant to fill was concealed
		if end <= r.playTS {
			return none, false, nil
		}
		payload = payload[r.playTS-start:]
		start = r.playTS
	}
	if end > r.playTS+r.ringMax {
		r.discarded++
		return none, false, nil
	}
	r.grow(end - r.playTS)
	if verdict == seqNew && r.pending > 0 {
		// A newer packet ends an underrun: if nothing is missing before
		// it, the sender was silent and nothing was lost.
		if p.Marker || (r.lastSeqValid && r.lastEpoch == r.epoch && r.seq.allSeen(r.lastSeq, ext)) {
			r.pending = 0
		} else {
			r.commitPending()
		}
	}
	if kind == kindAudio {
		if verdict == seqNew && start == pos && n > 0 {
			r.gridRef, r.gridStep = start, n
		}
		r.store(start, payload, codec)
	}
	r.insertRecord(record{
		start: start, seq: ext, arrival: now, epoch: r.epoch,
		cn: kind == kindCN, level: cnLevel(p.Payload), marker: p.Marker,
	})
	r.minStart = min(r.minStart, start)
	r.maxEnd = max(r.maxEnd, end)
	return none, false, nil
}

func cnLevel(payload []byte) uint8 {
	if len(payload) == 0 {
		return 127
	}
	return payload[0] & 0x7f
}

// newEpoch starts a new source epoch: sequence tracking restarts, and the
// timeline is re-anchored on the next packet unless keepTS says the RTP
// timestamps still continue (a sequence restart; a real jump is caught by
// the transit check).
func (r *Receiver) newEpoch(keepTS bool) {
	r.closedLost += r.seq.lost()
	r.closedExp += r.seq.expected()
	r.closedRecv += r.seq.received
	r.seq = seqTracker{}
	r.epoch++
	r.jPrevSet = false
	r.dtmfN = 0
	if keepTS {
		r.resyncs++ // counted by anchor otherwise
	} else {
		r.tsSet = false
	}
}

// anchor maps a packet arriving now onto the timeline as if its network
// delay were the median of the recent ones, never overlapping audio still
// buffered, and makes it the unwrapping reference.
func (r *Receiver) anchor(ts uint32, now int64) int64 {
	var pos int64
	if r.win.len() > 0 {
		pos = floorDiv(now-r.win.quantile(0.5), nsPerSample)
		if r.haveMedia {
			pos = max(pos, r.maxEnd)
		}
		r.resyncs++
	}
	r.tsSet, r.lastTS, r.lastExt = true, ts, pos
	return pos
}

func (r *Receiver) updateTarget() {
	t := r.win.quantile(delayQuantile) - r.win.min()
	r.target = max(r.minDly, min(r.maxDly, t))
}

// updateJitter applies RFC 3550 A.8 over audio packets in arrival order.
func (r *Receiver) updateJitter(now, pos int64) {
	if r.jPrevSet {
		d := float64(now-r.jPrevArr)/float64(nsPerSample) - float64(pos-r.jPrevExt)
		r.jitter += (math.Abs(d) - r.jitter) / 16
	}
	r.jPrevSet, r.jPrevArr, r.jPrevExt = true, now, pos
}

func (r *Receiver) commitPending() {
	r.concealed += r.pending
	r.pending = 0
}

// store decodes payload into the ring at start.
func (r *Receiver) store(start int64, payload []byte, codec Codec) {
	idx := start & r.mask
	for len(payload) > 0 {
		seg := payload[:min(int64(len(payload)), int64(len(r.ring))-idx)] // up to the ring's end
		dst := r.ring[idx : idx+int64(len(seg))]
		if codec.isAlaw() {
			for i, b := range seg {
				dst[i] = g711.DecodeAlawFrame(b)
			}
		} else {
			for i, b := range seg {
				dst[i] = g711.DecodeUlawFrame(b)
			}
		}
		r.setBits(idx, int64(len(seg)), true)
		payload = payload[len(seg):]
		idx = 0
	}
}

// setBits sets or clears the presence bits of ring slots [idx, idx+n),
// which must not run past the ring's end, a word at a time.
func (r *Receiver) setBits(idx, n int64, on bool) {
	for n > 0 {
		w, b := idx>>6, idx&63
		k := min(64-b, n)
		m := ^uint64(0) >> (64 - k) << b
		if on {
			r.have[w] |= m
		} else {
			r.have[w] &^= m
		}
		idx += k
		n -= k
	}
}

// allPresent reports whether every position of [pos, pos+n) is buffered.
func (r *Receiver) allPresent(pos, n int64) bool {
	idx := pos & r.mask
	for n > 0 {
		k := min(n, int64(len(r.ring))-idx)
		for i := idx; i < idx+k; {
			w, b := i>>6, i&63
			c := min(64-b, idx+k-i)
			m := ^uint64(0) >> (64 - c) << b
			if r.have[w]&m != m {
				return false
			}
			i += c
		}
		n -= k
		idx = 0
	}
	return true
}

func (r *Receiver) present(pos int64) bool {
	idx := pos & r.mask
	return r.have[idx>>6]&(1<<(idx&63)) != 0
}

func (r *Receiver) insertRecord(rec record) {
	if len(r.recs) == cap(r.recs) {
		if cap(r.recs) >= maxRecords {
			return // the audio is buffered; only its bookkeeping is lost
		}
		recs := make([]record, len(r.recs), min(2*cap(r.recs), maxRecords))
		copy(recs, r.recs)
		r.recs = recs
	}
	i := len(r.recs)
	for i > 0 && r.recs[i-1].start > rec.start {
		i--
	}
	r.recs = r.recs[:len(r.recs)+1]
	copy(r.recs[i+1:], r.recs[i:])
	r.recs[i] = rec
}

// onDTMFPacket emits a digit on the first packet of each event. An event is
// its RTP timestamp (RFC 4733 §2.5.1.1): continuation and retransmitted end
// packets repeat it, a new key press has a new one, so lost start or end
// packets still give exactly one digit. A long event split into segments
// (§2.5.1.3) continues the previous one and is not a new digit.
func (r *Receiver) onDTMFPacket(payload []byte, ts uint32, arrival time.Time) (DTMFEvent, bool) {
	code, end := payload[0], payload[1]&0x80 != 0
	dur := binary.BigEndian.Uint16(payload[2:])
	for _, t := range r.dtmfTS[:r.dtmfN] {
		if t == ts {
			if ts == r.dtmfLast {
				r.dtmfLastDur = max(r.dtmfLastDur, dur)
				r.dtmfLastEnd = r.dtmfLastEnd || end
			}
			return DTMFEvent{}, false
		}
	}
	segment := r.dtmfN > 0 && !r.dtmfLastEnd && code == r.dtmfLastEv &&
		r.dtmfLastDur >= 0xffff-2*FrameSamples && ts == r.dtmfLast+uint32(r.dtmfLastDur)
	r.dtmfTS[r.dtmfIdx] = ts
	r.dtmfIdx = (r.dtmfIdx + 1) % len(r.dtmfTS)
	r.dtmfN = min(r.dtmfN+1, len(r.dtmfTS))
	r.dtmfLast, r.dtmfLastDur, r.dtmfLastEv, r.dtmfLastEnd = ts, dur, code, end
	digit, ok := eventDigit(code)
	if !ok || segment {
		return DTMFEvent{}, false
	}
	r.dtmfEvents++
	if len(r.dtmfDigits) < maxDTMFDigits {
		r.dtmfDigits = append(r.dtmfDigits, byte(digit))
	}
	return DTMFEvent{
		Digit:    digit,
		Duration: time.Duration(dur) * time.Second / SampleRate,
		At:       arrival,
	}, true
}

// Pull returns the next 20 ms frame of playout at now: received audio,
// concealment, comfort noise or silence. Call it once per frame on an
// absolute 20 ms grid. Before the first packet it returns silence. The
// frame is the Receiver's own buffer, valid until the next Pull.
func (r *Receiver) Pull(now time.Time) []int16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.out[:]
	if !r.haveMedia {
		clear(out)
		return out
	}
	nowNs := r.clock(now)
	// The newest timeline position due now: media time of the fastest
	// recent packet plus the target delay.
	ideal := floorDiv(nowNs-r.win.min()-r.target, nsPerSample)
	o := 0
	switch {
	case !r.outStarted || (!r.present(r.playTS) && r.holeKind() == holeSilence):
		// Before the start and in silence the timeline can move freely:
		// onto the latest grid-aligned frame that is due, without skipping
		// buffered audio.
		best := r.latestOnTime(ideal)
		if best >= r.playTS {
			next := int64(math.MaxInt64)
			if len(r.recs) > 0 {
				next = r.recs[0].start
			}
			r.skipTo(min(best, next))
		} else {
			o = int(min(r.playTS-best, FrameSamples))
			r.fillSilence(out[:o])
			r.plc.reset()
		}
	case r.outStarted:
		need := r.need(r.playTS)
		early := need-ideal > insertSamples
		canDrop := !early && r.onTime(r.playTS+FrameSamples, ideal)
		quiet := (early || canDrop) && r.quiet() // only worth measuring when it decides something
		switch {
		case ideal-need > int64(samplesFor(time.Duration(r.maxDly)))+forceDropSamples:
			r.skipTo(ideal) // far behind (Pull was not called for a while): jump
		case early && quiet:
			clear(out) // early: pad a quiet frame
			r.plc.reset()
			r.plc.record(out)
			return out
		case early:
			r.plc.conceal(out) // early in speech: grow the delay by a concealed frame
			r.concealed += FrameSamples
			r.plc.record(out)
			return out
		case canDrop && (quiet || ideal-need > forceDropSamples):
			r.skipTo(r.playTS + FrameSamples) // a frame later would still be on time: drop one
		}
	}
	r.render(out[o:], nowNs+int64(o)*nsPerSample)
	r.plc.record(out)
	return out
}

// gridNext returns the first start of the sender's packet grid after pos,
// predicted from the newest packet: packets start every gridStep samples.
func (r *Receiver) gridNext(pos int64) int64 {
	step := max(r.gridStep, 1)
	return r.gridRef + (floorDiv(pos-r.gridRef, step)+1)*step
}

// need is the start of the newest packet the frame at pos needs.
func (r *Receiver) need(pos int64) int64 { return r.gridNext(pos+FrameSamples-1) - max(r.gridStep, 1) }

// onTime reports whether playing the frame at pos now, and the frames
// after it on the following pulls, needs no packet that is not due yet.
// Three frames cover the whole pattern when packets are 10, 20, 30, 40 or
// 60 ms long.
func (r *Receiver) onTime(pos, ideal int64) bool {
	for j := range int64(3) {
		if r.need(pos+j*FrameSamples) > ideal+j*FrameSamples {
			return false
		}
	}
	return true
}

// latestOnTime is the latest frame position that is on time at ideal, on
// the packet grid.
func (r *Receiver) latestOnTime(ideal int64) int64 {
	best := r.gridNext(ideal) - FrameSamples
	step := int64(gcd(int(max(r.gridStep, 1)), FrameSamples))
	for range 8 {
		if r.onTime(best, ideal) {
			break
		}
		best -= step
	}
	return best
}

// holeKind decides what a gap at playTS is, given the records after it.
func (r *Receiver) holeKind() holeKind {
	if !r.lastSeqValid || r.cnActive {
		return holeSilence
	}
	if len(r.recs) > 0 {
		next := &r.recs[0]
		if next.epoch != r.lastEpoch || r.lastEpoch != r.epoch || next.marker || r.seq.allSeen(r.lastSeq, next.seq) {
			r.pending = 0
			return holeSilence
		}
		r.commitPending()
		return holeLoss
	}
	if r.inSilence {
		return holeSilence
	}
	return holeUnknown
}

// render plays the timeline from playTS into dst; dst[0] plays at startNs.
func (r *Receiver) render(dst []int16, startNs int64) {
	pos, end := r.playTS, r.playTS+int64(len(dst))
	if r.allPresent(pos, end-pos) {
		// The common case: all of it buffered, no holes to classify.
		for len(r.recs) > 0 && r.recs[0].start < end {
			r.consume(r.recs[0].start, startNs+(max(r.recs[0].start, pos)-pos)*nsPerSample, true)
		}
		idx := pos & r.mask
		k := copy(dst, r.ring[idx:])
		copy(dst[k:], r.ring)
		r.plc.real(dst)
		r.inSilence = false
		r.advance(end)
		return
	}
	i := 0
	for pos < end {
		r.consume(pos, startNs+int64(i)*nsPerSample, true)
		q := end
		if len(r.recs) > 0 && r.recs[0].start < q {
			q = r.recs[0].start
		}
		j := pos + 1
		if r.present(pos) {
			for j < q && r.present(j) {
				j++
			}
			seg := dst[i : i+int(j-pos)]
			for k := range seg {
				seg[k] = r.ring[(pos+int64(k))&r.mask]
			}
			r.plc.real(seg)
			r.inSilence = false
		} else {
			for j < q && !r.present(j) {
				j++
			}
			seg := dst[i : i+int(j-pos)]
			switch r.holeKind() {
			case holeSilence:
				r.fillSilence(seg)
				r.plc.reset()
				r.inSilence = true
			case holeLoss:
				r.plc.conceal(seg)
				r.concealed += int64(len(seg))
			case holeUnknown:
				r.plc.conceal(seg)
				r.pending += int64(len(seg))
			}
		}
		i += int(j - pos)
		pos = j
	}
	r.advance(end)
}

// consume retires the records that start at or before pos, noting the
// added delay of audio packets played at playNs.
func (r *Receiver) consume(pos, playNs int64, played bool) {
	n := 0
	for n < len(r.recs) && r.recs[n].start <= pos {
		rec := &r.recs[n]
		r.lastSeq, r.lastEpoch, r.lastSeqValid = rec.seq, rec.epoch, true
		if rec.cn {
			r.cnActive, r.cnLevel = true, rec.level
		} else {
			r.cnActive = false
			if played {
				r.noteDelay(playNs - rec.arrival)
			}
		}
		n++
	}
	if n > 0 {
		copy(r.recs, r.recs[n:])
		r.recs = r.recs[:len(r.recs)-n]
	}
}

// skipTo moves playout forward to pos without playing what is skipped.
func (r *Receiver) skipTo(pos int64) {
	if pos <= r.playTS {
		return
	}
	if len(r.recs) > 0 && r.recs[0].start < pos {
		r.consume(pos-1, 0, false)
	}
	r.advance(pos)
}

// advance clears the ring bits of [playTS, pos) and moves playTS there.
func (r *Receiver) advance(pos int64) {
	if pos <= r.playTS {
		return
	}
	if n := pos - r.playTS; n >= int64(len(r.ring)) {
		clear(r.have)
	} else {
		idx := r.playTS & r.mask
		first := min(n, int64(len(r.ring))-idx)
		r.setBits(idx, first, false)
		r.setBits(0, n-first, false)
	}
	r.playTS = pos
	r.outStarted = true
}

// quiet reports whether the frame at playTS is mostly buffered and low
// enough in level to cut or pad unheard. A frame mostly missing is not
// quiet: it is loss, to be concealed.
func (r *Receiver) quiet() bool {
	const limit = quietRMS * quietRMS * FrameSamples
	var sum float64
	n := 0
	for s := r.playTS; s < r.playTS+FrameSamples; s++ {
		if r.present(s) {
			v := float64(r.ring[s&r.mask])
			sum += v * v
			n++
			if sum >= limit {
				return false // loud already: most frames stop here
			}
		}
	}
	return n >= FrameSamples/2 && sum < quietRMS*quietRMS*float64(n)
}

// fillSilence writes digital silence, or comfort noise at the level the
// last CN packet gave (RFC 3389: -dBov).
func (r *Receiver) fillSilence(dst []int16) {
	if !r.cnActive || r.cnLevel >= 90 {
		clear(dst)
		return
	}
	// Uniform noise with the signalled RMS: amplitude sqrt(3)*RMS.
	amp := int32(math.Sqrt(3) * 32767 * math.Pow(10, -float64(r.cnLevel)/20))
	for i := range dst {
		r.noise ^= r.noise << 13
		r.noise ^= r.noise >> 17
		r.noise ^= r.noise << 5
		dst[i] = int16(int64(int32(r.noise)) * int64(amp) >> 31)
	}
}

func (r *Receiver) noteDelay(d int64) {
	d = max(d, 0)
	ms := float64(d) / 1e6
	r.delaySum += ms
	r.delayN++
	i := min(int(ms), len(r.delayHist)-1)
	r.delayHist[i]++
	r.delayHSum[i] += float32(ms)
}

// Stats returns a snapshot of the counters.
func (r *Receiver) Stats() ReceiveStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := ReceiveStats{
		SSRC:          r.ssrc,
		PayloadType:   r.lastPT,
		Codec:         r.lastCodec,
		SSRCChanges:   r.ssrcChanges,
		Packets:       r.packets,
		Lost:          r.closedLost + r.seq.lost(),
		Late:          r.late,
		Duplicates:    r.dups,
		Reordered:     r.reordered,
		Discarded:     r.discarded,
		Invalid:       r.invalid,
		Resyncs:       r.resyncs,
		ConcealedMS:   float64(r.concealed) * 1000 / SampleRate,
		JitterMS:      r.jitter * 1000 / SampleRate,
		TargetDelayMS: float64(r.target) / 1e6,
		DTMF:          string(r.dtmfDigits),
		DTMFEvents:    r.dtmfEvents,
	}
	if r.haveMedia {
		st.DurationMS = float64(r.maxEnd-r.minStart) * 1000 / SampleRate
		st.BufferedMS = float64(max(0, r.maxEnd-r.playTS)) * 1000 / SampleRate
	}
	if r.delayN > 0 {
		st.DelayMSMean = r.delaySum / float64(r.delayN)
		st.DelayMSP95 = histQuantile(r.delayHist[:], r.delayHSum[:], r.delayN, 0.95)
	}
	return st
}

// histQuantile reads a quantile from buckets: the mean of the bucket the
// quantile falls in, exact when the bucket holds one value.
func histQuantile(h []uint32, sums []float32, n uint64, q float64) float64 {
	want := uint64(math.Ceil(q * float64(n)))
	var cum uint64
	for i, c := range h {
		cum += uint64(c)
		if c > 0 && cum >= want {
			return float64(sums[i]) / float64(c)
		}
	}
	return 0
}

// receptionReport is what an RTCP report block needs about this stream.
type receptionReport struct {
	valid       bool
	ssrc        uint32
	extHighest  uint32
	expected    uint64
	received    uint64
	lost        uint64
	jitterUnits uint32
}

func (r *Receiver) report() receptionReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.haveSSRC || !r.seq.init {
		return receptionReport{}
	}
	return receptionReport{
		valid:       true,
		ssrc:        r.ssrc,
		extHighest:  uint32(r.seq.max),
		expected:    r.closedExp + r.seq.expected(),
		received:    r.closedRecv + r.seq.received,
		lost:        r.closedLost + r.seq.lost(),
		jitterUnits: uint32(r.jitter),
	}
}

// started reports whether any audio or comfort noise has arrived, i.e.
// whether Pull has a timeline to play. It takes no lock: the stream's
// clock asks every tick.
func (r *Receiver) started() bool { return r.mediaSeen.Load() }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
