// Package sdp parses SDP bodies (RFC 8866), negotiates a G.711 audio answer
// to an offer (RFC 3264) and renders SDP bodies for offers and answers.
//
// Parse is written for hostile network input: it never panics, caps the body
// size and the number of lines, media sections and formats, and reports every
// rejection as an error wrapping ErrMalformed. A malformed a=rtpmap or a=fmtp
// line of a payload type on the m= line does not fail Parse: the type is
// marked in Media.Malformed, and Negotiate and Answer report ErrMalformed only
// when no usable codec is left without it. Otherwise they report ErrNoAudio
// or ErrNoCommonCodec for offers we cannot serve, so the SIP layer can map
// ErrMalformed to 400 and the others to 488.
package sdp

import (
	"errors"
	"net/netip"
)

// Errors returned (wrapped, with detail) by this package. Test with errors.Is.
var (
	ErrMalformed     = errors.New("malformed SDP")
	ErrNoAudio       = errors.New("no audio stream in SDP")
	ErrNoCommonCodec = errors.New("no common codec")
)

// Direction is an SDP media direction attribute (RFC 3264 §5.1).
type Direction string

const (
	SendRecv Direction = "sendrecv"
	SendOnly Direction = "sendonly"
	RecvOnly Direction = "recvonly"
	Inactive Direction = "inactive"
)

// Reverse returns the direction the other side sees: sendonly↔recvonly,
// anything else unchanged.
func (d Direction) Reverse() Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	}
	return d
}

func (d Direction) valid() bool {
	switch d {
	case SendRecv, SendOnly, RecvOnly, Inactive:
		return true
	}
	return false
}

// orSendRecv maps "" (and anything invalid) to the SDP default, sendrecv.
func (d Direction) orSendRecv() Direction {
	if d.valid() {
		return d
	}
	return SendRecv
}

func (d Direction) sends() bool    { return d == SendRecv || d == SendOnly }
func (d Direction) receives() bool { return d == SendRecv || d == RecvOnly }

// Session is a parsed SDP body.
type Session struct {
	Origin     Origin    // o= line
	Name       string    // s=
	Connection string    // session-level c= address ("" if absent)
	Direction  Direction // session-level direction attribute ("" if absent)
	Media      []Media
}

// Origin is the o= line.
type Origin struct {
	Username           string
	SessionID, Version uint64
	NetType, AddrType  string
	Address            string
}

// Media is one m= section.
type Media struct {
	Type  string // "audio", "video", ...
	Port  int
	Proto string // "RTP/AVP", "RTP/SAVP", ...
	// Formats are the RTP payload types in offer order, duplicates removed.
	// Nil for non-RTP protos (udptl, TCP/MSRP, ...), whose formats are not
	// payload types.
	Formats []uint8
	RTPMaps map[uint8]RTPMap // from a=rtpmap, only for PTs in Formats
	Fmtp    map[uint8]string // from a=fmtp, only for PTs in Formats
	// Malformed holds the PTs in Formats whose a=rtpmap or a=fmtp line
	// could not be read (no clock rate, conflicting lines, ...), with why.
	// Their rtpmap and fmtp are dropped and Negotiate never picks them: a
	// broken line for a codec we would not use must not sink the offer.
	Malformed map[uint8]string
	Ptime     int // a=ptime in ms, 0 if absent
	// Direction is the media-level direction attribute, "" if absent.
	Direction Direction
	RTCPMux   bool
	RTCPPort  int // a=rtcp port, 0 if absent
	// RTCPConnection is the address on an a=rtcp line (RFC 3605), "" if absent.
	RTCPConnection string
	Connection     string // media-level c= address, "" if absent
}

// RTPMap is an a=rtpmap encoding. Name is kept as written ("PCMU",
// "telephone-event"); Channels is 0 when the line omits it (mono for audio).
type RTPMap struct {
	Name      string
	ClockRate int
	Channels  int
}

// Codec is an audio codec we can send and receive.
type Codec struct {
	Name        string
	PayloadType uint8
	ClockRate   int
}

// The G.711 codecs with their RFC 3551 static payload types.
var (
	PCMU = Codec{"PCMU", 0, 8000}
	PCMA = Codec{"PCMA", 8, 8000}
)

// Negotiated is what both sides agreed on for the first usable audio stream.
type Negotiated struct {
	// RemoteAddr is the media address (media-level c=, else session-level)
	// with the m= port. Port 0 means the stream was rejected/disabled.
	RemoteAddr netip.AddrPort
	// RemoteRTCPAddr is the a=rtcp port (and address, if given) when
	// present, else port+1; it equals RemoteAddr with rtcp-mux. Its port is
	// 0 if the RTP port is 65535 (no port+1 exists).
	RemoteRTCPAddr netip.AddrPort
	// Codec is our codec, carrying the OFFER's payload type for it.
	Codec Codec
	// DTMFPayloadType is the offer's telephone-event/8000 PT, 0 if none.
	DTMFPayloadType uint8
	Ptime           int // the offer's a=ptime, 0 if absent
	// RemoteDirection is the offer's effective direction: media-level,
	// else session-level, else sendrecv. An old-style hold (c=0.0.0.0 or
	// c=::) with no direction attribute is reported as Inactive; with one,
	// the attribute stands.
	RemoteDirection Direction
	// LocalDirection is what the answer says: RemoteDirection.Reverse()
	// from Negotiate; Answer also narrows it by Local.Direction.
	LocalDirection Direction
	RTCPMux        bool
	MediaIndex     int // index of the chosen m= section in offer.Media
}

// Local describes our side of a session for Build and Answer.
type Local struct {
	Address   netip.Addr // our advertised media IP (c= and o=)
	Port      int
	SessionID uint64 // o= id; stays the same across re-offers
	Version   uint64 // o= version; increments on re-offer
	// Codecs: one for an answer, several for an offer (order = preference).
	Codecs []Codec
	// DTMFPayloadType 0 omits telephone-event; otherwise
	// a=rtpmap:PT telephone-event/8000 and a=fmtp:PT 0-16 are added.
	DTMFPayloadType uint8
	Ptime           int       // 0 → 20
	Direction       Direction // "" → sendrecv
	RTCPMux         bool
	UserAgent       string // o= username; "" → "voxbridge"
}
