package media

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// chunk is one Enqueue call's audio.
type chunk struct {
	pcm     []int16
	off     int
	done    chan struct{}
	started chan time.Time // buffered 1; nil for plain Enqueue
}

// dtmfJob is one queued outbound RFC 4733 event.
type dtmfJob struct {
	event   byte
	packets int // growing-duration packets before the 3 end packets
	sent    int
	ts      uint32 // RTP timestamp of the event start, fixed for all its packets
	done    chan struct{}
}

const dtmfEndPackets = 3

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Enqueue appends a copy of pcm to the playout queue. Chunks play back to back
// without gaps. The returned channel is closed when the last sample of this
// chunk has been sent on the wire, when it was flushed, or when the stream
// ended. An empty chunk closes once everything queued before it has been sent.
func (s *Stream) Enqueue(pcm []int16) <-chan struct{} {
	done, _ := s.enqueue(pcm, false)
	return done
}

// EnqueueStarted is Enqueue that also reports when the chunk began to play:
// started delivers, once, the wall-clock time the first RTP packet carrying
// this chunk was written to the socket. It never delivers if the chunk was
// flushed (or the stream ended) before that, nor for an empty chunk. The
// caller can work out how much was heard from that time when it flushes.
func (s *Stream) EnqueueStarted(pcm []int16) (done <-chan struct{}, started <-chan time.Time) {
	return s.enqueue(pcm, true)
}

func (s *Stream) enqueue(pcm []int16, withStart bool) (chan struct{}, chan time.Time) {
	var started chan time.Time
	if withStart {
		started = make(chan time.Time, 1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return closedChan(), started
	}
	c := &chunk{pcm: slices.Clone(pcm), done: make(chan struct{}), started: started}
	s.queue = append(s.queue, c)
	s.queued += len(pcm)
	return c.done, started
}

// Flush drops everything queued (barge-in); the next tick sends silence.
// Queued DTMF is kept: it is signalling, not speech.
func (s *Stream) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.queue {
		close(c.done)
	}
	clear(s.queue)
	s.queue = s.queue[:0]
	s.queued = 0
}

// Queued reports how much audio is waiting in the playout queue.
func (s *Stream) Queued() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.queued) * time.Second / SampleRate
}

// SendDTMF queues an RFC 4733 event for digit (0-9 * # A-D) lasting d
// (at least 100 ms, at most 8 s, one packet per 20 ms). Audio pauses while it
// plays and resumes afterwards; digits play one after another. The returned
// channel is closed when the event has been fully sent (or the stream ended).
func (s *Stream) SendDTMF(digit rune, d time.Duration) (<-chan struct{}, error) {
	if s.dtmfPT == 0 {
		return nil, ErrNoDTMF
	}
	ev, ok := digitEvent(digit)
	if !ok {
		return nil, fmt.Errorf("media: %q is not a DTMF digit", digit)
	}
	// The duration field is 16 bits of samples: 8.19 s. Longer events need
	// segmenting, which nobody dialling digits needs.
	if d > 8*time.Second {
		return nil, fmt.Errorf("media: DTMF duration %v longer than 8s", d)
	}
	d = max(d, 100*time.Millisecond)
	n := int((d + FrameDuration - 1) / FrameDuration)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, ErrClosed
	}
	j := &dtmfJob{event: ev, packets: n, done: make(chan struct{})}
	s.dtmfQ = append(s.dtmfQ, j)
	return j.done, nil
}

func (s *Stream) logRecordError(err error) {
	t := &s.tx
	if now := time.Now(); now.Sub(t.errLogAt) > 10*time.Second {
		t.errLogAt = now
		s.log.Warn("recording failed", "err", err)
	}
}

