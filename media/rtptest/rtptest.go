// Package rtptest helps tests drive media streams over real loopback UDP
// (connected stream pairs, a raw RTP peer for hand-made packets, frame
// collection) and simulate senders and networks: Generate makes an RTP
// trace from a Profile (loss, bursts, jitter, reordering, duplicates, clock
// drift, SSRC changes, timestamp jumps, silence suppression, DTMF), with
// the truth about it; Captures are the testdata/captures files made from
// such profiles; FixedDelayOracle is the best fixed playout delay a trace
// allows, to judge an adaptive one against.
package rtptest

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/voxbridge/voxbridge/media"
)

// Listen binds a UDP socket on 127.0.0.1 at an ephemeral port, closed at the
// end of the test.
func Listen(tb testing.TB) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("rtptest: listen: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// NewStream builds a stream on conn sending to remote and starts it with the
// test's context; it is closed at the end of the test.
func NewStream(tb testing.TB, conn *net.UDPConn, remote *net.UDPAddr, codec media.Codec, dtmfPT uint8) *media.Stream {
	tb.Helper()
	s, err := media.NewStream(media.StreamConfig{Conn: conn, Remote: remote, Codec: codec, DTMFPayloadType: dtmfPT})
	if err != nil {
		tb.Fatalf("rtptest: new stream: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	s.Start(tb.Context())
	return s
}

// Pair returns two started streams on loopback, each sending to the other.
func Pair(tb testing.TB, codec media.Codec, dtmfPT uint8) (a, b *media.Stream) {
	tb.Helper()
	ca, cb := Listen(tb), Listen(tb)
	a = NewStream(tb, ca, cb.LocalAddr().(*net.UDPAddr), codec, dtmfPT)
	b = NewStream(tb, cb, ca.LocalAddr().(*net.UDPAddr), codec, dtmfPT)
	return a, b
}

// Peer is a raw RTP endpoint for sending hand-made packets to a stream.
type Peer struct {
	Conn *net.UDPConn
	To   *net.UDPAddr // where Send writes; set it to the stream's LocalAddr
	SSRC uint32
	Seq  uint16 // sequence number of the next packet; Send increments it
	tb   testing.TB
}

// NewPeer returns a Peer with its own loopback socket.
func NewPeer(tb testing.TB) *Peer {
	return &Peer{Conn: Listen(tb), SSRC: 0x5eed1234, Seq: 1000, tb: tb}
}

// Addr is the peer's own address (the Remote to configure on the stream).
func (p *Peer) Addr() *net.UDPAddr { return p.Conn.LocalAddr().(*net.UDPAddr) }

// Packet marshals an RTP packet with the peer's SSRC and next sequence number.
func (p *Peer) Packet(pt uint8, marker bool, ts uint32, payload []byte) []byte {
	pkt := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: pt, Marker: marker, SequenceNumber: p.Seq, Timestamp: ts, SSRC: p.SSRC},
		Payload: payload,
	}
	p.Seq++
	b, err := pkt.Marshal()
	if err != nil {
		p.tb.Fatalf("rtptest: marshal: %v", err)
	}
	return b
}

// Send sends one RTP packet (see Packet).
func (p *Peer) Send(pt uint8, marker bool, ts uint32, payload []byte) {
	p.SendRaw(p.Packet(pt, marker, ts, payload))
}

// SendRaw sends b as one datagram.
func (p *Peer) SendRaw(b []byte) {
	p.tb.Helper()
	if _, err := p.Conn.WriteToUDP(b, p.To); err != nil {
		p.tb.Fatalf("rtptest: send: %v", err)
	}
}

// DTMFPayload builds an RFC 4733 telephone-event payload.
func DTMFPayload(event byte, end bool, volume byte, duration uint16) []byte {
	b := make([]byte, 4)
	b[0] = event
	b[1] = volume & 0x3f
	if end {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], duration)
	return b
}

// Frames reads n frames from s and returns them concatenated, failing the
// test if they do not arrive within timeout or the stream ends.
func Frames(tb testing.TB, s *media.Stream, n int, timeout time.Duration) []int16 {
	tb.Helper()
	out := make([]int16, 0, n*media.FrameSamples)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i := 0; i < n; i++ {
		select {
		case f, ok := <-s.Frames():
			if !ok {
				tb.Fatalf("rtptest: stream ended after %d of %d frames", i, n)
			}
			out = append(out, f...)
		case <-deadline.C:
			tb.Fatalf("rtptest: got %d of %d frames in %v", i, n, timeout)
		}
	}
	return out
}

// Eventually polls cond every 10 ms until it is true, failing the test after
// timeout. Use it instead of sleeps so loaded machines only run slower.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("rtptest: timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
