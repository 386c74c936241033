package sdp

import (
	"net/netip"
	"strconv"
	"strings"
)

// defaultPtime is what we send: 20 ms frames everywhere in voxbridge.
const defaultPtime = 20

// Build renders an offer (or any single-stream body) for l with \r\n line
// endings: v, o, s, c, t=0 0, one m=audio RTP/AVP section with an rtpmap per
// codec (static ones too, which costs little and helps peers that ignore
// RFC 3551), telephone-event, ptime, direction and rtcp-mux.
//
// Build cannot fail, so it repairs what it cannot render: an invalid Address
// becomes 0.0.0.0 (IPv4-mapped addresses are unmapped, zones dropped), a port
// outside 0-65535 becomes 0, codecs with a PT above 127, a repeated PT, a
// non-positive clock rate or an empty name are skipped (PCMU and PCMA are
// used if none is left), a DTMF PT above 127 or equal to a codec's is
// omitted, and blanks and control characters are removed from names.
func Build(l Local) []byte {
	b := appendSession(make([]byte, 0, 512), l)
	return appendAudio(b, audioSection{
		port:   l.Port,
		proto:  "RTP/AVP",
		codecs: l.Codecs,
		dtmf:   l.DTMFPayloadType,
		ptime:  l.Ptime,
		dir:    l.Direction,
		mux:    l.RTCPMux,
	})
}

// Answer negotiates offer against ours (see Negotiate) and renders the answer
// from l: the chosen codec with the offer's PT, the offer's telephone-event
// PT if it had one, rtcp-mux if the offer had it, the offer's proto (RTP/AVP
// or RTP/AVPF), and LocalDirection. l.Codecs, l.DTMFPayloadType and
// l.RTCPMux are not used; l.Direction is what we want (e.g. sendonly to put
// the call on hold) and is combined with the offer's, so the returned
// LocalDirection may be narrower than RemoteDirection.Reverse().
//
// As RFC 3264 §6 requires, the answer has as many m= lines as the offer, in
// the same order: every section but the chosen one is rejected with port 0.
func Answer(offer *Session, ours []Codec, l Local) (Negotiated, []byte, error) {
	n, err := Negotiate(offer, ours)
	if err != nil {
		return Negotiated{}, nil, err
	}
	n.LocalDirection = answerDirection(n.RemoteDirection, l.Direction)
	b := appendSession(make([]byte, 0, 512), l)
	for i := range offer.Media {
		m := &offer.Media[i]
		if i != n.MediaIndex {
			b = appendRejected(b, m)
			continue
		}
		b = appendAudio(b, audioSection{
			port:   l.Port,
			proto:  m.Proto, // isAVP checked by Negotiate: a safe token
			codecs: []Codec{n.Codec},
			dtmf:   n.DTMFPayloadType,
			ptime:  l.Ptime,
			dir:    n.LocalDirection,
			mux:    n.RTCPMux,
		})
	}
	return n, b, nil
}

// answerDirection narrows what the offer allows by what we want: we send
// only if the offerer receives and we want to send, and likewise for
// receiving (RFC 3264 §6.1).
func answerDirection(remote, want Direction) Direction {
	remote, want = remote.orSendRecv(), want.orSendRecv()
	send := remote.receives() && want.sends()
	recv := remote.sends() && want.receives()
	switch {
	case send && recv:
		return SendRecv
	case send:
		return SendOnly
	case recv:
		return RecvOnly
	}
	return Inactive
}

func appendSession(b []byte, l Local) []byte {
	addrType, addr := renderAddr(l.Address)
	user := token(l.UserAgent)
	if user == "" {
		user = "voxbridge"
	}
	b = append(b, "v=0\r\no="...)
	b = append(b, user...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, l.SessionID, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, l.Version, 10)
	b = append(b, " IN "...)
	b = append(b, addrType...)
	b = append(b, ' ')
	b = append(b, addr...)
	// RFC 3264 §5 recommends "-" for the meaningless unicast session name.
	b = append(b, "\r\ns=-\r\nc=IN "...)
	b = append(b, addrType...)
	b = append(b, ' ')
	b = append(b, addr...)
	return append(b, "\r\nt=0 0\r\n"...)
}

