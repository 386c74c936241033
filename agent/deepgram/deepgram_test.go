package deepgram_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/deepgram"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/internal/testutil"
	"github.com/voxbridge/voxbridge/media"
)

const testKey = "dg-test-key-0123456789abcdef"

const pkgPrefix = "voxbridge/agent/deepgram."

// logBuffer collects everything the client logs, to check keys stay out.
func logBuffer(t *testing.T) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	t.Cleanup(func() {
		if strings.Contains(buf.String(), testKey) {
			t.Errorf("the API key appears in the logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

// newClient registers a leak check that runs after the streams started
// later are closed by their cleanups.
func newClient(t *testing.T, base string, mod func(*deepgram.Config)) *deepgram.STT {
	t.Helper()
	testutil.NoLeaks(t, pkgPrefix)
	log, _ := logBuffer(t)
	cfg := deepgram.Config{BaseURL: base, APIKey: testKey, Logger: log}
	if mod != nil {
		mod(&cfg)
	}
	c, err := deepgram.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func start(t *testing.T, c *deepgram.STT, opt agent.STTOptions) agent.STTStream {
	t.Helper()
	s, err := c.Start(t.Context(), opt)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// frames cuts pcm into 20 ms frames.
func frames(pcm []int16) []agent.Frame {
	var out []agent.Frame
	for len(pcm) >= media.FrameSamples {
		out = append(out, pcm[:media.FrameSamples])
		pcm = pcm[media.FrameSamples:]
	}
	return out
}

func speech(d time.Duration) []int16 { return media.Tone(440, d, 0.3) }

func write(t *testing.T, s agent.STTStream, pcm ...[]int16) {
	t.Helper()
	for _, f := range frames(slices.Concat(pcm...)) {
		if err := s.Write(f); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// collect reads events until stop returns true for one, the channel
// closes, or timeout passes (a failure).
func collect(t *testing.T, s agent.STTStream, timeout time.Duration, stop func(agent.STTEvent) bool) []agent.STTEvent {
	t.Helper()
	var got []agent.STTEvent
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				return got
			}
			got = append(got, ev)
			if stop != nil && stop(ev) {
				return got
			}
		case <-deadline:
			t.Fatalf("timed out after %v; events so far: %s", timeout, describe(got))
		}
	}
}

func describe(evs []agent.STTEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n  %s", describeOne(ev))
	}
	return b.String()
}

func describeOne(ev agent.STTEvent) string {
	name := map[agent.STTEventType]string{
		agent.STTPartial: "partial", agent.STTFinal: "final", agent.STTSpeechStarted: "speech-started",
		agent.STTUtteranceEnd: "utterance-end", agent.STTError: "error",
	}[ev.Type]
	switch {
	case ev.Err != nil:
		return name + ": " + ev.Err.Error()
	case ev.Type == agent.STTPartial || ev.Type == agent.STTFinal:
		return fmt.Sprintf("%s %q", name, ev.Text)
	}
	return name
}

// kinds drops partials, whose number depends on pacing, leaving the
// sequence a user reasons about.
func kinds(evs []agent.STTEvent) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type != agent.STTPartial {
			out = append(out, describeOne(ev))
		}
	}
	return out
}

func TestUtterancesFromAudio(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{
		APIKey:     testKey,
		Utterances: []string{"I would like to book a table.", "For two people."},
	})
	c := newClient(t, dg.URL(), func(c *deepgram.Config) { c.Endpointing = 300 * time.Millisecond })
	s := start(t, c, agent.STTOptions{Language: "en-GB"})

	silence := media.Silence
	write(t, s, silence(200*time.Millisecond), speech(1200*time.Millisecond), silence(1500*time.Millisecond),
		speech(600*time.Millisecond), silence(1500*time.Millisecond))
	ends := 0
	evs := collect(t, s, 10*time.Second, func(ev agent.STTEvent) bool {
		if ev.Type == agent.STTUtteranceEnd {
			ends++
		}
		return ends == 2
	})
	want := []string{
		"speech-started", `final "I would like to book a table."`, "utterance-end",
		"speech-started", `final "For two people."`, "utterance-end",
	}
	if got := kinds(evs); !slices.Equal(got, want) {
		t.Fatalf("events (partials left out):\n got %q\nwant %q\nall:%s", got, want, describe(evs))
	}
	// Partials come between the start and the final, each revealing a
	// prefix of what is finally said.
	var partials int
	final := ""
	for i := len(evs) - 1; i >= 0; i-- {
		switch ev := evs[i]; ev.Type {
		case agent.STTFinal:
			final = ev.Text
		case agent.STTPartial:
			partials++
			if !strings.HasPrefix(final, ev.Text) {
				t.Errorf("partial %q is not a prefix of the final %q", ev.Text, final)
			}
		}
	}
	if partials < 2 {
		t.Errorf("got %d partials over 1.8 s of speech, want several", partials)
	}
	for _, ev := range evs {
		if ev.Type == agent.STTFinal && ev.Confidence <= 0 {
			t.Errorf("final %q has no confidence", ev.Text)
		}
		if ev.At.IsZero() {
			t.Errorf("%s has no receive time", describeOne(ev))
		}
	}

	sess := dg.WaitSession(t, 0, time.Second)
	q := sess.Query
	for k, v := range map[string]string{
		"encoding": "mulaw", "sample_rate": "8000", "channels": "1", "interim_results": "true",
		"endpointing": "300", "utterance_end_ms": "1000", "vad_events": "true", "model": "nova-3", "language": "en-GB",
	} {
		if q.Get(k) != v {
			t.Errorf("query %s=%q, want %q", k, q.Get(k), v)
		}
	}
	if sess.Authorization != "Token "+testKey {
		t.Errorf("Authorization %q", sess.Authorization)
	}
	// What Deepgram heard is the audio we sent: 5 s, the speech at 440 Hz.
	var audio []int16
	deadline := time.Now().Add(5 * time.Second)
	for audio = sess.Audio(); len(audio) < 5*media.SampleRate && time.Now().Before(deadline); audio = sess.Audio() {
		time.Sleep(10 * time.Millisecond)
	}
	if want := 5 * media.SampleRate; len(audio) != want {
		t.Errorf("fake received %d samples, want %d", len(audio), want)
	}
	if lvl := media.ToneLevel(audio[1600:1600+8000], 440); lvl < 0.25 {
		t.Errorf("440 Hz level in the received speech %.2f, want ~0.3 (µ-law round trip)", lvl)
	}
}

// Real speech, as the end-to-end tests' callers speak it: espeak-ng's
// pauses between words must not split a sentence, the pause between
// sentences must.
func TestSpokenSentencesAreUtterances(t *testing.T) {
	espeak, err := exec.LookPath("espeak-ng")
	if err != nil {
		t.Skip("espeak-ng not installed")
	}
	out, err := exec.Command(espeak, "--stdout", "I would like to book a table for two people tonight.").Output()
	if err != nil {
		t.Fatal(err)
	}
	sentence, err := media.ReadWAV(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{Utterances: []string{"first", "second"}})
	s := start(t, newClient(t, dg.URL(), func(c *deepgram.Config) { c.SendBuffer = 1000 }), agent.STTOptions{})
	write(t, s, sentence, media.Silence(1500*time.Millisecond), sentence, media.Silence(1500*time.Millisecond))
	ends := 0
	evs := collect(t, s, 10*time.Second, func(ev agent.STTEvent) bool {
		if ev.Type == agent.STTUtteranceEnd {
			ends++
		}
		return ends == 2
	})
	want := []string{"speech-started", `final "first"`, "utterance-end", "speech-started", `final "second"`, "utterance-end"}
	if got := kinds(evs); !slices.Equal(got, want) {
		t.Errorf("events\n got %q\nwant %q", got, want)
	}
}

func TestScriptedEventsMapping(t *testing.T) {
	ms := time.Millisecond
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{Script: []fake.DeepgramEvent{
		{At: 100 * ms, Kind: fake.DeepgramSpeechStarted},
		{At: 200 * ms, Kind: fake.DeepgramInterim, Text: "transfer me"},
		{At: 300 * ms, Kind: fake.DeepgramInterim, Text: "transfer me to sales"},
		{At: 400 * ms, Kind: fake.DeepgramFinal, Text: "transfer me to sales"},
		{At: 500 * ms, Kind: fake.DeepgramSpeechFinal, Text: "please"},
		// Deepgram also sends UtteranceEnd after a speech_final: one event.
		{At: 600 * ms, Kind: fake.DeepgramUtteranceEnd},
		{At: 700 * ms, Kind: fake.DeepgramSpeechStarted},
		{At: 800 * ms, Kind: fake.DeepgramInterim, Text: "thanks"},
		// Without a speech_final (noise kept endpointing off) the
		// UtteranceEnd message is what ends the utterance.
		{At: 900 * ms, Kind: fake.DeepgramUtteranceEnd},
		{At: 950 * ms, Kind: fake.DeepgramUtteranceEnd}, // nothing new was said: dropped
		{At: 1000 * ms, Kind: fake.DeepgramFinal, Text: "done"},
	}})
	s := start(t, newClient(t, dg.URL(), nil), agent.STTOptions{})
	write(t, s, media.Silence(1100*ms))
	evs := collect(t, s, 5*time.Second, func(ev agent.STTEvent) bool { return ev.Type == agent.STTFinal && ev.Text == "done" })
	var got []string
	for _, ev := range evs {
		got = append(got, describeOne(ev))
	}
	want := []string{
		"speech-started", `partial "transfer me"`, `partial "transfer me to sales"`, `final "transfer me to sales"`,
		`final "please"`, "utterance-end",
		"speech-started", `partial "thanks"`, "utterance-end", `final "done"`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
}

func TestFinalizeYieldsFinal(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{Utterances: []string{"my account number is 42"}})
	s := start(t, newClient(t, dg.URL(), nil), agent.STTOptions{})

	// Nothing said yet: Finalize still answers, with an empty final.
	if err := s.Finalize(); err != nil {
		t.Fatal(err)
	}
	evs := collect(t, s, 5*time.Second, func(ev agent.STTEvent) bool { return ev.Type == agent.STTFinal })
	if last := evs[len(evs)-1]; last.Text != "" {
		t.Errorf("Finalize with no speech gave %q, want an empty final", last.Text)
	}

	// Speech with no pause: only Finalize can end it.
	write(t, s, speech(800*time.Millisecond))
	if err := s.Finalize(); err != nil {
		t.Fatal(err)
	}
	evs = collect(t, s, 5*time.Second, func(ev agent.STTEvent) bool { return ev.Type == agent.STTFinal })
	if last := evs[len(evs)-1]; last.Text != "my account number is 42" {
		t.Errorf("final after Finalize %q, want the utterance;%s", last.Text, describe(evs))
	}
	// Finalize travels behind the audio written before it.
	msgs := dg.WaitSession(t, 0, time.Second).Messages()
	var at []time.Duration
	for _, m := range msgs {
		if m.Type == "Finalize" {
			at = append(at, m.At)
		}
	}
	if want := []time.Duration{0, 800 * time.Millisecond}; !slices.Equal(at, want) {
		t.Errorf("Finalize arrived after %v of audio, want %v", at, want)
	}
}

