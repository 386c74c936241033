package flow

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/store"
)

const controlWait = 10 * time.Second

// controlCall is an answered call whose stream talks to peer over loopback,
// registered on a controller as if a flow ran it; there is no SIP dialog,
// so hangup and transfer are left to the end-to-end tests.
func controlCall(t *testing.T) (*Controller, *Call, *media.Stream) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "control.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ct, err := NewController(Config{Store: db, MediaIP: netip.MustParseAddr("127.0.0.1"), Agents: NewAgents(),
		Logger: slog.New(slog.DiscardHandler), RecordDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	stream, peer := rtptest.Pair(t, media.PCMU, 101)
	ctx, cancel := context.WithCancel(context.Background())
	leg := &sip.Leg{Negotiated: sdp.Negotiated{DTMFPayloadType: 101}}
	c := &Call{ct: ct, ctx: ctx, cancel: cancel, log: ct.log, stream: stream, leg: leg, dlg: leg,
		digits:    make(chan rune, 64),
		variables: map[string]string{}, rec: store.Call{Direction: store.DirectionIncoming, Status: store.StatusProgressing}}
	if err := db.CreateCall(ctx, &c.rec); err != nil {
		t.Fatal(err)
	}
	c.answered.Store(true)
	ct.mu.Lock()
	ct.calls[c.ID()] = c
	ct.mu.Unlock()
	t.Cleanup(func() {
		cancel()
		c.ctl.close()
		c.wg.Wait()
	})
	return ct, c, peer
}

// hearsRun reads the peer's frames until ok held for n in a row.
func hearsRun(t *testing.T, peer *media.Stream, what string, n int, ok func([]int16) bool) {
	t.Helper()
	run := 0
	for i := 0; run < n; i++ {
		if i > 1500 {
			t.Fatalf("never heard %d frames of %s", n, what)
		}
		if ok(rtptest.Frames(t, peer, 1, controlWait)) {
			run++
		} else {
			run = 0
		}
	}
}

func toneAt(hz float64) func([]int16) bool {
	return func(f []int16) bool { return media.ToneLevel(f, hz) > 0.3 }
}

func quiet(f []int16) bool { return media.RMS(f) < 50 }

func TestCallActionUnknownAndEndedCalls(t *testing.T) {
	ct, c, _ := controlCall(t)
	ctx := context.Background()
	if _, err := ct.CallAction(ctx, "no-such-call", CallAction{Action: ActionHold}); !errors.Is(err, ErrCallNotFound) {
		t.Fatalf("unknown call: %v", err)
	}
	ended := store.Call{Direction: store.DirectionIncoming, Status: store.StatusHangup}
	if err := ct.cfg.Store.CreateCall(ctx, &ended); err != nil {
		t.Fatal(err)
	}
	if _, err := ct.CallAction(ctx, ended.ID, CallAction{Action: ActionHangup}); !errors.Is(err, ErrCallNotLive) {
		t.Fatalf("ended call: %v", err)
	}
	c.answered.Store(false)
	if _, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionMute}); !errors.Is(err, ErrCallNotLive) {
		t.Fatalf("ringing call: %v", err)
	}
	c.answered.Store(true)
	c.ctl.close()
	if _, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionDTMF, Digits: "1"}); !errors.Is(err, ErrCallNotLive) {
		t.Fatalf("finishing call: %v", err)
	}
}

func TestCallActionValidation(t *testing.T) {
	ct, c, _ := controlCall(t)
	cases := []struct {
		a     CallAction
		field string
	}{
		{CallAction{Action: "dance"}, "action"},
		{CallAction{Action: ActionHangup, Reason: string(make([]byte, 300))}, "reason"},
		{CallAction{Action: ActionTransfer}, "to"},
		{CallAction{Action: ActionTransfer, To: "call me maybe"}, "to"},
		{CallAction{Action: ActionTransfer, To: "sip:bob@"}, "to"},
		{CallAction{Action: ActionTransfer, To: "1002", Mode: "attended"}, "mode"},
		{CallAction{Action: ActionTalk, Text: "  "}, "text"},
		{CallAction{Action: ActionTalk, Text: "hi", AgentID: "nobody"}, "agent_id"},
		{CallAction{Action: ActionPlay}, "urls"},
		{CallAction{Action: ActionPlay, Files: []string{"/no/such.wav"}}, "files[0]"},
		{CallAction{Action: ActionPlay, URLs: []string{"ftp://x/a.wav"}}, "urls[0]"},
		{CallAction{Action: ActionPlay, URLs: []string{"http://x/a.wav"}, Loop: 101}, "loop"},
		{CallAction{Action: ActionDTMF}, "digits"},
		{CallAction{Action: ActionDTMF, Digits: "12x"}, "digits"},
		{CallAction{Action: ActionDTMF, Digits: "1", DurationMS: 20}, "duration_ms"},
		{CallAction{Action: ActionMute, Direction: "sideways"}, "direction"},
		{CallAction{Action: ActionRecordingStart, MaxDurationS: -1}, "max_duration_s"},
	}
	for _, tc := range cases {
		_, err := ct.CallAction(context.Background(), c.ID(), tc.a)
		var ae *ActionError
		if !errors.As(err, &ae) || ae.Field != tc.field {
			t.Errorf("%+v: error %v, want one about %s", tc.a, err, tc.field)
		}
	}
	// No agent has a voice: talk is unavailable rather than wrong.
	if _, err := ct.CallAction(context.Background(), c.ID(), CallAction{Action: ActionTalk, Text: "hi"}); !errors.Is(err, ErrActionUnavailable) {
		t.Errorf("talk without agents: %v", err)
	}
}

