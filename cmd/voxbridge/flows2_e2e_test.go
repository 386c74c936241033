package main

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// exampleServer starts voxbridge running f for every call, recording into
// a temporary directory, at the time now says (nil: the real time), with
// extension 1002 for the callee phone.
func exampleServer(t *testing.T, f *flow.Flow, now func() time.Time) *instance {
	t.Helper()
	cfg := defaultServeConfig()
	cfg.SIPAnonymous = "sales"
	cfg.SIPAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.DB = filepath.Join(t.TempDir(), "voxbridge.db")
	cfg.RecordDir = t.TempDir()
	inst, err := startInstance(cfg, testLogger(t), instanceOptions{flow: f, now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	ext := store.Extension{Number: "1002", DisplayName: "Sales", Enabled: true}
	if err := ext.SetPassword(cfg.SIPRealm, extPass); err != nil {
		t.Fatal(err)
	}
	if err := inst.db.CreateExtension(context.Background(), &ext); err != nil {
		t.Fatal(err)
	}
	return inst
}

func exampleFlow(t *testing.T, name string) *flow.Flow {
	t.Helper()
	f, err := flow.ParseFile(filepath.Join("../../testdata/flows", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	return f
}

// dialSales calls the server anonymously.
func dialSales(t *testing.T, inst *instance) *siptest.Call {
	t.Helper()
	a, err := testPhone(t).Dial(bctx(t), target(inst, "sales"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// stereoChannels reads a 16-bit stereo WAV file into its two channels.
func stereoChannels(t *testing.T, path string) (left, right []int16) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		t.Fatalf("%s is not a WAV file", path)
	}
	channels := 0
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		body := b[off+8 : min(off+8+size, len(b))]
		switch id {
		case "fmt ":
			channels = int(binary.LittleEndian.Uint16(body[2:]))
			if bits := binary.LittleEndian.Uint16(body[14:]); bits != 16 {
				t.Fatalf("%s: %d bits per sample", path, bits)
			}
		case "data":
			if channels != 2 {
				t.Fatalf("%s: %d channels, want 2", path, channels)
			}
			for i := 0; i+4 <= len(body); i += 4 {
				left = append(left, int16(binary.LittleEndian.Uint16(body[i:])))
				right = append(right, int16(binary.LittleEndian.Uint16(body[i+2:])))
			}
			return left, right
		}
		off += 8 + size + size&1
	}
	t.Fatalf("%s has no data chunk", path)
	return nil, nil
}

// testdata/flows/voicemail.json: the caller hears the greeting and the
// beep, speaks (a tone), presses #; the recording holds the tone on the
// caller's channel only, its row is completed, and # is what ended it.
func TestVoicemailExample(t *testing.T) {
	inst := exampleServer(t, exampleFlow(t, "voicemail.json"), nil)
	a := dialSales(t, inst)
	hears(t, "the caller (the beep)", a, 1000)
	<-a.Play(media.Tone(toneCaller, 1500*time.Millisecond, 0.5))
	if _, err := a.SendDTMF('#', 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)

	rec, actions := getCallView(t, inst, a.CallID())
	if trail := actionTrail(actions); trail != "answer greeting record goodbye hangup(stop)" {
		t.Errorf("actions: %s", trail)
	}
	if rec.Variables[flow.VarRecordingEndReason] != flow.RecordingEndKey || rec.Variables[flow.VarRecordingEndKey] != "#" {
		t.Errorf("recording ended by %q key %q; want key #", rec.Variables[flow.VarRecordingEndReason], rec.Variables[flow.VarRecordingEndKey])
	}
	recs, err := inst.db.ListRecordings(context.Background(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d recordings, want 1", len(recs))
	}
	r := recs[0]
	if r.Status != store.RecordingCompleted || r.Channels != 2 || r.TMEnd == nil || r.ID != rec.Variables[flow.VarRecordingID] {
		t.Fatalf("recording row: %+v; want completed, 2 channels, id %s", r, rec.Variables[flow.VarRecordingID])
	}
	// 1.5 s of tone plus the time to press #; not the whole call.
	if r.DurationMS < 1400 || r.DurationMS > 10000 {
		t.Errorf("recording lasted %d ms, want the message only (~1.5-3 s)", r.DurationMS)
	}
	left, right := stereoChannels(t, r.Path)
	if int64(len(left))*1000/media.SampleRate != r.DurationMS {
		t.Errorf("file holds %d samples, row says %d ms", len(left), r.DurationMS)
	}
	if _, l := strongest(left, media.SampleRate/4, toneCaller); l < 0.2 {
		t.Errorf("caller's tone not on the left channel (level %.3f)", l)
	}
	if _, l := strongest(right, media.SampleRate/4, toneCaller); l > 0.05 {
		t.Errorf("caller's tone leaked to the right channel (level %.3f)", l)
	}
	// The beep comes before the recording, so it is not in it.
	if _, l := strongest(right, media.SampleRate/4, 1000); l > 0.05 {
		t.Errorf("the beep is in the recording (level %.3f)", l)
	}
}

// transfer (blind) bridges the caller to a registered extension: each side
// hears the other's tone, and the callee's hangup ends the caller.
func TestTransferBlind(t *testing.T) {
	inst := exampleServer(t, mustFlow(t, `{
  "id": "front-desk",
  "actions": [
    {"type": "answer"},
    {"type": "beep", "option": {"frequency_hz": 1000, "duration_ms": 200}},
    {"id": "xfer", "type": "transfer", "option": {"destination": {"type": "extension", "target": "1002"}, "mode": "blind"}},
    {"type": "hangup"}
  ]
}`), nil)
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee})
	a := dialSales(t, inst)
	bc := answeredCall(t, b)
	a.Play(media.Tone(toneCaller, 4*time.Second, 0.5))
	hears(t, "the transferred extension", bc, toneCaller)
	hears(t, "the caller", a, toneCallee)
	if err := bc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)
	rec, actions := getCallView(t, inst, a.CallID())
	if trail := actionTrail(actions); trail != "answer beep xfer(stop)" {
		t.Errorf("actions: %s", trail)
	}
	legs := finalChained(t, inst, rec.ID, 1)
	if legs[0].ID != rec.Variables[flow.VarConnectCallID] || legs[0].TMProgressing == nil {
		t.Errorf("transferred leg %+v; caller's connect.call_id %q", legs[0], rec.Variables[flow.VarConnectCallID])
	}
}

// A Wednesday at 10:00 in Madrid: inside the IVR's business hours.
func officeHours() time.Time {
	loc, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		panic(err)
	}
	return time.Date(2026, 11, 18, 10, 0, 0, 0, loc)
}

// testdata/flows/ivr.json, key 1: the caller is connected to extension 1002.
func TestIVRExampleSales(t *testing.T) {
	inst := exampleServer(t, exampleFlow(t, "ivr.json"), officeHours)
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee})
	a := dialSales(t, inst)
	hears(t, "the caller (the menu beep)", a, toneMenu)
	if _, err := a.SendDTMF('1', 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	bc := answeredCall(t, b)
	a.Play(media.Tone(toneCaller, 4*time.Second, 0.5))
	hears(t, "extension 1002", bc, toneCaller)
	hears(t, "the caller", a, toneCallee)
	if err := bc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)
	rec, actions := getCallView(t, inst, a.CallID())
	if trail := actionTrail(actions); trail != "hours answer welcome menu choice route(jump:sales) sales(stop)" {
		t.Errorf("actions: %s", trail)
	}
	if rec.Variables[flow.VarCallDigits] != "1" || rec.Variables[flow.VarConnectResult] != "answered" {
		t.Errorf("digits %q connect.result %q", rec.Variables[flow.VarCallDigits], rec.Variables[flow.VarConnectResult])
	}
}

