package openai_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/internal/testutil"
	"github.com/voxbridge/voxbridge/agent/openai"
	"github.com/voxbridge/voxbridge/media"
)

func startSTT(t *testing.T, f *fake.OpenAI, cfg openai.Config, opt agent.STTOptions) agent.STTStream {
	t.Helper()
	cfg.BaseURL = f.URL
	cfg.APIKey = testKey
	s, err := openai.NewSTT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Start(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func writeFrames(t *testing.T, st agent.STTStream, pcm []int16) {
	t.Helper()
	for i := 0; i < len(pcm); i += media.FrameSamples {
		if err := st.Write(pcm[i:min(i+media.FrameSamples, len(pcm))]); err != nil {
			t.Fatal(err)
		}
	}
}

func nextSTT(t *testing.T, st agent.STTStream) agent.STTEvent {
	t.Helper()
	return testutil.Next(t, st.Events())
}

// The utterance arrives as a WAV the server can decode into the caller's
// audio, and the transcript comes back as a final.
func TestSTTTranscribesUtterances(t *testing.T) {
	noLeaks(t)
	f := fake.NewOpenAI(t, fake.OpenAIScript{APIKey: testKey, Transcripts: []fake.TranscriptReply{
		{Text: " I'd like to talk to sales. "}, {Text: "Thanks."},
	}})
	st := startSTT(t, f, openai.Config{Model: "whisper-1"}, agent.STTOptions{Language: "en-US"})
	if err := st.Finalize(); err != nil { // nothing written: no request
		t.Fatal(err)
	}
	writeFrames(t, st, media.Tone(600, 800*time.Millisecond, 0.5))
	if err := st.Finalize(); err != nil {
		t.Fatal(err)
	}
	writeFrames(t, st, media.Tone(1500, 400*time.Millisecond, 0.5))
	if err := st.Finalize(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"I'd like to talk to sales.", "Thanks."} {
		ev := nextSTT(t, st)
		if ev.Type != agent.STTFinal || ev.Text != want || ev.At.IsZero() {
			t.Errorf("event %+v, want final %q", ev, want)
		}
	}
	reqs := f.Transcriptions()
	if len(reqs) != 2 {
		t.Fatalf("server got %d requests, want 2 (an empty Finalize sends nothing)", len(reqs))
	}
	for i, c := range []struct {
		hz      float64
		samples int
	}{{600, 6400}, {1500, 3200}} {
		r := reqs[i]
		if r.Model != "whisper-1" || r.Language != "en" || r.Filename != "utterance.wav" {
			t.Errorf("request %d: model %q language %q file %q", i, r.Model, r.Language, r.Filename)
		}
		if len(r.Audio) != c.samples {
			t.Errorf("request %d: %d samples uploaded, want %d", i, len(r.Audio), c.samples)
		}
		if l := media.ToneLevel(r.Audio, c.hz); math.Abs(l-0.5) > 0.02 {
			t.Errorf("request %d: %v Hz level %.3f in the upload, want 0.5", i, c.hz, l)
		}
	}
	if got := f.Heard(); len(got) != 2 || got[1] != "Thanks." {
		t.Errorf("fake heard %q", got)
	}
}

// TranscriptFunc lets a script answer by what the caller said (here: the
// pitch of the uploaded audio).
func TestSTTTranscriptChosenByAudio(t *testing.T) {
	noLeaks(t)
	f := fake.NewOpenAI(t, fake.OpenAIScript{TranscriptFunc: func(r fake.TranscriptionRequest) fake.TranscriptReply {
		return fake.TranscriptReply{Text: fmt.Sprintf("%.0f", media.DominantFrequency(r.Audio, 200, 3000, 50))}
	}})
	st := startSTT(t, f, openai.Config{}, agent.STTOptions{})
	writeFrames(t, st, media.Tone(900, 300*time.Millisecond, 0.4))
	st.Finalize()
	if ev := nextSTT(t, st); ev.Text != "900" {
		t.Errorf("got %+v, want the 900 Hz utterance", ev)
	}
	if r := f.Transcriptions()[0]; r.Model != openai.DefaultSTTModel || r.Language != "" {
		t.Errorf("defaults: model %q language %q", r.Model, r.Language)
	}
}

func TestSTTFailures(t *testing.T) {
	for name, reply := range map[string]fake.TranscriptReply{
		"HTTP 500": {Fault: fake.OpenAIFault{Status: 500}},
		"hang":     {Text: "x", Fault: fake.OpenAIFault{Hang: true}},
		"drop":     {Text: "x", Fault: fake.OpenAIFault{Drop: true}},
	} {
		t.Run(name, func(t *testing.T) {
			noLeaks(t)
			f := fake.NewOpenAI(t, fake.OpenAIScript{Transcripts: []fake.TranscriptReply{reply}})
			st := startSTT(t, f, openai.Config{Timeout: 500 * time.Millisecond}, agent.STTOptions{})
			writeFrames(t, st, media.Tone(600, 200*time.Millisecond, 0.5))
			st.Finalize()
			ev := nextSTT(t, st)
			if ev.Type != agent.STTError || ev.Err == nil {
				t.Fatalf("got %+v, want an error event", ev)
			}
			t.Logf("error: %v", ev.Err)
			noKey(t, ev.Err)
			var e *openai.Error
			if !errors.As(ev.Err, &e) || !e.Temporary() {
				t.Errorf("error %v is not a temporary *openai.Error", ev.Err)
			}
			if more, _ := testutil.Receive(t, st.Events(), nil); len(more) > 0 {
				t.Errorf("stream went on after the error: %+v", more)
			}
			if err := st.Write(make([]int16, 160)); err == nil {
				t.Error("Write after failure succeeded")
			}
		})
	}
}

func TestSTTWrongKeyIsRedacted(t *testing.T) {
	noLeaks(t)
	f := fake.NewOpenAI(t, fake.OpenAIScript{APIKey: "sk-other", Transcripts: []fake.TranscriptReply{{Text: "x"}}})
	st := startSTT(t, f, openai.Config{}, agent.STTOptions{})
	writeFrames(t, st, media.Tone(600, 200*time.Millisecond, 0.5))
	st.Finalize()
	ev := nextSTT(t, st)
	var e *openai.Error
	if !errors.As(ev.Err, &e) || e.StatusCode != 401 || e.Temporary() {
		t.Fatalf("got %+v, want a permanent 401", ev)
	}
	noKey(t, ev.Err)
}

// Close during an upload that never answers returns promptly and stops the
// request.
func TestSTTCloseDuringUpload(t *testing.T) {
	noLeaks(t)
	f := fake.NewOpenAI(t, fake.OpenAIScript{Transcripts: []fake.TranscriptReply{{Fault: fake.OpenAIFault{Hang: true}}}})
	st := startSTT(t, f, openai.Config{}, agent.STTOptions{})
	writeFrames(t, st, media.Tone(600, 200*time.Millisecond, 0.5))
	st.Finalize()
	testutil.Eventually(t, "upload never reached the server", func() bool { return len(f.Transcriptions()) > 0 })
	testutil.Returns(t, "Close blocked on a hanging upload", func() { st.Close() })
	if _, ok := <-st.Events(); ok {
		t.Error("event after Close")
	}
}
