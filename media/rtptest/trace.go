package rtptest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/pion/rtp"
	"github.com/voxbridge/voxbridge/media"
)

// Profile describes a synthetic G.711 RTP sender and the network between it
// and a receiver. Everything random comes from Seed, so a profile always
// makes the same trace.
type Profile struct {
	Seed     uint64
	Duration time.Duration // media time sent
	Ptime    time.Duration // default 20 ms; any multiple of 125 µs
	Codec    media.Codec   // default PCMU
	// Audio gives sample n of the sender's signal (default: a 1 kHz tone at
	// half scale).
	Audio func(n int) int16
	Start time.Time // send time of the first packet (default 2025-01-01 UTC)

	SSRC uint32 // initial SSRC, sequence number and timestamp
	Seq  uint16
	TS   uint32

	// The network.
	Loss      float64         // independent loss probability per packet
	Bursts    []Burst         // deterministic runs of lost packets
	Duplicate float64         // probability a packet arrives twice (the copy 1-5 ms later)
	BaseDelay time.Duration   // one-way delay...
	Jitter    time.Duration   // ...plus a uniform offset in [-Jitter, +Jitter]
	Delays    []time.Duration // if set, packet i's delay is Delays[i%len]: exact traces
	DriftPPM  float64         // sender clock fast (+) or slow (-) against the receiver's

	// The sender's behaviour.
	SSRCChangeAt time.Duration // if > 0: new SSRC, sequence and timestamp from here on
	Silences     []Span        // silence suppression: no audio packets sent
	ComfortNoise bool          // send an RFC 3389 CN packet at the start of each silence
	Digits       []Digit       // RFC 4733 events; audio pauses while one plays
	DTMFPT       uint8         // telephone-event payload type, default 101
	TSJumpAt     time.Duration // if > 0: the timestamp jumps by TSJump here (sequence continues)
	TSJump       uint32
}

// Burst loses Packets consecutive packets starting with the one sent at At.
type Burst struct {
	At      time.Duration
	Packets int
}

// Span is [From, To) of media time.
type Span struct{ From, To time.Duration }

// Digit is a key pressed at At for Duration (at least 100 ms is usual).
type Digit struct {
	At       time.Duration
	Digit    rune
	Duration time.Duration
}

// Packet is one datagram as the receiver gets it.
type Packet struct {
	At   time.Time // arrival
	Data []byte
}

// Trace is a generated stream in arrival order, with the truth about it.
type Trace struct {
	Packets []Packet
	Profile Profile

	Sent       int    // packets the sender sent
	Lost       int    // RFC 3550 loss per source epoch: expected minus delivered distinct
	Dropped    int    // packets the network dropped, wherever they were
	Duplicates int    // extra copies delivered
	Digits     string // digits sent
	AudioSent  int    // audio packets sent
}

// Arrivals converts the trace for media.PlaySimulated.
func (t Trace) Arrivals() []media.Arrival {
	out := make([]media.Arrival, len(t.Packets))
	for i, p := range t.Packets {
		out[i] = media.Arrival{At: p.At, Data: p.Data}
	}
	return out
}

// Tone1k is the default signal.
func Tone1k(n int) int16 {
	return int16(math.Round(0.5 * math.MaxInt16 * math.Sin(2*math.Pi*1000*float64(n)/media.SampleRate)))
}

// ToneBursts returns a signal of freq Hz, on for `on` and quiet (digital
// zero) for `off`, repeating: speech-like in having pauses to adapt in.
func ToneBursts(freq float64, on, off time.Duration) func(int) int16 {
	onN, period := int(on.Seconds()*media.SampleRate), int((on+off).Seconds()*media.SampleRate)
	return func(n int) int16 {
		if n%period >= onN {
			return 0
		}
		return int16(math.Round(0.5 * math.MaxInt16 * math.Sin(2*math.Pi*freq*float64(n)/media.SampleRate)))
	}
}

type sentPacket struct {
	sendAt time.Duration // on the receiver's clock
	data   []byte
	epoch  int
	seq    uint16
}

