package media

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A disk that fills mid-recording: the write that hits ENOSPC fails, every
// later write fails with the same (sticky) error instead of writing around
// a hole, Close reports it, Duration says what the file holds, and the
// file is a playable WAV of the audio written before the disk filled.
func TestRecorderDiskFull(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	path := filepath.Join(t.TempDir(), "call.wav")
	r, err := NewRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	left := Tone(1000, time.Second, 0.5)
	for i := 0; i < len(left); i += FrameSamples {
		if err := r.WriteFrame(left[i:i+FrameSamples], nil); err != nil {
			t.Fatal(err)
		}
	}
	// From here on the file's writes go to a device that is always full.
	r.mu.Lock()
	r.w.w = full
	r.mu.Unlock()
	var failed error
	for i := 0; i < len(left); i += FrameSamples {
		if err := r.WriteFrame(nil, left[i:i+FrameSamples]); err != nil {
			if failed == nil {
				failed = err
			} else if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("a later write: %v, want the same ENOSPC", err)
			}
		}
	}
	if !errors.Is(failed, syscall.ENOSPC) {
		t.Fatalf("writes onto a full disk: %v, want ENOSPC", failed)
	}
	if err := r.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close: %v, want ENOSPC", err)
	}
	if d := r.Duration(); d != time.Second {
		t.Fatalf("Duration %v, want the 1s the file holds", d)
	}
	pcm, err := ReadWAVFile(path)
	if err != nil {
		t.Fatalf("the partial recording does not read: %v", err)
	}
	if len(pcm) != SampleRate {
		t.Fatalf("%d samples in the file, want %d", len(pcm), SampleRate)
	}
	if lvl := ToneLevel(pcm[SampleRate/2:], 1000); lvl < 0.1 {
		t.Fatalf("the caller's tone is not in the file: level %.3f", lvl)
	}
}
