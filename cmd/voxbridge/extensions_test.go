package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// cli runs a management command on a fake environment and returns its
// output.
type cli struct {
	t   *testing.T
	db  string
	env map[string]string
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, db: filepath.Join(t.TempDir(), "voxbridge.db"), env: map[string]string{}}
}

func (c *cli) run(stdin string, run func([]string, cliEnv) error, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	env := cliEnv{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut, getenv: func(k string) string { return c.env[k] }}
	err := run(args, env)
	return out.String(), err
}

func (c *cli) must(stdin string, run func([]string, cliEnv) error, args ...string) string {
	c.t.Helper()
	out, err := c.run(stdin, run, args...)
	if err != nil {
		c.t.Fatalf("%v: %v", args, err)
	}
	return out
}

func (c *cli) open() *store.DB {
	c.t.Helper()
	db, err := store.Open(c.db)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { db.Close() })
	return db
}

func TestExtensionsCommands(t *testing.T) {
	c := newCLI(t)
	// --db from the environment, like serve.
	c.env["VOXBRIDGE_DB"] = c.db
	c.must("", runExtensions, "add", "--number", "1001", "--username", "alice", "--name", "Alice", "--call-out", "--password", "correct horse")
	// Password from stdin, number as an argument.
	c.must("piped-secret\n", runExtensions, "add", "1002")

	db := c.open()
	ctx := context.Background()
	alice, err := db.GetExtension(ctx, "1001")
	if err != nil {
		t.Fatal(err)
	}
	if md5, _ := store.HA1("alice", "voxbridge", "correct horse"); alice.HA1MD5 != md5 || !alice.CallOut || alice.DisplayName != "Alice" {
		t.Fatalf("stored %+v", alice)
	}
	bob, err := db.GetExtension(ctx, "1002")
	if md5, _ := store.HA1("1002", "voxbridge", "piped-secret"); err != nil || bob.HA1MD5 != md5 || bob.CallOut {
		t.Fatalf("stored %+v, %v", bob, err)
	}

	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"add", "--number", "1001", "--password", "another-one"}, "extension 1001 already exists"},
		{"", []string{"add", "--number", "1003", "--username", "alice", "--password", "another-one"}, `user name "alice" is taken`},
		{"", []string{"add", "--number", "1004", "--password", "short"}, "shorter than 8"},
		{"", []string{"add", "--number", "1005"}, "no password given"},
		{"", []string{"add", "--number", "12ab", "--password", "long enough"}, "1 to 20 digits"},
		{"", []string{"add"}, "--number is required"},
		{"", []string{"delete", "4040"}, "no extension 4040"},
		{"", []string{"frob"}, `unknown verb "frob"`},
		{"", nil, "usage: voxbridge extensions"},
	} {
		_, err := c.run(tc.stdin, runExtensions, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}

	out := c.must("", runExtensions, "list")
	if !strings.Contains(out, "1001    alice     Alice  yes") || !strings.Contains(out, "1002") {
		t.Errorf("list:\n%s", out)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(c.must("", runExtensions, "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0]["username"] != "alice" || list[0]["call_out"] != true {
		t.Fatalf("json list %v", list)
	}
	for _, e := range list {
		for k := range e {
			if strings.Contains(strings.ToLower(k), "ha1") || strings.Contains(k, "password") {
				t.Fatalf("list shows %q", k)
			}
		}
	}
	c.must("", runExtensions, "delete", "1002")
	if _, err := db.GetExtension(ctx, "1002"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestTrunksAndNumbersCommands(t *testing.T) {
	c := newCLI(t)
	c.must("carrier-secret\n", runTrunks, "add", "--db", c.db, "--name", "carrier", "--host", "sip.example.com",
		"--transport", "tcp", "--username", "acct", "--register", "--register-expires", "600",
		"--inbound-addr", "192.0.2.0/24,198.51.100.7", "--inbound-addr", "203.0.113.9",
		"--caller-id", "+14155550100", "--caller-name", "Voxbridge", "--pai", "+14155550100",
		"--number-format", "e164_noplus", "--tech-prefix", "0099", "--header", "X-Account: 42",
		"--max-calls", "5", "--allow-prefix", "+1", "--priority", "3")
	db := c.open()
	ctx := context.Background()
	tr, err := db.TrunkByName(ctx, "carrier")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Password != "carrier-secret" || tr.Transport != store.TransportTCP || !tr.Register || tr.RegisterExpires != 600 ||
		strings.Join(tr.InboundAddrs, " ") != "192.0.2.0/24 198.51.100.7 203.0.113.9" || tr.Format != store.NumberE164NoPlus ||
		tr.TechPrefix != "0099" || len(tr.Headers) != 1 || tr.Headers[0] != (store.Header{Name: "X-Account", Value: "42"}) ||
		tr.MaxCalls != 5 || tr.Priority != 3 || tr.CallerName != "Voxbridge" || tr.PAI != "+14155550100" {
		t.Fatalf("stored %+v", tr)
	}
	// Inbound-only trunk with its own credentials from stdin.
	c.must("inbound-secret\n", runTrunks, "add", "--db", c.db, "--name", "peer", "--inbound-username", "peer-in")
	peer, err := db.TrunkByName(ctx, "peer")
	if md5, _ := store.HA1("peer-in", "voxbridge", "inbound-secret"); err != nil || peer.InboundHA1MD5 != md5 || peer.Host != "" {
		t.Fatalf("peer %+v, %v", peer, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "--db", c.db, "--name", "carrier", "--host", "x.example"}, "trunk carrier already exists"},
		{[]string{"add", "--db", c.db, "--name", "x"}, "give --host"},
		{[]string{"add", "--db", c.db, "--name", "y", "--host", "h", "--transport", "sctp"}, "transport"},
		{[]string{"add", "--db", c.db, "--name", "z", "--host", "h", "--header", "Via: x"}, "header name"},
		{[]string{"add", "--db", c.db, "--name", "w", "--host", "h", "--username", "u", "--inbound-username", "i"}, "give --password or --inbound-password"},
		{[]string{"delete", "--db", c.db, "nope"}, "no trunk nope"},
	} {
		if _, err := c.run("", runTrunks, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	out := c.must("", runTrunks, "list", "--db", c.db)
	js := c.must("", runTrunks, "list", "--db", c.db, "--json")
	for _, s := range []string{out, js} {
		if strings.Contains(s, "carrier-secret") || strings.Contains(s, peer.InboundHA1MD5) {
			t.Fatalf("a secret is listed:\n%s", s)
		}
	}
	if !strings.Contains(out, "tcp:sip.example.com:5060") || !strings.Contains(out, "set") || !strings.Contains(js, `"has_password": true`) {
		t.Errorf("list:\n%s\n%s", out, js)
	}

	// Numbers, with a trunk by name and each kind of target.
	c.must("", runExtensions, "add", "--db", c.db, "--number", "1001", "--password", "password-1")
	c.must("", runNumbers, "add", "--db", c.db, "--number", "+1 (415) 555-0100", "--extension", "1001", "--trunk", "carrier")
	c.must("", runNumbers, "add", "--db", c.db, "14155550101", "--flow", "main")
	c.must("", runNumbers, "add", "--db", c.db, "14155550102", "--agent", "support")
	n, err := db.LookupNumber(ctx, "14155550100")
	if err != nil || n.Kind != store.NumberToExtension || n.Target != "1001" || n.TrunkID != tr.ID {
		t.Fatalf("number %+v, %v", n, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "--db", c.db, "--number", "5551", "--flow", "a", "--agent", "b"}, "exactly one"},
		{[]string{"add", "--db", c.db, "--number", "5552", "--extension", "9999"}, "extension"},
		{[]string{"add", "--db", c.db, "--number", "5553", "--flow", "a", "--trunk", "nope"}, "no trunk nope"},
		{[]string{"add", "--db", c.db, "--number", "55x", "--flow", "a"}, "number 55x"},
		{[]string{"delete", "--db", c.db, "999"}, "no number 999"},
	} {
		if _, err := c.run("", runNumbers, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	out = c.must("", runNumbers, "list", "--db", c.db)
	if !strings.Contains(out, "+14155550100  extension  1001     carrier") || !strings.Contains(out, "14155550102   agent      support  -") {
		t.Errorf("numbers list:\n%s", out)
	}
	c.must("", runTrunks, "delete", "--db", c.db, "carrier")
	c.must("", runNumbers, "delete", "--db", c.db, "+14155550101")
	var nums []store.Number
	if err := json.Unmarshal([]byte(c.must("", runNumbers, "list", "--db", c.db, "--json")), &nums); err != nil {
		t.Fatal(err)
	}
	if len(nums) != 2 || nums[0].TrunkID != "" {
		t.Fatalf("after deleting the trunk and a number: %+v", nums)
	}
}

// An extension made with the CLI registers with the running server, and a
// wrong password does not.
func TestExtensionFromCLIRegisters(t *testing.T) {
	inst, cfg := testServer(t, nil)
	c := newCLI(t)
	c.db = cfg.DB
	c.must("", runExtensions, "add", "--db", c.db, "--number", "1001", "--username", "alice", "--password", "correct horse")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := testPhone(t)
	if err := p.Register(ctx, inst.SIPUDP.String(), "alice", "correct horse"); err != nil {
		t.Fatalf("register: %v", err)
	}
	other := testPhone(t)
	err := other.Register(ctx, inst.SIPUDP.String(), "alice", "wrong horse")
	var re *siptest.RegisterError
	if !errors.As(err, &re) || re.Code != 403 {
		t.Fatalf("wrong password: %v", err)
	}
	cs, err := inst.sip.Contacts(ctx, "1001")
	if err != nil || len(cs) != 1 || cs[0].Contact != p.ContactURI("alice") {
		t.Fatalf("contacts %+v, %v", cs, err)
	}
}
