package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// callAct posts a call action and checks the status; it returns the
// answer's control state (zero for an error answer).
func callAct(t *testing.T, inst *instance, id, action string, body any, want int) flow.CallControlState {
	t.Helper()
	code, b := apiDo(t, inst, "POST", "/v1/calls/"+id+"/"+action, body)
	if code != want {
		t.Fatalf("POST %s: %d, want %d: %s", action, code, want, b)
	}
	var st flow.CallControlState
	if code == http.StatusAccepted {
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("POST %s: %v: %s", action, err, b)
		}
	}
	time.Sleep(100 * time.Millisecond) // the API allows 20 requests/s per key
	return st
}

// heardAfter waits until some half second of what call hears after sample
// from satisfies ok, and returns where that window ends.
func heardAfter(t *testing.T, call *siptest.Call, what string, from int, ok func([]int16) bool) int {
	t.Helper()
	const win = media.SampleRate / 2
	deadline := time.Now().Add(15 * time.Second)
	next := from
	for time.Now().Before(deadline) {
		heard := call.Heard()
		for ; next+win <= len(heard); next += media.FrameSamples {
			if ok(heard[next : next+win]) {
				return next + win
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("never heard %s", what)
	return 0
}

func echoOf(hz float64) func([]int16) bool {
	return func(w []int16) bool { return media.ToneLevel(w, hz) > 0.15 }
}

func silent(w []int16) bool { return media.RMS(w) < 30 }

// musicNot: music on hold is loud enough to hear and carries none of the caller's
// own tone (the echo stopped with the hold).
func musicNot(hz float64) func([]int16) bool {
	return func(w []int16) bool { return media.RMS(w) > 300 && media.ToneLevel(w, hz) < 0.05 }
}

// longEcho keeps a call in an echo that keys do not end, for the API to act on.
const longEcho = `{"id":"long-echo","actions":[{"type":"answer"},
  {"type":"echo","option":{"duration_ms":120000,"end_on_dtmf":false}},{"type":"hangup"}]}`

// A live inbound call in a long echo, driven over the API: talk, DTMF,
// mute, hold, a recording, then hangup; the record keeps what happened.
func TestCallActionsOnLiveCall(t *testing.T) {
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{ToneHz: 600, PerChar: 10 * time.Millisecond})
	agents := flow.NewAgents()
	if err := agents.Put(agent.Definition{ID: "voice", Name: "Voice", SystemPrompt: "-",
		STT: &agent.ProviderConfig{Provider: "deepgram", APIKey: "unused-here"},
		LLM: &agent.ProviderConfig{Provider: "openai", APIKey: "unused-here"},
		TTS: &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: el.URL(), APIKey: "k"}}); err != nil {
		t.Fatal(err)
	}
	f := mustFlow(t, longEcho)
	inst, _ := testServerWith(t, instanceOptions{flow: f, agents: agents}, nil)
	call := dialTest(t, inst)
	id := answeredCallID(t, inst)
	call.Play(media.Tone(1000, 100*time.Second, 0.3))
	pos := heardAfter(t, call, "the echo of its tone", 0, echoOf(1000))

	// talk: the agent's voice (the fake TTS speaks a 600 Hz tone).
	callAct(t, inst, id, "talk", map[string]string{"text": "Your order has shipped."}, http.StatusAccepted)
	pos = heardAfter(t, call, "the spoken text", pos, echoOf(600))
	if s := el.Sessions(); len(s) != 1 {
		t.Fatalf("TTS sessions %v, want one", s)
	}

	// dtmf: RFC 4733 events reach the phone.
	callAct(t, inst, id, "dtmf", map[string]any{"digits": "42#", "duration_ms": 120}, http.StatusAccepted)
	waitFor(t, "the digits at the phone", 15*time.Second, func() bool { return call.Summary().DigitsHeard == "42#" })

	// mute out: the phone hears silence; unmute: the echo again.
	st := callAct(t, inst, id, "mute", map[string]string{"direction": "out"}, http.StatusAccepted)
	if !st.MutedOut || st.MutedIn {
		t.Fatalf("mute out: %+v", st)
	}
	pos = heardAfter(t, call, "silence while muted", pos, silent)
	callAct(t, inst, id, "unmute", map[string]string{"direction": "out"}, http.StatusAccepted)
	pos = heardAfter(t, call, "the echo after unmute", pos, echoOf(1000))

	// mute in: we stop hearing the caller, so the echo is silence.
	callAct(t, inst, id, "mute", map[string]string{"direction": "in"}, http.StatusAccepted)
	pos = heardAfter(t, call, "silence while we do not hear it", pos, silent)
	callAct(t, inst, id, "unmute", map[string]string{}, http.StatusAccepted)
	pos = heardAfter(t, call, "the echo after unmute in", pos, echoOf(1000))

	// hold: music, not the echo of its own tone; unhold: the echo.
	callAct(t, inst, id, "unhold", nil, http.StatusConflict)
	if st := callAct(t, inst, id, "hold", nil, http.StatusAccepted); !st.OnHold {
		t.Fatalf("hold: %+v", st)
	}
	pos = heardAfter(t, call, "music on hold", pos, musicNot(1000))
	callAct(t, inst, id, "hold", nil, http.StatusConflict)
	callAct(t, inst, id, "unhold", nil, http.StatusAccepted)
	pos = heardAfter(t, call, "the echo after unhold", pos, echoOf(1000))

	// recording: start, a second of the call, stop; the row and the file.
	callAct(t, inst, id, "recording/stop", nil, http.StatusConflict)
	st = callAct(t, inst, id, "recording/start", map[string]any{}, http.StatusAccepted)
	if st.RecordingID == "" {
		t.Fatalf("recording/start: %+v", st)
	}
	pos = heardAfter(t, call, "a second of the echo while recording", pos+media.SampleRate/2, echoOf(1000))
	callAct(t, inst, id, "recording/stop", nil, http.StatusAccepted)
	recs, err := inst.db.ListRecordings(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var rec *store.Recording
	for i := range recs {
		if recs[i].ID == st.RecordingID {
			rec = &recs[i]
		}
	}
	if rec == nil || rec.Status != store.RecordingCompleted || rec.DurationMS < 500 {
		t.Fatalf("recordings of the call %+v, want %s completed", recs, st.RecordingID)
	}
	left, right := readStereo(t, rec.Path)
	if _, l := strongest(left, media.SampleRate/4, 1000); l < 0.15 {
		t.Errorf("the caller's tone is not on the recording's left (level %.3f)", l)
	}
	if _, l := strongest(right, media.SampleRate/4, 1000); l < 0.15 {
		t.Errorf("the echo is not on the recording's right (level %.3f)", l)
	}

	// hangup, from the command line: the call ends by us, reason api; then
	// it is not live.
	cl := newCLI(t)
	cl.env[envAPIURL], cl.env[envAPIKey] = "http://"+inst.HTTP.String(), testAPIKey
	if out := cl.must("", runCalls, "hangup", "--reason", "test over", id); !strings.Contains(out, id+"\thangup\taccepted") {
		t.Fatalf("calls hangup printed %q", out)
	}
	waitDone(t, call)
	final := callRecord(t, inst, call.CallID())
	if final.HangupBy != store.HangupByLocal || final.HangupReason != store.ReasonAPI {
		t.Fatalf("hangup %s/%s, want local/api", final.HangupBy, final.HangupReason)
	}
	if final.Variables["hangup.api_reason"] != "test over" || final.Variables["recording.id"] != st.RecordingID {
		t.Errorf("variables %v", final.Variables)
	}
	callAct(t, inst, id, "hold", nil, http.StatusConflict)
	if _, err := cl.run("", runCalls, "hangup", id); err == nil || !strings.Contains(err.Error(), "409 call_not_live") {
		t.Fatalf("calls hangup of an ended call: %v", err)
	}
	callAct(t, inst, "00000000-0000-4000-8000-000000000000", "hold", nil, http.StatusNotFound)
}

// A blind transfer over the API while the flow echoes: the callee answers,
// the flow stops and the two talk; mute and hold then act on the caller's
// leg of the bridge.
func TestCallActionTransferThenHoldBridge(t *testing.T) {
	const toneCaller, toneCallee = 1000, 440
	f := mustFlow(t, longEcho)
	inst := bridgeServer(t, f)
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee})
	call, err := testPhone(t).Dial(bctx(t), target(inst, "echo"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Close)
	id := answeredCallID(t, inst)
	call.Play(media.Tone(toneCaller, 100*time.Second, 0.3))
	heardAfter(t, call, "the echo", 0, echoOf(toneCaller))

	callAct(t, inst, id, "transfer", map[string]string{"to": "call me maybe"}, http.StatusBadRequest)
	callAct(t, inst, id, "transfer", map[string]string{"to": "1002"}, http.StatusAccepted)
	callee := answeredCall(t, b)
	hears(t, "the callee", callee, toneCaller)
	pos := heardAfter(t, call, "the callee", 0, echoOf(toneCallee))

	// Mute in on the caller's leg: the callee hears silence.
	callAct(t, inst, id, "mute", map[string]string{"direction": "in"}, http.StatusAccepted)
	bpos := heardAfter(t, callee, "silence from the muted caller", callee.HeardLen(), silent)
	callAct(t, inst, id, "unmute", map[string]string{"direction": "in"}, http.StatusAccepted)
	bpos = heardAfter(t, callee, "the caller after unmute", bpos, echoOf(toneCaller))

	// Hold: the caller hears music instead of the callee, the callee hears
	// nothing of the caller; unhold restores both.
	callAct(t, inst, id, "hold", nil, http.StatusAccepted)
	pos = heardAfter(t, call, "music on hold in the bridge", pos, musicNot(toneCallee))
	bpos = heardAfter(t, callee, "silence from the held caller", bpos, silent)
	callAct(t, inst, id, "unhold", nil, http.StatusAccepted)
	heardAfter(t, call, "the callee after unhold", pos, echoOf(toneCallee))
	heardAfter(t, callee, "the caller after unhold", bpos, echoOf(toneCaller))

	callAct(t, inst, id, "hangup", map[string]string{}, http.StatusAccepted)
	waitDone(t, call)
	select {
	case <-callee.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the callee was not hung up with the caller")
	}
	final := callRecord(t, inst, call.CallID())
	if final.HangupReason != store.ReasonAPI || final.Variables["connect.result"] != "answered" {
		t.Fatalf("record: %s, variables %v", final.HangupReason, final.Variables)
	}
}
