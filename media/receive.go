package media

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"
)

const readBufSize = 2048 // bigger than any sane MTU; a full read means truncation

// readLoop reads the RTP socket (and RTCP with rtcp-mux) until it is closed.
func (s *Stream) readLoop(ctx context.Context, conn *net.UDPConn, rtcpOnly bool, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, readBufSize)
	local := localAddrPort(conn)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
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
		at := time.Now()
		if tap := s.tap.Load(); tap != nil {
			(*tap)(at, from, local, buf[:n])
		}
		if rtcpOnly {
			s.handleRTCPFrom(buf[:n], from, at)
			continue
		}
		s.handlePacket(buf[:n], from, at)
	}
}

// handlePacket processes one datagram from the RTP socket. b may be reused
// by the caller after it returns: the Receiver copies what it keeps.
func (s *Stream) handlePacket(b []byte, from netip.AddrPort, at time.Time) {
	if src := unmap(from); src != s.peer().rtp {
		if !s.learnSource(src, b, at) {
			s.drop("wrong source", from, b)
			return
		}
	} else {
		s.latch.confirmed()
	}
	if s.rtcpMux && isRTCP(b) {
		s.handleRTCP(b, at)
		return
	}
	if err := s.rx.Push(b, at); err != nil {
		s.drop(dropReason(err), from, b)
		return
	}
	s.stats.packetsIn.Add(1)
	s.stats.bytesIn.Add(uint64(len(b)))
}

func dropReason(err error) string {
	switch {
	case errors.Is(err, ErrUnknownPayloadType):
		return "unknown payload type"
	case errors.Is(err, ErrRTCPPacket):
		return "rtcp on the rtp port"
	case errors.Is(err, ErrNotRTP):
		return "not rtp"
	}
	return "bad rtp"
}

// onDTMF runs on the reader goroutine, from Receiver.Push.
func (s *Stream) onDTMF(ev DTMFEvent) {
	select {
	case s.dtmf <- ev:
	default: // a hostile peer can mint events at will; never block the reader
		s.logDrop("dtmf consumer not reading, digit lost", s.peer().rtp, nil, nil)
	}
}

// pullFrame takes this tick's frame from the jitter buffer and hands an
// owned copy to Frames. Before the first packet there is nothing to play
// and nothing is delivered; the returned frame is then nil.
func (s *Stream) pullFrame(at time.Time) []int16 {
	if !s.rx.started() {
		return nil
	}
	f := s.gate.inFrame(s.rx.Pull(at))
	if s.echo.Load() {
		copy(s.echoFrame[:], f)
		s.echoHave = true
		return f
	}
	s.deliver(slices.Clone(f))
	return f
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
	default: // only the clock (or shutdown, after it) sends, so this is unreachable; stay non-blocking anyway
		s.stats.framesDropped.Add(1)
	}
}

func (s *Stream) drop(reason string, from netip.AddrPort, b []byte) {
	s.stats.dropped.Add(1)
	s.logDrop(reason, from, b, nil)
}

// logDrop logs bad network input at most every 10 s per stream, truncated,
// with how many drops it stands for, so a flood cannot flood the log.
func (s *Stream) logDrop(reason string, from netip.AddrPort, b []byte, err error) {
	s.logMu.Lock()
	s.dropsLog++
	now := time.Now()
	if now.Sub(s.dropLogAt) < 10*time.Second {
		s.logMu.Unlock()
		return
	}
	count := s.dropsLog
	s.dropLogAt, s.dropsLog = now, 0
	s.logMu.Unlock()
	if len(b) > 16 {
		b = b[:16]
	}
	args := []any{"reason", reason, "from", from, "count", count, "head", hex.EncodeToString(b)}
	if err != nil {
		args = append(args, "err", err)
	}
	s.log.Warn("rtp input dropped", args...)
}
