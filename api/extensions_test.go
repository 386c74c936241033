package api

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

func TestExtensionsCRUD(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.SIPRealm = "pbx.test" })
	ctx := context.Background()
	const pw, pw2 = "desk-secret-1001", "new-secret-1001"
	var all []response
	do := func(method, path string, body any) response {
		r := e.do(method, path, e.key, body)
		all = append(all, r)
		return r
	}
	res := mustStatus(t, "create", do("POST", "/v1/extensions", map[string]any{
		"number": "1001", "display_name": "Desk", "password": pw, "call_out": true}), 201)
	made := jsonOf(t, res)
	if made["number"] != "1001" || made["username"] != "1001" || made["realm"] != "pbx.test" || made["password_set"] != true ||
		made["enabled"] != true || made["call_out"] != true || res.header.Get("Location") != "/v1/extensions/1001" {
		t.Fatalf("created %s", res.body)
	}
	// Stored as the CLI stores it: HA1 hashes for the server's realm.
	md5, sha := store.HA1("1001", "pbx.test", pw)
	if st, err := e.db.GetExtension(ctx, "1001"); err != nil || st.HA1MD5 != md5 || st.HA1SHA256 != sha {
		t.Fatalf("stored %+v %v", st, err)
	}

	fieldOf(t, "unknown field", do("POST", "/v1/extensions", map[string]any{"number": "1002", "password": pw, "secret": "x"}), "secret")
	fieldOf(t, "missing number", do("POST", "/v1/extensions", map[string]any{"password": pw}), "number")
	fieldOf(t, "missing password", do("POST", "/v1/extensions", map[string]any{"number": "1002"}), "password")
	fieldOf(t, "short password", do("POST", "/v1/extensions", map[string]any{"number": "1002", "password": "short"}), "password")
	fieldOf(t, "bad number", do("POST", "/v1/extensions", map[string]any{"number": "10a2", "password": pw}), "number")
	fieldOf(t, "bad user name", do("POST", "/v1/extensions", map[string]any{"number": "1002", "username": "a b", "password": pw}), "username")
	expectError(t, "duplicate number", do("POST", "/v1/extensions", map[string]any{"number": "1001", "username": "other", "password": pw}), 409, "conflict")
	expectError(t, "duplicate user name", do("POST", "/v1/extensions", map[string]any{"number": "1009", "username": "1001", "password": pw}), 409, "conflict")

	// GET one shows its live registrations.
	_, err := e.db.UpdateRegistrations(ctx, "1001", func([]store.Registration) (store.RegistrationChange, error) {
		return store.RegistrationChange{Put: []store.Registration{{Contact: "sip:1001@192.0.2.7:5062", SourceAddr: "192.0.2.7:5062",
			Transport: "udp", ExpiresAt: time.Now().Add(time.Hour), CallID: "reg-1", CSeq: 1}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var one struct {
		Number        string               `json:"number"`
		Registrations []store.Registration `json:"registrations"`
	}
	mustStatus(t, "get", do("GET", "/v1/extensions/1001", nil), 200).decode(t, &one)
	if len(one.Registrations) != 1 || one.Registrations[0].Contact != "sip:1001@192.0.2.7:5062" ||
		one.Registrations[0].SourceAddr != "192.0.2.7:5062" || one.Registrations[0].Transport != "udp" || one.Registrations[0].ExpiresAt.IsZero() {
		t.Fatalf("registrations %+v", one.Registrations)
	}
	expectError(t, "get missing", do("GET", "/v1/extensions/9999", nil), 404, "not_found")

	// Replace without a password keeps the hashes; a new user name needs one.
	res = mustStatus(t, "replace", do("PUT", "/v1/extensions/1001", map[string]any{"display_name": "Reception", "enabled": false}), 200)
	if m := jsonOf(t, res); m["display_name"] != "Reception" || m["enabled"] != false || m["call_out"] != false || m["password_set"] != true {
		t.Fatalf("replaced %s", res.body)
	}
	if st, _ := e.db.GetExtension(ctx, "1001"); st.HA1MD5 != md5 {
		t.Fatal("replace without a password changed the hashes")
	}
	fieldOf(t, "rename without password", do("PUT", "/v1/extensions/1001", map[string]any{"username": "desk"}), "password")
	mustStatus(t, "rename", do("PUT", "/v1/extensions/1001", map[string]any{"username": "desk", "password": pw2}), 200)
	if st, _ := e.db.GetExtension(ctx, "1001"); st.HA1MD5 != func() string { m, _ := store.HA1("desk", "pbx.test", pw2); return m }() {
		t.Fatal("the new password's hashes were not stored")
	}
	fieldOf(t, "number mismatch", do("PUT", "/v1/extensions/1001", map[string]any{"number": "1002"}), "number")
	expectError(t, "replace missing", do("PUT", "/v1/extensions/9999", map[string]any{"password": pw}), 404, "not_found")

	for i := range 4 {
		mustStatus(t, "create more", do("POST", "/v1/extensions", map[string]any{"number": fmt.Sprint(2000 + i), "password": pw}), 201)
	}
	if nums := pageThrough(t, e, "/v1/extensions", "number", 3); fmt.Sprint(nums) != "[1001 2000 2001 2002 2003]" {
		t.Fatalf("paged %v", nums)
	}
	mustStatus(t, "delete", do("DELETE", "/v1/extensions/1001", nil), 204)
	expectError(t, "delete twice", do("DELETE", "/v1/extensions/1001", nil), 404, "not_found")
	mustStatus(t, "list", do("GET", "/v1/extensions?page_size=100", nil), 200)
	for _, r := range all {
		noSecret(t, "an extension answer", r, pw, pw2, md5, sha)
	}
}
