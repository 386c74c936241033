package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voxbridge/voxbridge/api"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// testAPIKey is stored by every test server at start, through
// VOXBRIDGE_API_KEY as an operator would, and sent by the HTTP helpers.
const testAPIKey = "vbk_test-key-for-the-end-to-end-tests-0123456789"

func init() { os.Setenv(envAPIKey, testAPIKey) }

func TestKeysCommands(t *testing.T) {
	c := newCLI(t)
	c.env["VOXBRIDGE_DB"] = c.db
	if _, err := c.run("", runKeys, "create"); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("create without a name: %v", err)
	}
	key := strings.TrimSpace(c.must("", runKeys, "create", "--name", "ops"))
	if !strings.HasPrefix(key, api.KeyPrefix) || len(key) < 40 || strings.ContainsAny(key, " \n") {
		t.Fatalf("create printed %q, want the key alone", key)
	}
	var ro struct {
		store.APIKey
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(c.must("", runKeys, "create", "--name", "dashboard", "--read-only", "--json")), &ro); err != nil {
		t.Fatal(err)
	}
	if ro.Role != store.RoleReadOnly || !strings.HasPrefix(ro.Key, api.KeyPrefix) || ro.ID == "" {
		t.Fatalf("read-only key: %+v", ro)
	}

	db := c.open()
	k, err := db.APIKeyByHash(context.Background(), api.HashKey(key))
	if err != nil || k.Name != "ops" || k.Role != store.RoleAdmin {
		t.Fatalf("stored key: %+v %v", k, err)
	}
	// Only the hash and a short prefix are kept.
	raw, _ := os.ReadFile(c.db)
	wal, _ := os.ReadFile(c.db + "-wal")
	if bytes.Contains(append(raw, wal...), []byte(key[len(api.KeyPrefix)+8:])) {
		t.Fatal("the key itself is in the database file")
	}

	list := c.must("", runKeys, "list")
	for _, want := range []string{"ops", "dashboard", "read_only", k.Prefix, k.ID} {
		if !strings.Contains(list, want) {
			t.Fatalf("list lacks %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, key) {
		t.Fatal("list shows a whole key")
	}
	c.must("", runKeys, "revoke", k.ID)
	var keys []store.APIKey
	if err := json.Unmarshal([]byte(c.must("", runKeys, "list", "--json")), &keys); err != nil {
		t.Fatal(err)
	}
	revoked := 0
	for _, k := range keys {
		if k.Revoked() {
			revoked++
		}
	}
	if len(keys) != 2 || revoked != 1 {
		t.Fatalf("after revoke: %+v", keys)
	}
	if _, err := c.run("", runKeys, "revoke", "no-such-id"); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("revoke unknown: %v", err)
	}
	if _, err := c.run("", runKeys, "rotate"); err == nil || !strings.Contains(err.Error(), "create|list|revoke") {
		t.Fatalf("unknown verb: %v", err)
	}
}

// logBuffer collects a server's log lines.
type logBuffer struct{ bytes.Buffer }

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

func TestServeSeedsTheEnvironmentKey(t *testing.T) {
	cfg := defaultServeConfig()
	cfg.SIPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DB = filepath.Join(t.TempDir(), "voxbridge.db")
	for range 2 { // a restart with the same key stores nothing new
		inst, err := startInstance(cfg, testLogger(t), instanceOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var list struct{ Result []store.Call }
		if code := getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls", &list); code != 200 {
			t.Fatalf("with the seeded key: %d", code)
		}
		res, err := http.Get("http://" + inst.HTTP.String() + "/v1/calls")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 401 {
			t.Fatalf("without a key: %d", res.StatusCode)
		}
		if n, _ := inst.db.CountActiveAPIKeys(context.Background()); n != 1 {
			t.Fatalf("%d keys after a start, want 1", n)
		}
		inst.Stop()
	}

	t.Setenv(envAPIKey, "too-short")
	if _, err := startInstance(cfg, testLogger(t), instanceOptions{}); err == nil || !strings.Contains(err.Error(), envAPIKey) {
		t.Fatalf("a short key: %v", err)
	}
}

func TestServeWithoutKeysSaysHowToMakeOne(t *testing.T) {
	t.Setenv(envAPIKey, "")
	cfg := defaultServeConfig()
	cfg.SIPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DB = filepath.Join(t.TempDir(), "voxbridge.db")
	var logs logBuffer
	inst, err := startInstance(cfg, logs.logger(), instanceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inst.Stop()
	if !strings.Contains(logs.String(), "voxbridge keys create --name ops --db "+cfg.DB) {
		t.Fatalf("no hint in the log:\n%s", logs.String())
	}
}

func TestServeHTTPS(t *testing.T) {
	certFile, keyFile, pool := siptest.SelfSignedCert(t)
	cfg := defaultServeConfig()
	cfg.SIPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DB = filepath.Join(t.TempDir(), "voxbridge.db")
	cfg.HTTPTLSCert = certFile
	if _, err := startInstance(cfg, testLogger(t), instanceOptions{}); err == nil || !strings.Contains(err.Error(), "together") {
		t.Fatalf("a certificate without its key: %v", err)
	}
	cfg.HTTPTLSKey = keyFile
	inst, err := startInstance(cfg, testLogger(t), instanceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	if u := httpURL(cfg, inst.HTTP); !strings.HasPrefix(u, "https://") {
		t.Fatalf("URL %s", u)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", "https://"+inst.HTTP.String()+"/v1/calls", nil)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil {
		t.Fatalf("over TLS: %d %v", res.StatusCode, res.TLS)
	}
	// Plain HTTP to the TLS port gets no API answer.
	if res, err := http.Get("http://" + inst.HTTP.String() + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS port")
		}
	}
}
