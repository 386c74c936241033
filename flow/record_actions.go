package flow

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/vad"
	"github.com/voxbridge/voxbridge/store"
)

// Variables recording_start sets when its recording ends.
const (
	VarRecordingID         = "recording.id"
	VarRecordingEndReason  = "recording.end_reason" // key, silence, max_duration, stop, hangup
	VarRecordingEndKey     = "recording.end_key"    // the key that ended it, when one did
	VarRecordingDurationMS = "recording.duration_ms"
)

// Why a recording ended.
const (
	RecordingEndKey         = "key"
	RecordingEndSilence     = "silence"
	RecordingEndMaxDuration = "max_duration"
	RecordingEndStop        = "stop"
	RecordingEndHangup      = "hangup"
)

// Recording limits.
const (
	DefaultMaxRecording = time.Hour
	maxRecordingS       = 4 * 3600
	maxSilenceS         = 600
)

// RecordingStartOption records the call from now on: caller left, what we
// send right (or both mixed to mono).
//
// With end_on_key or end_on_silence_s the action waits until the recording
// ends (a voicemail): by the key, by that much silence from the caller, by
// max_duration_s or by hangup, and the flow continues after it. Without
// them the recording runs in the background while the flow goes on, until
// recording_stop, max_duration_s or hangup.
type RecordingStartOption struct {
	// Stereo (default true) keeps the two sides apart; false mixes them
	// into one channel.
	Stereo *bool `json:"stereo,omitempty"`
	// MaxDurationS bounds the recording (default 3600).
	MaxDurationS int `json:"max_duration_s,omitempty"`
	// EndOnSilenceS ends it after this many seconds without speech from
	// the caller (0: never).
	EndOnSilenceS int `json:"end_on_silence_s,omitempty"`
	// EndOnKey is a set of keys that end it, e.g. "#" or "#*"; the key is
	// not kept for a later digits_receive.
	EndOnKey string `json:"end_on_key,omitempty"`
	// Beep plays a 1 kHz beep before recording starts.
	Beep bool `json:"beep,omitempty"`
}

type recordingPlan struct {
	stereo  bool
	maxDur  time.Duration
	silence time.Duration
	keys    string
	beep    bool
}

func init() {
	actionTypes["recording_start"] = define(compileRecordingStart)
	actionTypes["recording_stop"] = define(func(*struct{}) (step, error) {
		return seq(30*time.Second, func(ctx context.Context, r *run) (string, error) { return "", r.stopRecording(ctx) }), nil
	})
}

func compileRecordingStart(o *RecordingStartOption) (step, error) {
	p := recordingPlan{stereo: o.Stereo == nil || *o.Stereo, maxDur: DefaultMaxRecording, beep: o.Beep, keys: o.EndOnKey}
	if o.MaxDurationS < 0 || o.MaxDurationS > maxRecordingS {
		return step{}, badField("max_duration_s", "must be between 0 and %d", maxRecordingS)
	}
	if o.MaxDurationS > 0 {
		p.maxDur = time.Duration(o.MaxDurationS) * time.Second
	}
	if o.EndOnSilenceS < 0 || o.EndOnSilenceS > maxSilenceS {
		return step{}, badField("end_on_silence_s", "must be between 0 and %d", maxSilenceS)
	}
	p.silence = time.Duration(o.EndOnSilenceS) * time.Second
	for _, k := range o.EndOnKey {
		if !strings.ContainsRune(validDigits, k) {
			return step{}, badField("end_on_key", "%q is not a DTMF key", k)
		}
	}
	if p.keys != "" || p.silence > 0 {
		return seq(p.maxDur+30*time.Second, func(ctx context.Context, r *run) (string, error) {
			return "", r.recordUntilEnd(ctx, p)
		}), nil
	}
	return seq(30*time.Second, func(ctx context.Context, r *run) (string, error) {
		_, err := r.startRecording(ctx, p)
		return "", err
	}), nil
}

// midRecording is a recording a flow started. Its goroutine owns the file:
// it ends it on stop, at the maximum duration or when the call ends.
type midRecording struct {
	id   string
	stop chan string // a reason; buffered so a stop never blocks
	done chan struct{}
}

