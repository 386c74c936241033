package flow

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
)

func TestTranscribeValidation(t *testing.T) {
	bad := []struct{ name, option, want string }{
		{"no source", `{}`, "option.agent_id"},
		{"both sources", `{"agent_id":"a","provider":"deepgram"}`, "option.provider"},
		{"not an stt provider", `{"provider":"elevenlabs"}`, "option.provider"},
		{"bad direction", `{"agent_id":"a","direction":"sideways"}`, "option.direction"},
		{"bad language", `{"agent_id":"a","language":"english please"}`, "option.language"},
		{"unknown field", `{"agent_id":"a","roles":"x"}`, "option.roles"},
		{"wrong type", `{"agent_id":"a","direction":1}`, "option.direction"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			f := &Flow{ID: "t", Actions: []Action{{Type: "answer"}, {ID: "tr", Type: "transcribe_start", Option: json.RawMessage(c.option)}}}
			err := f.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `"tr"`) {
				t.Fatalf("error %v, want one naming %s and the action", err, c.want)
			}
		})
	}
	for _, ok := range []string{`{"agent_id":"a"}`, `{"provider":"openai","direction":"out"}`, `{"provider":"deepgram","language":"es-ES","direction":"both"}`} {
		if _, err := actionTypes["transcribe_start"](json.RawMessage(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	if _, err := actionTypes["transcribe_stop"](json.RawMessage(`{"now":true}`)); err == nil {
		t.Error("transcribe_stop accepted an option")
	}
}

func TestWarmTransferValidation(t *testing.T) {
	const dst = `"destination":{"type":"extension","target":"1002"}`
	bad := []struct{ name, option, want string }{
		{"announce needs a voice", `{` + dst + `,"mode":"warm","announce":"Hi"}`, "option.agent_id"},
		{"voice without words", `{` + dst + `,"mode":"warm","agent_id":"a"}`, "option.announce"},
		{"blind does not announce", `{` + dst + `,"announce":"Hi","agent_id":"a"}`, "option.announce"},
		{"bad mode", `{` + dst + `,"mode":"lukewarm"}`, "option.mode"},
		{"ring too long", `{` + dst + `,"mode":"warm","timeout_s":601}`, "option.timeout_s"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			f := &Flow{ID: "t", Actions: []Action{{ID: "x", Type: "transfer", Option: json.RawMessage(c.option)}}}
			if err := f.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %s", err, c.want)
			}
		})
	}
	if _, err := actionTypes["transfer"](json.RawMessage(`{` + dst + `,"mode":"warm","announce":"A call from ${call.from_user}","agent_id":"a","timeout_s":5}`)); err != nil {
		t.Fatal(err)
	}
}

// Music on hold is a few seconds of chords: loud enough to hear, with
// energy spread over several notes, and nothing at the 440 Hz and 1 kHz
// test tones (or the 600 Hz menu beep) that tests listen for.
func TestMusicOnHold(t *testing.T) {
	moh := musicOnHold()
	if d := time.Duration(len(moh)) * time.Second / media.SampleRate; d < 3*time.Second || d > 20*time.Second {
		t.Fatalf("loop of %v", d)
	}
	if rms := media.RMS(moh); rms < 500 || rms > 8000 {
		t.Fatalf("RMS %.0f: not soft background music", rms)
	}
	for _, hz := range []float64{440, 600, 1000} {
		if l := media.ToneLevel(moh, hz); l > 0.01 {
			t.Errorf("level %.3f at %v Hz", l, hz)
		}
	}
	// Several notes, and a different chord in each part of the loop.
	var dominant []float64
	for i := 0; i < 4; i++ {
		part := moh[i*len(moh)/4 : (i+1)*len(moh)/4]
		dominant = append(dominant, media.DominantFrequency(part, 150, 600, 1))
		notes := 0
		for _, hz := range []float64{196, 246.94, 261.63, 293.66, 329.63, 349.23, 392} {
			if media.ToneLevel(part, hz) > 0.02 {
				notes++
			}
		}
		if notes < 3 {
			t.Errorf("part %d has %d notes, want a chord", i, notes)
		}
	}
	if dominant[0] == dominant[1] && dominant[1] == dominant[2] {
		t.Errorf("the same dominant note throughout: %v", dominant)
	}
	// The loop starts and ends quietly, so repeating it does not click.
	if a, b := media.RMS(moh[:80]), media.RMS(moh[len(moh)-80:]); a > 300 || b > 300 {
		t.Errorf("loop edges at RMS %.0f and %.0f", a, b)
	}
}