// The fake's latency is what benchmarks lean on: an answer never comes
// sooner than it.
func TestFakeLatency(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{Utterances: []string{"hello"}, Latency: 200 * time.Millisecond})
	s := start(t, newClient(t, dg.URL(), nil), agent.STTOptions{})
	write(t, s, speech(400*time.Millisecond))
	collect(t, s, 5*time.Second, func(ev agent.STTEvent) bool { return ev.Type == agent.STTSpeechStarted })
	sent := time.Now()
	s.Finalize()
	evs := collect(t, s, 5*time.Second, func(ev agent.STTEvent) bool { return ev.Type == agent.STTFinal })
	final := evs[len(evs)-1]
	if final.Text != "hello" || final.At.Sub(sent) < 200*time.Millisecond {
		t.Errorf("final %q %v after Finalize, want \"hello\" no sooner than 200ms", final.Text, final.At.Sub(sent))
	}
}

func TestKeepAliveHoldsIdleStream(t *testing.T) {
	// The fake closes streams idle for 300 ms, like Deepgram does after 10 s.
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{IdleTimeout: 300 * time.Millisecond, Utterances: []string{"still here"}})
	s := start(t, newClient(t, dg.URL(), func(c *deepgram.Config) { c.KeepAlive = 50 * time.Millisecond }), agent.STTOptions{})
	sess := dg.WaitSession(t, 0, time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for sess.Count("KeepAlive") < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d KeepAlives in 10 s at a 50 ms interval", sess.Count("KeepAlive"))
		}
		select {
		case ev := <-s.Events():
			t.Fatalf("idle stream produced %s", describeOne(ev))
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The stream outlived many idle timeouts and still transcribes.
	write(t, s, speech(500*time.Millisecond))
	s.Finalize()
	evs := collect(t, s, 5*time.Second, func(ev agent.STTEvent) bool { return ev.Type == agent.STTFinal || ev.Type == agent.STTError })
	if last := evs[len(evs)-1]; last.Type != agent.STTFinal || last.Text != "still here" {
		t.Fatalf("after idling: %s", describe(evs))
	}
	if n := sess.Count("KeepAlive"); n == 0 {
		t.Fatal("no KeepAlive recorded")
	}

	// Without KeepAlive the same server drops the stream, and the client
	// says why.
	s2 := start(t, newClient(t, dg.URL(), func(c *deepgram.Config) { c.KeepAlive = time.Hour }), agent.STTOptions{})
	evs = collect(t, s2, 10*time.Second, nil)
	if len(evs) != 1 || evs[0].Type != agent.STTError {
		t.Fatalf("idle stream without KeepAlive: %s", describe(evs))
	}
	var e *deepgram.Error
	if !errors.As(evs[0].Err, &e) || e.CloseCode != websocket.CloseInternalServerErr || !strings.Contains(e.Message, "NET-0001") {
		t.Errorf("error %v, want a 1011 NET-0001 close", evs[0].Err)
	}
}

