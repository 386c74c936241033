package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

func newTestAPI(t *testing.T) (*httptest.Server, *store.DB) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := httptest.NewServer(New(db, nil))
	t.Cleanup(srv.Close)
	return srv, db
}

func call(t *testing.T, method, url string, v any) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: content type %q", method, url, ct)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return res
}

type apiError struct {
	Error struct{ Code, Message string } `json:"error"`
}

type callPage struct {
	Result        []store.Call `json:"result"`
	NextPageToken *string      `json:"next_page_token"`
}

func TestListCallsPagesNewestFirst(t *testing.T) {
	srv, db := newTestAPI(t)
	var empty callPage
	call(t, "GET", srv.URL+"/v1/calls", &empty)
	if empty.Result == nil || len(empty.Result) != 0 || empty.NextPageToken == nil || *empty.NextPageToken != "" {
		t.Fatalf("empty list: %+v", empty)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 25 {
		c := &store.Call{SIPCallID: "c" + string(rune('a'+i)), Direction: store.DirectionIncoming, Status: store.StatusHangup, TMCreate: base.Add(time.Duration(i) * time.Second)}
		if err := db.CreateCall(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	var seen []store.Call
	url := srv.URL + "/v1/calls?page_size=10"
	for pages := 0; ; pages++ {
		var p callPage
		if res := call(t, "GET", url, &p); res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		seen = append(seen, p.Result...)
		if *p.NextPageToken == "" {
			if pages != 2 {
				t.Fatalf("%d pages for 25 calls of 10", pages+1)
			}
			break
		}
		url = srv.URL + "/v1/calls?page_size=10&page_token=" + *p.NextPageToken
	}
	if len(seen) != 25 {
		t.Fatalf("saw %d calls, want 25", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if !seen[i-1].TMCreate.After(seen[i].TMCreate) {
			t.Fatalf("not newest first at %d: %v then %v", i, seen[i-1].TMCreate, seen[i].TMCreate)
		}
	}
	var one store.Call
	if res := call(t, "GET", srv.URL+"/v1/calls/"+seen[3].ID, &one); res.StatusCode != 200 || one.SIPCallID != seen[3].SIPCallID {
		t.Fatalf("get call: %d %+v", res.StatusCode, one)
	}
}

func TestErrors(t *testing.T) {
	srv, _ := newTestAPI(t)
	cases := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/calls/nope", 404, "not_found"},
		{"GET", "/v1/calls?page_size=abc", 400, "invalid_argument"},
		{"GET", "/v1/calls?page_size=0", 400, "invalid_argument"},
		{"GET", "/v1/calls?page_token=%25%25garbage", 400, "invalid_argument"},
		{"GET", "/v1/nothing", 404, "not_found"},
		{"DELETE", "/v1/calls", 405, "method_not_allowed"},
	}
	for _, c := range cases {
		var e apiError
		res := call(t, c.method, srv.URL+c.path, &e)
		if res.StatusCode != c.status || e.Error.Code != c.code || e.Error.Message == "" {
			t.Errorf("%s %s: %d %+v; want %d %s", c.method, c.path, res.StatusCode, e, c.status, c.code)
		}
		if c.status == 405 && res.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
	}
	var h map[string]string
	if res := call(t, "GET", srv.URL+"/healthz", &h); res.StatusCode != 200 || h["status"] != "ok" {
		t.Fatalf("healthz: %d %v", res.StatusCode, h)
	}
}
