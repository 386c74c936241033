package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
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
	wsURL := mediaApp(t, func(ws *websocket.Conn) {
		var m struct {
			Event string `json:"event"`
			Mark  *struct {
				Name string `json:"name"`
			} `json:"mark"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
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
	})
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

// A client attaches to a live call through GET /v1/calls/{id}/media: it
// receives the caller's tone and what it sends is heard by the caller.
func TestAttachMediaThroughAPI(t *testing.T) {
	f := mustFlow(t, `{"id":"park","actions":[{"type":"answer"},{"type":"sleep","option":{"duration_ms":30000}},{"type":"hangup"}]}`)
	inst, _ := testServer(t, f)
	call := dialTest(t, inst)
	id := answeredCallID(t, inst)
	url := "ws://" + inst.HTTP.String() + "/v1/calls/" + id + "/media?encoding=l16&api_key=" + testAPIKey
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	call.Play(media.Tone(1000, 3*time.Second, 0.5))
	tone := media.Tone(900, 2*time.Second, 0.5)
	l16 := make([]byte, 2*len(tone))
	for i, s := range tone {
		l16[2*i], l16[2*i+1] = byte(s), byte(uint16(s)>>8)
	}
	ws.WriteJSON(map[string]any{"event": "media", "media": map[string]string{"payload": base64.StdEncoding.EncodeToString(l16)}})

	var heard []int16
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for len(heard) < 2*media.SampleRate {
		var m struct {
			Event string `json:"event"`
			Media *struct {
				Payload string `json:"payload"`
			} `json:"media"`
		}
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("after %d samples: %v", len(heard), err)
		}
		if m.Event != "media" {
			continue
		}
		b, _ := base64.StdEncoding.DecodeString(m.Media.Payload)
		for i := 0; i+1 < len(b); i += 2 {
			heard = append(heard, int16(uint16(b[i])|uint16(b[i+1])<<8))
		}
	}
	if _, level := strongest(heard, media.SampleRate/2, 1000); level < 0.2 {
		t.Fatalf("the client did not receive the caller's 1 kHz tone (level %.3f)", level)
	}
	hears(t, "the caller", call, 900)
}

// A client that stops reading is dropped (closed with the reason
// slow_consumer) while the call's audio goes on undisturbed, and another
// client can attach afterwards.
func TestMediaSlowClientDropped(t *testing.T) {
	f := mustFlow(t, `{"id":"park","actions":[{"type":"answer"},{"type":"sleep","option":{"duration_ms":60000}},{"type":"hangup"}]}`)
	inst, _ := testServer(t, f)
	call := dialTest(t, inst)
	id := answeredCallID(t, inst)
	url := "ws://" + inst.HTTP.String() + "/v1/calls/" + id + "/media?encoding=l16&api_key=" + testAPIKey
	// A tiny receive buffer, set before connecting so the advertised
	// window stays small, and no reading: the server's writes back up.
	small := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
	}}
	dialer := websocket.Dialer{NetDialContext: small.DialContext}
	ws, _, err := dialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	call.Play(media.Tone(1000, 30*time.Second, 0.3))
	before := call.Summary().PacketsIn
	start := time.Now()
	// The server gives up on the client while the call's media goes on.
	var reason string
	// Polled gently: the API's per-key rate limit applies to tests too.
	for deadline := time.Now().Add(40 * time.Second); reason == ""; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow client was never dropped")
		}
		reason = callRecord2(t, inst, id).Variables["media_stream.attached_end"]
	}
	if reason != "slow_consumer" {
		t.Fatalf("attached stream ended with %q, want slow_consumer", reason)
	}
	elapsed := time.Since(start)
	got := call.Summary().PacketsIn - before
	if want := uint64(elapsed/(20*time.Millisecond)) * 9 / 10; got < want {
		t.Fatalf("the caller received %d packets in %v while the client was stuck; want at least %d", got, elapsed, want)
	}
	// The call takes a new client.
	ws2, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	var m struct{ Event string }
	ws2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws2.ReadJSON(&m); err != nil || m.Event != "start" {
		t.Fatalf("second client: %v %q", err, m.Event)
	}
}

// callRecord2 reads a call by id without waiting for it to end.
func callRecord2(t *testing.T, inst *instance, id string) store.Call {
	t.Helper()
	var rec store.Call
	getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls/"+id, &rec)
	return rec
}

// answeredCallID waits for the server's only call to be answered and
// returns its record id.
func answeredCallID(t *testing.T, inst *instance) string {
	t.Helper()
	var list struct {
		Result []struct{ ID, Status string }
	}
	waitFor(t, "the answered call's record", 10*time.Second, func() bool {
		getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls", &list)
		return len(list.Result) == 1 && list.Result[0].Status == string(store.StatusProgressing)
	})
	return list.Result[0].ID
}

// An application hands its caller to extension 1002 with a transfer
// message: a transfer without a target is answered with an error and the
// stream goes on; a good one ends the stream (stop, transfer_requested),
// 1002 rings and answers, and the caller and 1002 hear each other.
func TestMediaStreamTransfer(t *testing.T) {
	var (
		mu     sync.Mutex
		events []string
	)
	wsURL := mediaApp(t, func(ws *websocket.Conn) {
		var m struct {
			Event string `json:"event"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
			Stop *struct {
				Reason string `json:"reason"`
			} `json:"stop"`
		}
		ws.WriteJSON(map[string]any{"event": "transfer", "transfer": map[string]string{"to": " "}})
		for {
			m.Error, m.Stop = nil, nil
			if err := ws.ReadJSON(&m); err != nil {
				return
			}
			mu.Lock()
			switch m.Event {
			case "error":
				events = append(events, "error:"+m.Error.Message)
				ws.WriteJSON(map[string]any{"event": "transfer", "transfer": map[string]string{"to": "1002"}})
			case "stop":
				events = append(events, "stop:"+m.Stop.Reason)
			}
			mu.Unlock()
		}
	})
	inst := bridgeServer(t, mustFlow(t, `{"id":"byo","actions":[{"type":"answer"},
	  {"type":"media_stream","option":{"url":"`+wsURL+`"}},
	  {"type":"hangup"}]}`))
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee})
	call, err := testPhone(t).Dial(bctx(t), target(inst, "echo"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Close)
	call.Play(media.Tone(toneCaller, 30*time.Second, 0.5))
	bc := answeredCall(t, b)
	hears(t, "the caller", call, toneCallee)
	hears(t, "extension 1002", bc, toneCaller)
	mu.Lock()
	got := strings.Join(events, "\n")
	mu.Unlock()
	if !strings.HasPrefix(got, "error:transfer: to: required") || !strings.Contains(got, "stop:transfer_requested") {
		t.Errorf("the application saw:\n%s\nwant an error for the empty target, then stop with transfer_requested", got)
	}
	if err := bc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, call)
	rec := callRecord(t, inst, call.CallID())
	if v := rec.Variables; v["media_stream.end"] != "transfer_requested" || v[flow.VarTransferResult] != "answered" {
		t.Errorf("variables %v", v)
	}
}