// startRecording opens a recording file and its row and hands the file to
// the stream's clock.
func (r *run) startRecording(ctx context.Context, p recordingPlan) (*midRecording, error) {
	c := r.c
	if c.stream == nil {
		return nil, errNotAnswered
	}
	if m := r.recording; m != nil {
		select {
		case <-m.done:
		default:
			return nil, fmt.Errorf("recording %s is still running: stop it first", m.id)
		}
	}
	if p.beep {
		if err := c.play(ctx, media.Tone(1000, 300*time.Millisecond, 0.3)); err != nil {
			return nil, err
		}
	}
	dir := c.ct.recordDir()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	name := c.ID() + "-" + uuid.NewString()[:8]
	path := filepath.Join(dir, name+".wav")
	writing := path
	row := store.Recording{CallID: c.ID(), Path: path, Format: "wav/pcm16/8000/stereo", Channels: 2}
	if !p.stereo {
		// Written in stereo on the clock, mixed down when it ends.
		writing = filepath.Join(dir, name+".stereo.wav")
		row.Format, row.Channels = "wav/pcm16/8000/mono", 1
	}
	rec, err := media.NewRecorder(writing)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	c.ct.cfg.Store.QueueCreateRecording(&row)
	m := &midRecording{id: row.ID, stop: make(chan string, 1), done: make(chan struct{})}
	r.recording = m
	c.setVar(VarRecordingID, row.ID)
	if old := c.stream.SetRecorder(rec); old != nil {
		old.Close() // unreachable while only this file sets it
	}
	c.log.Info("recording started", "recording_id", row.ID, "path", path, "stereo", p.stereo)

	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTimer(p.maxDur)
		defer t.Stop()
		var reason string
		select {
		case reason = <-m.stop:
		case <-t.C:
			reason = RecordingEndMaxDuration
		case <-c.ctx.Done():
			reason = RecordingEndHangup
		}
		c.stream.SetRecorder(nil)
		c.endRecording(m, rec, row.ID, path, writing, reason)
	}()
	return m, nil
}

// endRecording closes the file (mixing it to mono when asked), marks the
// row and leaves the result in variables.
func (c *Call) endRecording(m *midRecording, rec *media.Recorder, id, path, writing, reason string) {
	status, msg := store.RecordingCompleted, ""
	err := rec.Close()
	dur := rec.Duration()
	if err == nil && writing != path {
		err = mixToMono(writing, path)
	}
	if err != nil {
		status, msg = store.RecordingFailed, err.Error()
		c.warn("recording: " + err.Error())
	}
	c.ct.cfg.Store.QueueFinishRecording(id, status, msg, dur)
	c.setVar(VarRecordingEndReason, reason)
	c.setVar(VarRecordingDurationMS, strconv.FormatInt(dur.Milliseconds(), 10))
	c.log.Info("recording ended", "recording_id", id, "reason", reason, "duration", dur)
	c.publish(EventRecordingReady, map[string]any{"recording_id": id, "status": status, "duration_ms": dur.Milliseconds(), "end_reason": reason})
	close(m.done)
}

// mixToMono rewrites the stereo file src as a mono mix at dst.
func mixToMono(src, dst string) error {
	pcm, err := media.ReadWAVFile(src) // averages the channels
	if err != nil {
		return fmt.Errorf("mix to mono: %w", err)
	}
	if err := media.WriteWAVFile(dst, pcm); err != nil {
		return fmt.Errorf("mix to mono: %w", err)
	}
	return os.Remove(src)
}

// end asks m's goroutine to end the recording and waits until it has.
func (m *midRecording) end(ctx context.Context, reason string) error {
	select {
	case m.stop <- reason:
	default: // already asked
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopRecording is recording_stop.
func (r *run) stopRecording(ctx context.Context) error {
	m := r.recording
	if m == nil {
		return errors.New("no recording is running")
	}
	select {
	case <-m.done:
		return nil // it ended on its own (max duration)
	default:
	}
	r.recording = nil
	return m.end(ctx, RecordingEndStop)
}

// recordUntilEnd records until one of p's end conditions, the maximum
// duration or hangup.
func (r *run) recordUntilEnd(ctx context.Context, p recordingPlan) error {
	c := r.c
	m, err := r.startRecording(ctx, p)
	if err != nil {
		return err
	}
	defer func() { r.recording = nil }()
	var frames <-chan []int16
	var det *vad.Detector
	if p.silence > 0 {
		frames = c.stream.Frames()
		drainFrames(frames) // audio from before the recording is not silence or speech of it
		det = vad.New(vad.Config{})
	}
	var digits <-chan rune
	if p.keys != "" {
		digits = c.digits
		for len(c.digits) > 0 {
			<-c.digits // keys pressed before the recording did not end it
		}
	}
	var quiet time.Duration
	for {
		select {
		case d := <-digits:
			if strings.ContainsRune(p.keys, d) {
				c.setVar(VarRecordingEndKey, string(d))
				return m.end(ctx, RecordingEndKey)
			}
		case f, ok := <-frames:
			if !ok {
				frames = nil
				continue
			}
			det.Process(f)
			if det.Speaking() {
				quiet = 0
				continue
			}
			if quiet += media.FrameDuration; quiet >= p.silence {
				return m.end(ctx, RecordingEndSilence)
			}
		case <-m.done:
			return nil
		case <-ctx.Done():
			// The call ended: its goroutine finishes the file.
			return ctx.Err()
		}
	}
}
