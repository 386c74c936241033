package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vb.yaml")
	if err := os.WriteFile(file, []byte("sip_addr: 127.0.0.1:7000\nhttp_addr: 127.0.0.1:7001\nrtp_ports: 40000-40100\ndb: /tmp/file.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VOXBRIDGE_HTTP_ADDR": "127.0.0.1:8001", "VOXBRIDGE_DB": "/tmp/env.db"}
	getenv := func(k string) string { return env[k] }

	cfg, err := loadServeConfig([]string{"--config", file, "--db", "/tmp/flag.db"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := serveConfig{
		SIPAddr:   "127.0.0.1:7000",                                           // file
		HTTPAddr:  "127.0.0.1:8001",                                           // environment beats file
		RTPPorts:  "40000-40100",                                              // file
		DB:        "/tmp/flag.db",                                             // flag beats environment
		LogLevel:  "info",                                                     // default
		SIPDigest: "SHA-256,MD5", SIPRealm: "voxbridge", SIPAnonymous: "echo", // defaults
		RecordAll: "false", RecordDir: "./recordings",
	}
	if cfg != want {
		t.Fatalf("got %+v\nwant %+v", cfg, want)
	}

	def, err := loadServeConfig(nil, func(string) string { return "" })
	if err != nil || def != defaultServeConfig() {
		t.Fatalf("zero configuration: %+v, %v", def, err)
	}
	if def.SIPAddr != "0.0.0.0:5060" || def.HTTPAddr != "127.0.0.1:8080" || def.RTPPorts != "10000-20000" || def.DB != "./voxbridge.db" {
		t.Fatalf("defaults changed: %+v", def)
	}
}

func TestConfigErrors(t *testing.T) {
	none := func(string) string { return "" }
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("sip_adress: 1.2.3.4:5060\n"), 0o600)
	cases := map[string][]string{
		"unknown yaml key": {"--config", unknown},
		"missing file":     {"--config", filepath.Join(dir, "nope.yaml")},
		"bad public ip":    {"--public-ip", "not-an-ip"},
		"bad sip addr":     {"--sip-addr", "nocolon"},
		"stray argument":   {"extra"},
		"unknown flag":     {"--frobnicate"},
	}
	for name, args := range cases {
		if _, err := loadServeConfig(args, none); err == nil {
			t.Errorf("%s: accepted %v", name, args)
		}
	}
}

func TestParseDigits(t *testing.T) {
	got, err := parseDigits("1@3s, #@5s,a@100ms")
	if err != nil || len(got) != 3 || got[0].digit != '1' || got[1].digit != '#' || got[2].digit != 'A' || got[1].at.Seconds() != 5 {
		t.Fatalf("parseDigits: %+v, %v", got, err)
	}
	for _, bad := range []string{"1", "x@1s", "12@1s", "1@soon", "1@-1s"} {
		if _, err := parseDigits(bad); err == nil || !strings.Contains(err.Error(), "digits") {
			t.Errorf("parseDigits(%q) accepted or unclear: %v", bad, err)
		}
	}
}