// Deepgram answers through silence, so a caller who says nothing for
// longer than ResponseTimeout is not mistaken for a hung server.
func TestLongSilenceIsNotAHang(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{})
	s := start(t, newClient(t, dg.URL(), func(c *deepgram.Config) { c.ResponseTimeout = 2 * time.Second }), agent.STTOptions{})
	tk := time.NewTicker(media.FrameDuration)
	defer tk.Stop()
	for i := 0; i < 200; i++ { // 4 s of silence, paced like a call
		select {
		case ev := <-s.Events():
			t.Fatalf("silence produced %s", describeOne(ev))
		case <-tk.C:
			if err := s.Write(make(agent.Frame, media.FrameSamples)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := len(dg.WaitSession(t, 0, time.Second).Sent()); n < 3 {
		t.Errorf("the fake answered 4 s of silence %d times, want one a second", n)
	}
}

func TestCloseSendsCloseStreamAndDrains(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{Utterances: []string{"goodbye"}, Latency: 50 * time.Millisecond})
	s := start(t, newClient(t, dg.URL(), nil), agent.STTOptions{})
	write(t, s, speech(400*time.Millisecond))
	done := make(chan []agent.STTEvent)
	go func() {
		var evs []agent.STTEvent
		for ev := range s.Events() {
			evs = append(evs, ev)
		}
		done <- evs
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	evs := <-done
	if got := kinds(evs); !slices.Equal(got, []string{"speech-started", `final "goodbye"`}) {
		t.Errorf("events after Close: %s", describe(evs))
	}
	sess := dg.WaitSession(t, 0, time.Second)
	msgs := sess.Messages()
	if len(msgs) == 0 || msgs[len(msgs)-1] != (fake.DeepgramClientMessage{Type: "CloseStream", At: 400 * time.Millisecond}) {
		t.Errorf("messages %v, want CloseStream last, after 400ms of audio", msgs)
	}
	if err := s.Write(make(agent.Frame, 160)); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
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
		{"bad key", 0, "dg-wrong-key-0123456789", false, "HTTP 401"},
		{"server error", 500, testKey, true, "HTTP 500"},
		{"rate limited", 429, testKey, true, "HTTP 429"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dg := fake.NewDeepgram(t, fake.DeepgramOptions{APIKey: testKey, Failure: fake.DeepgramFailure{Status: tc.status}})
			c := newClient(t, dg.URL(), func(c *deepgram.Config) { c.APIKey = tc.key })
			_, err := c.Start(t.Context(), agent.STTOptions{})
			var e *deepgram.Error
			if !errors.As(err, &e) {
				t.Fatalf("Start: %v, want a *deepgram.Error", err)
			}
			if !strings.Contains(err.Error(), tc.want) || e.Temporary() != tc.temporary {
				t.Errorf("error %q temporary=%v, want %q temporary=%v", err, e.Temporary(), tc.want, tc.temporary)
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
	t.Run("nothing listening", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		base := srv.URL
		srv.Close()
		_, err := newClient(t, base, nil).Start(t.Context(), agent.STTOptions{})
		if err == nil || !strings.Contains(err.Error(), "deepgram connect") {
			t.Fatalf("Start against a closed port: %v", err)
		}
	})
	t.Run("retry succeeds after failures", func(t *testing.T) {
		dg := fake.NewDeepgram(t, fake.DeepgramOptions{Failure: fake.DeepgramFailure{Status: 503, Connections: 2}})
		c := newClient(t, dg.URL(), nil)
		for i := 0; i < 2; i++ {
			if _, err := c.Start(t.Context(), agent.STTOptions{}); err == nil {
				t.Fatalf("attempt %d succeeded, want 503", i+1)
			}
		}
		start(t, c, agent.STTOptions{})
		if dg.Attempts() != 3 {
			t.Errorf("attempts %d, want 3", dg.Attempts())
		}
	})
}

// terminal writes audio and returns the events up to the end of the
// stream, which must be exactly one STTError after anything else.
func terminal(t *testing.T, s agent.STTStream, pcm []int16) *deepgram.Error {
	t.Helper()
	for _, f := range frames(pcm) {
		if s.Write(f) != nil {
			break // the stream may end while we write; that is the point
		}
	}
	evs := collect(t, s, 10*time.Second, nil)
	var errs []agent.STTEvent
	for _, ev := range evs {
		if ev.Type == agent.STTError {
			errs = append(errs, ev)
		}
	}
	if len(errs) != 1 || evs[len(evs)-1].Type != agent.STTError {
		t.Fatalf("want exactly one error, last; got %s", describe(evs))
	}
	var e *deepgram.Error
	if !errors.As(errs[0].Err, &e) {
		t.Fatalf("error %T %v, want *deepgram.Error", errs[0].Err, errs[0].Err)
	}
	if strings.Contains(e.Error(), testKey) {
		t.Errorf("error shows the key: %v", e)
	}
	if err := s.Write(make(agent.Frame, 160)); err == nil {
		t.Error("Write on a failed stream succeeded")
	}
	return e
}

func TestStreamFailures(t *testing.T) {
	ms := time.Millisecond
	t.Run("dropped connection", func(t *testing.T) {
		dg := fake.NewDeepgram(t, fake.DeepgramOptions{Failure: fake.DeepgramFailure{DropAfter: 300 * ms}})
		e := terminal(t, start(t, newClient(t, dg.URL(), nil), agent.STTOptions{}), speech(time.Second))
		if !strings.Contains(e.Message, "connection lost") || !e.Temporary() {
			t.Errorf("drop: %v (temporary %v)", e, e.Temporary())
		}
	})
	t.Run("closed with a reason", func(t *testing.T) {
		dg := fake.NewDeepgram(t, fake.DeepgramOptions{Failure: fake.DeepgramFailure{
			CloseAfter: 200 * ms, CloseCode: websocket.ClosePolicyViolation, CloseReason: "DATA-0000: The payload cannot be decoded as audio.",
		}})
		e := terminal(t, start(t, newClient(t, dg.URL(), nil), agent.STTOptions{}), speech(time.Second))
		if e.CloseCode != websocket.ClosePolicyViolation || !strings.Contains(e.Message, "DATA-0000") || e.Temporary() {
			t.Errorf("close: %v (temporary %v)", e, e.Temporary())
		}
	})
	t.Run("error message", func(t *testing.T) {
		dg := fake.NewDeepgram(t, fake.DeepgramOptions{Script: []fake.DeepgramEvent{
			{At: 100 * ms, Kind: fake.DeepgramInterim, Text: "hi"},
			{At: 200 * ms, Kind: fake.DeepgramError, Text: "model overloaded"},
		}})
		e := terminal(t, start(t, newClient(t, dg.URL(), nil), agent.STTOptions{}), media.Silence(time.Second))
		if !strings.Contains(e.Message, "model overloaded") {
			t.Errorf("error message: %v", e)
		}
	})
	t.Run("hung server", func(t *testing.T) {
		dg := fake.NewDeepgram(t, fake.DeepgramOptions{Failure: fake.DeepgramFailure{Hang: true}})
		c := newClient(t, dg.URL(), func(c *deepgram.Config) { c.ResponseTimeout = 300 * ms })
		s := start(t, c, agent.STTOptions{})
		// Keep audio flowing, as a call does, until the client gives up.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tk := time.NewTicker(20 * ms)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
					if s.Write(make(agent.Frame, 160)) != nil {
						return
					}
				}
			}
		}()
		e := terminal(t, s, nil)
		if !strings.Contains(e.Message, "no reply") {
			t.Errorf("hang: %v", e)
		}
	})
	for _, bad := range []struct {
		name string
		typ  int
		msg  string
		want string
	}{
		{"malformed JSON", websocket.TextMessage, `{"type":"Results","channel":`, "bad message"},
		{"binary message", websocket.BinaryMessage, "\x00\x01", "unexpected binary"},
		{"results with a bad channel", websocket.TextMessage, `{"type":"Results","channel":[1,2]}`, "bad Results channel"},
		{"untyped message", websocket.TextMessage, `{"hello":"world"}`, "without a type"},
		{"legacy error", websocket.TextMessage, `{"err_code":"INSUFFICIENT_PERMISSIONS","err_msg":"nope"}`, "INSUFFICIENT_PERMISSIONS"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			srv := rawServer(t, func(c *websocket.Conn) { c.WriteMessage(bad.typ, []byte(bad.msg)) })
			e := terminal(t, start(t, newClient(t, srv, nil), agent.STTOptions{}), media.Silence(100*ms))
			if !strings.Contains(e.Message, bad.want) {
				t.Errorf("%s: %v, want %q", bad.name, e, bad.want)
			}
		})
	}
}

