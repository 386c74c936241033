package media

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtcp"
)

// DefaultRTCPInterval is the mean time between our RTCP reports (RFC 3550
// §6.2 suggests 5 s as the minimum for a two-party session).
const DefaultRTCPInterval = 5 * time.Second

// isRTCP tells RTCP from RTP on a multiplexed port (RFC 5761 §4): RTCP
// packet types 192-223 sit where RTP has the marker bit and types 64-95,
// which no one assigns.
func isRTCP(b []byte) bool { return len(b) >= 8 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223 }

// rtcpState is what we learned from the peer's reports, and what we need
// to write ours.
type rtcpState struct {
	mu         sync.Mutex
	sent       uint64
	received   uint64
	haveSR     bool
	lastSRMid  uint32 // middle 32 bits of the NTP time in the peer's last SR
	lastSRAt   time.Time
	haveRTT    bool
	rtt        time.Duration
	haveRemote bool
	remoteFrac float64 // fraction of our packets the peer lost in its last interval
	remoteLost int64
	remoteJitt float64 // ms
	peerBye    bool

	// The clock only.
	next         time.Time
	prevExpected uint64
	prevReceived uint64
}

func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800 // 1900 to 1970
	sec := uint64(t.Unix() + ntpEpochOffset)
	frac := (uint64(t.Nanosecond()) << 32) / uint64(time.Second)
	return sec<<32 | frac
}

func ntpMid(t time.Time) uint32 { return uint32(ntpTime(t) >> 16) }

// rtcpEnabled says whether this stream sends and reads RTCP at all.
func (s *Stream) rtcpEnabled() bool { return s.remoteRTCP.IsValid() } // set at NewStream; SetRemote keeps it valid

// scheduleRTCP picks the next report time: the interval randomised over
// [0.5, 1.5] (RFC 3550 §6.3.1) so peers that started together drift apart.
func (s *Stream) scheduleRTCP(now time.Time) {
	d := time.Duration(float64(s.rtcpInterval) * (0.5 + rand.Float64()))
	s.rtcpSt.next = now.Add(d)
}

// maybeSendRTCP is called by the clock at every step.
func (s *Stream) maybeSendRTCP(now time.Time) {
	if !s.rtcpEnabled() || now.Before(s.rtcpSt.next) {
		return
	}
	s.scheduleRTCP(now)
	s.sendRTCP(now, false)
}

// sendRTCP sends a compound SR + SDES(CNAME) [+ BYE]. The SR carries a
// reception report about the peer's stream once we have received from it.
func (s *Stream) sendRTCP(now time.Time, bye bool) {
	st := &s.rtcpSt
	t := &s.tx
	sr := &rtcp.SenderReport{
		SSRC:        t.ssrc,
		NTPTime:     ntpTime(now),
		RTPTime:     t.ts - uint32(samplesFor(t.nextAt.Sub(now))),
		PacketCount: uint32(s.stats.packetsOut.Load()),
		OctetCount:  uint32(s.stats.payloadOut.Load()),
	}
	if rr := s.rx.report(); rr.valid {
		block := rtcp.ReceptionReport{
			SSRC:               rr.ssrc,
			TotalLost:          uint32(min(rr.lost, 0x7fffff)),
			LastSequenceNumber: rr.extHighest,
			Jitter:             rr.jitterUnits,
		}
		// Fraction lost over the interval since the last report (A.3).
		expInt := rr.expected - min(st.prevExpected, rr.expected)
		recInt := rr.received - min(st.prevReceived, rr.received)
		if expInt > 0 && expInt > recInt {
			block.FractionLost = uint8(min(255, (expInt-recInt)<<8/expInt))
		}
		st.prevExpected, st.prevReceived = rr.expected, rr.received
		st.mu.Lock()
		if st.haveSR {
			block.LastSenderReport = st.lastSRMid
			block.Delay = uint32(now.Sub(st.lastSRAt).Seconds() * 65536)
		}
		st.mu.Unlock()
		sr.Reports = []rtcp.ReceptionReport{block}
	}
	pkts := []rtcp.Packet{sr, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
		Source: t.ssrc,
		Items:  []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: s.cname}},
	}}}}
	if bye {
		pkts = append(pkts, &rtcp.Goodbye{Sources: []uint32{t.ssrc}})
	}
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		s.log.Warn("rtcp marshal", "err", err) // only an oversized CNAME can do this
		return
	}
	conn := s.conn
	if s.rtcpConn != nil {
		conn = s.rtcpConn
	}
	remoteRTCP := s.peer().rtcp
	if _, err := conn.WriteToUDPAddrPort(b, remoteRTCP); err != nil {
		s.log.Debug("rtcp send failed", "remote", remoteRTCP, "err", err)
		return
	}
	s.tapOut(conn, remoteRTCP, b)
	st.mu.Lock()
	st.sent++
	st.mu.Unlock()
}