func renderAddr(a netip.Addr) (addrType, addr string) {
	if !a.IsValid() {
		return "IP4", "0.0.0.0"
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return "IP4", a.String()
	}
	return "IP6", a.String()
}

type audioSection struct {
	port   int
	proto  string
	codecs []Codec
	dtmf   uint8
	ptime  int
	dir    Direction
	mux    bool
}

func appendAudio(b []byte, s audioSection) []byte {
	codecs := cleanCodecs(s.codecs)
	dtmf := s.dtmf
	for _, c := range codecs {
		if dtmf == c.PayloadType {
			dtmf = 0 // a PT cannot mean two things
		}
	}
	if dtmf > 127 {
		dtmf = 0
	}
	port := s.port
	if port < 0 || port > 65535 {
		port = 0
	}
	ptime := s.ptime
	if ptime <= 0 {
		ptime = defaultPtime
	}

	b = append(b, "m=audio "...)
	b = strconv.AppendInt(b, int64(port), 10)
	b = append(b, ' ')
	b = append(b, s.proto...)
	for _, c := range codecs {
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(c.PayloadType), 10)
	}
	if dtmf != 0 {
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(dtmf), 10)
	}
	b = append(b, "\r\n"...)
	for _, c := range codecs {
		b = appendRTPMap(b, c.PayloadType, c.Name, c.ClockRate)
	}
	if dtmf != 0 {
		b = appendRTPMap(b, dtmf, telephoneEvent, 8000)
		b = append(b, "a=fmtp:"...)
		b = strconv.AppendUint(b, uint64(dtmf), 10)
		b = append(b, " 0-16\r\n"...)
	}
	b = append(b, "a=ptime:"...)
	b = strconv.AppendInt(b, int64(ptime), 10)
	b = append(b, "\r\na="...)
	b = append(b, s.dir.orSendRecv()...)
	b = append(b, "\r\n"...)
	if s.mux {
		b = append(b, "a=rtcp-mux\r\n"...)
	}
	return b
}

func appendRTPMap(b []byte, pt uint8, name string, clock int) []byte {
	b = append(b, "a=rtpmap:"...)
	b = strconv.AppendUint(b, uint64(pt), 10)
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(clock), 10)
	return append(b, "\r\n"...)
}

// cleanCodecs drops what cannot be rendered as a valid, unambiguous rtpmap.
func cleanCodecs(in []Codec) []Codec {
	var seen [128]bool
	out := make([]Codec, 0, len(in))
	for _, c := range in {
		c.Name = strings.ReplaceAll(token(c.Name), "/", "")
		if c.PayloadType > 127 || seen[c.PayloadType] || c.ClockRate <= 0 || c.Name == "" {
			continue
		}
		seen[c.PayloadType] = true
		out = append(out, c)
	}
	if len(out) == 0 {
		out = append(out, PCMU, PCMA)
	}
	return out
}

// appendRejected echoes an offered m= line we do not take, with port 0
// (RFC 3264 §6). The format list is ignored by the peer but must not be
// empty, so one offered format stands in for all.
func appendRejected(b []byte, m *Media) []byte {
	typ, proto := token(m.Type), token(m.Proto)
	if typ == "" {
		typ = "application"
	}
	if proto == "" {
		proto = "RTP/AVP"
	}
	b = append(b, "m="...)
	b = append(b, typ...)
	b = append(b, " 0 "...)
	b = append(b, proto...)
	b = append(b, ' ')
	switch {
	case len(m.Formats) > 0 && m.Formats[0] <= 127:
		b = strconv.AppendUint(b, uint64(m.Formats[0]), 10)
	case isRTPProto(proto):
		b = append(b, '0')
	case strings.EqualFold(proto, "udptl"):
		b = append(b, "t38"...) // the only format T.38 defines
	default:
		// Non-RTP formats are not kept by Parse; "*" is what MSRP and BFCP use.
		b = append(b, '*')
	}
	return append(b, "\r\n"...)
}

// token strips blanks and control characters so caller-supplied strings
// cannot split or inject SDP lines.
func token(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
