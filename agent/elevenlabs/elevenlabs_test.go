package elevenlabs_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/elevenlabs"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/internal/testutil"
	"github.com/voxbridge/voxbridge/media"
)

const testKey = "xi-test-key-0123456789abcdef"

const pkgPrefix = "voxbridge/agent/elevenlabs."

const ms = time.Millisecond

// newClient registers a leak check that runs after the streams started
// later are closed by their cleanups.
func newClient(t *testing.T, base string, mod func(*elevenlabs.Config)) *elevenlabs.TTS {
	t.Helper()
	testutil.NoLeaks(t, pkgPrefix)
	var buf bytes.Buffer
	t.Cleanup(func() {
		if strings.Contains(buf.String(), testKey) {
			t.Errorf("the API key appears in the logs:\n%s", buf.String())
		}
	})
	cfg := elevenlabs.Config{
		BaseURL: base, APIKey: testKey,
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := elevenlabs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func start(t *testing.T, c *elevenlabs.TTS, opt agent.TTSOptions) agent.TTSStream {
	t.Helper()
	s, err := c.Start(t.Context(), opt)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// untilFinal reads chunks up to and including the next Final, failing on
// an error chunk, a closed channel or timeout.
func untilFinal(t *testing.T, s agent.TTSStream) (pcm []int16, words []agent.WordTiming, chunks int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c, ok := <-s.Audio():
			if !ok {
				t.Fatalf("audio closed before Final, after %d chunks", chunks)
			}
			if c.Err != nil {
				t.Fatalf("error chunk: %v", c.Err)
			}
			chunks++
			pcm = append(pcm, c.PCM...)
			words = append(words, c.Words...)
			if c.Final {
				return pcm, words, chunks
			}
		case <-deadline:
			t.Fatalf("no Final after 10 s; %d chunks, %d samples", chunks, len(pcm))
		}
	}
}

func dur(samples int) time.Duration { return time.Duration(samples) * time.Second / media.SampleRate }

// wantWords lays out words as the fake's tone synth speaks text: every
// character lasts per, starting at offset.
func wantWords(text string, per, offset time.Duration) []agent.WordTiming {
	var out []agent.WordTiming
	i := 0
	for _, f := range strings.SplitAfter(text, " ") {
		w := strings.TrimSpace(f)
		if w != "" {
			out = append(out, agent.WordTiming{Word: w, Start: offset + time.Duration(i)*per, End: offset + time.Duration(i+len(w))*per})
		}
		i += len(f)
	}
	return out
}

func TestSpeaksTextWithWordTimings(t *testing.T) {
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{APIKey: testKey, ToneHz: 600, PerChar: 40 * ms, ChunkDuration: 100 * ms})
	c := newClient(t, el.URL(), func(c *elevenlabs.Config) { c.Language = "de-DE" })
	s := start(t, c, agent.TTSOptions{Voice: "voiceABC123"})

	for _, part := range []string{"Hello", " there,", " caller."} {
		if err := s.WriteText(part); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	pcm, words, chunks := untilFinal(t, s)

	// What ElevenLabs got: our text, a flush, the end of input, and a
	// first message with voice settings and our chunk schedule.
	sess := el.WaitSession(t, 0, time.Second)
	spoken := "Hello there, caller. " // the flush message carries a space
	if got := sess.Text(); got != spoken {
		t.Errorf("fake received text %q, want %q", got, spoken)
	}
	if sess.Flushes() != 1 || !sess.Ended() {
		t.Errorf("flushes %d, ended %v; want 1 flush then the end of input", sess.Flushes(), sess.Ended())
	}
	init := sess.Init()
	if init.Text != " " || init.VoiceSettings["stability"] != 0.5 || init.VoiceSettings["similarity_boost"] != 0.75 ||
		!slices.Equal(init.GenerationConfig.ChunkLengthSchedule, []int{50, 120, 160, 250}) {
		t.Errorf("first message %+v", init)
	}
	if sess.VoiceID != "voiceABC123" || sess.APIKey != testKey {
		t.Errorf("voice %q key %q", sess.VoiceID, sess.APIKey)
	}
	for k, v := range map[string]string{"model_id": "eleven_flash_v2_5", "output_format": "ulaw_8000", "sync_alignment": "true", "language_code": "de"} {
		if got := sess.Query.Get(k); got != v {
			t.Errorf("query %s=%q, want %q", k, got, v)
		}
	}

	// The audio: 40 ms per character at 600 Hz, decoded from µ-law, in
	// several chunks.
	if want := 40 * ms * time.Duration(len(spoken)); dur(len(pcm)) != want {
		t.Errorf("audio lasts %v, want %v", dur(len(pcm)), want)
	}
	if f := media.DominantFrequency(pcm, 100, 3900, 5); math.Abs(f-600) > 10 {
		t.Errorf("dominant frequency %.0f Hz, want 600", f)
	}
	if lvl := media.ToneLevel(pcm, 600); math.Abs(lvl-0.3) > 0.03 {
		t.Errorf("600 Hz level %.3f, want 0.3", lvl)
	}
	if chunks < 5 {
		t.Errorf("%d chunks for %v of audio in 100 ms messages", chunks, dur(len(pcm)))
	}
	// Characters grouped into words, across message boundaries ("there,"
	// spans two 100 ms messages).
	if want := wantWords(spoken, 40*ms, 0); !slices.Equal(words, want) {
		t.Errorf("words\n got %v\nwant %v", words, want)
	}
}

func TestTextAfterFlushContinuesTheStream(t *testing.T) {
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{PerChar: 20 * ms})
	s := start(t, newClient(t, el.URL(), nil), agent.TTSOptions{})

	s.WriteText("One moment.")
	s.Flush()
	first, _, _ := untilFinal(t, s)
	// Nothing written since: Flush still answers with a Final at once.
	s.Flush()
	if pcm, words, _ := untilFinal(t, s); len(pcm) != 0 || len(words) != 0 {
		t.Errorf("empty flush gave %d samples and %v", len(pcm), words)
	}
	s.WriteText("Here it is.")
	s.Flush()
	second, words, _ := untilFinal(t, s)
	if want := 20 * ms * time.Duration(len("Here it is. ")); dur(len(second)) != want {
		t.Errorf("second part lasts %v, want %v", dur(len(second)), want)
	}
	// Word offsets run on from the first part's audio.
	if want := wantWords("Here it is. ", 20*ms, dur(len(first))); !slices.Equal(words, want) {
		t.Errorf("words\n got %v\nwant %v", words, want)
	}
	if n := len(el.Sessions()); n != 2 {
		t.Errorf("%d connections, want 2 (one per flushed part)", n)
	}
}

