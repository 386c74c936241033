package api

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/store"
)

// recordedCall stores a hung-up call with one completed recording: a WAV
// of a 1 kHz tone. It returns the call, the recording and the file's bytes.
func recordedCall(t *testing.T, e *testEnv) (*store.Call, *store.Recording, []byte) {
	t.Helper()
	ctx := context.Background()
	c := &store.Call{Direction: store.DirectionIncoming, Status: store.StatusHangup}
	if err := e.db.CreateCall(ctx, c); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), c.ID+".wav")
	if err := media.WriteWAVFile(path, media.Tone(1000, time.Second, 0.5)); err != nil {
		t.Fatal(err)
	}
	wav, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := &store.Recording{CallID: c.ID, Path: path, Format: "wav/pcm16/8000/mono", Channels: 1}
	if err := e.db.CreateRecording(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := e.db.FinishRecording(ctx, rec.ID, store.RecordingCompleted, "", time.Second); err != nil {
		t.Fatal(err)
	}
	return c, rec, wav
}

func TestCallRecordingDownload(t *testing.T) {
	e := newTestEnv(t)
	c, rec, wav := recordedCall(t, e)

	res := mustStatus(t, "whole recording", e.do("GET", "/v1/calls/"+c.ID+"/recording", e.roKey, nil), 200)
	if ct := res.header.Get("Content-Type"); ct != "audio/wav" {
		t.Fatalf("content type %q", ct)
	}
	if !bytes.Equal(res.body, wav) {
		t.Fatalf("downloaded %d bytes, not the file's %d", len(res.body), len(wav))
	}
	pcm, err := media.ReadWAV(bytes.NewReader(res.body))
	if err != nil {
		t.Fatal(err)
	}
	if l := media.ToneLevel(pcm, 1000); l < 0.3 {
		t.Fatalf("the download does not hold the 1 kHz tone (level %.3f)", l)
	}

	// The first 100 bytes, exactly.
	res = mustStatus(t, "bytes=0-99", e.do("GET", "/v1/calls/"+c.ID+"/recording", e.key, nil, "Range", "bytes=0-99"), 206)
	if !bytes.Equal(res.body, wav[:100]) {
		t.Fatalf("range 0-99: %d bytes, want the file's first 100", len(res.body))
	}
	if cr, want := res.header.Get("Content-Range"), "bytes 0-99/"+strconv.Itoa(len(wav)); cr != want {
		t.Fatalf("Content-Range %q, want %q", cr, want)
	}
	// A suffix range: the last 500 bytes.
	res = mustStatus(t, "bytes=-500", e.do("GET", "/v1/recordings/"+rec.ID, e.key, nil, "Range", "bytes=-500"), 206)
	if !bytes.Equal(res.body, wav[len(wav)-500:]) {
		t.Fatalf("suffix range: %d bytes, want the file's last 500", len(res.body))
	}
	// Past the end: 416, in our error shape, with the size.
	res = e.do("GET", "/v1/calls/"+c.ID+"/recording", e.key, nil, "Range", "bytes="+strconv.Itoa(len(wav)+10)+"-")
	expectError(t, "range past the end", res, 416, "range_not_satisfiable")
	if cr := res.header.Get("Content-Range"); cr != "bytes */"+strconv.Itoa(len(wav)) {
		t.Fatalf("416 Content-Range %q", cr)
	}

	// The list and the call resource point at the same file.
	var page struct {
		Result []recordingView `json:"result"`
	}
	mustStatus(t, "list", e.do("GET", "/v1/calls/"+c.ID+"/recordings", e.key, nil), 200).decode(t, &page)
	if len(page.Result) != 1 {
		t.Fatalf("%d recordings listed, want 1", len(page.Result))
	}
	got := page.Result[0]
	if got.ID != rec.ID || got.DownloadPath != "/v1/recordings/"+rec.ID || got.SizeBytes == nil || *got.SizeBytes != int64(len(wav)) ||
		got.DurationMS != 1000 || got.Channels != 1 || got.TMEnd == nil {
		t.Fatalf("listed %+v (size %v)", got, got.SizeBytes)
	}
	if bytes.Contains(mustStatus(t, "list", e.do("GET", "/v1/calls/"+c.ID+"/recordings", e.key, nil), 200).body, []byte(rec.Path)) {
		t.Fatal("the list shows the server path")
	}
	var view struct {
		Recordings []recordingView `json:"recordings"`
	}
	mustStatus(t, "call", e.do("GET", "/v1/calls/"+c.ID, e.key, nil), 200).decode(t, &view)
	if len(view.Recordings) != 1 || view.Recordings[0].DownloadPath != got.DownloadPath {
		t.Fatalf("call resource recordings %+v", view.Recordings)
	}
	res = mustStatus(t, "by id", e.do("GET", got.DownloadPath, e.key, nil), 200)
	if !bytes.Equal(res.body, wav) {
		t.Fatal("the download path serves another file")
	}
}