// testdata/flows/ivr.json, no key: the menu plays three times (once and two
// repeats), then goodbye and hangup.
func TestIVRExampleNoKey(t *testing.T) {
	inst := exampleServer(t, exampleFlow(t, "ivr.json"), officeHours)
	a := dialSales(t, inst)
	waitDone(t, a)
	_, actions := getCallView(t, inst, a.CallID())
	const want = "hours answer welcome " +
		"menu choice route repeat(jump:menu) " +
		"menu choice route repeat(jump:menu) " +
		"menu choice route repeat goodbye end(stop)"
	if trail := actionTrail(actions); trail != want {
		t.Errorf("actions:\n got %s\nwant %s", trail, want)
	}
	if seq := toneSequence(a.Heard(), toneMenu); len(seq) != 3 {
		t.Errorf("heard the menu beep %d times, want 3", len(seq))
	}
}

// Outside business hours the IVR says goodbye without a menu.
func TestIVRExampleClosed(t *testing.T) {
	inst := exampleServer(t, exampleFlow(t, "ivr.json"), func() time.Time { return officeHours().AddDate(0, 0, 3) }) // Saturday 10:00
	a := dialSales(t, inst)
	waitDone(t, a)
	_, actions := getCallView(t, inst, a.CallID())
	if trail := actionTrail(actions); trail != "hours(jump:closed) closed goodbye end(stop)" {
		t.Errorf("actions: %s", trail)
	}
}

