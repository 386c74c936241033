package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func TestHTTPToolEdges(t *testing.T) {
	var mu sync.Mutex
	var lastQuery, lastMethod string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastQuery, lastMethod = r.URL.RawQuery, r.Method
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, `{"a":1}`)
		case "/text":
			io.WriteString(w, "plain words")
		case "/empty":
		case "/fail":
			http.Error(w, "database down", http.StatusBadGateway)
		case "/slow":
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done():
			}
		case "/huge":
			io.WriteString(w, `"`+strings.Repeat("x", maxToolReply+10)+`"`)
		}
	}))
	defer srv.Close()
	call := func(path, method, args string, timeoutMS int) (string, error) {
		return callHTTPTool(context.Background(), srv.Client(), HTTPTool{Name: "t", URL: srv.URL + path, Method: method, TimeoutMS: timeoutMS}, args, nil)
	}
	seen := func() (string, string) {
		mu.Lock()
		defer mu.Unlock()
		return lastMethod, lastQuery
	}

	out, err := call("/ok", "GET", `{"date":"2025-01-02","n":2,"skip":null}`, 0)
	if m, q := seen(); err != nil || out != `{"a":1}` || m != "GET" || q != "date=2025-01-02&n=2" {
		t.Errorf("GET: %q %v, %s ?%s", out, err, m, q)
	}
	if out, err := call("/text", "", `{}`, 0); err != nil || out != `{"result":"plain words"}` {
		t.Errorf("text reply: %q %v", out, err)
	}
	if out, err := call("/empty", "PUT", ``, 0); err != nil || out != `{"ok":true}` {
		t.Errorf("empty reply: %q %v", out, err)
	}
	for _, tc := range []struct{ path, args, wantOut, wantErr string }{
		{"/fail", `{}`, `HTTP 502`, "HTTP 502"},
		{"/slow", `{}`, "did not answer in time", "no reply within 200ms"},
		{"/huge", `{}`, "too large", "larger than"},
		{"/ok", `not json`, "not a JSON object", "not a JSON object"},
	} {
		out, err := call(tc.path, "POST", tc.args, 200)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(out, tc.wantOut) || !strings.Contains(out, `"error":`) {
			t.Errorf("%s: %q %v", tc.path, out, err)
		}
	}
	// An unreachable service is an error for the model, not a crash.
	out, err = callHTTPTool(context.Background(), http.DefaultClient, HTTPTool{Name: "t", URL: "http://127.0.0.1:1/x"}, `{}`, nil)
	if err == nil || !strings.Contains(out, "could not be reached") {
		t.Errorf("unreachable: %q %v", out, err)
	}
}

// A model's summary is spoken as one line of at most maxTransferSummary
// bytes, cut between words and still valid UTF-8.
func TestTransferSummary(t *testing.T) {
	if got := transferSummary("  Dana\n\tSmith  "); got != "Dana Smith" {
		t.Errorf("got %q", got)
	}
	long := strings.Repeat("héllo wörld ", 100)
	got := transferSummary(long)
	if len(got) > maxTransferSummary || !utf8.ValidString(got) || strings.HasSuffix(got, " ") ||
		!strings.HasPrefix(long, got) || !strings.HasPrefix(long[len(got):], " ") {
		t.Errorf("cut to %d bytes: %q", len(got), got[max(0, len(got)-20):])
	}
}