func TestCallActionMuteAndHold(t *testing.T) {
	ct, c, peer := controlCall(t)
	ctx := context.Background()
	act := func(a CallAction) CallControlState {
		t.Helper()
		st, err := ct.CallAction(ctx, c.ID(), a)
		if err != nil {
			t.Fatalf("%s: %v", a.Action, err)
		}
		return st
	}
	c.stream.Enqueue(media.Tone(1000, 60*time.Second, 0.5))
	peer.Enqueue(media.Tone(440, 60*time.Second, 0.5)) // the caller talks
	hearsRun(t, peer, "our tone", 5, toneAt(1000))

	if st := act(CallAction{Action: ActionMute, Direction: "out"}); !st.MutedOut || st.MutedIn {
		t.Fatalf("mute out: state %+v", st)
	}
	hearsRun(t, peer, "silence while muted out", 25, quiet)
	hearsRun(t, c.stream, "the caller while muted out", 5, toneAt(440))
	act(CallAction{Action: ActionMute, Direction: "in"})
	hearsRun(t, c.stream, "silence from the caller while muted in", 25, quiet)
	if st := act(CallAction{Action: ActionUnmute}); st.MutedIn || st.MutedOut {
		t.Fatalf("unmute: state %+v", st)
	}
	if v, _ := c.getVar("call.muted"); v != "none" {
		t.Errorf("call.muted = %q after unmute", v)
	}
	hearsRun(t, peer, "our tone after unmute", 5, toneAt(1000))
	hearsRun(t, c.stream, "the caller after unmute", 5, toneAt(440))

	if _, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionUnhold}); !errors.Is(err, ErrConflict) {
		t.Fatalf("unhold when not held: %v", err)
	}
	if st := act(CallAction{Action: ActionHold}); !st.OnHold {
		t.Fatalf("hold: state %+v", st)
	}
	// Music on hold: energy, and none of our tone or the caller's.
	hearsRun(t, peer, "music on hold", 50, func(f []int16) bool {
		return media.RMS(f) > 300 && media.ToneLevel(f, 1000) < 0.05
	})
	hearsRun(t, c.stream, "silence from the held caller", 25, quiet)
	if _, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionHold}); !errors.Is(err, ErrConflict) {
		t.Fatalf("hold twice: %v", err)
	}
	act(CallAction{Action: ActionUnhold})
	hearsRun(t, peer, "our tone after unhold", 5, toneAt(1000))
	hearsRun(t, c.stream, "the caller after unhold", 5, toneAt(440))
}

func TestCallActionPlayAndDTMF(t *testing.T) {
	ct, c, peer := controlCall(t)
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.wav")
	if err := media.WriteWAVFile(file, media.Tone(600, time.Second, 0.5)); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "b.wav")
	if err := media.WriteWAVFile(other, media.Tone(1500, time.Second, 0.5)); err != nil {
		t.Fatal(err)
	}
	wavB, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/wav")
		w.Write(wavB)
	}))
	defer srv.Close()

	if _, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionPlay, Files: []string{file}, URLs: []string{srv.URL + "/b.wav"}}); err != nil {
		t.Fatal(err)
	}
	// The file, then the URL, in that order.
	hearsRun(t, peer, "the file", 10, toneAt(600))
	hearsRun(t, peer, "the URL", 10, toneAt(1500))

	if _, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionDTMF, Digits: "1#a"}); err != nil {
		t.Fatal(err)
	}
	var got []rune
	timeout := time.After(controlWait)
	for len(got) < 3 {
		select {
		case ev := <-peer.DTMF():
			got = append(got, ev.Digit)
		case <-timeout:
			t.Fatalf("digits received %q, want 1#A", string(got))
		}
	}
	if string(got) != "1#A" {
		t.Fatalf("digits received %q, want 1#A", string(got))
	}
}

func TestCallActionRecording(t *testing.T) {
	ct, c, peer := controlCall(t)
	ctx := context.Background()
	if _, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionRecordingStop}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stop with none running: %v", err)
	}
	peer.Enqueue(media.Tone(440, 60*time.Second, 0.5))
	st, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionRecordingStart})
	if err != nil {
		t.Fatal(err)
	}
	if st.RecordingID == "" {
		t.Fatal("no recording id in the state")
	}
	if _, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionRecordingStart}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second start: %v", err)
	}
	rtptest.Frames(t, c.stream, 50, controlWait) // a second of the caller
	if _, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionRecordingStop}); err != nil {
		t.Fatal(err)
	}
	// The row is written through the store's queue; the API syncs it
	// before answering, as this does.
	if err := ct.cfg.Store.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	rec, err := ct.cfg.Store.GetRecording(ctx, st.RecordingID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != store.RecordingCompleted || rec.DurationMS < 500 {
		t.Fatalf("recording row %+v", rec)
	}
	pcm, err := media.ReadWAVFile(rec.Path)
	if err != nil {
		t.Fatal(err)
	}
	if lvl := media.ToneLevel(pcm, 440); lvl < 0.1 {
		t.Errorf("the caller's tone is not in the recording (level %.3f)", lvl)
	}
	// Stopped: a new one may start.
	if _, err := ct.CallAction(ctx, c.ID(), CallAction{Action: ActionRecordingStart, Beep: true}); err != nil {
		t.Fatalf("start after stop: %v", err)
	}
}