// Generate builds the trace for p.
func Generate(p Profile) Trace {
	if p.Ptime == 0 {
		p.Ptime = media.FrameDuration
	}
	if p.Codec.Name == "" {
		p.Codec = media.PCMU
	}
	if p.Audio == nil {
		p.Audio = Tone1k
	}
	if p.Start.IsZero() {
		p.Start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if p.DTMFPT == 0 {
		p.DTMFPT = 101
	}
	if p.SSRC == 0 {
		p.SSRC = 0x11223344
	}
	rng := rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15))
	spp := int(p.Ptime.Seconds()*media.SampleRate + 0.5) // samples per packet
	tr := Trace{Profile: p}

	// The sender: one slot per ptime of media time, each an audio packet,
	// a DTMF packet, a CN packet or nothing.
	var sent []sentPacket
	ssrc, seq, ts := p.SSRC, p.Seq, p.TS
	epoch := 0
	marker := true
	silent := false
	digitIdx := 0
	var ev struct {
		active           bool
		code             byte
		ts               uint32
		packets, emitted int
	}
	slots := int(p.Duration / p.Ptime)
	drift := 1 + p.DriftPPM*1e-6
	for k := range slots {
		mt := time.Duration(k) * p.Ptime // media time of this slot
		sendAt := time.Duration(float64(mt) / drift)
		if p.SSRCChangeAt > 0 && mt >= p.SSRCChangeAt && epoch == 0 {
			epoch = 1
			ssrc, seq, ts = ssrc^0x5a5a5a5a, seq+20000, ts+0x40000000
			marker = true
		}
		if p.TSJumpAt > 0 && mt >= p.TSJumpAt && mt < p.TSJumpAt+p.Ptime {
			ts += p.TSJump
			marker = true
		}
		add := func(pt uint8, m bool, pts uint32, payload []byte) {
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, Marker: m, SequenceNumber: seq, Timestamp: pts, SSRC: ssrc}, Payload: payload}
			b, _ := pkt.Marshal()
			sent = append(sent, sentPacket{sendAt: sendAt, data: b, epoch: epoch, seq: seq})
			seq++
		}
		// A digit starts at its slot and takes the slots of its packets.
		if !ev.active && digitIdx < len(p.Digits) && mt >= p.Digits[digitIdx].At {
			d := p.Digits[digitIdx]
			digitIdx++
			code := byte(0)
			for i, c := range "0123456789*#ABCD" {
				if c == d.Digit {
					code = byte(i)
				}
			}
			ev.active, ev.code, ev.ts, ev.emitted = true, code, ts, 0
			ev.packets = max(1, int((d.Duration+p.Ptime-1)/p.Ptime))
			tr.Digits += string(d.Digit)
			marker = true
		}
		switch {
		case ev.active:
			end := ev.emitted >= ev.packets
			dur := uint16(min(ev.emitted+1, ev.packets) * spp)
			payload := make([]byte, 4)
			payload[0], payload[1] = ev.code, 10
			if end {
				payload[1] |= 0x80
			}
			binary.BigEndian.PutUint16(payload[2:], dur)
			add(p.DTMFPT, ev.emitted == 0, ev.ts, payload)
			ev.emitted++
			if ev.emitted == ev.packets+3 {
				ev.active = false
				marker = true
			}
		case inSpans(p.Silences, mt):
			if !silent && p.ComfortNoise {
				add(13, false, ts, []byte{70})
			}
			silent = true
			marker = true
		default:
			silent = false
			pcm := make([]int16, spp)
			for i := range pcm {
				pcm[i] = p.Audio(k*spp + i)
			}
			add(p.Codec.PayloadType, marker, ts, p.Codec.Encode(nil, pcm))
			tr.AudioSent++
			marker = false
		}
		ts += uint32(spp)
	}
	tr.Sent = len(sent)

	// The network.
	lost := make([]bool, len(sent))
	for i := range sent {
		lost[i] = p.Loss > 0 && rng.Float64() < p.Loss
	}
	for _, b := range p.Bursts {
		first := -1
		for i, s := range sent {
			if s.sendAt >= time.Duration(float64(b.At)/drift) {
				first = i
				break
			}
		}
		for i := first; first >= 0 && i < min(len(sent), first+b.Packets); i++ {
			lost[i] = true
		}
	}
	for i, s := range sent {
		if lost[i] {
			tr.Dropped++
			continue
		}
		delay := p.BaseDelay
		if len(p.Delays) > 0 {
			delay = p.Delays[i%len(p.Delays)]
		} else if p.Jitter > 0 {
			delay += time.Duration((rng.Float64()*2 - 1) * float64(p.Jitter))
		}
		at := p.Start.Add(s.sendAt + max(delay, 0))
		tr.Packets = append(tr.Packets, Packet{At: at, Data: s.data})
		if p.Duplicate > 0 && rng.Float64() < p.Duplicate {
			tr.Duplicates++
			extra := time.Duration(1+rng.IntN(5)) * time.Millisecond
			tr.Packets = append(tr.Packets, Packet{At: at.Add(extra), Data: s.data})
		}
	}
	slices.SortStableFunc(tr.Packets, func(a, b Packet) int { return a.At.Compare(b.At) })

	// RFC 3550 loss per epoch: the span of delivered sequence numbers.
	for e := 0; e <= epoch; e++ {
		lo, hi, n := -1, -1, 0
		for i, s := range sent {
			if s.epoch != e || lost[i] {
				continue
			}
			if lo < 0 {
				lo = i
			}
			hi = i
			n++
		}
		if lo >= 0 {
			tr.Lost += hi - lo + 1 - n
		}
	}
	return tr
}

func inSpans(spans []Span, t time.Duration) bool {
	for _, s := range spans {
		if t >= s.From && t < s.To {
			return true
		}
	}
	return false
}