// rawServer accepts one websocket per connection and runs script on it,
// then waits for the client to hang up: for messages no fake would send.
func rawServer(t *testing.T, script func(*websocket.Conn)) string {
	up := websocket.Upgrader{}
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		script(c)
		go func() { <-done; c.Close() }()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.URL
}

// Each case's client checks, when the case ends, that none of its
// goroutines is left (see newClient); the streams here are not closed by
// a cleanup, so what ends them is what the case does.
func TestNoGoroutineOutlivesItsStream(t *testing.T) {
	t.Run("context cancelled, nobody reading", func(t *testing.T) {
		dg := fake.NewDeepgram(t, fake.DeepgramOptions{Utterances: []string{"one", "two"}})
		ctx, cancel := context.WithCancel(t.Context())
		s, err := newClient(t, dg.URL(), nil).Start(ctx, agent.STTOptions{})
		if err != nil {
			t.Fatal(err)
		}
		write(t, s, speech(time.Second), media.Silence(time.Second))
		cancel()
		collect(t, s, 5*time.Second, nil)
	})
	t.Run("Close on a hung server", func(t *testing.T) {
		hung := fake.NewDeepgram(t, fake.DeepgramOptions{Failure: fake.DeepgramFailure{Hang: true}})
		s, err := newClient(t, hung.URL(), func(c *deepgram.Config) { c.CloseTimeout = 200 * time.Millisecond }).Start(t.Context(), agent.STTOptions{})
		if err != nil {
			t.Fatal(err)
		}
		write(t, s, speech(time.Second))
		s.Close()
	})
	t.Run("failed stream", func(t *testing.T) {
		drop := fake.NewDeepgram(t, fake.DeepgramOptions{Failure: fake.DeepgramFailure{DropAfter: 100 * time.Millisecond}})
		s, err := newClient(t, drop.URL(), nil).Start(t.Context(), agent.STTOptions{})
		if err != nil {
			t.Fatal(err)
		}
		terminal(t, s, speech(time.Second))
	})
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  deepgram.Config
		want string
	}{
		{deepgram.Config{}, "no API key"},
		{deepgram.Config{APIKey: "k", BaseURL: "ftp://x"}, `scheme "ftp"`},
		{deepgram.Config{APIKey: "k", BaseURL: "not a url"}, "want ws(s)://"},
		{deepgram.Config{APIKey: "k", UtteranceEnd: 500 * time.Millisecond}, "minimum of 1s"},
	} {
		if _, err := deepgram.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestBaseURLForms(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{})
	for _, base := range []string{dg.URL(), dg.URL() + "/", dg.URL() + "/v1/listen", strings.Replace(dg.URL(), "http://", "ws://", 1)} {
		s, err := newClient(t, base, nil).Start(t.Context(), agent.STTOptions{})
		if err != nil {
			t.Errorf("base %q: %v", base, err)
			continue
		}
		s.Close()
	}
}
