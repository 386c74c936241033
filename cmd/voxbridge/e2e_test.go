package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("VOXBRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testServer starts a whole voxbridge on loopback with ephemeral ports and a
// temporary database.
func testServer(t *testing.T, f *flow.Flow) (*instance, serveConfig) {
	return testServerWith(t, instanceOptions{flow: f}, nil)
}

// testServerWith is testServer with instance options and a chance to change
// the configuration (nil: none) before the server starts.
func testServerWith(t *testing.T, opt instanceOptions, configure func(*serveConfig)) (*instance, serveConfig) {
	t.Helper()
	cfg := defaultServeConfig()
	cfg.SIPAnonymous = "*" // tests dial whatever user their flow needs
	cfg.SIPAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.DB = filepath.Join(t.TempDir(), "voxbridge.db")
	cfg.RecordDir = filepath.Join(t.TempDir(), "recordings") // never the package folder
	if configure != nil {
		configure(&cfg)
	}
	inst, err := startInstance(cfg, testLogger(t), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	return inst, cfg
}

func testPhone(t *testing.T) *siptest.Phone {
	t.Helper()
	p, err := siptest.NewPhone("127.0.0.1", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func target(inst *instance, user string) string {
	return fmt.Sprintf("sip:%s@127.0.0.1:%d", user, inst.SIPUDP.Port)
}

// waitFor polls cond until it holds or the (generous) deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every test server stores testAPIKey at start (see keys_test.go).
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
	return res.StatusCode
}

// callRecord finds the call with the given SIP Call-ID through the API and
// waits until it is final.
func callRecord(t *testing.T, inst *instance, sipCallID string) store.Call {
	t.Helper()
	base := "http://" + inst.HTTP.String()
	var rec store.Call
	waitFor(t, "the call record to be final", 10*time.Second, func() bool {
		var list struct {
			Result []store.Call `json:"result"`
		}
		if code := getJSON(t, base+"/v1/calls", &list); code != 200 {
			t.Fatalf("GET /v1/calls: %d", code)
		}
		for _, c := range list.Result {
			if c.SIPCallID == sipCallID {
				if code := getJSON(t, base+"/v1/calls/"+c.ID, &rec); code != 200 {
					t.Fatalf("GET /v1/calls/%s: %d", c.ID, code)
				}
				return rec.Status == store.StatusHangup
			}
		}
		return false
	})
	return rec
}

// strongest returns the window of n samples in pcm with the most energy at
// freq, and that level.
func strongest(pcm []int16, n int, freq float64) ([]int16, float64) {
	var best []int16
	bestLevel := -1.0
	for i := 0; i+n <= len(pcm); i += media.FrameSamples {
		if l := media.ToneLevel(pcm[i:i+n], freq); l > bestLevel {
			best, bestLevel = pcm[i:i+n], l
		}
	}
	return best, bestLevel
}

// The whole path: INVITE → greeting → echo of a 1 kHz tone → DTMF ends the
// echo → goodbye → BYE from the server → a final call record over HTTP.
func TestEchoCallEndToEnd(t *testing.T) {
	inst, _ := testServer(t, nil)
	phone := testPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	call, err := phone.Dial(ctx, target(inst, "echo"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()

	greeting, err := flow.Prompt("greeting")
	if err != nil {
		t.Fatal(err)
	}
	// Hear the whole greeting (plus slack for the silence before it).
	waitFor(t, "the greeting", 30*time.Second, func() bool { return call.HeardLen() >= len(greeting)+media.SampleRate/2 })
	heard := call.Heard()
	if rms := media.RMS(heard); rms < 300 {
		t.Fatalf("greeting is silent: RMS %.0f", rms)
	}

	// Echo: a 1 kHz tone must come back as 1 kHz.
	mark := call.HeardLen()
	<-call.Play(media.Tone(1000, 1500*time.Millisecond, 0.5))
	waitFor(t, "the echo", 10*time.Second, func() bool { return call.HeardLen() >= mark+media.SampleRate })
	echoed := call.Heard()[mark:]
	win, level := strongest(echoed, media.SampleRate/2, 1000)
	if level < 0.2 {
		t.Fatalf("no 1 kHz echo: best level %.3f (RMS of echo %.0f)", level, media.RMS(echoed))
	}
	if f := media.DominantFrequency(win, 300, 3400, 10); f < 980 || f > 1020 {
		t.Fatalf("echo dominant frequency %.0f Hz, want 1000", f)
	}

	// A digit ends the echo; the server says goodbye and hangs up.
	if _, err := call.SendDTMF('5', 160*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case <-call.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("no BYE from the server after the digit")
	}
	if !call.RemoteHungUp() {
		t.Fatal("call ended but not by the server's BYE")
	}

	rec := callRecord(t, inst, call.CallID())
	sum := call.Summary()
	if rec.Direction != store.DirectionIncoming || rec.HangupBy != store.HangupByLocal || rec.HangupReason != store.ReasonNormal {
		t.Errorf("record: direction %q hangup_by %q reason %q; want incoming/local/normal", rec.Direction, rec.HangupBy, rec.HangupReason)
	}
	if rec.Codec != "PCMU" || rec.DTMF != "5" {
		t.Errorf("record: codec %q dtmf %q; want PCMU and 5", rec.Codec, rec.DTMF)
	}
	if rec.TMRinging == nil || rec.TMProgressing == nil || rec.TMHangup == nil {
		t.Errorf("record lacks timestamps: %+v", rec)
	}
	// The server received what the phone sent and vice versa (loopback: no loss).
	if rec.RTPPacketsIn < 100 || rec.RTPPacketsOut < 100 || rec.RTPPacketsLost != 0 {
		t.Errorf("record packets in %d out %d lost %d", rec.RTPPacketsIn, rec.RTPPacketsOut, rec.RTPPacketsLost)
	}
	if diff := int64(sum.PacketsIn) - int64(rec.RTPPacketsOut); diff < -5 || diff > 5 {
		t.Errorf("phone heard %d packets, server says it sent %d", sum.PacketsIn, rec.RTPPacketsOut)
	}
}

func TestCancelWhileRinging(t *testing.T) {
	ringLong := &flow.Flow{ID: "ring", Actions: []flow.Action{
		{Type: "sleep", Option: json.RawMessage(`{"duration_ms":30000}`)},
		{Type: "answer"},
	}}
	inst, _ := testServer(t, ringLong)
	phone := testPhone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var callID string
	_, err := phone.Dial(ctx, target(inst, "echo"), siptest.DialOptions{OnProvisional: func(code int) {
		if code == 180 {
			cancel()
		}
	}})
	if err == nil {
		t.Fatal("dial succeeded; want it cancelled")
	}
	// Find the record: it is the only call.
	var list struct {
		Result []store.Call `json:"result"`
	}
	waitFor(t, "the cancelled call's record", 10*time.Second, func() bool {
		getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls", &list)
		return len(list.Result) == 1 && list.Result[0].Status == store.StatusHangup
	})
	rec := list.Result[0]
	callID = rec.SIPCallID
	if rec.HangupBy != store.HangupByRemote || rec.HangupReason != store.ReasonCancel || rec.SIPCode != 487 {
		t.Fatalf("cancelled call %s: hangup_by %q reason %q sip_code %d; want remote/cancel/487", callID, rec.HangupBy, rec.HangupReason, rec.SIPCode)
	}
	if rec.TMProgressing != nil {
		t.Fatal("a cancelled call has an answer time")
	}
}

func TestNoCommonCodecIsRecorded(t *testing.T) {
	inst, _ := testServer(t, nil)
	phone := testPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := phone.Dial(ctx, target(inst, "echo"), siptest.DialOptions{Codecs: []sdp.Codec{{Name: "G722", PayloadType: 9, ClockRate: 8000}}})
	var de *siptest.DialError
	if !errors.As(err, &de) || de.Code != 488 {
		t.Fatalf("dial with only G722: %v; want 488", err)
	}
	var list struct {
		Result []store.Call `json:"result"`
	}
	waitFor(t, "the refused call's record", 10*time.Second, func() bool {
		getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls", &list)
		return len(list.Result) == 1 && list.Result[0].Status == store.StatusHangup
	})
	if rec := list.Result[0]; rec.HangupReason != store.ReasonCodec || rec.SIPCode != 488 || rec.HangupBy != store.HangupByLocal {
		t.Fatalf("record: hangup_by %q reason %q sip_code %d; want local/codec/488", rec.HangupBy, rec.HangupReason, rec.SIPCode)
	}
}

func TestCallerHangsUp(t *testing.T) {
	inst, _ := testServer(t, nil)
	phone := testPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := phone.Dial(ctx, target(inst, "echo"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "some greeting", 10*time.Second, func() bool { return call.HeardLen() > media.SampleRate/2 })
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := callRecord(t, inst, call.CallID())
	if rec.HangupBy != store.HangupByRemote || rec.HangupReason != store.ReasonNormal {
		t.Fatalf("record: hangup_by %q reason %q; want remote/normal", rec.HangupBy, rec.HangupReason)
	}
}

// Stopping the server hangs up live calls with BYE and records why.
func TestShutdownHangsUpLiveCalls(t *testing.T) {
	inst, cfg := testServer(t, nil)
	phone := testPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := phone.Dial(ctx, target(inst, "echo"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	waitFor(t, "some greeting", 10*time.Second, func() bool { return call.HeardLen() > media.SampleRate/2 })
	inst.Stop()
	select {
	case <-call.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("no BYE on shutdown")
	}
	db, err := store.Open(cfg.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	calls, _, err := db.ListCalls(ctx, store.ListOptions{})
	if err != nil || len(calls) != 1 {
		t.Fatalf("calls after shutdown: %v, %v", calls, err)
	}
	if c := calls[0]; c.Status != store.StatusHangup || c.HangupBy != store.HangupByLocal || c.HangupReason != store.ReasonServerShutdown {
		t.Fatalf("record after shutdown: status %q hangup_by %q reason %q", c.Status, c.HangupBy, c.HangupReason)
	}
}

// readStereo reads a recording's two channels (44-byte WAV header, as our
// recorder writes).
func readStereo(t *testing.T, path string) (left, right []int16) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 44 || string(b[:4]) != "RIFF" || b[22] != 2 {
		t.Fatalf("%s is not a stereo WAV", path)
	}
	for i := 44; i+3 < len(b); i += 4 {
		left = append(left, int16(uint16(b[i])|uint16(b[i+1])<<8))
		right = append(right, int16(uint16(b[i+2])|uint16(b[i+3])<<8))
	}
	return left, right
}

// With --record-all, a call's stereo recording has the caller's tone on the
// left and the greeting on the right, on one timeline.
func TestRecordingStereo(t *testing.T) {
	inst, _ := testServerWith(t, instanceOptions{}, func(cfg *serveConfig) {
		cfg.RecordAll, cfg.RecordDir = "true", filepath.Join(t.TempDir(), "rec")
	})
	call := dialTest(t, inst)
	time.Sleep(time.Second) // into the greeting
	<-call.Play(media.Tone(1000, time.Second, 0.5))
	greeting, _ := flow.Prompt("greeting")
	waitFor(t, "the echo test", 20*time.Second, func() bool { return call.HeardLen() > len(greeting)+media.SampleRate })
	if _, err := call.SendDTMF('1', 160*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitDone(t, call)
	rec := callRecord(t, inst, call.CallID())
	var rows []store.Recording
	waitFor(t, "the finished recording", 10*time.Second, func() bool {
		rows, _ = inst.db.ListRecordings(context.Background(), rec.ID)
		return len(rows) == 1 && rows[0].Status == store.RecordingCompleted
	})
	if rows[0].DurationMS < 5000 {
		t.Fatalf("recording of %d ms for a call of more than 6 s", rows[0].DurationMS)
	}
	left, right := readStereo(t, rows[0].Path)
	if _, level := strongest(left, media.SampleRate/2, 1000); level < 0.2 {
		t.Fatalf("the caller's tone is not on the left (level %.3f)", level)
	}
	// Where the tone is loudest on the left, the right has the greeting,
	// not the tone: the sides are apart and on one timeline.
	best, at := 0.0, 0
	for i := 0; i+media.SampleRate/2 <= len(left); i += media.FrameSamples {
		if l := media.ToneLevel(left[i:i+media.SampleRate/2], 1000); l > best {
			best, at = l, i
		}
	}
	r := right[at : at+media.SampleRate/2]
	if media.ToneLevel(r, 1000) > 0.05 || media.RMS(r) < 300 {
		t.Fatalf("right channel at the tone: 1 kHz level %.3f, RMS %.0f; want the greeting only", media.ToneLevel(r, 1000), media.RMS(r))
	}
	if rec.Quality == nil || rec.Quality.MOS < 3.5 {
		t.Fatalf("call quality not recorded or poor on loopback: %+v", rec.Quality)
	}
}

// noGoroutines waits up to within until no goroutine's stack names any of
// patterns (stacks that name except, when set, do not count), and fails
// listing the ones left: what a call started must end with it.
func noGoroutines(t *testing.T, what string, within time.Duration, except string, patterns ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var leaked []string
		buf := make([]byte, 8<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if except != "" && strings.Contains(g, except) {
				continue
			}
			for _, p := range patterns {
				if strings.Contains(g, p) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s goroutines still running after the calls ended:\n%s", len(leaked), what, strings.Join(leaked, "\n\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
