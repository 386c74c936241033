package openairt_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/internal/testutil"
	"github.com/voxbridge/voxbridge/agent/openairt"
	"github.com/voxbridge/voxbridge/media"
)

func startSTT(t *testing.T, f *fake.Realtime, cfg openairt.Config, opt agent.STTOptions) agent.STTStream {
	t.Helper()
	cfg.BaseURL = f.URL
	cfg.APIKey = testKey
	stt, err := openairt.NewSTT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := stt.Start(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readUntilFinal reads STT events up to the first final or error.
func readUntilFinal(t *testing.T, s agent.STTStream) []agent.STTEvent {
	t.Helper()
	evs, _ := testutil.Receive(t, s.Events(), func(ev agent.STTEvent) bool { return ev.Type == agent.STTFinal || ev.Type == agent.STTError })
	return evs
}

func TestRealtimeSTTTranscribesTurns(t *testing.T) {
	for _, beta := range []bool{false, true} {
		t.Run(map[bool]string{false: "GA", true: "beta"}[beta], func(t *testing.T) {
			noLeaks(t)
			f := fake.NewRealtime(t, fake.RealtimeScript{UserTranscripts: []string{"Hello, I am calling about my bill", "Thanks"}})
			s := startSTT(t, f, openairt.Config{Beta: beta, TranscriptionModel: "gpt-4o-transcribe"}, agent.STTOptions{Language: "en-GB"})
			speak(t, s.Write, utterance(700))
			evs := readUntilFinal(t, s)
			var types []agent.STTEventType
			var partials []string
			for _, ev := range evs {
				types = append(types, ev.Type)
				if ev.Type == agent.STTPartial {
					partials = append(partials, ev.Text)
				}
				if ev.At.IsZero() {
					t.Errorf("event %+v has no time", ev)
				}
			}
			if types[0] != agent.STTSpeechStarted || !slices.Contains(types, agent.STTUtteranceEnd) {
				t.Errorf("event types %v", types)
			}
			if last := evs[len(evs)-1]; last.Type != agent.STTFinal || last.Text != "Hello, I am calling about my bill" {
				t.Errorf("final %+v", last)
			}
			// Partials grow word by word towards the final.
			if len(partials) < 3 || partials[len(partials)-1] != "Hello, I am calling about my bill" || !strings.HasPrefix(partials[len(partials)-1], partials[0]) {
				t.Errorf("partials %q", partials)
			}
			speak(t, s.Write, utterance(500))
			if evs := readUntilFinal(t, s); evs[len(evs)-1].Text != "Thanks" {
				t.Errorf("second turn %+v", evs)
			}
			ss := f.Sessions()[0]
			c := ss.Config
			if !ss.Transcription || ss.Beta != beta || ss.Query.Get("intent") != "transcription" {
				t.Errorf("session %+v", ss)
			}
			if c.TranscriptionModel != "gpt-4o-transcribe" || c.Language != "en" || c.TurnDetection != "server_vad" || !strings.Contains(c.InputFormat, "u") {
				t.Errorf("config %+v", c)
			}
			want := len(utterance(700)) + len(utterance(500))
			testutil.Eventually(t, fmt.Sprintf("server did not receive all %d samples", want), func() bool { return len(f.Sessions()[0].Audio) == want })
		})
	}
}

// Finalize commits what the server holds; an empty commit (the server VAD
// already took the turn) is not an error.
func TestRealtimeSTTFinalize(t *testing.T) {
	noLeaks(t)
	f := fake.NewRealtime(t, fake.RealtimeScript{UserTranscripts: []string{"cut short", "after empty commit"}})
	s := startSTT(t, f, openairt.Config{}, agent.STTOptions{})
	speak(t, s.Write, media.Tone(700, 400*time.Millisecond, 0.3)) // no trailing silence
	if err := s.Finalize(); err != nil {
		t.Fatal(err)
	}
	if evs := readUntilFinal(t, s); evs[len(evs)-1].Text != "cut short" {
		t.Fatalf("events %+v", evs)
	}
	if err := s.Finalize(); err != nil { // nothing buffered
		t.Fatal(err)
	}
	speak(t, s.Write, utterance(900))
	evs := readUntilFinal(t, s)
	for _, ev := range evs {
		if ev.Type == agent.STTError {
			t.Fatalf("empty commit surfaced as %v", ev.Err)
		}
	}
	if evs[len(evs)-1].Text != "after empty commit" {
		t.Errorf("events %+v", evs)
	}
	if n := f.Sessions()[0].Commits; n != 2 {
		t.Errorf("server saw %d commits, want 2", n)
	}
}

func TestRealtimeSTTFailuresEndTheStream(t *testing.T) {
	for name, fault := range map[string]fake.RealtimeFault{
		"dropped":      {DropAfter: 3},
		"server error": {ErrorAfterAudio: 5, ErrorMessage: "internal failure"},
	} {
		t.Run(name, func(t *testing.T) {
			noLeaks(t)
			f := fake.NewRealtime(t, fake.RealtimeScript{Fault: fault, UserTranscripts: []string{"x"}})
			s := startSTT(t, f, openairt.Config{}, agent.STTOptions{})
			talking := make(chan struct{})
			go func() { // keep talking; writes start failing once the stream is down
				defer close(talking)
				for range 100 {
					if s.Write(media.Tone(700, 20*time.Millisecond, 0.3)) != nil {
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
			defer func() { <-talking }()
			evs, _ := testutil.Receive(t, s.Events(), nil)
			var errs []error
			for _, ev := range evs {
				if ev.Type == agent.STTError {
					errs = append(errs, ev.Err)
				}
			}
			if len(errs) != 1 {
				t.Fatalf("%d error events, want exactly 1: %v", len(errs), errs)
			}
			var e *openairt.Error
			if !errors.As(errs[0], &e) || !e.Fatal {
				t.Errorf("error %v, want a fatal *Error", errs[0])
			}
			t.Logf("error: %v", errs[0])
			noKey(t, errs[0])
		})
	}
}
