package media

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// makeWAV builds a WAV file by hand so the reader is tested against bytes it
// did not write itself.
func makeWAV(tag uint16, channels, rate, bits int, data []byte) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	binary.Write(&b, le, uint32(36+len(data)))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, le, uint32(16))
	binary.Write(&b, le, tag)
	binary.Write(&b, le, uint16(channels))
	binary.Write(&b, le, uint32(rate))
	binary.Write(&b, le, uint32(rate*channels*bits/8))
	binary.Write(&b, le, uint16(channels*bits/8))
	binary.Write(&b, le, uint16(bits))
	b.WriteString("data")
	binary.Write(&b, le, uint32(len(data)))
	b.Write(data)
	return b.Bytes()
}

// sine16 returns n frames of 16-bit little-endian PCM at rate, one sine per
// channel (freqs[c]).
func sine16(rate int, d time.Duration, amp float64, freqs ...float64) []byte {
	n := int(d.Seconds() * float64(rate))
	out := make([]byte, 0, n*2*len(freqs))
	for i := range n {
		for _, f := range freqs {
			v := int16(math.Round(amp * 32767 * math.Sin(2*math.Pi*f*float64(i)/float64(rate))))
			out = binary.LittleEndian.AppendUint16(out, uint16(v))
		}
	}
	return out
}

func TestWAVRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.wav")
	tone := Tone(1000, 500*time.Millisecond, 0.5)
	tone = append(tone, -32768, 32767, 0, 1)
	if err := WriteWAVFile(path, tone); err != nil {
		t.Fatal(err)
	}
	got, err := ReadWAVFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slicesEqual(got, tone) {
		t.Fatalf("round trip changed the audio (len %d vs %d)", len(got), len(tone))
	}
}

func TestWAVStereoWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.wav")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWAVWriter(f, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write([]int16{1, 2, 3}); err == nil {
		t.Error("odd stereo write accepted")
	}
	left, right := Tone(500, time.Second, 0.4), Tone(1500, time.Second, 0.4)
	st := make([]int16, 0, 2*len(left))
	for i := range left {
		st = append(st, left[i], right[i])
	}
	if err := w.Write(st); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadWAVFile(path) // mixed down: both tones at half level
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(left) {
		t.Fatalf("len %d, want %d", len(got), len(left))
	}
	for _, f := range []float64{500, 1500} {
		if l := ToneLevel(got, f); math.Abs(l-0.2) > 0.01 {
			t.Errorf("level at %v = %.3f, want 0.2", f, l)
		}
	}
	if _, err := NewWAVWriter(f, 3); err == nil {
		t.Error("3 channels accepted")
	}
}

