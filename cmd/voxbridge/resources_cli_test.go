package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

func TestResourceCommandMode(t *testing.T) {
	for _, c := range []struct {
		args    []string
		apiEnv  string
		wantAPI bool
		wantErr bool
	}{
		{args: []string{}, wantAPI: false},
		{args: []string{"--json"}, apiEnv: "http://127.0.0.1:8080", wantAPI: true},
		{args: []string{"--db", "x.db"}, apiEnv: "http://127.0.0.1:8080", wantAPI: false},
		{args: []string{"-db=x.db"}, apiEnv: "http://127.0.0.1:8080", wantAPI: false},
		{args: []string{"--api", "http://127.0.0.1:1"}, wantAPI: true},
		{args: []string{"--api=http://127.0.0.1:1"}, wantAPI: true},
		{args: []string{"--api", "http://127.0.0.1:1", "--db", "x.db"}, wantErr: true},
		// "api" and "db" as values or arguments are not flags.
		{args: []string{"--name", "api", "db"}, wantAPI: false},
		{args: []string{"--", "--api"}, wantAPI: false},
	} {
		env := cliEnv{getenv: func(k string) string {
			if k == envAPIURL {
				return c.apiEnv
			}
			return ""
		}}
		got, err := useAPI("trunks", c.args, env)
		if (err != nil) != c.wantErr || (err == nil && got != c.wantAPI) {
			t.Errorf("%v (env %q): api %v, err %v; want api %v, err %v", c.args, c.apiEnv, got, err, c.wantAPI, c.wantErr)
		}
	}
}

