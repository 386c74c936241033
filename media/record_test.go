package media_test

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
)

// readStereo parses the canonical 44-byte header our WAVWriter writes and
// returns the two channels, checking the header against the file.
func readStereo(t *testing.T, path string) (left, right []int16) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 44 || string(b[:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" {
		t.Fatalf("%s: not a canonical WAV header", path)
	}
	le := binary.LittleEndian
	if ch, rate, bits := le.Uint16(b[22:]), le.Uint32(b[24:]), le.Uint16(b[34:]); ch != 2 || rate != 8000 || bits != 16 {
		t.Fatalf("%s: %d channels, %d Hz, %d bits", path, ch, rate, bits)
	}
	n := int(le.Uint32(b[40:]))
	if n > len(b)-44 || int(le.Uint32(b[4:])) != 36+n {
		t.Fatalf("%s: header says %d data bytes, file has %d", path, n, len(b)-44)
	}
	for i := 44; i+4 <= 44+n; i += 4 {
		left = append(left, int16(le.Uint16(b[i:])))
		right = append(right, int16(le.Uint16(b[i+2:])))
	}
	return left, right
}

func TestRecorderTimeline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "call.wav")
	r, err := media.NewRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b := media.Tone(1000, time.Second, 0.5), media.Tone(400, time.Second, 0.5)
	// One second of both, then the right side goes quiet for two seconds
	// (its producer writes nothing), then speaks again.
	for i := 0; i < len(a); i += media.FrameSamples {
		if err := r.WriteFrame(a[i:i+media.FrameSamples], b[i:i+media.FrameSamples]); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2*len(a); i += media.FrameSamples {
		r.WriteLeft(a[i%len(a) : i%len(a)+media.FrameSamples])
	}
	r.WriteRight(b[:4000])
	// Before Close, the file is already playable up to the last flush.
	if l, _ := readStereo(t, path); len(l) < 2*8000 {
		t.Errorf("only %d samples on disk before Close", len(l))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := r.WriteLeft(a); !errors.Is(err, media.ErrRecorderClosed) {
		t.Errorf("write after Close: %v", err)
	}
	left, right := readStereo(t, path)
	if len(left) != 3*8000 || r.Duration() != 3*time.Second {
		t.Fatalf("%d samples, duration %v; want 3 s", len(left), r.Duration())
	}
	sec := func(ch []int16, s float64) []int16 { return ch[int(s*8000) : int(s*8000)+1600] }
	if media.ToneLevel(sec(left, 0.2), 1000) < 0.4 || media.ToneLevel(sec(right, 0.2), 400) < 0.4 {
		t.Error("first second: tones not on their sides")
	}
	if media.ToneLevel(sec(left, 1.5), 1000) < 0.4 || media.RMS(sec(right, 1.5)) != 0 {
		t.Error("the quiet right side was not silence on the timeline")
	}
	// The right side's late 0.5 s lines up with the end of the left's 3 s.
	if media.ToneLevel(sec(right, 2.6), 400) < 0.4 || media.RMS(sec(right, 2.1)) != 0 {
		t.Error("the right side's return is not at the end of the timeline")
	}
}

// TestRecorderCrash: a process that dies without Close leaves a WAV whose
// header matches the data written up to the last flush.
func TestRecorderCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.wav")
	r, err := media.NewRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	tone := media.Tone(1000, 1500*time.Millisecond, 0.5)
	for i := 0; i < len(tone); i += media.FrameSamples {
		r.WriteFrame(tone[i:i+media.FrameSamples], nil)
	}
	// No Close: read what a crash would leave.
	left, right := readStereo(t, path)
	if len(left) < 1400*8 || len(left) > 1500*8 {
		t.Errorf("%d ms on disk after writing 1500 ms without Close; want all but the last 200 ms at most", len(left)/8)
	}
	if media.ToneLevel(left[:8000], 1000) < 0.4 || media.RMS(right) != 0 {
		t.Error("content wrong")
	}
	// ReadWAV (what a player sees) agrees.
	f, _ := os.Open(path)
	defer f.Close()
	if mono, err := media.ReadWAV(f); err != nil || len(mono) != len(left) {
		t.Errorf("ReadWAV: %d samples, %v", len(mono), err)
	}
	r.Close()
	if _, err := media.NewRecorder(filepath.Join(t.TempDir(), "no", "such", "dir.wav")); err == nil {
		t.Error("recorder in a missing directory")
	}
}

// TestStreamRecording: a stream with a Recorder puts what it heard from its
// peer on the left and what it sent on the right, DTMF included, on one
// timeline.
func TestStreamRecording(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stream.wav")
	rec, err := media.NewRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	ca, cb := rtptest.Listen(t), rtptest.Listen(t)
	a, err := media.NewStream(media.StreamConfig{Conn: ca, Remote: cb.LocalAddr().(*net.UDPAddr), Codec: media.PCMU, DTMFPayloadType: 101, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	a.Start(t.Context())
	b := rtptest.NewStream(t, cb, ca.LocalAddr().(*net.UDPAddr), media.PCMU, 101)
	b.Enqueue(media.Tone(1000, 3*time.Second, 0.5)) // the caller: 1 kHz
	<-a.Enqueue(media.Tone(400, time.Second, 0.5))  // our side: 400 Hz
	done, err := a.SendDTMF('5', 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	time.Sleep(200 * time.Millisecond)
	a.Close()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	left, right := readStereo(t, path)
	if len(left) < 8000 {
		t.Fatalf("%d samples", len(left))
	}
	var callerFrames, oursFrames, dtmfFrames, crossed int
	for i := 0; i+media.FrameSamples <= len(left); i += media.FrameSamples {
		l, r := left[i:i+media.FrameSamples], right[i:i+media.FrameSamples]
		if media.ToneLevel(l, 1000) > 0.3 {
			callerFrames++
		}
		if media.ToneLevel(r, 400) > 0.3 {
			oursFrames++
		}
		if media.ToneLevel(r, 770) > 0.15 && media.ToneLevel(r, 1336) > 0.15 { // '5'
			dtmfFrames++
		}
		if media.ToneLevel(l, 400) > 0.1 || media.ToneLevel(r, 1000) > 0.1 {
			crossed++
		}
	}
	t.Logf("%d frames: caller tone %d, our tone %d, dtmf %d", len(left)/media.FrameSamples, callerFrames, oursFrames, dtmfFrames)
	if oursFrames < 45 || oursFrames > 51 || dtmfFrames < 8 || callerFrames < 40 || crossed != 0 {
		t.Errorf("caller %d, ours %d (want ~50), dtmf %d (want ~10), crossed %d", callerFrames, oursFrames, dtmfFrames, crossed)
	}
}

func TestLatenessHistogram(t *testing.T) {
	var a, b media.LatenessHistogram
	for range 98 {
		a = media.AddLateness(a, 300*time.Microsecond)
	}
	b = media.AddLateness(b, 5*time.Millisecond)
	b = media.AddLateness(b, 40*time.Millisecond)
	a.Merge(b)
	if a.Count != 100 || a.Max != 40*time.Millisecond {
		t.Fatalf("%+v", a)
	}
	if q := a.Quantile(0.5); q != 400*time.Microsecond {
		t.Errorf("p50 %v", q)
	}
	if q := a.Quantile(0.99); q != 5100*time.Microsecond {
		t.Errorf("p99 %v", q)
	}
	if q := a.Quantile(1); q != 40*time.Millisecond {
		t.Errorf("p100 %v", q)
	}
}
