package openairt_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
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

const testKey = "sk-test-VERYSECRET0123456789abcdef"

func noLeaks(t *testing.T) { testutil.NoLeaks(t, "voxbridge/agent/openairt.") }

func noKey(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testKey) {
		t.Errorf("error text contains the API key: %v", err)
	}
}

func startRT(t *testing.T, f *fake.Realtime, cfg openairt.Config, opt agent.RealtimeOptions) agent.RealtimeSession {
	t.Helper()
	cfg.BaseURL = f.URL
	if cfg.APIKey == "" {
		cfg.APIKey = testKey
	}
	rt, err := openairt.NewRealtime(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.Start(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// speak writes pcm as 20 ms frames.
func speak(t *testing.T, write func(agent.Frame) error, pcm []int16) {
	t.Helper()
	for i := 0; i < len(pcm); i += media.FrameSamples {
		if err := write(pcm[i:min(i+media.FrameSamples, len(pcm))]); err != nil {
			t.Fatal(err)
		}
	}
}

// utterance is a caller turn the fake's VAD takes: silence, a loud tone,
// then enough silence to end the turn.
func utterance(hz float64) []int16 {
	return slices.Concat(media.Silence(200*time.Millisecond), media.Tone(hz, 600*time.Millisecond, 0.3), media.Silence(700*time.Millisecond))
}

// turnLog is what one response looked like from the client's side.
type turnLog struct {
	types    []agent.RealtimeEventType
	audio    []int16
	itemID   string
	text     string
	user     []string
	calls    []agent.ToolCall
	errs     []error
	complete bool // RealtimeResponseDone seen
}

// readUntilDone reads events up to the next RealtimeResponseDone.
func readUntilDone(t *testing.T, s agent.RealtimeSession) turnLog {
	t.Helper()
	evs, _ := testutil.Receive(t, s.Events(), func(ev agent.RealtimeEvent) bool { return ev.Type == agent.RealtimeResponseDone })
	var l turnLog
	for _, ev := range evs {
		l.types = append(l.types, ev.Type)
		switch ev.Type {
		case agent.RealtimeAudio:
			l.audio = append(l.audio, ev.Audio...)
			l.itemID = ev.ItemID
		case agent.RealtimeAgentText:
			l.text += ev.Text
		case agent.RealtimeUserText:
			l.user = append(l.user, ev.Text)
		case agent.RealtimeToolCall:
			l.calls = append(l.calls, *ev.ToolCall)
		case agent.RealtimeError:
			l.errs = append(l.errs, ev.Err)
		case agent.RealtimeResponseDone:
			l.complete = true
		}
	}
	if !l.complete {
		t.Fatalf("events closed before response.done; events %v, errors %v", l.types, l.errs)
	}
	return l
}

func TestRealtimeConfiguresSession(t *testing.T) {
	for _, beta := range []bool{false, true} {
		name := map[bool]string{false: "GA", true: "beta"}[beta]
		t.Run(name, func(t *testing.T) {
			noLeaks(t)
			f := fake.NewRealtime(t, fake.RealtimeScript{APIKey: testKey})
			startRT(t, f, openairt.Config{Model: "gpt-realtime-test", Beta: beta, Language: "de-DE", VAD: openairt.VAD{SilenceMS: 400}},
				agent.RealtimeOptions{Instructions: "Be kind.", Voice: "verse", Tools: []agent.Tool{
					{Name: "end_call", Description: "Hang up"},
					{Name: "transfer_call", Parameters: json.RawMessage(`{"type":"object","properties":{"target":{"type":"string"}}}`)},
				}})
			testutil.Eventually(t, "no session.update reached the server", func() bool {
				ss := f.Sessions()
				return len(ss) == 1 && ss[0].Config.Updates > 0
			})
			got := f.Sessions()[0]
			format := map[bool]string{false: "audio/pcmu", true: "g711_ulaw"}[beta]
			c := got.Config
			if got.Beta != beta || got.Transcription || got.Query.Get("model") != "gpt-realtime-test" {
				t.Errorf("session beta=%v transcription=%v query %v", got.Beta, got.Transcription, got.Query)
			}
			if c.InputFormat != format || c.OutputFormat != format || c.Voice != "verse" || c.Instructions != "Be kind." ||
				c.TurnDetection != "server_vad" || c.SilenceMS != 400 || c.Language != "de" || c.TranscriptionModel != openairt.DefaultTranscriptionModel {
				t.Errorf("config %+v", c)
			}
			if len(c.Tools) != 2 || c.Tools[1].Name != "transfer_call" || !strings.Contains(string(c.Tools[1].Parameters), "target") || !json.Valid(c.Tools[0].Parameters) {
				t.Errorf("tools %+v", c.Tools)
			}
		})
	}
}

// A caller turn: the server VAD hears it, transcribes it and answers with
// audio (µ-law decoded back to the reply's tone) and its transcript.
func TestRealtimeConversationTurn(t *testing.T) {
	for _, beta := range []bool{false, true} {
		t.Run(map[bool]string{false: "GA", true: "beta"}[beta], func(t *testing.T) {
			noLeaks(t)
			reply := "Sure, I can help with that."
			f := fake.NewRealtime(t, fake.RealtimeScript{
				UserTranscripts: []string{"I need some help"},
				Responses:       []fake.RealtimeReply{{Text: reply}},
			})
			s := startRT(t, f, openairt.Config{Beta: beta}, agent.RealtimeOptions{})
			speak(t, s.WriteAudio, utterance(800))
			l := readUntilDone(t, s)
			if len(l.errs) > 0 {
				t.Fatal(l.errs)
			}
			for _, want := range []agent.RealtimeEventType{agent.RealtimeSpeechStarted, agent.RealtimeSpeechStopped, agent.RealtimeUserText, agent.RealtimeAudio, agent.RealtimeAgentText} {
				if !slices.Contains(l.types, want) {
					t.Errorf("no event of type %d in %v", want, l.types)
				}
			}
			if i, j := slices.Index(l.types, agent.RealtimeSpeechStarted), slices.Index(l.types, agent.RealtimeSpeechStopped); i > j {
				t.Errorf("speech stopped before it started: %v", l.types)
			}
			if len(l.user) != 1 || l.user[0] != "I need some help" {
				t.Errorf("caller transcript %q", l.user)
			}
			if l.text != reply {
				t.Errorf("agent transcript %q, want %q", l.text, reply)
			}
			wantSamples := len(reply) * 65 * 8
			if len(l.audio) != wantSamples {
				t.Errorf("%d samples of agent audio, want %d", len(l.audio), wantSamples)
			}
			if lv := media.ToneLevel(l.audio, fake.RealtimeToneHz); math.Abs(lv-0.5) > 0.03 {
				t.Errorf("agent audio level %.3f at %d Hz, want 0.5", lv, fake.RealtimeToneHz)
			}
			if l.itemID == "" {
				t.Error("audio events carry no item id")
			}
			// What the server received is the caller's audio.
			got := f.Sessions()[0].Audio
			if len(got) != len(utterance(800)) {
				t.Fatalf("server received %d samples, want %d", len(got), len(utterance(800)))
			}
			if lv := media.ToneLevel(got[1600:1600+4800], 800); math.Abs(lv-0.3) > 0.02 {
				t.Errorf("caller tone level at the server %.3f, want 0.3", lv)
			}
		})
	}
}

// A tool call, its result, and the follow-up response.
func TestRealtimeToolCallRoundTrip(t *testing.T) {
	for _, beta := range []bool{false, true} { // beta names the function only in the item
		t.Run(map[bool]string{false: "GA", true: "beta"}[beta], func(t *testing.T) {
			noLeaks(t)
			call := agent.ToolCall{ID: "call_xfer", Name: "transfer_call", Arguments: `{"target":"sales","warm":false}`}
			f := fake.NewRealtime(t, fake.RealtimeScript{
				UserTranscripts: []string{"sales please"},
				Responses:       []fake.RealtimeReply{{Text: "Transferring you.", ToolCalls: []agent.ToolCall{call}}},
				ResponseFunc: func(turn fake.RealtimeTurn) fake.RealtimeReply {
					return fake.RealtimeReply{Text: "The tool said " + turn.LastToolOutput}
				},
			})
			s := startRT(t, f, openairt.Config{Beta: beta}, agent.RealtimeOptions{Tools: []agent.Tool{{Name: "transfer_call"}}})
			speak(t, s.WriteAudio, utterance(700))
			l := readUntilDone(t, s)
			if len(l.calls) != 1 || l.calls[0] != call {
				t.Fatalf("tool calls %+v, want %+v", l.calls, call)
			}
			if err := s.SendToolResult(call.ID, `{"ok":true}`); err != nil {
				t.Fatal(err)
			}
			l2 := readUntilDone(t, s)
			if l2.text != `The tool said {"ok":true}` || len(l2.audio) == 0 {
				t.Errorf("follow-up %q with %d samples", l2.text, len(l2.audio))
			}
			outs := f.Sessions()[0].ToolOutputs
			if len(outs) != 1 || outs[0] != (fake.RealtimeToolOutput{CallID: "call_xfer", Output: `{"ok":true}`}) {
				t.Errorf("server got tool outputs %+v", outs)
			}
		})
	}
}

// Barge-in: the caller speaks over a long answer; the server cancels it,
// and the client truncates the item to what was played.
func TestRealtimeBargeInAndTruncate(t *testing.T) {
	noLeaks(t)
	f := fake.NewRealtime(t, fake.RealtimeScript{
		Responses: []fake.RealtimeReply{{Text: strings.Repeat("This is a very long answer. ", 10)}},
		ChunkGap:  20 * time.Millisecond,
	})
	s := startRT(t, f, openairt.Config{}, agent.RealtimeOptions{})
	if err := s.CreateResponse(); err != nil { // the greeting
		t.Fatal(err)
	}
	var item string
	var types []agent.RealtimeEventType
	for done := false; !done; {
		ev := testutil.Next(t, s.Events())
		types = append(types, ev.Type)
		switch ev.Type {
		case agent.RealtimeAudio:
			if item == "" {
				item = ev.ItemID
				speak(t, s.WriteAudio, media.Tone(600, 300*time.Millisecond, 0.3))
			}
		case agent.RealtimeResponseDone:
			done = true
		case agent.RealtimeError:
			t.Fatal(ev.Err)
		}
	}
	if !slices.Contains(types, agent.RealtimeSpeechStarted) {
		t.Errorf("no speech started event: %v", types)
	}
	if err := s.Truncate(item, 240*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "truncate never reached the server", func() bool { return len(f.Sessions()[0].Truncations) > 0 })
	ss := f.Sessions()[0]
	if ss.Truncations[0] != (fake.RealtimeTruncation{ItemID: item, AudioEndMS: 240}) || ss.Cancelled != 1 {
		t.Errorf("truncations %+v, cancelled %d", ss.Truncations, ss.Cancelled)
	}
}

func TestRealtimeHandshakeFailures(t *testing.T) {
	cases := map[string]struct {
		script fake.RealtimeScript
		status int
	}{
		"wrong key":       {fake.RealtimeScript{APIKey: "sk-another"}, 401},
		"HTTP 503":        {fake.RealtimeScript{Fault: fake.RealtimeFault{HandshakeStatus: 503}}, 503},
		"never answers":   {fake.RealtimeScript{Fault: fake.RealtimeFault{HangHandshake: true}}, 0},
		"session refused": {fake.RealtimeScript{Fault: fake.RealtimeFault{RejectSession: "Invalid voice 'nobody'"}}, 0},
		"session ignored": {fake.RealtimeScript{Fault: fake.RealtimeFault{IgnoreSession: true}}, 0},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			noLeaks(t)
			f := fake.NewRealtime(t, c.script)
			rt, _ := openairt.NewRealtime(openairt.Config{BaseURL: f.URL, APIKey: testKey, HandshakeTimeout: 300 * time.Millisecond})
			_, err := rt.Start(context.Background(), agent.RealtimeOptions{})
			var e *openairt.Error
			if !errors.As(err, &e) || e.StatusCode != c.status || !e.Fatal {
				t.Fatalf("error %v, want *Error with status %d", err, c.status)
			}
			t.Logf("error: %v", err)
			noKey(t, err)
			if name == "session refused" && !strings.Contains(err.Error(), "Invalid voice") {
				t.Errorf("error %q does not say why", err)
			}
		})
	}
	// The key is redacted even when the server echoes it.
	f := fake.NewRealtime(t, fake.RealtimeScript{APIKey: "sk-another"})
	rt, _ := openairt.NewRealtime(openairt.Config{BaseURL: f.URL, APIKey: testKey})
	if _, err := rt.Start(context.Background(), agent.RealtimeOptions{}); err == nil || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("echoed key not redacted: %v", err)
	}
}