func TestAudioStartsBeforeFlush(t *testing.T) {
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{PerChar: 10 * ms})
	s := start(t, newClient(t, el.URL(), nil), agent.TTSOptions{})
	// Past the first chunk length (50): synthesis starts without a flush,
	// as an LLM's first sentence streams in.
	for _, w := range strings.Fields("Thanks for calling the clinic, how can I help you with your appointment today") {
		s.WriteText(w + " ")
	}
	select {
	case c := <-s.Audio():
		if c.Err != nil || len(c.PCM) == 0 || c.Final {
			t.Fatalf("first chunk %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no audio before Flush")
	}
	if el.WaitSession(t, 0, time.Second).Flushes() != 0 {
		t.Error("a flush was sent")
	}
}

// The fake's first-audio latency is what benchmarks lean on: audio never
// comes sooner than it.
func TestFakeFirstAudioLatency(t *testing.T) {
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{FirstAudioLatency: 150 * ms})
	s := start(t, newClient(t, el.URL(), nil), agent.TTSOptions{})
	sent := time.Now()
	s.WriteText("Hi.")
	s.Flush()
	c := <-s.Audio()
	if c.Err != nil || len(c.PCM) == 0 || time.Since(sent) < 150*ms {
		t.Errorf("first chunk %d samples, err %v, after %v; want audio no sooner than 150ms", len(c.PCM), c.Err, time.Since(sent))
	}
}

