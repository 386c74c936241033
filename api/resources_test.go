package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/voxbridge/voxbridge/flow"
)

// Every resource route: no key is 401, and writes with a read-only key
// are 403 before anything is read or written.
func TestResourceRoutesAuth(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Agents = flow.NewAgents() })
	for _, res := range []string{"trunks", "extensions", "numbers", "agents"} {
		for _, rt := range []struct{ method, path string }{
			{"GET", "/v1/" + res}, {"POST", "/v1/" + res}, {"GET", "/v1/" + res + "/x"},
			{"PUT", "/v1/" + res + "/x"}, {"DELETE", "/v1/" + res + "/x"},
		} {
			var body any
			if rt.method == "POST" || rt.method == "PUT" {
				body = map[string]any{}
			}
			what := rt.method + " " + rt.path
			expectError(t, what+" without a key", e.do(rt.method, rt.path, "", body), 401, "unauthenticated")
			if rt.method != "GET" {
				expectError(t, what+" read-only", e.do(rt.method, rt.path, e.roKey, body), 403, "permission_denied")
			}
		}
	}
}

// pageThrough reads a list 2 at a time and returns the keys (field key of
// each item) in order, checking it took want pages.
func pageThrough(t *testing.T, e *testEnv, path, key string, wantPages int) []string {
	t.Helper()
	var keys []string
	tok := ""
	for pages := 1; ; pages++ {
		p := path + "?page_size=2"
		if tok != "" {
			p += "&page_token=" + tok
		}
		res := e.do("GET", p, e.roKey, nil)
		if res.status != 200 {
			t.Fatalf("GET %s: %d %s", p, res.status, res.body)
		}
		var page struct {
			Result        []map[string]any `json:"result"`
			NextPageToken *string          `json:"next_page_token"`
		}
		res.decode(t, &page)
		if page.NextPageToken == nil || page.Result == nil {
			t.Fatalf("GET %s: not a page: %s", p, res.body)
		}
		for _, item := range page.Result {
			keys = append(keys, fmt.Sprint(item[key]))
		}
		if tok = *page.NextPageToken; tok == "" {
			if pages != wantPages {
				t.Fatalf("%s: %d pages, want %d (%v)", path, pages, wantPages, keys)
			}
			break
		}
	}
	expectError(t, path+" bad token", e.do("GET", path+"?page_token=bogus", e.roKey, nil), 400, "invalid_argument")
	return keys
}

// noSecret fails if any answer body so far carried secret.
func noSecret(t *testing.T, what string, res response, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(string(res.body), s) {
			t.Fatalf("%s: answer carries a secret: %s", what, res.body)
		}
	}
}

// fieldOf asserts a 400 invalid_argument about field.
func fieldOf(t *testing.T, what string, res response, field string) {
	t.Helper()
	d := expectError(t, what, res, 400, "invalid_argument")
	if d["field"] != field {
		t.Fatalf("%s: details %v, want field %q: %s", what, d, field, res.body)
	}
}

func mustStatus(t *testing.T, what string, res response, status int) response {
	t.Helper()
	if res.status != status {
		t.Fatalf("%s: %d, want %d: %s", what, res.status, status, res.body)
	}
	return res
}

func jsonOf(t *testing.T, res response) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(res.body, &m); err != nil {
		t.Fatalf("decode %s: %v", res.body, err)
	}
	return m
}
