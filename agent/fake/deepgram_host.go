package fake

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// socketHost is the server under the websocket fakes (Deepgram and
// ElevenLabs). The server's Close does not end hijacked connections, so
// the host tracks them: close ends every live connection, then the server
// waits for their handlers.
type socketHost struct {
	srv      *server
	upgrader websocket.Upgrader

	mu     sync.Mutex
	conns  map[*websocket.Conn]struct{}
	closed bool
}

func newSocketHost(tb TB, handler http.HandlerFunc) *socketHost {
	tb.Helper()
	h := &socketHost{
		conns:    map[*websocket.Conn]struct{}{},
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
	}
	h.srv = newServer(tb, handler)
	tb.Cleanup(h.close)
	return h
}

// wsFake is what the Deepgram and ElevenLabs fakes share: options tests may
// change between connections, the count of connection attempts, and the
// accepted sessions.
type wsFake[O, S any] struct {
	host *socketHost
	name string

	mu       sync.Mutex
	opts     O
	attempts int
	sessions []S
}

// attempt counts a connection and returns the options it runs with and
// its number (from 1).
func (f *wsFake[O, S]) attempt() (O, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	return f.opts, f.attempts
}

func (f *wsFake[O, S]) addSession(s S) {
	f.mu.Lock()
	f.sessions = append(f.sessions, s)
	f.mu.Unlock()
}

// update changes the options for new connections and restarts the count
// of attempts.
func (f *wsFake[O, S]) update(change func(*O)) {
	f.mu.Lock()
	change(&f.opts)
	f.attempts = 0
	f.mu.Unlock()
}

// URL is the base URL to configure the client with
// (http://127.0.0.1:port; the clients map http to ws and add their path).
func (f *wsFake[O, S]) URL() string { return f.host.srv.URL }

// Attempts returns how many connections were tried, refused ones included.
func (f *wsFake[O, S]) Attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}

func (f *wsFake[O, S]) sessionList() []S {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sessions)
}

func (f *wsFake[O, S]) waitSession(tb TB, n int, timeout time.Duration) S {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if s := f.sessionList(); len(s) > n {
			return s[n]
		}
		if time.Now().After(deadline) {
			tb.Fatalf("fake %s: no session %d after %v", f.name, n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close stops the server and ends every connection. Tests need not call
// it: it runs when the test ends.
func (f *wsFake[O, S]) Close() { f.host.close() }

// upgrade completes the websocket handshake and tracks the connection until
// release.
func (h *socketHost) upgrade(w http.ResponseWriter, r *http.Request) (*websocket.Conn, bool) {
	c, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, false // Upgrade has already replied with an error
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		c.Close()
		return nil, false
	}
	h.conns[c] = struct{}{}
	return c, true
}

func (h *socketHost) release(c *websocket.Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	c.Close()
}

func (h *socketHost) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	for c := range h.conns {
		c.Close()
	}
	h.mu.Unlock()
	h.srv.Close()
}

// outQueue sends a connection's messages from one goroutine, each no
// earlier than its due time, in order: the fakes' latencies without
// blocking their readers.
type outQueue struct {
	conn *websocket.Conn
	mu   sync.Mutex
	cond chan struct{} // signalled when items are added
	q    []outItem
	stop chan struct{}
	done chan struct{}
}

type outItem struct {
	due    time.Time
	binary bool
	data   []byte
	// close, when set, sends a close frame with this code and text (code 0:
	// drop the TCP connection without one) and ends the queue.
	close     bool
	closeCode int
	closeText string
}

func newOutQueue(conn *websocket.Conn) *outQueue {
	q := &outQueue{conn: conn, cond: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *outQueue) push(it outItem) {
	q.mu.Lock()
	q.q = append(q.q, it)
	q.mu.Unlock()
	select {
	case q.cond <- struct{}{}:
	default:
	}
}

// shutdown stops the queue without sending what is left and waits for it.
func (q *outQueue) shutdown() {
	select {
	case <-q.stop:
	default:
		close(q.stop)
	}
	<-q.done
}

func (q *outQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		var it outItem
		ok := len(q.q) > 0
		if ok {
			it, q.q = q.q[0], q.q[1:]
		}
		q.mu.Unlock()
		if !ok {
			select {
			case <-q.cond:
				continue
			case <-q.stop:
				return
			}
		}
		if d := time.Until(it.due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-q.stop:
				t.Stop()
				return
			}
		}
		if it.close {
			if it.closeCode == 0 {
				q.conn.NetConn().Close()
			} else {
				// Closing TCP now, with the client's audio unread, would
				// reset the connection and lose the close frame: leave the
				// socket to the reader, which sees the client's reply (or
				// gives up after a second).
				q.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(it.closeCode, it.closeText), time.Now().Add(time.Second))
				q.conn.SetReadDeadline(time.Now().Add(time.Second))
			}
			return
		}
		typ := websocket.TextMessage
		if it.binary {
			typ = websocket.BinaryMessage
		}
		q.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := q.conn.WriteMessage(typ, it.data); err != nil {
			return
		}
	}
}