func TestIdleConnectionIsReopened(t *testing.T) {
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{InactivityTimeout: 100 * ms, PerChar: 10 * ms})
	s := start(t, newClient(t, el.URL(), nil), agent.TTSOptions{})
	select {
	case <-el.WaitSession(t, 0, time.Second).Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the fake did not drop the idle connection")
	}
	s.WriteText("Still there?")
	s.Flush()
	pcm, words, _ := untilFinal(t, s)
	if len(pcm) == 0 || len(words) != 2 {
		t.Errorf("after reopening: %d samples, words %v", len(pcm), words)
	}
	if n := len(el.Sessions()); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestConnectFailures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		key       string
		temporary bool
		want      string
	}{
		{"bad key", 0, "xi-wrong-key-0123456789", false, "HTTP 401"},
		{"server error", 503, testKey, true, "HTTP 503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{APIKey: testKey, Failure: fake.ElevenLabsFailure{Status: tc.status}})
			_, err := newClient(t, el.URL(), func(c *elevenlabs.Config) { c.APIKey = tc.key }).Start(t.Context(), agent.TTSOptions{})
			var e *elevenlabs.Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), tc.want) || e.Temporary() != tc.temporary {
				t.Fatalf("Start: %v, want %q temporary=%v", err, tc.want, tc.temporary)
			}
			if strings.Contains(err.Error(), tc.key) {
				t.Errorf("error shows the key: %v", err)
			}
			// The fake echoes a wrong key back; the client must cut it out.
			if tc.status == 0 && !strings.Contains(err.Error(), "[redacted]") {
				t.Errorf("error %q does not show the echoed key was removed", err)
			}
		})
	}
	t.Run("bad voice id", func(t *testing.T) {
		_, err := newClient(t, "http://127.0.0.1:1", nil).Start(t.Context(), agent.TTSOptions{Voice: "../admin"})
		if err == nil || !strings.Contains(err.Error(), "voice ID") {
			t.Fatalf("Start: %v", err)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		base := srv.URL
		srv.Close()
		if _, err := newClient(t, base, nil).Start(t.Context(), agent.TTSOptions{}); err == nil || !strings.Contains(err.Error(), "elevenlabs connect") {
			t.Fatalf("Start: %v", err)
		}
	})
}

// failing writes text, flushes and returns the stream's error, which must
// be the last chunk before Audio closes.
func failing(t *testing.T, s agent.TTSStream, text string) *elevenlabs.Error {
	t.Helper()
	s.WriteText(text)
	s.Flush()
	var last agent.TTSChunk
	errs := 0
	deadline := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case c, ok := <-s.Audio():
			if !ok {
				open = false
				continue
			}
			if c.Err != nil {
				errs++
			}
			last = c
		case <-deadline:
			t.Fatal("stream did not end within 10 s")
		}
	}
	if errs != 1 || last.Err == nil {
		t.Fatalf("want one error chunk, last; got %d errors, last %+v", errs, last)
	}
	var e *elevenlabs.Error
	if !errors.As(last.Err, &e) {
		t.Fatalf("error %T %v", last.Err, last.Err)
	}
	if strings.Contains(e.Error(), testKey) {
		t.Errorf("error shows the key: %v", e)
	}
	if err := s.WriteText("more"); err == nil {
		t.Error("WriteText on a failed stream succeeded")
	}
	return e
}