// tick sends exactly one packet, due at sched: DTMF if an event is playing,
// else 20 ms of queued audio padded with silence. It returns the audio the
// packet stands for (the DTMF tone for an event), valid until the next tick.
func (s *Stream) tick(sched time.Time) []int16 {
	t := &s.tx
	t.dones = t.dones[:0]
	t.starts = t.starts[:0]
	var pt uint8
	var codec Codec
	var dtmf [4]byte
	isDTMF, markAfter := false, false
	var toneEvent byte
	var toneOffset int

	s.mu.Lock()
	if len(s.dtmfQ) > 0 {
		isDTMF = true
		j := s.dtmfQ[0]
		if j.sent == 0 {
			j.ts = t.ts
			t.marker = true // RFC 4733 §2.5.1.2: marker on an event's first packet
		}
		end := j.sent >= j.packets
		dur := uint16(min(j.sent+1, j.packets) * FrameSamples)
		dtmf[0] = j.event
		dtmf[1] = 10 // volume: -10 dBm0
		if end {
			dtmf[1] |= 0x80
		}
		binary.BigEndian.PutUint16(dtmf[2:], dur)
		pt = s.dtmfPT
		t.hdr.Timestamp = j.ts
		toneEvent, toneOffset = j.event, j.sent*FrameSamples
		if end {
			toneOffset = -1 // the key is up: silence
		}
		j.sent++
		if j.sent == j.packets+dtmfEndPackets {
			t.dones = append(t.dones, j.done)
			s.dtmfQ[0] = nil
			s.dtmfQ = s.dtmfQ[1:]
			markAfter = true // the audio after the event starts a new talkspurt
		}
	} else if s.gate.holdFrame(t.frame) {
		// We hold the peer: the queue keeps its place until UnholdPeer.
		codec = s.codec
		pt = codec.PayloadType
		t.hdr.Timestamp = t.ts
	} else {
		n := 0
		for n < FrameSamples && len(s.queue) > 0 {
			c := s.queue[0]
			if c.off == 0 && len(c.pcm) > 0 && c.started != nil {
				t.starts = append(t.starts, c.started)
			}
			k := copy(t.frame[n:], c.pcm[c.off:])
			c.off += k
			n += k
			s.queued -= k
			if c.off == len(c.pcm) {
				t.dones = append(t.dones, c.done)
				s.queue[0] = nil
				s.queue = s.queue[1:]
			}
		}
		if n == 0 && s.echoHave && s.echo.Load() {
			n = copy(t.frame[:], s.echoFrame[:])
		}
		s.echoHave = false
		clear(t.frame[n:])
		codec = s.codec // SetCodec changes it under s.mu
		pt = codec.PayloadType
		t.hdr.Timestamp = t.ts
	}
	s.mu.Unlock()

	t.hdr.PayloadType = pt
	t.hdr.SequenceNumber = t.seq
	t.hdr.Marker = t.marker
	buf := t.buf[:12]
	if _, err := t.hdr.MarshalTo(buf); err != nil {
		panic(err) // fixed 12-byte header into a 12-byte buffer cannot fail
	}
	out := t.frame
	if isDTMF {
		buf = append(buf, dtmf[:]...)
		out = t.toneFrame
		dtmfTone(out, toneEvent, toneOffset)
	} else {
		s.gate.outFrame(t.frame)
		buf = codec.Encode(buf, t.frame)
	}
	t.buf = buf[:0]
	t.seq++
	t.ts += FrameSamples
	t.marker = markAfter

	t.late.add(time.Since(sched))
	remote := s.peer().rtp
	if s.sendOff.Load() {
		// On hold the party asked us not to send: the queue still plays
		// out (nothing piles up for the resume), but nothing leaves.
	} else if _, err := s.conn.WriteToUDPAddrPort(buf, remote); err != nil {
		if now := time.Now(); now.Sub(t.errLogAt) > 10*time.Second {
			t.errLogAt = now
			s.log.Warn("rtp send failed", "remote", remote, "err", err)
		}
	} else {
		s.tapOut(s.conn, remote, buf)
		s.stats.packetsOut.Add(1)
		s.stats.bytesOut.Add(uint64(len(buf)))
		s.stats.payloadOut.Add(uint64(len(buf) - 12))
	}
	if len(t.starts) > 0 {
		now := time.Now()
		for _, c := range t.starts {
			c <- now // buffered, and each chunk starts once
		}
	}
	for _, d := range t.dones {
		close(d)
	}
	return out
}
