package media

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Recorder buffering and alignment.
const (
	recFlushSamples = SampleRate / 5 // write (and fix the header) every 200 ms of audio
	recMaxSkew      = SampleRate / 2 // a side this far behind was quiet: pad it with silence
)

// Recorder writes a call as a stereo WAV file, 8 kHz 16-bit: the caller on
// the left, the far side (prompts, agent, the other leg) on the right, on
// one timeline. It writes as the call goes, and the header is rewritten
// with every 200 ms flush, so a crash leaves a playable file missing at
// most that much.
//
// Two ways to feed it:
//   - StreamConfig.Recorder: the stream writes one frame per 20 ms tick,
//     what it played out from the peer on the left and what it sent on
//     the right, so both sides share the stream's clock exactly.
//   - WriteLeft / WriteRight from two producers with their own 20 ms
//     clocks (two bridged streams). The sides are interleaved as both
//     arrive; when one falls more than 500 ms behind it is taken to have
//     been quiet and padded with silence.
//
// It is safe for concurrent use. The owner closes it after the producers
// stop; Close pads the shorter side and finalises the file.
type Recorder struct {
	mu          sync.Mutex
	path        string
	f           *os.File
	w           *WAVWriter
	left, right []int16 // pending, not yet interleaved
	buf         []int16 // interleaved, not yet written
	frames      int64   // stereo sample frames interleaved so far
	err         error   // sticky
	closed      bool
}

// ErrRecorderClosed is returned by writes after Close.
var ErrRecorderClosed = errors.New("media: recorder closed")

// NewRecorder creates (truncating) a stereo WAV file at path.
func NewRecorder(path string) (*Recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("media: recording: %w", err)
	}
	w, err := NewWAVWriter(f, 2)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("media: recording %s: %w", path, err)
	}
	return &Recorder{path: path, f: f, w: w, buf: make([]int16, 0, 2*recFlushSamples)}, nil
}

// Path is the file being written.
func (r *Recorder) Path() string { return r.path }

// Duration is the length of the timeline recorded so far; once a write
// has failed (a full disk), the length the file holds, which is what the
// recording's row should promise.
func (r *Recorder) Duration() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	frames := r.frames
	if r.err != nil {
		frames = r.w.data / int64(2*r.w.channels)
	}
	return time.Duration(frames) * time.Second / SampleRate
}

// WriteFrame appends the same length of audio to both sides at once; a nil
// side is silence. This is what a Stream uses.
func (r *Recorder) WriteFrame(left, right []int16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	n := max(len(left), len(right))
	r.left = appendPadded(r.left, left, n)
	r.right = appendPadded(r.right, right, n)
	return r.interleave()
}

// WriteLeft appends caller audio.
func (r *Recorder) WriteLeft(pcm []int16) error { return r.writeSide(&r.left, &r.right, pcm) }

// WriteRight appends far-side audio.
func (r *Recorder) WriteRight(pcm []int16) error { return r.writeSide(&r.right, &r.left, pcm) }

func (r *Recorder) writeSide(side, other *[]int16, pcm []int16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	*side = append(*side, pcm...)
	if ahead := len(*side) - len(*other); ahead > recMaxSkew {
		*other = appendPadded(*other, nil, ahead-recMaxSkew)
	}
	return r.interleave()
}

func appendPadded(dst, src []int16, n int) []int16 {
	dst = append(dst, src...)
	for range n - len(src) {
		dst = append(dst, 0)
	}
	return dst
}

func (r *Recorder) usable() error {
	if r.closed {
		return ErrRecorderClosed
	}
	return r.err
}

// interleave moves what both sides have into buf and flushes full blocks.
func (r *Recorder) interleave() error {
	n := min(len(r.left), len(r.right))
	for i := range n {
		r.buf = append(r.buf, r.left[i], r.right[i])
	}
	r.frames += int64(n)
	r.left = r.left[:copy(r.left, r.left[n:])]
	r.right = r.right[:copy(r.right, r.right[n:])]
	if len(r.buf) >= 2*recFlushSamples {
		return r.flush()
	}
	return nil
}

func (r *Recorder) flush() error {
	if len(r.buf) == 0 {
		return nil
	}
	err := r.w.Write(r.buf)
	r.buf = r.buf[:0]
	if err == nil {
		err = r.w.writeHeader()
	}
	if err != nil {
		r.err = fmt.Errorf("media: recording %s: %w", r.path, err)
	}
	return r.err
}

// Close pads the shorter side with silence, writes what is pending,
// finalises the header and closes the file. It is idempotent.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	r.closed = true
	if r.err == nil {
		n := max(len(r.left), len(r.right))
		r.left = appendPadded(r.left, nil, n-len(r.left))
		r.right = appendPadded(r.right, nil, n-len(r.right))
		r.interleave()
		r.flush()
	}
	if err := r.w.Close(); err != nil && r.err == nil {
		r.err = fmt.Errorf("media: recording %s: %w", r.path, err)
	}
	if err := r.f.Close(); err != nil && r.err == nil {
		r.err = fmt.Errorf("media: recording %s: %w", r.path, err)
	}
	return r.err
}
