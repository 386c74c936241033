package media

import (
	"encoding/binary"
	"math"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// rtcpFuzzStream is a stream with rtcp-mux whose peer is a socket of the
// test's, so the reports it sends can be read back and checked.
func rtcpFuzzStream(tb testing.TB) (*Stream, *net.UDPConn, netip.AddrPort) {
	tb.Helper()
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sink.Close() })
	s := newTestStream(tb, StreamConfig{Remote: sink.LocalAddr().(*net.UDPAddr), RTCPMux: true, DTMFPayloadType: 101})
	return s, sink, sink.LocalAddr().(*net.UDPAddr).AddrPort()
}

// readReport reads the next RTCP compound the stream sent to sink.
func readReport(t *testing.T, sink *net.UDPConn) []rtcp.Packet {
	t.Helper()
	buf := make([]byte, 1500)
	sink.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, _, err := sink.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no report from the stream: %v", err)
		}
		if !isRTCP(buf[:n]) {
			continue // an RTP packet (none are sent here, but be sure)
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			t.Fatalf("our own report does not parse: %v", err)
		}
		return pkts
	}
}

// FuzzRTCP feeds arbitrary datagrams to a stream's RTCP path (the muxed RTP
// port, as a peer with rtcp-mux sends them). Properties: no panic; a
// datagram pion cannot parse is dropped and counted, one it can is counted
// as received; what the stream learned stays in range (loss fraction in
// [0,1], RTT and jitter finite and not negative, MOS in [1, 4.5]); a BYE is
// noticed; and the report the stream sends next parses and echoes the
// middle bits of the peer's last SR as LSR (RFC 3550 §6.4.1).
func FuzzRTCP(f *testing.F) {
	ourSSRC := func(s *Stream) uint32 { return s.tx.ssrc }
	s, sink, remote := rtcpFuzzStream(f)
	// Received audio, so our reports carry a block about the peer.
	at := time.Unix(1_800_000_000, 0)
	for i := range 3 {
		p := pcmuPacket(uint16(i), make([]byte, 160))
		s.handlePacket(marshal(f, p), remote, at)
		at = at.Add(FrameDuration)
	}
	seed := func(pkts ...rtcp.Packet) {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	block := rtcp.ReceptionReport{SSRC: ourSSRC(s), FractionLost: 64, TotalLost: 12, LastSequenceNumber: 900, Jitter: 80,
		LastSenderReport: ntpMid(at.Add(-time.Second)), Delay: 65536 / 2}
	seed(&rtcp.SenderReport{SSRC: 7, NTPTime: ntpTime(at), RTPTime: 1234, PacketCount: 10, OctetCount: 1600, Reports: []rtcp.ReceptionReport{block}},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 7, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "peer@example"}}}}})
	seed(&rtcp.ReceiverReport{SSRC: 7, Reports: []rtcp.ReceptionReport{block, {SSRC: 99, FractionLost: 255}}})
	seed(&rtcp.ReceiverReport{SSRC: 7, Reports: []rtcp.ReceptionReport{{SSRC: ourSSRC(s), TotalLost: 0xffffff, LastSenderReport: 1, Delay: 0xffffffff}}})
	seed(&rtcp.SenderReport{SSRC: 7, NTPTime: ntpTime(at)}, &rtcp.Goodbye{Sources: []uint32{7}, Reason: "bye"})
	seed(&rtcp.PictureLossIndication{SenderSSRC: 7, MediaSSRC: 9})
	f.Add([]byte{0x80, 200, 0, 1, 0, 0, 0, 7})       // SR claiming one word, cut short
	f.Add([]byte{0x81, 201, 0xff, 0xff, 0, 0, 0, 7}) // RR with a huge length
	f.Add([]byte{0xa0, 203, 0, 0})                   // BYE with padding and no room for it

	f.Fuzz(func(t *testing.T, b []byte) {
		before := s.Stats()
		pkts, perr := rtcp.Unmarshal(b)
		s.handleRTCP(b, at)
		after := s.Stats()
		if perr != nil {
			if after.Dropped != before.Dropped+1 || after.RTCPReceived != before.RTCPReceived {
				t.Fatalf("unparseable RTCP (%v): dropped %d→%d, received %d→%d", perr, before.Dropped, after.Dropped, before.RTCPReceived, after.RTCPReceived)
			}
		} else if after.RTCPReceived != before.RTCPReceived+1 || after.Dropped != before.Dropped {
			t.Fatalf("parsed RTCP: received %d→%d, dropped %d→%d", before.RTCPReceived, after.RTCPReceived, before.Dropped, after.Dropped)
		}
		for _, v := range []float64{after.RTTMS, after.RemoteJitterMS, after.RemoteLossFraction} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("learned a value out of range: %+v", after)
			}
		}
		if after.RemoteLossFraction >= 1 || after.RTTMS > float64(1<<31)/65536*1000 {
			t.Fatalf("loss fraction %v, RTT %v ms", after.RemoteLossFraction, after.RTTMS)
		}
		if after.MOS != 0 && (after.MOS < 1 || after.MOS > 4.5) {
			t.Fatalf("MOS %v", after.MOS)
		}
		var lastSR *rtcp.SenderReport
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.SenderReport:
				lastSR = p
			case *rtcp.Goodbye:
				if !after.RemoteBye {
					t.Fatal("a BYE went unnoticed")
				}
			}
		}
		// Our next report must parse and carry LSR from the SR just read.
		s.sendRTCP(at.Add(time.Second), false)
		out := readReport(t, sink)
		sr, ok := out[0].(*rtcp.SenderReport)
		if !ok || sr.SSRC != ourSSRC(s) || len(sr.Reports) != 1 {
			t.Fatalf("our report: %v", out)
		}
		if lastSR != nil {
			if got, want := sr.Reports[0].LastSenderReport, uint32(lastSR.NTPTime>>16); got != want {
				t.Fatalf("LSR %08x, want %08x from the peer's SR", got, want)
			}
			if got := sr.Reports[0].Delay; got != 65536 {
				t.Fatalf("DLSR %d, want 65536 (one second)", got)
			}
		}
		at = at.Add(FrameDuration)
	})
}

