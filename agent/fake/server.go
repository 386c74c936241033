package fake

import (
	"net"
	"net/http"
	"sync"
)

// TB is what the fakes need from their owner: *testing.T and *testing.B
// satisfy it, and a command running fakes (voxbridge replay --fakes) gives
// its own, so the binary does not link the testing package. Fatalf is only
// called by the Wait helpers.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// server is an HTTP server on a loopback port: httptest.Server's part the
// fakes use, without linking net/http/httptest into commands. Close waits
// for the handlers that were running (hijacked connections are the
// caller's to end, as with httptest).
type server struct {
	URL string // http://127.0.0.1:port
	hs  *http.Server

	mu       sync.Mutex
	closed   bool
	handlers sync.WaitGroup
	served   chan struct{}
}

func newServer(tb TB, h http.Handler) *server {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("fake: listen on loopback: %v", err)
	}
	s := &server{URL: "http://" + ln.Addr().String(), served: make(chan struct{})}
	s.hs = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			http.Error(w, "fake server closed", http.StatusServiceUnavailable)
			return
		}
		s.handlers.Add(1)
		s.mu.Unlock()
		defer s.handlers.Done()
		h.ServeHTTP(w, r)
	})}
	go func() {
		defer close(s.served)
		s.hs.Serve(ln)
	}()
	return s
}

// Close stops listening, closes every connection the server still owns
// and waits for running handlers.
func (s *server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.hs.Close()
	<-s.served
	s.handlers.Wait()
}