// A dropped connection is a fatal error event, then Events closes and
// writes fail.
func TestRealtimeDroppedConnection(t *testing.T) {
	noLeaks(t)
	f := fake.NewRealtime(t, fake.RealtimeScript{
		Responses: []fake.RealtimeReply{{Text: strings.Repeat("A long answer. ", 20)}},
		Fault:     fake.RealtimeFault{DropAfter: 8},
	})
	s := startRT(t, f, openairt.Config{}, agent.RealtimeOptions{})
	s.CreateResponse()
	evs, _ := testutil.Receive(t, s.Events(), nil)
	n, last := len(evs), evs[len(evs)-1]
	var e *openairt.Error
	if last.Type != agent.RealtimeError || !errors.As(last.Err, &e) || !e.Fatal {
		t.Fatalf("last event %+v, want a fatal error", last)
	}
	t.Logf("after %d events: %v", n, last.Err)
	if err := s.WriteAudio(make([]int16, 160)); err == nil {
		t.Error("WriteAudio after the drop succeeded")
	}
}

// Server error events and failed responses are reported; the session goes on.
func TestRealtimeServerErrorsAreNotFatal(t *testing.T) {
	noLeaks(t)
	f := fake.NewRealtime(t, fake.RealtimeScript{
		Responses: []fake.RealtimeReply{{Fail: "Upstream model unavailable"}, {Text: "Back again."}},
		Fault:     fake.RealtimeFault{ErrorAfterAudio: 3, ErrorMessage: "transient glitch"},
	})
	s := startRT(t, f, openairt.Config{}, agent.RealtimeOptions{})
	speak(t, s.WriteAudio, media.Silence(100*time.Millisecond))
	s.CreateResponse()
	l := readUntilDone(t, s)
	var msgs []string
	for _, err := range l.errs {
		var e *openairt.Error
		if !errors.As(err, &e) || e.Fatal {
			t.Errorf("error %v: want a non-fatal *Error", err)
		}
		msgs = append(msgs, err.Error())
	}
	joined := strings.Join(msgs, " | ")
	if !strings.Contains(joined, "transient glitch") || !strings.Contains(joined, "Upstream model unavailable") {
		t.Errorf("errors %q", joined)
	}
	s.CreateResponse()
	if l2 := readUntilDone(t, s); l2.text != "Back again." || len(l2.errs) > 0 {
		t.Errorf("session did not go on: %q %v", l2.text, l2.errs)
	}
	// A bad truncate is the server's error too, not the connection's.
	s.Truncate("no-such-item", time.Second)
	if ev := testutil.Next(t, s.Events()); ev.Type != agent.RealtimeError || !strings.Contains(ev.Err.Error(), "item_truncate_invalid_item_id") {
		t.Errorf("got %+v", ev)
	}
}