// FuzzTelephoneEvent feeds RFC 4733 payloads as telephone-event packets,
// each sent as its three end packets and retransmitted (the same
// timestamp). Properties: no panic; a payload shorter than the 4-byte event
// is refused with an error; events 0-15 give exactly one digit, the
// right one, however often they are repeated; other events give none.
func FuzzTelephoneEvent(f *testing.F) {
	f.Add([]byte{5, 0x8a, 0, 160}, uint16(1))
	f.Add([]byte{11, 10, 0x03, 0x20}, uint16(2))
	f.Add([]byte{16, 0x80, 0, 0}, uint16(3))        // flash: not a digit
	f.Add([]byte{255, 0xff, 0xff, 0xff}, uint16(4)) // junk event
	f.Add([]byte{1, 0}, uint16(5))                  // truncated
	f.Add([]byte{}, uint16(6))
	f.Add([]byte{3, 0x0a, 0, 160, 9, 9, 9, 9}, uint16(7)) // a redundant-looking tail
	f.Fuzz(func(t *testing.T, payload []byte, seq uint16) {
		var got []DTMFEvent
		r := NewReceiver(ReceiverConfig{DTMFPayloadType: 101, OnDTMF: func(ev DTMFEvent) { got = append(got, ev) }})
		at := time.Unix(1000, 0)
		const ts = 48000
		var firstErr error
		for i := range 5 { // first packet, two continuations, retransmitted ends
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: seq + uint16(i), Timestamp: ts, SSRC: 5, Marker: i == 0}, Payload: payload}
			b, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			err = r.Push(b, at)
			if i == 0 {
				firstErr = err
			} else if (err == nil) != (firstErr == nil) {
				t.Fatalf("the same payload accepted once and refused once: %v / %v", firstErr, err)
			}
			at = at.Add(FrameDuration)
			if fr := r.Pull(at); len(fr) != FrameSamples {
				t.Fatalf("frame of %d", len(fr))
			}
		}
		if len(payload) < 4 {
			if firstErr == nil {
				t.Fatalf("a %d-byte telephone-event payload was accepted", len(payload))
			}
			if len(got) != 0 {
				t.Fatalf("digits from a short payload: %v", got)
			}
			return
		}
		if firstErr != nil {
			t.Fatalf("a well-formed event payload refused: %v", firstErr)
		}
		digit, isDigit := eventDigit(payload[0])
		switch {
		case isDigit && (len(got) != 1 || got[0].Digit != digit):
			t.Fatalf("event %d: got %v, want one %q", payload[0], got, digit)
		case !isDigit && len(got) != 0:
			t.Fatalf("event %d is no digit, got %v", payload[0], got)
		}
		if isDigit {
			if want := time.Duration(binary.BigEndian.Uint16(payload[2:])) * time.Second / SampleRate; got[0].Duration != want {
				t.Fatalf("duration %v, want %v", got[0].Duration, want)
			}
		}
	})
}
