package media

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// WAV format tags (mmreg.h).
const (
	wavPCM        = 0x0001
	wavFloat      = 0x0003
	wavALaw       = 0x0006
	wavMuLaw      = 0x0007
	wavExtensible = 0xFFFE
)

var wavFormatNames = map[uint16]string{
	0x0002: "Microsoft ADPCM",
	0x0011: "IMA ADPCM",
	0x0031: "GSM 6.10",
	0x0040: "G.721 ADPCM",
	0x0050: "MPEG",
	0x0055: "MPEG Layer 3 (MP3)",
	0x0064: "G.726 ADPCM",
	0x0160: "WMA",
	0x0161: "WMA",
	0x1610: "AAC",
	0xF1AC: "FLAC",
}

type wavFormat struct {
	tag      uint16
	channels int
	rate     int
	bits     int
}

func (f wavFormat) frameBytes() int { return f.channels * f.bits / 8 }

// ReadWAV reads a WAV file and returns its audio as 8 kHz mono 16-bit PCM.
// It accepts integer PCM (8, 16, 24, 32 bit), 32-bit float, A-law and µ-law,
// any channel count up to 8 (mixed down by averaging) and any sample rate
// (resampled with a windowed-sinc low-pass). A data chunk shorter than its
// header claims (a cut-off copy) yields the samples that are there; a data
// size of 0xFFFFFFFF (streaming writers) means "to the end". Memory use
// follows the bytes actually read, never a size taken from the header.
func ReadWAV(r io.Reader) ([]int16, error) {
	br := bufio.NewReader(r)
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("wav: reading RIFF header: %w", noEOF(err))
	}
	switch id := string(hdr[:4]); {
	case id == "RIFX":
		return nil, errors.New("wav: big-endian RIFX files are not supported")
	case id == "RF64":
		return nil, errors.New("wav: RF64 (64-bit WAV) files are not supported")
	case id != "RIFF" || string(hdr[8:12]) != "WAVE":
		return nil, fmt.Errorf("wav: not a RIFF/WAVE file (starts with %q)", hdr[:4])
	}
	var f wavFormat
	haveFmt := false
	for {
		var ch [8]byte
		if _, err := io.ReadFull(br, ch[:]); err != nil {
			return nil, fmt.Errorf("wav: no data chunk: %w", noEOF(err))
		}
		id, size := string(ch[:4]), binary.LittleEndian.Uint32(ch[4:])
		switch id {
		case "fmt ":
			if size < 16 {
				return nil, fmt.Errorf("wav: fmt chunk too short (%d bytes)", size)
			}
			var b [40]byte
			n := min(size, uint32(len(b)))
			if _, err := io.ReadFull(br, b[:n]); err != nil {
				return nil, fmt.Errorf("wav: reading fmt chunk: %w", noEOF(err))
			}
			if err := skip(br, int64(size-n)+int64(size&1)); err != nil {
				return nil, fmt.Errorf("wav: reading fmt chunk: %w", err)
			}
			var err error
			if f, err = parseFormat(b[:n]); err != nil {
				return nil, err
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, errors.New("wav: data chunk before fmt chunk")
			}
			return readData(br, f, size)
		default:
			if err := skip(br, int64(size)+int64(size&1)); err != nil {
				return nil, fmt.Errorf("wav: skipping %q chunk: %w", id, err)
			}
		}
	}
}

