package rtptest

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/pion/rtcp"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/pcap"
)

// Capture is one file of testdata/captures: the RTP streams in it, made by
// Generate from their profiles, and what else a real capture has around
// them (SIP, RTCP) for replay to skip.
type Capture struct {
	Name    string // file name in testdata/captures
	Note    string // what it contains, for the README
	Streams []CaptureStream
	SIP     bool // an INVITE/200/ACK ... BYE/200 exchange on port 5060
	RTCP    bool // a sender report every 5 s from each stream's RTCP port
}

// CaptureStream is one direction of RTP in a capture.
type CaptureStream struct {
	Src, Dst netip.AddrPort
	Profile  Profile
}

var (
	callerRTP = netip.MustParseAddrPort("127.0.0.1:40000")
	serverRTP = netip.MustParseAddrPort("127.0.0.1:10000")
	callerSIP = netip.MustParseAddrPort("127.0.0.1:5062")
	serverSIP = netip.MustParseAddrPort("127.0.0.1:5060")
	start     = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
)

func inbound(p Profile) CaptureStream {
	p.Start = start.Add(100 * time.Millisecond)
	return CaptureStream{Src: callerRTP, Dst: serverRTP, Profile: p}
}

// Captures lists the files in testdata/captures and how each is made.
func Captures() []Capture {
	speech := ToneBursts(1000, 1200*time.Millisecond, 800*time.Millisecond)
	return []Capture{{
		Name: "clean.pcap",
		Note: "A clean 4 s PCMU call, both directions (caller 1 kHz, server 440 Hz), 20 ms packets, 30 ms constant delay, " +
			"with the SIP exchange and RTCP sender reports around it. Nothing lost, late, reordered or duplicated.",
		SIP: true, RTCP: true,
		Streams: []CaptureStream{
			inbound(Profile{Seed: 101, Duration: 4 * time.Second, BaseDelay: 30 * time.Millisecond, SSRC: 0x0C0FFEE0, Seq: 1000, TS: 16000}),
			{Src: serverRTP, Dst: callerRTP, Profile: Profile{Seed: 102, Duration: 4 * time.Second, BaseDelay: 30 * time.Millisecond,
				Start: start.Add(110 * time.Millisecond), SSRC: 0x5E4E4000, Seq: 30000, TS: 8000,
				Audio: ToneBursts(440, time.Hour, 0)}},
		},
	}, {
		Name: "loss5.pcap",
		Note: "10 s of PCMU with 5 % independent random packet loss (seed 103); every lost packet is concealed (20 ms each).",
		SIP:  true,
		Streams: []CaptureStream{inbound(Profile{Seed: 103, Duration: 10 * time.Second, BaseDelay: 30 * time.Millisecond,
			Loss: 0.05, SSRC: 0x10551055, Seq: 200, TS: 1600})},
	}, {
		Name: "jitter.pcap",
		Note: "20 s of PCMU, one-way delay 40 ± 30 ms (uniform, seed 104), so about a quarter of the packets arrive out of order. " +
			"Tone bursts of 1.2 s with 0.8 s of quiet, like speech with pauses. No loss.",
		SIP: true,
		Streams: []CaptureStream{inbound(Profile{Seed: 104, Duration: 20 * time.Second, BaseDelay: 40 * time.Millisecond,
			Jitter: 30 * time.Millisecond, Audio: speech, SSRC: 0x31773377, Seq: 65000, TS: 4000000000})},
	}, {
		Name: "burst.pcap",
		Note: "6 s of PCMU with burst losses: 3 packets at 1 s, 8 at 2.5 s, 20 (400 ms) at 4 s; 31 lost in all. " +
			"Concealment fades to silence 60 ms into a burst.",
		Streams: []CaptureStream{inbound(Profile{Seed: 105, Duration: 6 * time.Second, BaseDelay: 30 * time.Millisecond,
			SSRC: 0xB0B51234, Seq: 5, TS: 800,
			Bursts: []Burst{{At: time.Second, Packets: 3}, {At: 2500 * time.Millisecond, Packets: 8}, {At: 4 * time.Second, Packets: 20}}})},
	}, {
		Name: "ssrc_change.pcap",
		Note: "6 s of PCMU whose sender changes SSRC, sequence and timestamp at 3 s (a B2BUA re-INVITE or failover), " +
			"same UDP ports. Delay 30 ± 5 ms. Nothing lost: replay reports one stream with the second SSRC.",
		Streams: []CaptureStream{inbound(Profile{Seed: 106, Duration: 6 * time.Second, BaseDelay: 30 * time.Millisecond,
			Jitter: 5 * time.Millisecond, SSRC: 0x55AA0001, Seq: 100, TS: 160000, SSRCChangeAt: 3 * time.Second})},
	}, {
		Name: "silence.pcap",
		Note: "8 s of PCMU with silence suppression: no audio 2-3.5 s and 5-6 s, an RFC 3389 comfort-noise packet (PT 13, -70 dBov) " +
			"at the start of each silence, marker bit on each talk spurt. Timestamps jump, sequence numbers do not: no loss.",
		SIP: true,
		Streams: []CaptureStream{inbound(Profile{Seed: 107, Duration: 8 * time.Second, BaseDelay: 30 * time.Millisecond,
			Jitter: 10 * time.Millisecond, ComfortNoise: true, SSRC: 0x51E4CE00, Seq: 7, TS: 70,
			Silences: []Span{{From: 2 * time.Second, To: 3500 * time.Millisecond}, {From: 5 * time.Second, To: 6 * time.Second}}})},
	}, {
		Name: "dtmf.pcap",
		Note: "6 s of PCMU with RFC 4733 digits \"12#\" (telephone-event PT 101) at 1, 2.5 and 4 s: 100-200 ms events, " +
			"three end packets each, audio paused meanwhile. Delay 30 ± 10 ms.",
		SIP: true,
		Streams: []CaptureStream{inbound(Profile{Seed: 108, Duration: 6 * time.Second, BaseDelay: 30 * time.Millisecond,
			Jitter: 10 * time.Millisecond, SSRC: 0xD7FD7F00, Seq: 4000, TS: 9999,
			Digits: []Digit{{At: time.Second, Digit: '1', Duration: 100 * time.Millisecond},
				{At: 2500 * time.Millisecond, Digit: '2', Duration: 200 * time.Millisecond},
				{At: 4 * time.Second, Digit: '#', Duration: 120 * time.Millisecond}}})},
	}}
}