// With VOXBRIDGE_API_URL set, trunks, extensions and numbers go through the
// running server; --db still reaches the database file.
func TestResourceCommandsOverAPI(t *testing.T) {
	c, db := apiCLI(t)
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// Trunks: create from YAML, with a write-only password.
	trunkFile := write("carrier.yaml", "name: carrier\nhost: 127.0.0.1\nport: 5099\nusername: acct\npassword: trunk-secret-77\nmax_calls: 4\n")
	if out := c.must("", runTrunks, "create", trunkFile); !strings.Contains(out, "trunk carrier stored") {
		t.Fatalf("trunks create: %s", out)
	}
	stored, err := db.TrunkByName(ctx, "carrier")
	if err != nil || stored.Password != "trunk-secret-77" || stored.MaxCalls != 4 || stored.Port != 5099 {
		t.Fatalf("stored trunk %+v, %v", stored, err)
	}
	js := c.must("", runTrunks, "list", "--json")
	if strings.Contains(js, "trunk-secret-77") {
		t.Fatalf("list --json shows the password: %s", js)
	}
	var trunks []store.Trunk
	if err := json.Unmarshal([]byte(js), &trunks); err != nil || len(trunks) != 1 || trunks[0].ID != stored.ID || !trunks[0].HasPassword {
		t.Fatalf("list --json: %v %s", err, js)
	}
	if out := c.must("", runTrunks, "list"); !strings.Contains(out, stored.ID) || !strings.Contains(out, "udp:127.0.0.1:5099") {
		t.Fatalf("list:\n%s", out)
	}
	// The server's validation comes back with the field.
	bad := write("bad.json", `{"name":"bad","host":"127.0.0.1","transport":"carrier-pigeon"}`)
	if _, err := c.run("", runTrunks, "create", bad); err == nil || !strings.Contains(err.Error(), "transport") {
		t.Fatalf("bad trunk: %v", err)
	}
	// add takes the same flags over the API; the server hashes the inbound
	// password for its realm.
	out := c.must("", runTrunks, "add", "--name", "second", "--host", "127.0.0.1", "--username", "u2", "--password", "pw-second-1",
		"--inbound-username", "carrier-in", "--inbound-password", "pw-inbound-2", "--header", "X-Acct: 7")
	second, err := db.TrunkByName(ctx, "second")
	if err != nil || !strings.Contains(out, second.ID) || second.Password != "pw-second-1" || second.InboundHA1SHA256 == "" ||
		len(second.Headers) != 1 || second.Headers[0].Value != "7" {
		t.Fatalf("trunks add over the API: %s; stored %+v, %v", out, second, err)
	}
	if _, err := c.run("", runTrunks, "add", "--name", "second", "--host", "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("add twice over the API: %v", err)
	}
	c.must("", runTrunks, "delete", second.ID) // by id too
	// create is the API's verb; on the database the error says what to use.
	if _, err := c.run("", runTrunks, "create", "--db", c.db, trunkFile); err == nil || !strings.Contains(err.Error(), "add") {
		t.Fatalf("create on the database: %v", err)
	}

	// Extensions: create from JSON, list, then numbers pointing at one.
	extFile := write("1001.json", `{"number":"1001","display_name":"Front desk","password":"ext-secret-1234"}`)
	var ext map[string]any
	if err := json.Unmarshal([]byte(c.must("", runExtensions, "create", "--json", extFile)), &ext); err != nil || ext["number"] != "1001" || ext["password_set"] != true {
		t.Fatalf("extensions create --json: %v %v", ext, err)
	}
	if e, err := db.GetExtension(ctx, "1001"); err != nil || e.DisplayName != "Front desk" || e.HA1MD5 == "" {
		t.Fatalf("stored extension %+v, %v", e, err)
	}
	js = c.must("", runExtensions, "list", "--json")
	var exts []store.Extension
	if err := json.Unmarshal([]byte(js), &exts); err != nil || len(exts) != 1 || strings.Contains(js, "ext-secret") {
		t.Fatalf("extensions list --json: %v %s", err, js)
	}
	c.must("pw-over-api-3\n", runExtensions, "add", "--number", "1003", "--name", "Back office")
	if e, err := db.GetExtension(ctx, "1003"); err != nil || e.DisplayName != "Back office" || e.HA1MD5 == "" {
		t.Fatalf("extensions add over the API: %+v, %v", e, err)
	}
	numFile := write("did.yml", "number: \"+14155550100\"\nkind: extension\ntarget: \"1001\"\n")
	c.must("", runNumbers, "create", numFile)
	var nums []store.Number
	if err := json.Unmarshal([]byte(c.must("", runNumbers, "list", "--json")), &nums); err != nil || len(nums) != 1 || nums[0].Target != "1001" {
		t.Fatalf("numbers list --json: %v %+v", err, nums)
	}

	// Delete: trunks by name (or id), extensions and numbers by number.
	c.must("", runNumbers, "delete", "+14155550100")
	c.must("", runExtensions, "delete", "1001")
	if out := c.must("", runTrunks, "delete", "carrier"); !strings.Contains(out, "trunk carrier deleted") {
		t.Fatalf("trunks delete: %s", out)
	}
	if _, err := db.TrunkByName(ctx, "carrier"); err == nil {
		t.Fatal("deleted trunk still stored")
	}
	if _, err := db.GetExtension(ctx, "1001"); err == nil {
		t.Fatal("deleted extension still stored")
	}
	if _, err := c.run("", runExtensions, "delete", "1001"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := c.run("", runTrunks, "delete", "carrier"); err == nil || !strings.Contains(err.Error(), "no trunk") {
		t.Fatalf("trunk delete twice: %v", err)
	}

	// --db beats the environment's API URL: another database file, empty,
	// and add works there, with --json.
	other := filepath.Join(t.TempDir(), "other.db")
	var added store.Extension
	js = c.must("pw-for-db-mode-1\n", runExtensions, "add", "--db", other, "--number", "2002", "--json")
	if err := json.Unmarshal([]byte(js), &added); err != nil || added.Number != "2002" || strings.Contains(js, "pw-for-db") {
		t.Fatalf("extensions add --json: %v %s", err, js)
	}
	if out := c.must("", runExtensions, "list", "--db", other); !strings.Contains(out, "2002") {
		t.Fatalf("list --db:\n%s", out)
	}
	if _, err := db.GetExtension(ctx, "2002"); err == nil {
		t.Fatal("--db wrote to the server's database")
	}
	if _, err := c.run("", runTrunks, "list", "--db", other, "--api", "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("--db with --api: %v", err)
	}
	var tr store.Trunk
	js = c.must("", runTrunks, "add", "--db", other, "--name", "t2", "--host", "127.0.0.1", "--username", "u", "--password", "db-trunk-secret", "--json")
	if err := json.Unmarshal([]byte(js), &tr); err != nil || tr.Name != "t2" || !tr.HasPassword || strings.Contains(js, "db-trunk-secret") {
		t.Fatalf("trunks add --json: %v %s", err, js)
	}
}

// calls get --json prints every field the API answers (recordings,
// latency), the table shows them, and calls list --agent filters.
func TestCallsGetAndListByAgent(t *testing.T) {
	c, db := apiCLI(t)
	ctx := context.Background()
	withAgent := &store.Call{Direction: store.DirectionIncoming, Status: store.StatusHangup, Variables: map[string]string{"agent.id": "booking"}}
	plain := &store.Call{Direction: store.DirectionIncoming, Status: store.StatusHangup}
	for _, call := range []*store.Call{withAgent, plain} {
		if err := db.CreateCall(ctx, call); err != nil {
			t.Fatal(err)
		}
	}
	rec := &store.Recording{CallID: withAgent.ID, Path: filepath.Join(t.TempDir(), "r.wav"), Format: "wav/pcm16/8000/stereo", Channels: 2}
	if err := db.CreateRecording(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishRecording(ctx, rec.ID, store.RecordingCompleted, "", 3000*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var got struct {
		ID         string           `json:"id"`
		Recordings []map[string]any `json:"recordings"`
		Latency    any              `json:"latency"`
		Variables  map[string]any   `json:"variables"`
	}
	js := c.must("", runCalls, "get", "--json", withAgent.ID)
	if err := json.Unmarshal([]byte(js), &got); err != nil || got.ID != withAgent.ID || len(got.Recordings) != 1 ||
		got.Recordings[0]["download_path"] != "/v1/recordings/"+rec.ID || !strings.Contains(js, `"latency": null`) {
		t.Fatalf("calls get --json: %v\n%s", err, js)
	}
	if out := c.must("", runCalls, "get", withAgent.ID); !strings.Contains(out, "/v1/recordings/"+rec.ID) || !strings.Contains(out, "3.0 s") {
		t.Fatalf("calls get:\n%s", out)
	}
	var page struct {
		Result []store.Call `json:"result"`
	}
	if err := json.Unmarshal([]byte(c.must("", runCalls, "list", "--agent", "booking", "--json")), &page); err != nil ||
		len(page.Result) != 1 || page.Result[0].ID != withAgent.ID {
		t.Fatalf("calls list --agent: %v %+v", err, page.Result)
	}
}
