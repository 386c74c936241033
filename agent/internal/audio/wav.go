package audio

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
)

// EncodeWAV returns pcm as a complete mono 16-bit WAV file at rate Hz, for
// APIs that take an audio file upload.
func EncodeWAV(pcm []int16, rate int) []byte {
	le := binary.LittleEndian
	data := len(pcm) * 2
	b := make([]byte, 44, 44+data)
	copy(b[0:], "RIFF")
	le.PutUint32(b[4:], uint32(36+data))
	copy(b[8:], "WAVEfmt ")
	le.PutUint32(b[16:], 16)
	le.PutUint16(b[20:], 1) // integer PCM
	le.PutUint16(b[22:], 1) // mono
	le.PutUint32(b[24:], uint32(rate))
	le.PutUint32(b[28:], uint32(rate*2))
	le.PutUint16(b[32:], 2)
	le.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	le.PutUint32(b[40:], uint32(data))
	for _, s := range pcm {
		b = le.AppendUint16(b, uint16(s))
	}
	return b
}

// PCMBytes appends pcm to dst as 16-bit little-endian samples.
func PCMBytes(dst []byte, pcm []int16) []byte {
	for _, s := range pcm {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(s))
	}
	return dst
}

// PCMSamples appends the 16-bit little-endian samples in b to dst; a trailing
// odd byte is ignored (the caller carries it over to the next read).
func PCMSamples(dst []int16, b []byte) []int16 {
	for i := 0; i+1 < len(b); i += 2 {
		dst = append(dst, int16(binary.LittleEndian.Uint16(b[i:])))
	}
	return dst
}

// Tone returns a sine of freqHz at rate Hz lasting d; amplitude is 0..1 of
// full scale. (media.Tone is fixed at 8 kHz; providers' native rates vary.)
func Tone(freqHz float64, rate int, d time.Duration, amplitude float64) []int16 {
	amp := math.Max(0, math.Min(1, amplitude)) * math.MaxInt16
	n := int(int64(d) * int64(rate) / int64(time.Second))
	out := make([]int16, max(0, n))
	w := 2 * math.Pi * freqHz / float64(rate)
	for i := range out {
		out[i] = int16(math.Round(amp * math.Sin(w*float64(i))))
	}
	return out
}

// DecodeWAV reads a mono 16-bit PCM WAV file (as EncodeWAV writes, or a
// tool such as sox) and returns its samples and rate.
func DecodeWAV(b []byte) ([]int16, int, error) {
	le := binary.LittleEndian
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, errors.New("wav: not a RIFF/WAVE file")
	}
	rate := 0
	for p := 12; p+8 <= len(b); {
		id, n := string(b[p:p+4]), int(le.Uint32(b[p+4:]))
		body := b[p+8 : min(len(b), p+8+n)]
		switch id {
		case "fmt ":
			if len(body) < 16 || le.Uint16(body[0:]) != 1 || le.Uint16(body[2:]) != 1 || le.Uint16(body[14:]) != 16 {
				return nil, 0, errors.New("wav: not mono 16-bit integer PCM")
			}
			rate = int(le.Uint32(body[4:]))
		case "data":
			if rate == 0 {
				return nil, 0, errors.New("wav: data before fmt")
			}
			return PCMSamples(nil, body), rate, nil
		}
		p += 8 + n + n%2 // chunks are padded to even sizes
	}
	return nil, 0, errors.New("wav: no data chunk")
}
