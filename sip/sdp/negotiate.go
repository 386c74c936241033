package sdp

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// staticAudio is the RFC 3551 table of static audio payload types, used when
// an offer lists a static PT without an a=rtpmap (rtpmap is optional for
// them).
var staticAudio = map[uint8]RTPMap{
	0: {"PCMU", 8000, 1}, 3: {"GSM", 8000, 1}, 4: {"G723", 8000, 1},
	5: {"DVI4", 8000, 1}, 6: {"DVI4", 16000, 1}, 7: {"LPC", 8000, 1},
	8: {"PCMA", 8000, 1}, 9: {"G722", 8000, 1}, 10: {"L16", 44100, 2},
	11: {"L16", 44100, 1}, 12: {"QCELP", 8000, 1}, 13: {"CN", 8000, 1},
	14: {"MPA", 90000, 0}, 15: {"G728", 8000, 1}, 16: {"DVI4", 11025, 1},
	17: {"DVI4", 22050, 1}, 18: {"G729", 8000, 1},
}

const telephoneEvent = "telephone-event"

// encoding returns what payload type pt means in m: its rtpmap, else the
// static assignment. A dynamic PT without rtpmap means nothing.
func encoding(m *Media, pt uint8) (RTPMap, bool) {
	if rm, ok := m.RTPMaps[pt]; ok {
		return rm, true
	}
	rm, ok := staticAudio[pt]
	return rm, ok
}

// Negotiate picks the first audio m= section with a non-zero port, an
// RTP/AVP or RTP/AVPF proto and an IP address, in which some payload type
// matches one of ours; within it, the first payload type in the OFFER's
// order wins. Static PTs 0/8 match without rtpmap; dynamic ones match by
// rtpmap name (case-insensitive), clock rate and mono. An offer whose
// usable audio carries only telephone-event or unknown codecs gives
// ErrNoCommonCodec; one without usable audio gives ErrNoAudio. Payload
// types in Media.Malformed are never picked; when a usable audio section
// has one and nothing else of ours, the offer is refused with ErrMalformed,
// since the broken line may have been the codec we share. Any ptime is
// accepted and reported (media re-chunks).
//
// It works the same on an answer to our offer.
func Negotiate(offer *Session, ours []Codec) (Negotiated, error) {
	if offer == nil {
		return Negotiated{}, fmt.Errorf("%w: nil session", ErrMalformed)
	}
	var noAudio, noCodec, malformed string // first reason each kind of failure happened
	for i := range offer.Media {
		m := &offer.Media[i]
		if !isAudio(m) {
			continue
		}
		if m.Port < 0 || m.Port > 65535 {
			return Negotiated{}, fmt.Errorf("%w: audio m= section %d: port %d out of range", ErrMalformed, i, m.Port)
		}
		reason := ""
		var addr netip.Addr
		switch {
		case m.Port == 0:
			reason = "port 0 (disabled)"
		case !isAVP(m.Proto):
			// SRTP and friends need keys we do not handle.
			reason = "unsupported proto " + snippet(m.Proto)
		default:
			var err error
			if addr, err = mediaAddr(offer, m); err != nil {
				reason = err.Error()
			}
		}
		if reason != "" {
			if noAudio == "" {
				noAudio = fmt.Sprintf("audio m= section %d: %s", i, reason)
			}
			continue
		}
		codec, ok := pickCodec(m, ours)
		if !ok && len(m.Malformed) > 0 {
			if malformed == "" {
				malformed = fmt.Sprintf("audio m= section %d: %s", i, firstMalformed(m))
			}
			continue
		}
		if !ok {
			if noCodec == "" {
				noCodec = fmt.Sprintf("audio m= section %d offers %s; we support %s", i, describeOffer(m), describeOurs(ours))
			}
			continue
		}
		return negotiated(offer, m, i, addr, codec), nil
	}
	switch {
	case malformed != "":
		return Negotiated{}, fmt.Errorf("%w: %s", ErrMalformed, malformed)
	case noCodec != "":
		return Negotiated{}, fmt.Errorf("%w: %s", ErrNoCommonCodec, noCodec)
	case noAudio != "":
		return Negotiated{}, fmt.Errorf("%w: %s", ErrNoAudio, noAudio)
	}
	return Negotiated{}, fmt.Errorf("%w: %d m= sections, none audio", ErrNoAudio, len(offer.Media))
}