// ReadWAVFile is ReadWAV on a file.
func ReadWAVFile(path string) ([]int16, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pcm, err := ReadWAV(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pcm, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func skip(r io.Reader, n int64) error {
	if _, err := io.CopyN(io.Discard, r, n); err != nil {
		return noEOF(err)
	}
	return nil
}

func parseFormat(b []byte) (wavFormat, error) {
	f := wavFormat{
		tag:      binary.LittleEndian.Uint16(b[0:]),
		channels: int(binary.LittleEndian.Uint16(b[2:])),
		rate:     int(binary.LittleEndian.Uint32(b[4:])),
		bits:     int(binary.LittleEndian.Uint16(b[14:])),
	}
	if f.tag == wavExtensible {
		if len(b) < 40 {
			return f, errors.New("wav: WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
		}
		f.tag = binary.LittleEndian.Uint16(b[24:]) // first bytes of the SubFormat GUID
	}
	if f.channels < 1 || f.channels > 8 {
		return f, fmt.Errorf("wav: %d channels not supported (1-8)", f.channels)
	}
	if f.rate < 1000 || f.rate > 768000 {
		return f, fmt.Errorf("wav: sample rate %d Hz not supported", f.rate)
	}
	ok := false
	switch f.tag {
	case wavPCM:
		ok = f.bits == 8 || f.bits == 16 || f.bits == 24 || f.bits == 32
	case wavFloat:
		ok = f.bits == 32
	case wavALaw, wavMuLaw:
		ok = f.bits == 8
	default:
		name, known := wavFormatNames[f.tag]
		if !known {
			name = "unknown format"
		}
		return f, fmt.Errorf("wav: unsupported encoding %s (format tag 0x%04X)", name, f.tag)
	}
	if !ok {
		return f, fmt.Errorf("wav: unsupported sample size: %d-bit %s", f.bits, tagName(f.tag))
	}
	return f, nil
}

func tagName(tag uint16) string {
	switch tag {
	case wavFloat:
		return "float"
	case wavALaw:
		return "A-law"
	case wavMuLaw:
		return "µ-law"
	}
	return "PCM"
}

// readData decodes the data chunk in blocks, mixing to mono as it goes, so
// only the mono result is held in memory.
func readData(r io.Reader, f wavFormat, size uint32) ([]int16, error) {
	fb := f.frameBytes()
	var src io.Reader = r
	if size != math.MaxUint32 { // streaming writers leave 0xFFFFFFFF: read to EOF
		src = io.LimitReader(r, int64(size))
	}
	buf := make([]byte, fb*4096)
	var mono []int16
	for {
		n, err := io.ReadFull(src, buf)
		for off := 0; off+fb <= n; off += fb {
			mono = append(mono, mixFrame(buf[off:off+fb], f))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("wav: reading data: %w", err)
		}
	}
	if f.rate != SampleRate {
		mono = resample(mono, f.rate, SampleRate)
	}
	return mono, nil
}

func mixFrame(b []byte, f wavFormat) int16 {
	bps := f.bits / 8
	var sum int64
	for c := range f.channels {
		sum += int64(sample16(b[c*bps:(c+1)*bps], f.tag))
	}
	return int16(sum / int64(f.channels))
}

func sample16(b []byte, tag uint16) int16 {
	switch tag {
	case wavALaw:
		return PCMA.decode1(b[0])
	case wavMuLaw:
		return PCMU.decode1(b[0])
	case wavFloat:
		return clamp16(float64(math.Float32frombits(binary.LittleEndian.Uint32(b))) * 32768)
	}
	switch len(b) {
	case 1:
		return int16(int(b[0])-128) << 8 // 8-bit WAV is unsigned
	case 2:
		return int16(binary.LittleEndian.Uint16(b))
	default: // 24 and 32 bit: keep the top 16 bits
		return int16(uint16(b[len(b)-2]) | uint16(b[len(b)-1])<<8)
	}
}

// WAVWriter streams 8 kHz 16-bit PCM to a WAV file. The header is rewritten
// after every second of audio and on Close, so if the process dies the file
// is still playable, losing at most the last second.
type WAVWriter struct {
	w         io.WriteSeeker
	channels  int
	data      int64 // bytes of sample data written
	sinceHdr  int64
	buf       []byte
	err       error // sticky: a failed write leaves the file in an unknown state
	closed    bool
	bytesPerS int64
}

const wavHeaderSize = 44

// NewWAVWriter writes a header to w and returns a writer for 1 (mono) or 2
// (stereo, interleaved) channels. Close finalises the header; it does not
// close w.
func NewWAVWriter(w io.WriteSeeker, channels int) (*WAVWriter, error) {
	if channels != 1 && channels != 2 {
		return nil, fmt.Errorf("wav: %d channels, want 1 or 2", channels)
	}
	ww := &WAVWriter{w: w, channels: channels, bytesPerS: int64(SampleRate * 2 * channels)}
	if _, err := w.Write(ww.header()); err != nil {
		return nil, fmt.Errorf("wav: writing header: %w", err)
	}
	return ww, nil
}

func (w *WAVWriter) header() []byte {
	h := make([]byte, wavHeaderSize)
	le := binary.LittleEndian
	copy(h[0:], "RIFF")
	le.PutUint32(h[4:], uint32(36+w.data))
	copy(h[8:], "WAVEfmt ")
	le.PutUint32(h[16:], 16)
	le.PutUint16(h[20:], wavPCM)
	le.PutUint16(h[22:], uint16(w.channels))
	le.PutUint32(h[24:], SampleRate)
	le.PutUint32(h[28:], uint32(w.bytesPerS))
	le.PutUint16(h[32:], uint16(2*w.channels))
	le.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	le.PutUint32(h[40:], uint32(w.data))
	return h
}

// Write appends samples (interleaved left, right for stereo).
func (w *WAVWriter) Write(samples []int16) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("wav: write after close")
	}
	if len(samples)%w.channels != 0 {
		return fmt.Errorf("wav: %d samples is not a whole number of %d-channel frames", len(samples), w.channels)
	}
	n := int64(len(samples)) * 2
	if w.data+n > math.MaxUint32-36 {
		w.err = errors.New("wav: file would exceed 4 GiB")
		return w.err
	}
	w.buf = w.buf[:0]
	for _, s := range samples {
		w.buf = binary.LittleEndian.AppendUint16(w.buf, uint16(s))
	}
	if _, err := w.w.Write(w.buf); err != nil {
		w.err = fmt.Errorf("wav: %w", err)
		return w.err
	}
	w.data += n
	w.sinceHdr += n
	if w.sinceHdr >= w.bytesPerS {
		return w.writeHeader()
	}
	return nil
}

func (w *WAVWriter) writeHeader() error {
	w.sinceHdr = 0
	if _, err := w.w.Seek(0, io.SeekStart); err != nil {
		w.err = fmt.Errorf("wav: %w", err)
		return w.err
	}
	if _, err := w.w.Write(w.header()); err != nil {
		w.err = fmt.Errorf("wav: %w", err)
		return w.err
	}
	if _, err := w.w.Seek(wavHeaderSize+w.data, io.SeekStart); err != nil {
		w.err = fmt.Errorf("wav: %w", err)
		return w.err
	}
	return nil
}

// Close writes the final header. It does not close the underlying writer.
func (w *WAVWriter) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	return w.writeHeader()
}

// WriteWAVFile writes mono 8 kHz PCM to path.
func WriteWAVFile(path string, pcm []int16) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w, err := NewWAVWriter(f, 1)
	if err == nil {
		err = w.Write(pcm)
	}
	if err == nil {
		err = w.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
