package openai_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/internal/audio"
	"github.com/voxbridge/voxbridge/agent/internal/testutil"
	"github.com/voxbridge/voxbridge/agent/openai"
	"github.com/voxbridge/voxbridge/media"
)

func startTTS(t *testing.T, ctx context.Context, f *fake.OpenAI, cfg openai.Config) agent.TTSStream {
	t.Helper()
	cfg.BaseURL = f.URL
	cfg.APIKey = testKey
	tts, err := openai.NewTTS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tts.Start(ctx, agent.TTSOptions{Voice: "coral"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// untilFinal reads chunks up to and including the first Final or error.
func untilFinal(t *testing.T, st agent.TTSStream) []agent.TTSChunk {
	t.Helper()
	out, _ := testutil.Receive(t, st.Audio(), func(c agent.TTSChunk) bool { return c.Final || c.Err != nil })
	return out
}

func joinPCM(cs []agent.TTSChunk) []int16 {
	var pcm []int16
	for _, c := range cs {
		pcm = append(pcm, c.PCM...)
	}
	return pcm
}

// tones answers the n-th speech request with a tone of freqs[n] lasting
// 65 ms per character, so the order of audio can be checked by pitch.
func tones(freqs ...float64) func(fake.SpeechRequest) fake.SpeechReply {
	n := 0
	return func(r fake.SpeechRequest) fake.SpeechReply {
		hz := freqs[min(n, len(freqs)-1)]
		n++
		return fake.SpeechReply{PCM: audio.Tone(hz, 24000, time.Duration(len(r.Input))*65*time.Millisecond, 0.5)}
	}
}

// LLM-style deltas are cut into sentences, synthesized in order, resampled
// to 8 kHz, and the last chunk of the flush is Final.
func TestTTSSpeaksSentencesInOrder(t *testing.T) {
	noLeaks(t)
	f := fake.NewOpenAI(t, fake.OpenAIScript{APIKey: testKey, SpeechFunc: tones(500, 1000, 1500)})
	st := startTTS(t, context.Background(), f, openai.Config{Model: "tts-1"})
	text := "Hello there. How are you today? I hope, all things considered, that you are well"
	for _, d := range fake.SplitTokens(text) {
		if err := st.WriteText(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	chunks := untilFinal(t, st)
	want := []string{"Hello there.", "How are you today?", "I hope, all things considered, that you are well"}
	if got := f.Spoken(); !slices.Equal(got, want) {
		t.Fatalf("synthesized %q, want %q", got, want)
	}
	for i, c := range chunks {
		if c.Err != nil {
			t.Fatal(c.Err)
		}
		if c.Final != (i == len(chunks)-1) {
			t.Errorf("chunk %d of %d: Final=%v", i, len(chunks), c.Final)
		}
	}
	pcm := joinPCM(chunks)
	pos := 0
	for i, s := range want {
		n := len(s) * 65 * 8 // samples at 8 kHz
		seg := pcm[pos : pos+n]
		pos += n
		hz := []float64{500, 1000, 1500}[i]
		if f := media.DominantFrequency(seg[80:n-80], 200, 3500, 10); math.Abs(f-hz) > 15 {
			t.Errorf("segment %d (%q) sounds at %.0f Hz, want %.0f", i, s, f, hz)
		}
		if l := media.ToneLevel(seg[80:n-80], hz); math.Abs(l-0.5) > 0.02 {
			t.Errorf("segment %d level %.3f, want 0.5", i, l)
		}
	}
	if pos != len(pcm) {
		t.Errorf("got %d samples at 8 kHz, want %d (one third of the 24 kHz audio)", len(pcm), pos)
	}
	for _, r := range f.SpeechRequests() {
		if r.Model != "tts-1" || r.Voice != "coral" || r.ResponseFormat != "pcm" {
			t.Errorf("request %+v", r)
		}
	}
}

// Audio is passed on as the body streams: a slow body yields many chunks,
// the first long before the body ends.
func TestTTSStreamsAudioAsItArrives(t *testing.T) {
	noLeaks(t)
	f := fake.NewOpenAI(t, fake.OpenAIScript{Speech: []fake.SpeechReply{{
		PCM: audio.Tone(1000, 24000, time.Second, 0.5), ChunkBytes: 2400, ChunkGap: 30 * time.Millisecond,
	}}})
	st := startTTS(t, context.Background(), f, openai.Config{})
	st.WriteText("One long sentence")
	st.Flush()
	chunks := untilFinal(t, st)
	if len(chunks) < 10 {
		t.Errorf("1 s of audio sent in 20 pieces arrived as %d chunks; the body was not streamed", len(chunks))
	}
	if n := len(joinPCM(chunks)); n != 8000 {
		t.Errorf("%d samples, want 8000", n)
	}
}

// While one segment plays, at most the next one is requested.
func TestTTSRequestsAtMostOneAhead(t *testing.T) {
	noLeaks(t)
	slow := fake.SpeechReply{PCM: audio.Tone(500, 24000, 2*time.Second, 0.5), ChunkBytes: 4800, ChunkGap: 50 * time.Millisecond}
	f := fake.NewOpenAI(t, fake.OpenAIScript{Speech: []fake.SpeechReply{slow}})
	st := startTTS(t, context.Background(), f, openai.Config{})
	st.WriteText("First sentence here. Second sentence here. Third sentence here. Fourth sentence here. ")
	if c := testutil.Next(t, st.Audio()); c.Err != nil {
		t.Fatal(c.Err)
	}
	testutil.Eventually(t, "the next segment was not requested while the first played", func() bool { return len(f.SpeechRequests()) >= 2 })
	time.Sleep(300 * time.Millisecond) // the first body is still streaming (2 s)
	if n := len(f.SpeechRequests()); n != 2 {
		t.Errorf("%d requests while the first segment plays, want 2", n)
	}
}

func TestTTSFlushMarksFinal(t *testing.T) {
	noLeaks(t)
	f := fake.NewOpenAI(t, fake.OpenAIScript{})
	st := startTTS(t, context.Background(), f, openai.Config{})
	// Nothing to say: one empty Final chunk.
	st.Flush()
	if cs := untilFinal(t, st); len(cs) != 1 || !cs[0].Final || len(cs[0].PCM) != 0 {
		t.Errorf("empty flush gave %+v", cs)
	}
	// Text already cut into segments before the Flush: Final rides on the
	// last audio chunk of the last segment.
	st.WriteText("Okay. Goodbye! ")
	st.Flush()
	cs := untilFinal(t, st)
	if !cs[len(cs)-1].Final || len(cs[len(cs)-1].PCM) == 0 {
		t.Errorf("last chunk %+v, want Final with audio", cs[len(cs)-1])
	}
	// Punctuation alone is not sent for synthesis.
	st.WriteText(" ... ")
	st.Flush()
	untilFinal(t, st)
	if got := f.Spoken(); !slices.Equal(got, []string{"Okay.", "Goodbye!"}) {
		t.Errorf("synthesized %q", got)
	}
	// The default voice is a 440 Hz tone.
	if l := media.ToneLevel(joinPCM(cs), fake.OpenAISpeechToneHz); l < 0.4 {
		t.Errorf("default voice level %.3f at %d Hz", l, fake.OpenAISpeechToneHz)
	}
}

func TestTTSFailures(t *testing.T) {
	ok := fake.SpeechReply{}
	cases := map[string][]fake.SpeechReply{
		"HTTP 500 on the second segment": {ok, {Fault: fake.OpenAIFault{Status: 500}}},
		"HTTP 400":                       {{Fault: fake.OpenAIFault{Status: 400, Message: "voice not found"}}},
		"hang before audio":              {{Fault: fake.OpenAIFault{Hang: true}}},
		"hang mid-body":                  {{ChunkBytes: 960, Fault: fake.OpenAIFault{Hang: true, After: 2}}},
		"drop mid-body":                  {{ChunkBytes: 960, Fault: fake.OpenAIFault{Drop: true, After: 2}}},
		"drop before reply":              {{Fault: fake.OpenAIFault{Drop: true}}},
	}
	for name, replies := range cases {
		t.Run(name, func(t *testing.T) {
			noLeaks(t)
			f := fake.NewOpenAI(t, fake.OpenAIScript{Speech: replies})
			st := startTTS(t, context.Background(), f, openai.Config{Timeout: 500 * time.Millisecond})
			st.WriteText("This is the first sentence. And this is the second one.")
			st.Flush()
			var last agent.TTSChunk
			heard := 0
			for c := range st.Audio() { // must close after the error
				if c.Final {
					t.Fatalf("Final chunk despite the failure")
				}
				heard += len(c.PCM)
				last = c
			}
			if strings.Contains(name, "second") && heard < 8000*len("This is the first")*65/1000 { // the first segment: four words
				t.Errorf("only %d samples of the first segment before the second failed", heard)
			}
			if last.Err == nil {
				t.Fatal("stream closed without an error chunk")
			}
			t.Logf("error: %v", last.Err)
			noKey(t, last.Err)
			var e *openai.Error
			if !errors.As(last.Err, &e) {
				t.Errorf("error %T is not *openai.Error", last.Err)
			}
			if err := st.WriteText("more"); err == nil {
				t.Error("WriteText after failure succeeded")
			}
		})
	}
}

// Cancelling the context mid-body (barge-in) closes the audio channel and
// aborts the HTTP request.
func TestTTSCancelMidStream(t *testing.T) {
	noLeaks(t)
	f := fake.NewOpenAI(t, fake.OpenAIScript{Latency: fake.OpenAILatency{SpeechChunkGap: 40 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := startTTS(t, ctx, f, openai.Config{})
	st.WriteText(strings.Repeat("A rather long sentence that takes a while to say, ", 4) + "the end.")
	st.Flush()
	if c := testutil.Next(t, st.Audio()); c.Err != nil || len(c.PCM) == 0 {
		t.Fatalf("first chunk %+v", c)
	}
	cancel()
	for c := range st.Audio() {
		if c.Err != nil || c.Final {
			t.Errorf("chunk after cancel: %+v", c)
		}
	}
	testutil.Eventually(t, "server did not see the speech request aborted", func() bool { return f.SpeechRequests()[0].Aborted })
	if err := st.WriteText("x"); err == nil {
		t.Error("WriteText after cancel succeeded")
	}
}

func TestTTSCloseIsPromptWithRequestsInFlight(t *testing.T) {
	noLeaks(t)
	f := fake.NewOpenAI(t, fake.OpenAIScript{Speech: []fake.SpeechReply{{Fault: fake.OpenAIFault{Hang: true}}, {Fault: fake.OpenAIFault{Hang: true}}}})
	st := startTTS(t, context.Background(), f, openai.Config{})
	st.WriteText("One. Two. Three. ")
	testutil.Eventually(t, "no request", func() bool { return len(f.SpeechRequests()) > 0 })
	testutil.Returns(t, "Close blocked", func() { st.Close() })
	if _, ok := <-st.Audio(); ok {
		t.Error("audio after Close")
	}
}
