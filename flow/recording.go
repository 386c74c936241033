package flow

import (
	"os"
	"path/filepath"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/store"
)

// startRecording opens the call's stereo recording (caller left, what we
// send right) and its row; on failure the call goes on unrecorded, with a
// warning.
func (c *Call) startRecording() *media.Recorder {
	dir := c.ct.recordDir()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		c.warn("recording: " + err.Error())
		return nil
	}
	path := filepath.Join(dir, c.ID()+".wav")
	rec, err := media.NewRecorder(path)
	if err != nil {
		c.warn("recording: " + err.Error())
		return nil
	}
	row := store.Recording{CallID: c.ID(), Path: path, Format: "wav/pcm16/8000/stereo", Channels: 2}
	c.ct.cfg.Store.QueueCreateRecording(&row)
	c.recorder, c.recordingID = rec, row.ID
	c.log.Info("recording", "path", path)
	return rec
}

// finishRecording closes the recording after the stream stopped writing to
// it, and marks its row.
func (c *Call) finishRecording() {
	if c.recorder == nil {
		return
	}
	status, msg := store.RecordingCompleted, ""
	if err := c.recorder.Close(); err != nil {
		// A write failed (a full disk): the call went on unrecorded from
		// there, and its record says so.
		status, msg = store.RecordingFailed, err.Error()
		c.warn("recording: " + msg)
	}
	c.ct.cfg.Store.QueueFinishRecording(c.recordingID, status, msg, c.recorder.Duration())
	c.publish(EventRecordingReady, map[string]any{"recording_id": c.recordingID, "status": status, "duration_ms": c.recorder.Duration().Milliseconds()})
}

// qualityOf picks what the call record keeps of a stream's statistics.
func qualityOf(st media.Stats) *store.CallQuality {
	r := st.Receive
	return &store.CallQuality{
		PacketsLate: st.PacketsLate, Duplicates: r.Duplicates, Reordered: r.Reordered,
		ConcealedMS: r.ConcealedMS, JitterMS: r.JitterMS, DelayMSMean: r.DelayMSMean, DelayMSP95: r.DelayMSP95,
		RTTMS: st.RTTMS, RemoteLost: st.RemoteLost, RFactor: st.RFactor, MOS: st.MOS, SendLateP99MS: st.SendLateP99MS,
	}
}

// recordDir is where recordings go: Config.RecordDir, else ./recordings.
func (ct *Controller) recordDir() string {
	if ct.cfg.RecordDir == "" {
		return "recordings"
	}
	return ct.cfg.RecordDir
}
