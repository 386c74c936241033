package media

import (
	"fmt"
	"strings"
	"sync"

	"github.com/zaf/g711"
)

// Codec is a negotiated RTP audio codec.
type Codec struct {
	Name        string // "PCMU" or "PCMA"
	PayloadType uint8  // 0 for PCMU, 8 for PCMA normally, but whatever SDP negotiated
}

// The static RTP/AVP assignments (RFC 3551).
var (
	PCMU = Codec{Name: "PCMU", PayloadType: 0}
	PCMA = Codec{Name: "PCMA", PayloadType: 8}
)

// CodecByName returns the codec for an SDP encoding name (case-insensitive)
// bound to the negotiated payload type.
func CodecByName(name string, pt uint8) (Codec, error) {
	if pt > 127 {
		return Codec{}, fmt.Errorf("media: payload type %d out of range 0-127", pt)
	}
	switch {
	case strings.EqualFold(name, "PCMU"):
		return Codec{Name: "PCMU", PayloadType: pt}, nil
	case strings.EqualFold(name, "PCMA"):
		return Codec{Name: "PCMA", PayloadType: pt}, nil
	}
	return Codec{}, fmt.Errorf("media: unsupported codec %q (want PCMU or PCMA)", name)
}

func (c Codec) isAlaw() bool { return strings.EqualFold(c.Name, "PCMA") }

func (c Codec) valid() bool {
	return strings.EqualFold(c.Name, "PCMU") || c.isAlaw()
}

// String returns e.g. "PCMU/0".
func (c Codec) String() string { return fmt.Sprintf("%s/%d", c.Name, c.PayloadType) }

// Encode appends the G.711 encoding of pcm to dst. One byte per sample.
func (c Codec) Encode(dst []byte, pcm []int16) []byte {
	dst = grow(dst, len(pcm))
	table := encodeTables()
	t := &table.ulaw
	if c.isAlaw() {
		t = &table.alaw
	}
	for _, s := range pcm {
		dst = append(dst, t[uint16(s)])
	}
	return dst
}

// g711Tables hold the encoding of every 16-bit sample (128 KB, built once):
// a lookup costs a fraction of computing the segment per sample, and every
// stream encodes 8000 samples a second.
type g711Tables struct{ ulaw, alaw [1 << 16]byte }

var encodeTables = sync.OnceValue(func() *g711Tables {
	t := new(g711Tables)
	for i := range 1 << 16 {
		t.ulaw[i] = g711.EncodeUlawFrame(int16(uint16(i)))
		t.alaw[i] = g711.EncodeAlawFrame(int16(uint16(i)))
	}
	return t
})

// Decode appends the linear PCM decoding of a G.711 payload to dst.
func (c Codec) Decode(dst []int16, payload []byte) []int16 {
	dst = grow(dst, len(payload))
	if c.isAlaw() {
		for _, b := range payload {
			dst = append(dst, g711.DecodeAlawFrame(b))
		}
		return dst
	}
	for _, b := range payload {
		dst = append(dst, g711.DecodeUlawFrame(b))
	}
	return dst
}

// grow makes room for n more elements so the append loops allocate at most once.
func grow[S ~[]E, E any](s S, n int) S {
	if cap(s)-len(s) < n {
		ns := make(S, len(s), len(s)+n)
		copy(ns, s)
		return ns
	}
	return s
}

func (c Codec) decode1(b byte) int16 {
	if c.isAlaw() {
		return g711.DecodeAlawFrame(b)
	}
	return g711.DecodeUlawFrame(b)
}
