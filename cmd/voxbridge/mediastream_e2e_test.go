package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxbridge/voxbridge/media"
)

// startEchoAgent builds and runs examples/echo-agent, returning its URL and
// a function that reports the lines it has printed.
func startEchoAgent(t *testing.T) (string, func() string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "echo-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/echo-agent").CombinedOutput(); err != nil {
		t.Fatalf("build echo-agent: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--digit", "5")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var (
		mu    sync.Mutex
		lines strings.Builder
	)
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			lines.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if url, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				first <- url
			}
		}
	}()
	select {
	case url := <-first:
		return url, func() string { mu.Lock(); defer mu.Unlock(); return lines.String() }
	case <-time.After(30 * time.Second):
		t.Fatal("echo-agent did not start")
	}
	return "", nil
}

// The example agent, reached through a flow's media_stream action, echoes
// the caller's tone back, has its mark acknowledged, and presses a key the
// caller hears.
func TestMediaStreamEchoAgent(t *testing.T) {
	url, output := startEchoAgent(t)
	f := mustFlow(t, `{"id":"byo","actions":[
	  {"type":"answer"},
	  {"type":"media_stream","option":{"url":"`+url+`","encoding":"pcmu"}},
	  {"type":"hangup"}]}`)
	inst, _ := testServer(t, f)
	call := dialTest(t, inst)

	mark := call.HeardLen()
	<-call.Play(media.Tone(1000, 1500*time.Millisecond, 0.5))
	waitFor(t, "the echo", 15*time.Second, func() bool {
		_, level := strongest(call.Heard()[mark:], media.SampleRate/2, 1000)
		return level > 0.2
	})
	waitFor(t, "the agent's key and an acknowledged mark", 15*time.Second, func() bool {
		return strings.Contains(call.Summary().DigitsHeard, "5") && strings.Contains(output(), "mark acknowledged: echo-1")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent to see the stream stop", 10*time.Second, func() bool {
		return strings.Contains(output(), "stream stopped")
	})
	rec := callRecord(t, inst, call.CallID())
	if rec.Variables["media_stream.end"] != "call_ended" {
		t.Fatalf("media_stream.end = %q", rec.Variables["media_stream.end"])
	}
}

// An application that queues 5 s of audio and then sends clear: the caller
// stops hearing it at once, a mark after the clear comes straight back, and
// bad messages get error replies without ending the stream.
func TestMediaStreamClearAndBadMessages(t *testing.T) {
	type result struct {
		mu     sync.Mutex
		events []string
	}
	var got result
	up := websocket.Upgrader{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var m struct {
			Event string `json:"event"`
			Mark  *struct {
				Name string `json:"name"`
			} `json:"mark"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if ws.ReadJSON(&m) != nil || m.Event != "start" {
			return
		}
		tone := media.PCMU.Encode(nil, media.Tone(700, 5*time.Second, 0.4))
		ws.WriteJSON(map[string]any{"event": "media", "media": map[string]string{"payload": base64.StdEncoding.EncodeToString(tone)}})
		ws.WriteJSON(map[string]any{"event": "bogus"})
		ws.WriteJSON(map[string]any{"event": "media", "media": map[string]string{"payload": "!!not base64"}})
		time.AfterFunc(time.Second, func() {
			ws.WriteJSON(map[string]any{"event": "clear"})
			ws.WriteJSON(map[string]any{"event": "mark", "mark": map[string]string{"name": "after-clear"}})
		})
		for {
			m.Mark, m.Error = nil, nil
			if err := ws.ReadJSON(&m); err != nil {
				return
			}
			got.mu.Lock()
			switch {
			case m.Event == "mark":
				got.events = append(got.events, "mark:"+m.Mark.Name)
			case m.Event == "error":
				got.events = append(got.events, "error:"+m.Error.Message)
			}
			got.mu.Unlock()
		}
	}))
	t.Cleanup(app.Close)
	wsURL := "ws" + strings.TrimPrefix(app.URL, "http")
	f := mustFlow(t, `{"id":"clear","actions":[
	  {"type":"answer"},
	  {"type":"media_stream","option":{"url":"`+wsURL+`"}},
	  {"type":"hangup"}]}`)
	inst, _ := testServer(t, f)
	call := dialTest(t, inst)
	events := func() string {
		got.mu.Lock()
		defer got.mu.Unlock()
		return strings.Join(got.events, "\n")
	}
	waitFor(t, "the mark after clear", 15*time.Second, func() bool { return strings.Contains(events(), "mark:after-clear") })
	start := call.HeardLen()
	time.Sleep(time.Second) // a second after the clear: the tone must be gone
	after := call.Heard()[start:]
	if l := media.ToneLevel(after, 700); l > 0.05 {
		t.Fatalf("queued audio still playing after clear: 700 Hz level %.3f", l)
	}
	heardTone := 0
	all := call.Heard()
	for i := 0; i+toneWindow <= len(all); i += toneWindow {
		if media.ToneLevel(all[i:i+toneWindow], 700) > toneMinPeak {
			heardTone += 100
		}
	}
	if heardTone < 500 || heardTone > 3000 {
		t.Fatalf("heard %d ms of the 5 s tone; want about the second before clear", heardTone)
	}
	e := events()
	if !strings.Contains(e, `unknown event "bogus"`) || !strings.Contains(e, "not base64") {
		t.Fatalf("bad messages not answered with errors:\n%s", e)
	}
}