func TestRealtimeCloseAndCancel(t *testing.T) {
	noLeaks(t)
	f := fake.NewRealtime(t, fake.RealtimeScript{})
	rt, _ := openairt.NewRealtime(openairt.Config{BaseURL: f.URL})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := rt.Start(ctx, agent.RealtimeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for ev := range s.Events() {
		if ev.Type == agent.RealtimeError {
			t.Errorf("error after cancel: %v", ev.Err)
		}
	}
	s.Close()
	s2 := startRT(t, f, openairt.Config{}, agent.RealtimeOptions{})
	speak(t, s2.WriteAudio, media.Silence(time.Second))
	s2.Close()
	s2.Close() // twice is fine
	if _, ok := <-s2.Events(); ok {
		t.Error("events after Close")
	}
	if err := s2.WriteAudio(make([]int16, 160)); err == nil {
		t.Error("WriteAudio after Close succeeded")
	}
	testutil.Eventually(t, "server still sees the connections open", func() bool {
		ss := f.Sessions()
		return len(ss) == 2 && ss[0].Closed && ss[1].Closed
	})
}

func TestRealtimeRejectsBadConfig(t *testing.T) {
	for _, u := range []string{"ftp://x/v1", "://", "ws://"} {
		if _, err := openairt.NewRealtime(openairt.Config{BaseURL: u}); err == nil {
			t.Errorf("base URL %q accepted", u)
		}
	}
	f := fake.NewRealtime(t, fake.RealtimeScript{})
	rt, _ := openairt.NewRealtime(openairt.Config{BaseURL: strings.Replace(f.URL, "ws://", "http://", 1)})
	s, err := rt.Start(context.Background(), agent.RealtimeOptions{})
	if err != nil {
		t.Fatalf("http:// base URL not turned into ws://: %v", err)
	}
	defer s.Close()
	if err := s.Truncate("", time.Second); err == nil {
		t.Error("truncate without item accepted")
	}
	if err := s.SendToolResult("", "x"); err == nil {
		t.Error("tool result without call id accepted")
	}
	if _, err := rt.Start(context.Background(), agent.RealtimeOptions{Tools: []agent.Tool{{}}}); err == nil {
		t.Error("nameless tool accepted")
	}
}