// Traces generates each stream of c.
func (c Capture) Traces() []Trace {
	out := make([]Trace, len(c.Streams))
	for i, s := range c.Streams {
		out[i] = Generate(s.Profile)
	}
	return out
}

type datagram struct {
	at       time.Time
	src, dst netip.AddrPort
	payload  []byte
}

// Write writes c as a pcap file (Ethernet, IPv4, nanosecond timestamps).
// The output is the same byte for byte every time.
func (c Capture) Write(w io.Writer) error {
	var all []datagram
	var end time.Time
	for i, tr := range c.Traces() {
		s := c.Streams[i]
		for _, p := range tr.Packets {
			all = append(all, datagram{p.At, s.Src, s.Dst, p.Data})
			if p.At.After(end) {
				end = p.At
			}
		}
		if c.RTCP {
			rtcpSrc := netip.AddrPortFrom(s.Src.Addr(), s.Src.Port()+1)
			rtcpDst := netip.AddrPortFrom(s.Dst.Addr(), s.Dst.Port()+1)
			for t := 5 * time.Second; t < s.Profile.Duration; t += 5 * time.Second {
				b, err := rtcp.Marshal([]rtcp.Packet{
					&rtcp.SenderReport{SSRC: s.Profile.SSRC, NTPTime: uint64(t), RTPTime: s.Profile.TS + uint32(t.Seconds()*media.SampleRate)},
					&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: s.Profile.SSRC,
						Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "capture"}}}}},
				})
				if err != nil {
					return err
				}
				all = append(all, datagram{s.Profile.Start.Add(t), rtcpSrc, rtcpDst, b})
			}
		}
	}
	if c.SIP {
		all = append(all, sipExchange(c.Name, end)...)
	}
	slices.SortStableFunc(all, func(a, b datagram) int { return a.at.Compare(b.at) })
	pw, err := pcap.NewWriter(w, pcap.WithNanoseconds(), pcap.WithFlushInterval(0))
	if err != nil {
		return err
	}
	for _, d := range all {
		if err := pw.WriteUDP(d.at, d.src, d.dst, d.payload); err != nil {
			return err
		}
	}
	return pw.Close()
}

// sipExchange is a minimal call setup and teardown as text datagrams.
func sipExchange(callID string, end time.Time) []datagram {
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
	msg := func(first, cseq, body string) []byte {
		return fmt.Appendf(nil, "%s\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-%s\r\nFrom: <sip:caller@127.0.0.1>;tag=1\r\n"+
			"To: <sip:echo@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: %d\r\n\r\n%s",
			first, cseq, callID, cseq, len(body), body)
	}
	return []datagram{
		{start, callerSIP, serverSIP, msg("INVITE sip:echo@127.0.0.1 SIP/2.0", "1 INVITE", sdp)},
		{start.Add(50 * time.Millisecond), serverSIP, callerSIP, msg("SIP/2.0 200 OK", "1 INVITE", sdp)},
		{start.Add(60 * time.Millisecond), callerSIP, serverSIP, msg("ACK sip:echo@127.0.0.1 SIP/2.0", "1 ACK", "")},
		{end.Add(10 * time.Millisecond), callerSIP, serverSIP, msg("BYE sip:echo@127.0.0.1 SIP/2.0", "2 BYE", "")},
		{end.Add(20 * time.Millisecond), serverSIP, callerSIP, msg("SIP/2.0 200 OK", "2 BYE", "")},
	}
}
