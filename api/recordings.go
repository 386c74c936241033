package api

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/store"
)

// recordingView is a recording as answered: where to download it instead
// of the server path, and the file's size (null when the file is gone).
type recordingView struct {
	store.Recording
	SizeBytes    *int64 `json:"size_bytes"`
	DownloadPath string `json:"download_path"`
}

func viewRecording(r store.Recording) recordingView {
	v := recordingView{Recording: r, DownloadPath: "/v1/recordings/" + r.ID}
	if fi, err := os.Stat(r.Path); err == nil && fi.Mode().IsRegular() {
		n := fi.Size()
		v.SizeBytes = &n
	}
	return v
}

func viewRecordings(rs []store.Recording) []recordingView {
	out := make([]recordingView, len(rs))
	for i, r := range rs {
		out[i] = viewRecording(r)
	}
	return out
}

// callRecordings reads a call's recordings, answering 404 or 500 itself
// (ok false) when the call is unknown or the store fails.
func (s *Server) callRecordings(w http.ResponseWriter, r *http.Request) ([]store.Recording, bool) {
	id := r.PathValue("id")
	if _, err := s.store.GetCall(r.Context(), id); err != nil {
		s.callLookupError(w, err)
		return nil, false
	}
	recs, err := s.store.ListRecordings(r.Context(), id)
	if err != nil {
		s.log.Error("list recordings", "call_id", id, "err", err)
		internalError(w)
		return nil, false
	}
	return recs, true
}

func (s *Server) callLookupError(w http.ResponseWriter, err error) {
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "call not found")
		return
	}
	s.log.Error("get call", "err", err)
	internalError(w)
}

// listCallRecordings answers every recording of a call, oldest first; a
// call has few, so the list is one page.
func (s *Server) listCallRecordings(w http.ResponseWriter, r *http.Request) {
	recs, ok := s.callRecordings(w, r)
	if ok {
		writeJSON(w, http.StatusOK, pageBody{Result: viewRecordings(recs)})
	}
}

// mainRecording is the recording GET /v1/calls/{id}/recording serves: the
// completed one that ended last (the whole-call recording ends at hangup,
// after any segment a record action made). busy is true while one is still
// being written, since the call's recording is not final yet.
func mainRecording(recs []store.Recording) (main *store.Recording, busy bool) {
	for i := range recs {
		rec := &recs[i]
		switch rec.Status {
		case store.RecordingActive:
			busy = true
		case store.RecordingCompleted:
			if main == nil || endOf(rec).After(endOf(main)) ||
				(endOf(rec).Equal(endOf(main)) && rec.DurationMS > main.DurationMS) {
				main = rec
			}
		}
	}
	return main, busy
}

func endOf(r *store.Recording) time.Time {
	if r.TMEnd == nil {
		return r.TMStart
	}
	return *r.TMEnd
}

func (s *Server) getCallRecording(w http.ResponseWriter, r *http.Request) {
	recs, ok := s.callRecordings(w, r)
	if !ok {
		return
	}
	main, busy := mainRecording(recs)
	switch {
	case busy:
		writeError(w, http.StatusConflict, "conflict", "the call is still being recorded; retry once it has ended")
	case main == nil && len(recs) > 0:
		writeError(w, http.StatusNotFound, "not_found", "the call has no completed recording; see GET /v1/calls/{id}/recordings")
	case main == nil:
		writeError(w, http.StatusNotFound, "not_found", "the call has no recording")
	default:
		s.serveRecording(w, r, main)
	}
}

func (s *Server) getRecording(w http.ResponseWriter, r *http.Request) {
	rec, err := s.store.GetRecording(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "recording not found")
		return
	}
	if err != nil {
		s.log.Error("get recording", "err", err)
		internalError(w)
		return
	}
	if rec.Status == store.RecordingActive {
		writeError(w, http.StatusConflict, "conflict", "the recording is still being written; retry once it has ended")
		return
	}
	// A failed recording (the process died, a write failed) is served too:
	// the writer keeps the header valid, so what was written plays.
	s.serveRecording(w, r, rec)
}