func TestStreamFailures(t *testing.T) {
	t.Run("dropped connection", func(t *testing.T) {
		el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{Failure: fake.ElevenLabsFailure{DropAfterChunks: 2}})
		e := failing(t, start(t, newClient(t, el.URL(), nil), agent.TTSOptions{}), "A long enough sentence to need several chunks of audio.")
		if !strings.Contains(e.Message, "connection lost") {
			t.Errorf("drop: %v", e)
		}
	})
	t.Run("error message", func(t *testing.T) {
		el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{Failure: fake.ElevenLabsFailure{Error: "quota exceeded"}})
		e := failing(t, start(t, newClient(t, el.URL(), nil), agent.TTSOptions{}), "Hello.")
		if e.Code != "fake_error" || !strings.Contains(e.Message, "quota exceeded") {
			t.Errorf("error message: %v (code %q)", e, e.Code)
		}
	})
	t.Run("hung server", func(t *testing.T) {
		el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{Failure: fake.ElevenLabsFailure{Hang: true}})
		c := newClient(t, el.URL(), func(c *elevenlabs.Config) { c.ResponseTimeout = 300 * ms })
		e := failing(t, start(t, c, agent.TTSOptions{}), "Hello.")
		if !strings.Contains(e.Message, "no reply") {
			t.Errorf("hang: %v", e)
		}
	})
	t.Run("drop before audio is retried once", func(t *testing.T) {
		el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{PerChar: 10 * ms, Failure: fake.ElevenLabsFailure{DropBeforeAudio: true}})
		e := failing(t, start(t, newClient(t, el.URL(), nil), agent.TTSOptions{}), "Hello there.")
		if !strings.Contains(e.Message, "connection lost") {
			t.Errorf("drop: %v", e)
		}
		if n := el.Attempts(); n != 2 {
			t.Errorf("%d connections, want 2: one retry, no more", n)
		}
	})
	t.Run("drop before audio, retry works", func(t *testing.T) {
		el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{PerChar: 10 * ms, Failure: fake.ElevenLabsFailure{DropBeforeAudio: true, Connections: 1}})
		s := start(t, newClient(t, el.URL(), nil), agent.TTSOptions{})
		s.WriteText("Hello ")
		s.WriteText("there.")
		s.Flush()
		pcm, words, _ := untilFinal(t, s)
		if dur(len(pcm)) != 10*ms*time.Duration(len("Hello there. ")) || len(words) != 2 {
			t.Errorf("after the retry: %v of audio, words %v", dur(len(pcm)), words)
		}
		sessions := el.Sessions()
		if len(sessions) != 2 || sessions[1].Text() != sessions[0].Text() {
			t.Errorf("%d sessions; the second must repeat the first's text", len(sessions))
		}
	})
	t.Run("retry succeeds after failures", func(t *testing.T) {
		el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{Failure: fake.ElevenLabsFailure{Status: 500, Connections: 1}})
		c := newClient(t, el.URL(), nil)
		if _, err := c.Start(t.Context(), agent.TTSOptions{}); err == nil {
			t.Fatal("first attempt succeeded")
		}
		s := start(t, c, agent.TTSOptions{})
		s.WriteText("Better.")
		s.Flush()
		untilFinal(t, s)
	})
	audio := base64.StdEncoding.EncodeToString(make([]byte, 160))
	for _, bad := range []struct {
		name string
		typ  int
		msg  string
		want string
	}{
		{"malformed JSON", websocket.TextMessage, `{"audio":`, "bad message"},
		{"binary message", websocket.BinaryMessage, "\x00", "unexpected binary"},
		{"bad base64", websocket.TextMessage, `{"audio":"%%%"}`, "not base64"},
		{"alignment lengths differ", websocket.TextMessage,
			`{"audio":"` + audio + `","alignment":{"chars":["a","b"],"charStartTimesMs":[0],"charsDurationsMs":[1,1]}}`, "2 chars, 1 start times"},
		{"alignment times out of range", websocket.TextMessage,
			`{"audio":"` + audio + `","alignment":{"chars":["a"],"charStartTimesMs":[-5],"charsDurationsMs":[1]}}`, "out of range"},
		{"closed before isFinal", websocket.CloseMessage, "", "closed before isFinal"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			srv := rawServer(t, func(c *websocket.Conn) {
				if bad.typ == websocket.CloseMessage {
					c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
					return
				}
				c.WriteMessage(bad.typ, []byte(bad.msg))
			})
			e := failing(t, start(t, newClient(t, srv, nil), agent.TTSOptions{}), "Hi.")
			if !strings.Contains(e.Error(), bad.want) {
				t.Errorf("%s: %v, want %q", bad.name, e, bad.want)
			}
		})
	}
}

// rawServer answers the end of input ({"text":""}) with script: for
// messages no fake would send.
func rawServer(t *testing.T, script func(*websocket.Conn)) string {
	up := websocket.Upgrader{}
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		go func() { <-done; c.Close() }()
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if string(msg) == `{"text":""}` {
				script(c)
			}
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.URL
}