func TestWAVResample(t *testing.T) {
	for _, tc := range []struct {
		rate, channels int
	}{
		{16000, 1}, {44100, 2}, {11025, 1}, {22050, 2}, {48000, 1}, {6000, 1},
		{44101, 1}, // odd rate: no precomputed filter bank
	} {
		freqs := []float64{1000, 1000}[:tc.channels]
		data := makeWAV(wavPCM, tc.channels, tc.rate, 16, sine16(tc.rate, time.Second, 0.5, freqs...))
		got, err := ReadWAV(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%d Hz: %v", tc.rate, err)
		}
		if len(got) < 7990 || len(got) > 8000 {
			t.Errorf("%d Hz: %d samples, want ~8000", tc.rate, len(got))
		}
		mid := got[1000:7000] // away from the filter's edge ramps
		if f := DominantFrequency(mid, 300, 3400, 5); f != 1000 {
			t.Errorf("%d Hz: dominant %v, want 1000", tc.rate, f)
		}
		if l := ToneLevel(mid, 1000); math.Abs(l-0.5) > 0.02 {
			t.Errorf("%d Hz: level %.3f, want 0.5", tc.rate, l)
		}
	}
	// Anti-aliasing: a 5 kHz tone at 16 kHz must not fold down to 3 kHz.
	data := makeWAV(wavPCM, 1, 16000, 16, sine16(16000, time.Second, 0.5, 5000))
	got, err := ReadWAV(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if l := ToneLevel(got[1000:7000], 3000); l > 0.0005 { // < -60 dB re the input
		t.Errorf("alias at 3 kHz: level %.5f", l)
	}
}

func TestWAVEncodings(t *testing.T) {
	tone := Tone(1000, 200*time.Millisecond, 0.5)
	u8 := make([]byte, len(tone))
	for i, s := range tone {
		u8[i] = byte(int(s>>8) + 128)
	}
	s24, f32 := []byte{}, []byte{}
	for _, s := range tone {
		s24 = append(s24, 0x7f, byte(s), byte(s>>8))
		f32 = binary.LittleEndian.AppendUint32(f32, math.Float32bits(float32(s)/32768))
	}
	for name, data := range map[string][]byte{
		"8-bit":  makeWAV(wavPCM, 1, 8000, 8, u8),
		"24-bit": makeWAV(wavPCM, 1, 8000, 24, s24),
		"float":  makeWAV(wavFloat, 1, 8000, 32, f32),
		"ulaw":   makeWAV(wavMuLaw, 1, 8000, 8, PCMU.Encode(nil, tone)),
		"alaw":   makeWAV(wavALaw, 1, 8000, 8, PCMA.Encode(nil, tone)),
	} {
		got, err := ReadWAV(bytes.NewReader(data))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(got) != len(tone) {
			t.Errorf("%s: len %d", name, len(got))
		}
		if l := ToneLevel(got, 1000); math.Abs(l-0.5) > 0.02 {
			t.Errorf("%s: level %.3f", name, l)
		}
	}
}

func TestWAVBadInput(t *testing.T) {
	good := makeWAV(wavPCM, 1, 8000, 16, sine16(8000, 100*time.Millisecond, 0.5, 1000))
	hdr := func(mutate func(b []byte)) []byte {
		b := bytes.Clone(good)
		mutate(b)
		return b
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"empty":      {nil, "RIFF header"},
		"not riff":   {[]byte("ID3\x04 this is an mp3 file....."), "not a RIFF/WAVE"},
		"rifx":       {hdr(func(b []byte) { copy(b, "RIFX") }), "big-endian"},
		"float64":    {makeWAV(wavFloat, 1, 8000, 64, make([]byte, 64)), "64-bit float"},
		"mp3":        {makeWAV(0x55, 1, 8000, 0, make([]byte, 64)), "MP3"},
		"adpcm":      {makeWAV(0x11, 1, 8000, 4, make([]byte, 64)), "IMA ADPCM"},
		"12-bit":     {makeWAV(wavPCM, 1, 8000, 12, make([]byte, 64)), "12-bit PCM"},
		"0 channels": {hdr(func(b []byte) { b[22] = 0 }), "0 channels"},
		"rate 0":     {hdr(func(b []byte) { clear(b[24:28]) }), "sample rate 0"},
		"short fmt":  {hdr(func(b []byte) { b[16] = 8 }), "fmt chunk too short"},
		"huge fmt":   {hdr(func(b []byte) { copy(b[16:20], []byte{0xf0, 0xff, 0xff, 0xff}) }), "fmt chunk"},
		"no fmt":     {hdr(func(b []byte) { copy(b[12:16], "junk") }), "before fmt"},
		"no data":    {good[:36], "no data chunk"},
		"data first": {append([]byte("RIFF\x00\x00\x00\x00WAVEdata\x04\x00\x00\x00"), 1, 2, 3, 4), "before fmt"},
	} {
		_, err := ReadWAV(bytes.NewReader(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.want)
		}
	}
	// Every truncation: an error while the header is incomplete, the samples
	// that are there afterwards, never a panic.
	for i := range good {
		got, err := ReadWAV(bytes.NewReader(good[:i]))
		if i < 44 && err == nil {
			t.Errorf("truncated to %d bytes: no error", i)
		}
		if i >= 44 && (err != nil || len(got) != (i-44)/2) {
			t.Errorf("truncated to %d bytes: %d samples, %v", i, len(got), err)
		}
	}
	// A data size of 4 GiB on a tiny file must not allocate 4 GiB.
	huge := hdr(func(b []byte) { copy(b[40:44], []byte{0xfe, 0xff, 0xff, 0xff}) })
	if got, err := ReadWAV(bytes.NewReader(huge)); err != nil || len(got) != 800 {
		t.Errorf("huge data size: %d samples, %v", len(got), err)
	}
}

func TestWAVWriterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.wav")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWAVWriter(f, 1)
	if err != nil {
		t.Fatal(err)
	}
	tone := Tone(440, 2500*time.Millisecond, 0.3)
	for i := 0; i < len(tone); i += FrameSamples {
		if err := w.Write(tone[i : i+FrameSamples]); err != nil {
			t.Fatal(err)
		}
	}
	// No Close: as if the process died. The file must still be a valid WAV.
	got, err := ReadWAVFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := len(got) - len(tone); d > 0 || d < -SampleRate {
		t.Errorf("read %d samples of %d written", len(got), len(tone))
	}
	if !slicesEqual(got, tone[:len(got)]) {
		t.Error("recovered audio differs")
	}
}

func slicesEqual(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzReadWAV(f *testing.F) {
	f.Add(makeWAV(wavPCM, 2, 44100, 16, sine16(44100, 10*time.Millisecond, 0.5, 1000, 500)))
	f.Add(makeWAV(wavMuLaw, 1, 8000, 8, []byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadWAV(bytes.NewReader(b))
	})
}