func (s *Server) serveRecording(w http.ResponseWriter, r *http.Request, rec *store.Recording) {
	s.serveFile(w, r, rec.Path, "audio/wav", rec.ID+".wav", "recording "+rec.ID)
}

// getCallCapture serves the pcap the capture directory holds for a call
// (flow names it <call id>.pcap).
func (s *Server) getCallCapture(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c, err := s.store.GetCall(r.Context(), id)
	if err != nil {
		s.callLookupError(w, err)
		return
	}
	if s.cfg.CaptureDir == "" {
		writeError(w, http.StatusNotFound, "not_found", "packet capture is off on this server (serve --capture-dir)")
		return
	}
	// Call ids are ours (UUIDs), but a file name is built from one: refuse
	// anything that could leave the directory.
	if c.ID == "" || c.ID == "." || c.ID == ".." || strings.ContainsAny(c.ID, `/\`) {
		writeError(w, http.StatusNotFound, "not_found", "the call has no capture")
		return
	}
	if c.Status != store.StatusHangup {
		writeError(w, http.StatusConflict, "conflict", "the call is still being captured; retry once it has ended")
		return
	}
	s.serveFile(w, r, filepath.Join(s.cfg.CaptureDir, c.ID+".pcap"), "application/vnd.tcpdump.pcap", c.ID+".pcap", "capture of call "+c.ID)
}

// serveFile answers a file with Range support (http.ServeContent); a
// missing file is 404 with what, and an unsatisfiable range is our JSON
// 416.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, path, contentType, name, what string) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		writeError(w, http.StatusNotFound, "not_found", "the file of the "+what+" is gone")
		return
	}
	if err != nil {
		s.log.Error("open "+what, "path", path, "err", err)
		internalError(w)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.log.Error("stat "+what, "path", path, "err", err)
		internalError(w)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	http.ServeContent(&rangeErrorWriter{ResponseWriter: w}, r, name, fi.ModTime(), f)
}

// rangeErrorWriter turns ServeContent's plain-text 416 into the API's JSON
// error shape; everything else passes through.
type rangeErrorWriter struct {
	http.ResponseWriter
	swallow bool
}

func (w *rangeErrorWriter) WriteHeader(code int) {
	if code != http.StatusRequestedRangeNotSatisfiable {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.swallow = true
	h := w.Header()
	h.Del("Content-Disposition")
	h.Del("X-Content-Type-Options")
	writeError(w.ResponseWriter, code, "range_not_satisfiable", "the Range asked for is outside the file; see Content-Range for its size")
}

func (w *rangeErrorWriter) Write(b []byte) (int, error) {
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// latencySummary summarises a call's agent turn latency rows (as the agent
// package writes them), nil when no turn measured voice-to-voice.
func latencySummary(rows []json.RawMessage) *agent.LatencySummary {
	var v2v, ep, llm, tts []time.Duration
	for _, b := range rows {
		var row struct {
			SpeechEnd    time.Time `json:"speech_end"`
			FirstPacket  time.Time `json:"first_packet"`
			VoiceToVoice float64   `json:"voice_to_voice_ms"`
			Endpoint     float64   `json:"endpoint_ms"`
			LLM          float64   `json:"llm_first_token_ms"`
			TTS          float64   `json:"tts_first_audio_ms"`
		}
		// The same rule as agent.SummarizeLatency: only turns measured from
		// the caller's speech end to our first packet count.
		if json.Unmarshal(b, &row) != nil || row.SpeechEnd.IsZero() || row.FirstPacket.IsZero() {
			continue
		}
		v2v = append(v2v, msDuration(row.VoiceToVoice))
		ep = append(ep, msDuration(row.Endpoint))
		llm = append(llm, msDuration(row.LLM))
		tts = append(tts, msDuration(row.TTS))
	}
	if len(v2v) == 0 {
		return nil
	}
	return &agent.LatencySummary{
		Turns:           len(v2v),
		VoiceToVoiceP50: agent.Percentile(v2v, 50),
		VoiceToVoiceP95: agent.Percentile(v2v, 95),
		EndpointP50:     agent.Percentile(ep, 50),
		LLMP50:          agent.Percentile(llm, 50),
		TTSP50:          agent.Percentile(tts, 50),
	}
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
