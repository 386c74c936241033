// Command echo-agent is a minimal "bring your own agent" for voxbridge's
// media websocket: it plays the caller's audio back 500 ms later, marks
// what it queued and presses a key once.
//
// As a server, a flow's media_stream action connects to it:
//
//	echo-agent --listen 127.0.0.1:8090
//	{"type": "media_stream", "option": {"url": "ws://127.0.0.1:8090/"}}
//
// As a client, it attaches to a live call through the API:
//
//	echo-agent --connect "ws://127.0.0.1:8080/v1/calls/CALL_ID/media?api_key=KEY"
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// message is the subset of the protocol this agent reads and writes.
type message struct {
	Event string `json:"event"`
	Start *struct {
		CallID   string `json:"call_id"`
		Encoding string `json:"encoding"`
	} `json:"start,omitempty"`
	Media *struct {
		Payload string `json:"payload"`
	} `json:"media,omitempty"`
	Mark *struct {
		Name string `json:"name"`
	} `json:"mark,omitempty"`
	DTMF *struct {
		Digit  string `json:"digit,omitempty"`
		Digits string `json:"digits,omitempty"`
	} `json:"dtmf,omitempty"`
	Stop *struct {
		Reason string `json:"reason"`
	} `json:"stop,omitempty"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to accept media streams on")
	connect := flag.String("connect", "", "attach to a call instead: the call's media websocket URL")
	delay := flag.Duration("delay", 500*time.Millisecond, "how far behind the caller the echo plays")
	digit := flag.String("digit", "5", "key to press once, 1 s after the stream starts (empty: none)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	a := agent{delay: *delay, digit: *digit}

	if *connect != "" {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, *connect, nil)
		if err != nil {
			log.Fatalf("connect: %v", err)
		}
		a.serve(ctx, ws)
		return
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// The address line lets a test (or a script) find a :0 port.
	fmt.Printf("listening on ws://%s/\n", ln.Addr())
	up := websocket.Upgrader{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		a.serve(r.Context(), ws)
	})}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

type agent struct {
	delay time.Duration
	digit string
}

// serve runs one stream: it reads the caller's frames and writes each one
// back delay later, with a mark after every second of echoed audio.
func (a agent) serve(ctx context.Context, ws *websocket.Conn) {
	defer ws.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type frame struct {
		at      time.Time
		payload string
	}
	var (
		mu      sync.Mutex
		pending []frame
		wmu     sync.Mutex
	)
	write := func(v any) error {
		wmu.Lock()
		defer wmu.Unlock()
		ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
		return ws.WriteJSON(v)
	}
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		sent, marks := 0, 0
		var pressed <-chan time.Time
		if a.digit != "" {
			pressed = time.After(time.Second)
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-pressed:
				write(map[string]any{"event": "dtmf", "dtmf": map[string]string{"digits": a.digit}})
				fmt.Printf("pressed %s\n", a.digit)
			case now := <-t.C:
				mu.Lock()
				var due []frame
				for len(pending) > 0 && now.Sub(pending[0].at) >= a.delay {
					due = append(due, pending[0])
					pending = pending[1:]
				}
				mu.Unlock()
				for _, f := range due {
					write(map[string]any{"event": "media", "media": map[string]string{"payload": f.payload}})
					if sent++; sent%50 == 0 {
						marks++
						write(map[string]any{"event": "mark", "mark": map[string]string{"name": fmt.Sprintf("echo-%d", marks)}})
					}
				}
			}
		}
	}()
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var m message
		if err := json.Unmarshal(data, &m); err != nil {
			continue
		}
		switch m.Event {
		case "start":
			fmt.Printf("stream started: call %s, %s\n", m.Start.CallID, m.Start.Encoding)
		case "media":
			mu.Lock()
			pending = append(pending, frame{at: time.Now(), payload: m.Media.Payload})
			mu.Unlock()
		case "mark":
			fmt.Printf("mark acknowledged: %s\n", m.Mark.Name)
		case "dtmf":
			fmt.Printf("caller pressed %s\n", m.DTMF.Digit)
		case "error":
			fmt.Printf("voxbridge says: %s\n", strings.TrimSpace(m.Error.Message))
		case "stop":
			fmt.Printf("stream stopped: %s\n", m.Stop.Reason)
			return
		}
	}
}
