package media

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/pion/rtp"
)

const (
	readBufSize = 2048 // bigger than any sane MTU; a full read means truncation
	maxDropout  = 3000 // RFC 3550 A.1: forward jumps up to this are loss
	maxMisorder = 100  // backward steps up to this are late packets
	noBadSeq    = 1 << 16
)

// rxState is the receiver's state, owned by the reader goroutine (or a test
// calling handlePacket directly).
type rxState struct {
	pkt rtp.Packet // reused: Unmarshal keeps its CSRC/extension slices

	seqInit bool
	ssrc    uint32
	maxSeq  uint16
	badSeq  uint32 // seq that would confirm a big jump as a restart

	frame []int16 // partial frame being filled from payloads of any ptime

	haveEvent bool
	eventTS   uint32 // RTP timestamp of the last DTMF event: its identity

	dropLogAt time.Time
	dropsLog  int
}

func (s *Stream) readLoop(ctx context.Context, done chan<- struct{}) {
	defer func() {
		s.flushPartial()
		close(s.frames)
		close(s.dtmf)
		close(done)
	}()
	buf := make([]byte, readBufSize)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			// Transient (e.g. ICMP-induced) errors: log, breathe, go on.
			s.logDrop("read error", from, nil, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if n == len(buf) {
			s.stats.dropped.Add(1)
			s.logDrop("oversized datagram", from, buf[:n], nil)
			continue
		}
		s.handlePacket(buf[:n], from)
	}
}

// handlePacket processes one datagram. b may be reused by the caller after it
// returns: everything handed on is copied out of it.
func (s *Stream) handlePacket(b []byte, from netip.AddrPort) {
	if unmap(from) != s.remote {
		s.drop("wrong source", from, b)
		return
	}
	// pion does not check the version, and RTCP (version 2 too, PT 200-204
	// in the full second byte) is caught below as an unknown payload type.
	if len(b) < 12 || b[0]>>6 != 2 {
		s.drop("not rtp", from, b)
		return
	}
	p := &s.rx.pkt
	if err := p.Unmarshal(b); err != nil {
		s.drop("bad rtp", from, b)
		return
	}
	isAudio := p.PayloadType == s.codec.PayloadType
	isDTMF := s.dtmfPT != 0 && p.PayloadType == s.dtmfPT
	if !isAudio && !isDTMF {
		s.drop("unknown payload type", from, b)
		return
	}
	if isDTMF && len(p.Payload) < 4 {
		s.drop("short telephone-event", from, b)
		return
	}
	s.stats.packetsIn.Add(1)
	s.stats.bytesIn.Add(uint64(len(b)))
	if !s.acceptSeq(p.SSRC, p.SequenceNumber) {
		s.stats.late.Add(1)
		return
	}
	if isDTMF {
		s.onDTMF(p.Payload, p.Timestamp)
		return
	}
	s.onAudio(p.Payload)
}

// acceptSeq applies RFC 3550 A.1-style sequence checks without a jitter
// buffer: packets older than the newest played are late or duplicate and are
// not played; gaps are counted as loss; a big jump is believed only when the
// next packet confirms it (a restarted sender), so one stray packet cannot
// derail the stream.
func (s *Stream) acceptSeq(ssrc uint32, seq uint16) bool {
	r := &s.rx
	if !r.seqInit || ssrc != r.ssrc {
		// New source (or a sender that changed SSRC): resync, no loss counted.
		r.seqInit, r.ssrc, r.maxSeq, r.badSeq = true, ssrc, seq, noBadSeq
		return true
	}
	delta := seq - r.maxSeq // uint16 arithmetic handles the wrap
	switch {
	case delta == 0:
		return false
	case delta < maxDropout:
		s.stats.packetsLost.Add(uint64(delta - 1))
		r.maxSeq, r.badSeq = seq, noBadSeq
		return true
	case delta > 1<<16-maxMisorder:
		return false
	case uint32(seq) == r.badSeq:
		r.maxSeq, r.badSeq = seq, noBadSeq
		return true
	default:
		r.badSeq = uint32(seq + 1)
		return false
	}
}

// onAudio decodes a payload into 20 ms frames whatever the sender's ptime: a
// partial frame waits for the next packet, so no sample is lost or padded.
func (s *Stream) onAudio(payload []byte) {
	r := &s.rx
	for len(payload) > 0 {
		if r.frame == nil {
			r.frame = make([]int16, 0, FrameSamples) // the owned copy handed out
		}
		k := min(FrameSamples-len(r.frame), len(payload))
		r.frame = s.codec.Decode(r.frame, payload[:k])
		payload = payload[k:]
		if len(r.frame) == FrameSamples {
			s.deliver(r.frame)
			r.frame = nil
		}
	}
}

// flushPartial hands out a trailing partial frame, padded with silence, so the
// last samples of a stream are not lost.
func (s *Stream) flushPartial() {
	if f := s.rx.frame; len(f) > 0 {
		s.deliver(f[:FrameSamples])
		s.rx.frame = nil
	}
}

// deliver never blocks: if the consumer is behind, the oldest frame goes, so
// what it reads next is as close to live as possible.
func (s *Stream) deliver(f []int16) {
	select {
	case s.frames <- f:
		return
	default:
	}
	select {
	case <-s.frames:
		s.stats.framesDropped.Add(1)
	default:
	}
	select {
	case s.frames <- f:
	default: // only this goroutine sends, so this is unreachable; stay non-blocking anyway
		s.stats.framesDropped.Add(1)
	}
}

// onDTMF emits a digit on the first packet of each event. An event is
// identified by its RTP timestamp (RFC 4733 §2.5.1.1): continuation and
// retransmitted end packets repeat it, and a new event always has a new one,
// so a lost start or lost end packet still yields exactly one digit.
// Reordered packets of an older event were already refused by acceptSeq.
func (s *Stream) onDTMF(payload []byte, ts uint32) {
	r := &s.rx
	if r.haveEvent && ts == r.eventTS {
		return
	}
	r.haveEvent, r.eventTS = true, ts
	digit, ok := eventDigit(payload[0])
	if !ok {
		return
	}
	s.stats.dtmfIn.Add(1)
	ev := DTMFEvent{
		Digit:    digit,
		Duration: time.Duration(binary.BigEndian.Uint16(payload[2:])) * time.Second / SampleRate,
		At:       time.Now(),
	}
	select {
	case s.dtmf <- ev:
	default: // rate-limited: a hostile peer can mint events at will
		s.logDrop("dtmf consumer not reading, digit lost", s.remote, payload, nil)
	}
}

func (s *Stream) drop(reason string, from netip.AddrPort, b []byte) {
	s.stats.dropped.Add(1)
	s.logDrop(reason, from, b, nil)
}

// logDrop logs bad network input at most every 10 s per stream, truncated,
// with how many drops it stands for, so a flood cannot flood the log.
func (s *Stream) logDrop(reason string, from netip.AddrPort, b []byte, err error) {
	r := &s.rx
	r.dropsLog++
	now := time.Now()
	if now.Sub(r.dropLogAt) < 10*time.Second {
		return
	}
	if len(b) > 16 {
		b = b[:16]
	}
	args := []any{"reason", reason, "from", from, "count", r.dropsLog, "head", hex.EncodeToString(b)}
	if err != nil {
		args = append(args, "err", err)
	}
	s.log.Warn("rtp input dropped", args...)
	r.dropLogAt, r.dropsLog = now, 0
}