// recording_start's other options: a mono background recording stopped by
// recording_stop, one ended by the caller's silence, one by max_duration_s.
func TestRecordingOptions(t *testing.T) {
	inst := exampleServer(t, mustFlow(t, `{
  "id": "rec",
  "actions": [
    {"type": "answer"},
    {"id": "mono", "type": "recording_start", "option": {"stereo": false}},
    {"type": "beep", "option": {"frequency_hz": 1400, "duration_ms": 600}},
    {"id": "stop", "type": "recording_stop"},
    {"type": "variable_set", "option": {"key": "first", "value": "${recording.end_reason}"}},
    {"id": "quiet", "type": "recording_start", "option": {"end_on_silence_s": 1}},
    {"type": "variable_set", "option": {"key": "second", "value": "${recording.end_reason}"}},
    {"id": "short", "type": "recording_start", "option": {"max_duration_s": 1}},
    {"type": "sleep", "option": {"duration_ms": 2500}},
    {"type": "hangup"}
  ]
}`), nil)
	a := dialSales(t, inst)
	waitDone(t, a)
	rec, actions := getCallView(t, inst, a.CallID())
	if trail := actionTrail(actions); trail != "answer mono beep stop variable_set quiet variable_set short sleep hangup(stop)" {
		t.Errorf("actions: %s", trail)
	}
	if got := [3]string{rec.Variables["first"], rec.Variables["second"], rec.Variables[flow.VarRecordingEndReason]}; got != [3]string{"stop", "silence", "max_duration"} {
		t.Errorf("end reasons %q, want stop, silence, max_duration", got)
	}
	recs, err := inst.db.ListRecordings(context.Background(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d recordings, want 3", len(recs))
	}
	for i, r := range recs {
		if r.Status != store.RecordingCompleted {
			t.Errorf("recording %d: status %q error %q", i, r.Status, r.Error)
		}
	}
	mono := recs[0]
	if mono.Channels != 1 {
		t.Errorf("first recording has %d channels, want 1", mono.Channels)
	}
	pcm, err := media.ReadWAVFile(mono.Path)
	if err != nil {
		t.Fatal(err)
	}
	// The mix averages the sides: the 0.3 beep is at half its level.
	if _, l := strongest(pcm, media.SampleRate/4, 1400); l < 0.1 {
		t.Errorf("the beep is not in the mono recording (level %.3f)", l)
	}
	if _, err := os.Stat(mono.Path[:len(mono.Path)-len(".wav")] + ".stereo.wav"); !os.IsNotExist(err) {
		t.Errorf("the stereo intermediate of the mono recording is still there (%v)", err)
	}
	// 1 s of silence ends the second; the third stops at 1 s.
	if d := recs[1].DurationMS; d < 900 || d > 5000 {
		t.Errorf("silence-ended recording lasted %d ms", d)
	}
	if d := recs[2].DurationMS; d < 900 || d > 1500 {
		t.Errorf("max_duration_s 1 recording lasted %d ms", d)
	}
}

// amd sets ${call.amd} from what the far side sends after answer: a short
// spoken "hello" then silence is a person, a long greeting or a voicemail
// beep is a machine (hung up with on_machine hangup), nothing is unknown.
func TestAMD(t *testing.T) {
	speech, err := media.ReadWAVFile("../../media/vad/testdata/s1.wav")
	if err != nil {
		t.Fatal(err)
	}
	short := speech[:media.SampleRate*6/5] // 1.2 s
	for _, tc := range []struct {
		name, onMachine string
		audio           []int16
		want, trail     string
	}{
		{"short greeting", "hangup", short, flow.AMDHuman, "answer amd hangup(stop)"},
		{"long greeting", "continue", speech, flow.AMDMachine, "answer amd hangup(stop)"},
		{"beep", "hangup", media.Tone(1000, 2*time.Second, 0.4), flow.AMDMachine, "answer amd(stop)"},
		{"silence", "hangup", nil, flow.AMDUnknown, "answer amd hangup(stop)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := exampleServer(t, mustFlow(t, `{"id": "amd", "actions": [
  {"type": "answer"},
  {"type": "amd", "option": {"timeout_ms": 6000, "on_machine": "`+tc.onMachine+`"}},
  {"type": "hangup"}]}`), nil)
			a := dialSales(t, inst)
			if tc.audio != nil {
				a.Play(tc.audio)
			}
			waitDone(t, a)
			rec, actions := getCallView(t, inst, a.CallID())
			if got := rec.Variables[flow.VarCallAMD]; got != tc.want {
				t.Errorf("call.amd %q, want %q", got, tc.want)
			}
			if trail := actionTrail(actions); trail != tc.trail {
				t.Errorf("actions: %s, want %s", trail, tc.trail)
			}
		})
	}
}