func TestCallRecordingStates(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	c, rec, _ := recordedCall(t, e)

	// Unknown call or recording: 404.
	expectError(t, "unknown call", e.do("GET", "/v1/calls/nope/recording", e.key, nil), 404, "not_found")
	expectError(t, "unknown call list", e.do("GET", "/v1/calls/nope/recordings", e.key, nil), 404, "not_found")
	expectError(t, "unknown recording", e.do("GET", "/v1/recordings/nope", e.key, nil), 404, "not_found")

	// A call without recordings: 404, and an empty list.
	bare := &store.Call{Direction: store.DirectionIncoming, Status: store.StatusHangup}
	if err := e.db.CreateCall(ctx, bare); err != nil {
		t.Fatal(err)
	}
	expectError(t, "no recording", e.do("GET", "/v1/calls/"+bare.ID+"/recording", e.key, nil), 404, "not_found")
	if b := mustStatus(t, "empty list", e.do("GET", "/v1/calls/"+bare.ID+"/recordings", e.key, nil), 200).body; !bytes.Contains(b, []byte(`"result":[]`)) {
		t.Fatalf("empty list: %s", b)
	}

	// A second recording still being written: 409 for the call's and for
	// that one, while the finished one stays downloadable by id.
	live := &store.Recording{CallID: c.ID, Path: filepath.Join(t.TempDir(), "live.wav"), Format: "wav/pcm16/8000/stereo", Channels: 2}
	if err := e.db.CreateRecording(ctx, live); err != nil {
		t.Fatal(err)
	}
	expectError(t, "recording busy", e.do("GET", "/v1/calls/"+c.ID+"/recording", e.key, nil), 409, "conflict")
	expectError(t, "live by id", e.do("GET", "/v1/recordings/"+live.ID, e.key, nil), 409, "conflict")
	mustStatus(t, "finished by id", e.do("GET", "/v1/recordings/"+rec.ID, e.key, nil), 200)

	// Once it ends, it is the call's recording: it ended last.
	if err := os.WriteFile(live.Path, []byte("RIFF-second"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the store's real clock, in ms: end strictly later
	if err := e.db.FinishRecording(ctx, live.ID, store.RecordingCompleted, "", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if b := mustStatus(t, "latest", e.do("GET", "/v1/calls/"+c.ID+"/recording", e.key, nil), 200).body; string(b) != "RIFF-second" {
		t.Fatalf("the call's recording is not the one that ended last: %.20q", b)
	}

	// A recording whose file is gone: 404 that says so, and a null size.
	if err := os.Remove(live.Path); err != nil {
		t.Fatal(err)
	}
	expectError(t, "file gone", e.do("GET", "/v1/recordings/"+live.ID, e.key, nil), 404, "not_found")
	var page struct {
		Result []map[string]any `json:"result"`
	}
	mustStatus(t, "list", e.do("GET", "/v1/calls/"+c.ID+"/recordings", e.key, nil), 200).decode(t, &page)
	if len(page.Result) != 2 || page.Result[1]["size_bytes"] != nil || page.Result[0]["size_bytes"] == nil {
		t.Fatalf("list after the file went: %v", page.Result)
	}
}

func TestRecordingRoutesAuth(t *testing.T) {
	e := newTestEnv(t)
	c, rec, _ := recordedCall(t, e)
	for _, p := range []string{"/v1/calls/" + c.ID + "/recording", "/v1/calls/" + c.ID + "/recordings",
		"/v1/calls/" + c.ID + "/capture", "/v1/recordings/" + rec.ID} {
		expectError(t, p+" without a key", e.do("GET", p, "", nil), 401, "unauthenticated")
		expectError(t, p+" with a bad key", e.do("GET", p, "vbk_nope", nil), 401, "unauthenticated")
		// Reading is allowed to read-only keys; nothing here writes.
		expectError(t, p+" POST", e.do("POST", p, e.roKey, nil), 405, "method_not_allowed")
	}
}

func TestCallCapture(t *testing.T) {
	dir := t.TempDir()
	e := newTestEnv(t, func(c *Config) { c.CaptureDir = dir })
	ctx := context.Background()
	c := &store.Call{Direction: store.DirectionIncoming, Status: store.StatusProgressing}
	if err := e.db.CreateCall(ctx, c); err != nil {
		t.Fatal(err)
	}
	pcapBytes := append([]byte{0xd4, 0xc3, 0xb2, 0xa1}, bytes.Repeat([]byte{7}, 200)...)
	if err := os.WriteFile(filepath.Join(dir, c.ID+".pcap"), pcapBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	expectError(t, "live call", e.do("GET", "/v1/calls/"+c.ID+"/capture", e.roKey, nil), 409, "conflict")
	c.Status = store.StatusHangup
	if err := e.db.UpdateCall(ctx, c); err != nil {
		t.Fatal(err)
	}
	res := mustStatus(t, "capture", e.do("GET", "/v1/calls/"+c.ID+"/capture", e.roKey, nil), 200)
	if ct := res.header.Get("Content-Type"); ct != "application/vnd.tcpdump.pcap" || !bytes.Equal(res.body, pcapBytes) {
		t.Fatalf("capture: %q, %d bytes", ct, len(res.body))
	}
	res = mustStatus(t, "capture range", e.do("GET", "/v1/calls/"+c.ID+"/capture", e.key, nil, "Range", "bytes=0-3"), 206)
	if !bytes.Equal(res.body, pcapBytes[:4]) {
		t.Fatalf("range: % x", res.body)
	}

	// A call whose capture never opened (never answered), an unknown call,
	// and a server without capture: 404.
	other := &store.Call{Direction: store.DirectionIncoming, Status: store.StatusHangup}
	if err := e.db.CreateCall(ctx, other); err != nil {
		t.Fatal(err)
	}
	expectError(t, "no file", e.do("GET", "/v1/calls/"+other.ID+"/capture", e.key, nil), 404, "not_found")
	expectError(t, "unknown call", e.do("GET", "/v1/calls/nope/capture", e.key, nil), 404, "not_found")
	off := newTestEnv(t)
	if err := off.db.CreateCall(ctx, &store.Call{ID: c.ID, Direction: store.DirectionIncoming, Status: store.StatusHangup}); err != nil {
		t.Fatal(err)
	}
	expectError(t, "capture off", off.do("GET", "/v1/calls/"+c.ID+"/capture", off.key, nil), 404, "not_found")
}

// The call resource carries its recordings, variables, RTP quality and the
// agent's latency summary.
func TestCallResourceDetail(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	c, rec, _ := recordedCall(t, e)
	c.Variables = map[string]string{"agent.id": "support", "customer": "Ada"}
	c.Quality = &store.CallQuality{JitterMS: 3.5, MOS: 4.3}
	if err := e.db.UpdateCall(ctx, c); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// Voice-to-voice 400, 800 and 600 ms; a fourth turn without a first
	// packet (the caller hung up) does not count.
	for i, v2v := range []int{400, 800, 600, 0} {
		row := map[string]any{"turn": i, "speech_end": t0, "voice_to_voice_ms": v2v, "endpoint_ms": 100, "llm_first_token_ms": 200 + i, "tts_first_audio_ms": 50}
		if v2v > 0 {
			row["first_packet"] = t0.Add(time.Duration(v2v) * time.Millisecond)
		}
		b, _ := json.Marshal(row)
		if err := e.db.PutTurnLatency(ctx, c.ID, i, b); err != nil {
			t.Fatal(err)
		}
	}
	var got struct {
		Variables  map[string]string  `json:"variables"`
		Quality    *store.CallQuality `json:"quality"`
		Recordings []recordingView    `json:"recordings"`
		Actions    []store.ActionRun  `json:"actions"`
		Latency    *struct {
			Turns  int     `json:"turns"`
			P50    float64 `json:"voice_to_voice_p50_ms"`
			P95    float64 `json:"voice_to_voice_p95_ms"`
			LLMP50 float64 `json:"llm_first_token_p50_ms"`
		} `json:"latency"`
	}
	mustStatus(t, "call", e.do("GET", "/v1/calls/"+c.ID, e.key, nil), 200).decode(t, &got)
	if got.Variables["customer"] != "Ada" || got.Quality == nil || got.Quality.MOS != 4.3 {
		t.Fatalf("variables %v, quality %+v", got.Variables, got.Quality)
	}
	if len(got.Recordings) != 1 || got.Recordings[0].ID != rec.ID {
		t.Fatalf("recordings %+v", got.Recordings)
	}
	if got.Latency == nil || got.Latency.Turns != 3 || got.Latency.P50 != 600 || got.Latency.P95 != 800 || got.Latency.LLMP50 != 201 {
		t.Fatalf("latency %+v", got.Latency)
	}
	// Without agent turns: latency null, lists empty, not null.
	bare := &store.Call{Direction: store.DirectionIncoming, Status: store.StatusHangup}
	if err := e.db.CreateCall(ctx, bare); err != nil {
		t.Fatal(err)
	}
	b := mustStatus(t, "bare call", e.do("GET", "/v1/calls/"+bare.ID, e.key, nil), 200).body
	for _, want := range []string{`"latency":null`, `"recordings":[]`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("bare call lacks %s: %s", want, b)
		}
	}
}

// The agent and created_after/created_before filters, with the old ones.
func TestListCallsAgentAndCreatedFilters(t *testing.T) {
	e := newTestEnv(t)
	base := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	// Eight calls a minute apart; even ones ran agent "support", odd ones
	// "sales"; odd ones are outgoing.
	for i := range 8 {
		c := &store.Call{Direction: store.DirectionIncoming, Status: store.StatusHangup, TMCreate: base.Add(time.Duration(i) * time.Minute),
			Variables: map[string]string{"agent.id": "support"}}
		if i%2 == 1 {
			c.Direction, c.Variables["agent.id"] = store.DirectionOutgoing, "sales"
		}
		if err := e.db.CreateCall(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	count := func(query string) int {
		t.Helper()
		var p struct {
			Result []store.Call `json:"result"`
		}
		mustStatus(t, query, e.do("GET", "/v1/calls?page_size=100&"+query, e.key, nil), 200).decode(t, &p)
		return len(p.Result)
	}
	for _, c := range []struct {
		query string
		want  int
	}{
		{"agent=support", 4},
		{"agent=sales&direction=incoming", 0},
		{"agent=sales&direction=outgoing", 4},
		{"agent=nobody", 0},
		// Minutes [2, 6): calls 2..5, two of each agent.
		{"created_after=2026-01-02T00:02:00Z&created_before=2026-01-02T00:06:00Z", 4},
		{"agent=support&created_after=2026-01-02T00:02:00Z&created_before=2026-01-02T00:06:00Z", 2},
		{"agent=support&from=2026-01-02T00:02:00Z&created_before=2026-01-02T00:06:00Z", 2},
		{"created_before=2026-01-02T00:01:00Z", 1},
	} {
		if got := count(c.query); got != c.want {
			t.Errorf("%s: %d calls, want %d", c.query, got, c.want)
		}
	}
	for _, c := range []struct{ query, field string }{
		{"created_after=monday", "created_after"},
		{"from=2026-01-02T00:02:00Z&created_after=2026-01-02T00:02:00Z", "created_after"},
		{"created_after=2026-01-02T00:06:00Z&created_before=2026-01-02T00:02:00Z", "created_before"},
	} {
		d := expectError(t, c.query, e.do("GET", "/v1/calls?"+c.query, e.key, nil), 400, "invalid_argument")
		if d["field"] != c.field {
			t.Errorf("%s: details %v, want field %s", c.query, d, c.field)
		}
	}
}