// A client attached through the API transfers the call as the API's
// transfer action does: the stream stops, 1002 rings while the flow goes
// on, and the caller is bridged to it when it answers.
func TestAttachedMediaTransfer(t *testing.T) {
	inst := bridgeServer(t, mustFlow(t, `{"id":"park","actions":[{"type":"answer"},{"type":"sleep","option":{"duration_ms":30000}},{"type":"hangup"}]}`))
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee})
	call, err := testPhone(t).Dial(bctx(t), target(inst, "echo"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Close)
	call.Play(media.Tone(toneCaller, 30*time.Second, 0.5))
	id := answeredCallID(t, inst)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+inst.HTTP.String()+"/v1/calls/"+id+"/media?api_key="+testAPIKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"event": "transfer", "transfer": map[string]string{"to": "1002"}}); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		var m struct {
			Event string `json:"event"`
			Stop  *struct {
				Reason string `json:"reason"`
			} `json:"stop"`
		}
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("no stop message: %v", err)
		}
		if m.Event == "stop" {
			if m.Stop.Reason != "transfer_requested" {
				t.Fatalf("stop reason %q", m.Stop.Reason)
			}
			break
		}
	}
	bc := answeredCall(t, b)
	hears(t, "the caller", call, toneCallee)
	hears(t, "extension 1002", bc, toneCaller)
	if err := call.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, bc)
}

// mediaApp is an application's websocket endpoint for media_stream: it
// accepts the connection, reads the start message and hands the socket to
// run. It returns the ws:// URL.
func mediaApp(t *testing.T, run func(ws *websocket.Conn)) string {
	t.Helper()
	up := websocket.Upgrader{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var m struct {
			Event string `json:"event"`
		}
		if ws.ReadJSON(&m) != nil || m.Event != "start" {
			return
		}
		run(ws)
	}))
	t.Cleanup(app.Close)
	return "ws" + strings.TrimPrefix(app.URL, "http")
}