// handleRTCPFrom checks the source of a datagram from the RTCP socket: the
// peer's IP, any port (its RTCP port is often not what SDP implied).
func (s *Stream) handleRTCPFrom(b []byte, from netip.AddrPort, at time.Time) {
	if unmap(from).Addr() != s.peer().rtp.Addr() {
		s.drop("rtcp from wrong source", from, b)
		return
	}
	s.handleRTCP(b, at)
}

// handleRTCP reads the peer's reports: its SR time (for our LSR/DLSR), and
// report blocks about our stream (loss, jitter, and RTT from LSR/DLSR).
func (s *Stream) handleRTCP(b []byte, at time.Time) {
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		s.drop("bad rtcp", s.peer().rtp, b)
		return
	}
	st := &s.rtcpSt
	st.mu.Lock()
	defer st.mu.Unlock()
	st.received++
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport:
			st.haveSR, st.lastSRMid, st.lastSRAt = true, uint32(p.NTPTime>>16), at
			s.readBlocks(p.Reports, at)
		case *rtcp.ReceiverReport:
			s.readBlocks(p.Reports, at)
		case *rtcp.Goodbye:
			st.peerBye = true
		}
	}
}

// readBlocks takes the report blocks about our SSRC. Called with rtcpSt.mu.
func (s *Stream) readBlocks(blocks []rtcp.ReceptionReport, at time.Time) {
	st := &s.rtcpSt
	for _, rb := range blocks {
		if rb.SSRC != s.tx.ssrc {
			continue
		}
		st.haveRemote = true
		st.remoteFrac = float64(rb.FractionLost) / 256
		st.remoteLost = int64(int32(rb.TotalLost<<8) >> 8) // 24-bit signed
		st.remoteJitt = float64(rb.Jitter) * 1000 / SampleRate
		if rb.LastSenderReport != 0 {
			// RFC 3550 §6.4.1: RTT = A - LSR - DLSR, in 1/65536 s.
			rtt := ntpMid(at) - rb.LastSenderReport - rb.Delay
			if rtt < 1<<31 { // negative means clocks or fields are bogus
				st.haveRTT, st.rtt = true, time.Duration(uint64(rtt)*uint64(time.Second)>>16)
			}
		}
	}
}

// EModel estimates listening quality with the ITU-T G.107 E-model in the
// simplified form of Cole & Rosenbluth (2001), for G.711 with packet-loss
// concealment:
//
//	R   = 93.2 - Id - Ie,eff
//	Id  = 0.024·d + 0.11·(d - 177.3)·H(d - 177.3)     d = one-way delay in ms
//	Ie,eff = 95·P / (P + 25.1)                          P = loss in percent (Ie = 0, Bpl = 25.1: G.113 App. I)
//	MOS = 1 + 0.035·R + 7e-6·R·(R - 60)·(100 - R)      for 0 < R < 100
//
// lossFraction is 0..1 (packets lost or too late to play); delay is the
// mouth-to-ear estimate: half the RTT, the jitter buffer's delay and the
// 20 ms packetization.
func EModel(lossFraction float64, delay time.Duration) (r, mos float64) {
	d := float64(delay) / float64(time.Millisecond)
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	p := 100 * math.Max(0, math.Min(1, lossFraction))
	ie := 95 * p / (p + 25.1)
	r = 93.2 - id - ie
	switch {
	case r <= 0:
		return r, 1
	case r >= 100:
		return r, 4.5
	}
	return r, 1 + 0.035*r + 7e-6*r*(r-60)*(100-r)
}