func TestNormalizedAlignmentFallback(t *testing.T) {
	audio := base64.StdEncoding.EncodeToString(make([]byte, 800)) // 100 ms
	srv := rawServer(t, func(c *websocket.Conn) {
		// No alignment, only normalizedAlignment, with the multi-stream
		// spelling of the durations; numbers spelled out as ElevenLabs
		// normalizes them.
		c.WriteMessage(websocket.TextMessage, []byte(`{"audio":"`+audio+`","alignment":null,"normalizedAlignment":`+
			`{"chars":["t","w","o"," ","p","m"],"charStartTimesMs":[0,10,20,30,40,60],"charDurationsMs":[10,10,10,10,20,40]}}`))
		c.WriteMessage(websocket.TextMessage, []byte(`{"audio":null,"isFinal":true}`))
	})
	s := start(t, newClient(t, srv, nil), agent.TTSOptions{})
	s.WriteText("2 pm")
	s.Flush()
	pcm, words, _ := untilFinal(t, s)
	want := []agent.WordTiming{{Word: "two", Start: 0, End: 30 * ms}, {Word: "pm", Start: 40 * ms, End: 100 * ms}}
	if len(pcm) != 800 || !slices.Equal(words, want) {
		t.Errorf("%d samples, words %v; want 800 and %v", len(pcm), words, want)
	}
}

// Each case's client checks, when the case ends, that none of its
// goroutines is left (see newClient); the streams here are not closed by
// a cleanup, so what ends them is what the case does.
func TestCloseAndCancelStopAtOnce(t *testing.T) {
	// Slow synthesis: 2 s of audio in 100 ms messages, 100 ms apart.
	slow := fake.ElevenLabsOptions{PerChar: 100 * ms, ChunkDuration: 100 * ms, ChunkInterval: 100 * ms}
	t.Run("Close mid-synthesis, nobody reading", func(t *testing.T) {
		el := fake.NewElevenLabs(t, slow)
		s, err := newClient(t, el.URL(), nil).Start(t.Context(), agent.TTSOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.WriteText("Twenty chars of text")
		s.Flush()
		if ch := <-s.Audio(); ch.Err != nil || len(ch.PCM) == 0 {
			t.Fatalf("first chunk %+v", ch)
		}
		// Barge-in: Close returns with the rest undelivered.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		var got time.Duration
		for ch := range s.Audio() {
			if ch.Err != nil {
				t.Errorf("Close produced an error chunk: %v", ch.Err)
			}
			got += dur(len(ch.PCM))
		}
		if got >= 1900*ms {
			t.Errorf("%v of audio still delivered after Close", got)
		}
		if err := s.WriteText("x"); err == nil {
			t.Error("WriteText after Close succeeded")
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		el := fake.NewElevenLabs(t, slow)
		ctx, cancel := context.WithCancel(t.Context())
		s, err := newClient(t, el.URL(), nil).Start(ctx, agent.TTSOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.WriteText("Twenty chars of text")
		s.Flush()
		<-s.Audio()
		cancel()
		for range s.Audio() {
		}
	})
	t.Run("failed stream", func(t *testing.T) {
		drop := fake.NewElevenLabs(t, fake.ElevenLabsOptions{Failure: fake.ElevenLabsFailure{DropAfterChunks: 1}})
		s, err := newClient(t, drop.URL(), nil).Start(t.Context(), agent.TTSOptions{})
		if err != nil {
			t.Fatal(err)
		}
		failing(t, s, "Gone soon.")
	})
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  elevenlabs.Config
		want string
	}{
		{elevenlabs.Config{}, "no API key"},
		{elevenlabs.Config{APIKey: "k", BaseURL: "ftp://x"}, `scheme "ftp"`},
		{elevenlabs.Config{APIKey: "k", BaseURL: "::"}, "want ws(s)://"},
		{elevenlabs.Config{APIKey: "k", ChunkLengthSchedule: []int{10}}, "outside ElevenLabs' 50-500"},
		{elevenlabs.Config{APIKey: "k", InactivityTimeout: time.Hour}, "outside 0-180s"},
	} {
		if _, err := elevenlabs.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestBaseURLForms(t *testing.T) {
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{})
	for _, base := range []string{el.URL(), el.URL() + "/", el.URL() + "/v1", strings.Replace(el.URL(), "http://", "ws://", 1)} {
		s, err := newClient(t, base, nil).Start(t.Context(), agent.TTSOptions{})
		if err != nil {
			t.Errorf("base %q: %v", base, err)
			continue
		}
		s.Close()
	}
}