func negotiated(offer *Session, m *Media, idx int, addr netip.Addr, codec Codec) Negotiated {
	n := Negotiated{
		RemoteAddr: netip.AddrPortFrom(addr, uint16(m.Port)),
		Codec:      codec,
		Ptime:      m.Ptime,
		RTCPMux:    m.RTCPMux,
		MediaIndex: idx,
	}
	switch {
	case m.RTCPMux:
		n.RemoteRTCPAddr = n.RemoteAddr
	case m.RTCPPort > 0 && m.RTCPPort <= 65535:
		rtcpAddr := addr
		if a, err := netip.ParseAddr(m.RTCPConnection); err == nil && a.Zone() == "" {
			rtcpAddr = a.Unmap()
		}
		n.RemoteRTCPAddr = netip.AddrPortFrom(rtcpAddr, uint16(m.RTCPPort))
	case m.Port < 65535:
		n.RemoteRTCPAddr = netip.AddrPortFrom(addr, uint16(m.Port+1))
	default:
		n.RemoteRTCPAddr = netip.AddrPortFrom(addr, 0)
	}
	// Several telephone-event rates may be offered (Linphone lists 48000,
	// 16000 and 8000); only the 8 kHz one goes with G.711.
	for _, pt := range m.Formats {
		if rm, ok := m.RTPMaps[pt]; ok && strings.EqualFold(rm.Name, telephoneEvent) && rm.ClockRate == 8000 {
			n.DTMFPayloadType = pt
			break
		}
	}
	dir := m.Direction
	if !dir.valid() {
		dir = offer.Direction
	}
	if !dir.valid() {
		// RFC 2543 hold: c=0.0.0.0 meant "do not send to me", and the
		// senders of it rarely send either.
		if addr.IsUnspecified() {
			dir = Inactive
		} else {
			dir = SendRecv
		}
	}
	n.RemoteDirection = dir
	n.LocalDirection = dir.Reverse()
	return n
}

// isAVP reports whether proto is plain RTP (RTP/AVP or RTP/AVPF), the only
// profiles we can answer without SRTP keying.
func isAVP(proto string) bool {
	return strings.EqualFold(proto, "RTP/AVP") || strings.EqualFold(proto, "RTP/AVPF")
}

// mediaAddr resolves the stream's c= address (media-level, else
// session-level) to an IP; hostnames are refused since we do no DNS here.
func mediaAddr(s *Session, m *Media) (netip.Addr, error) {
	c := m.Connection
	if c == "" {
		c = s.Connection
	}
	if c == "" {
		return netip.Addr{}, fmt.Errorf("no c= address")
	}
	a, err := netip.ParseAddr(c)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("c= address %s is not an IP address", snippet(c))
	}
	return a.Unmap(), nil
}

func pickCodec(m *Media, ours []Codec) (Codec, bool) {
	for _, pt := range m.Formats {
		if pt > 127 {
			continue
		}
		if m.Malformed[pt] != "" {
			continue // its static meaning may be what the broken line contradicts
		}
		rm, ok := encoding(m, pt)
		// Stereo G.711 is a different format from the mono we produce.
		if !ok || rm.Channels > 1 {
			continue
		}
		for _, c := range ours {
			if strings.EqualFold(c.Name, telephoneEvent) {
				continue // DTMF is negotiated alongside, never as the codec
			}
			if strings.EqualFold(rm.Name, c.Name) && rm.ClockRate == c.ClockRate {
				return Codec{Name: c.Name, PayloadType: pt, ClockRate: c.ClockRate}, true
			}
		}
	}
	return Codec{}, false
}

// firstMalformed is the reason for the lowest malformed PT of m, so the
// error does not depend on map order.
func firstMalformed(m *Media) string {
	first := -1
	for pt := range m.Malformed {
		if first < 0 || int(pt) < first {
			first = int(pt)
		}
	}
	return m.Malformed[uint8(first)]
}

// describeOffer lists the offered encodings for an error, a few at most.
func describeOffer(m *Media) string {
	const limit = 6
	var b strings.Builder
	for i, pt := range m.Formats {
		if i == limit {
			fmt.Fprintf(&b, " and %d more", len(m.Formats)-limit)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if rm, ok := encoding(m, pt); ok {
			fmt.Fprintf(&b, "%d %s/%d", pt, printable(rm.Name), rm.ClockRate)
		} else {
			b.WriteString(strconv.Itoa(int(pt)) + " (no rtpmap)")
		}
	}
	if b.Len() == 0 {
		return "no formats"
	}
	return b.String()
}

func describeOurs(ours []Codec) string {
	if len(ours) == 0 {
		return "nothing"
	}
	names := make([]string, 0, len(ours))
	for _, c := range ours {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// printable truncates s and replaces non-printable bytes, for error text.
func printable(s string) string {
	if len(s) > maxErrSnippet {
		s = s[:maxErrSnippet] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
