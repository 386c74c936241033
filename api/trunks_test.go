package api

import (
	"context"
	"fmt"
	"testing"

	"github.com/voxbridge/voxbridge/store"
)

func TestTrunksCRUD(t *testing.T) {
	e := newTestEnv(t)
	const pw, inPW = "carrier-secret-42", "inbound-secret-42"
	var all []response
	do := func(method, path string, body any) response {
		r := e.do(method, path, e.key, body)
		all = append(all, r)
		return r
	}
	res := mustStatus(t, "create", do("POST", "/v1/trunks", map[string]any{
		"name": "carrier", "host": "sip.carrier.example", "username": "acct", "password": pw,
		"inbound_addrs": []string{"192.0.2.10"}, "inbound_username": "carrier-in", "inbound_password": inPW,
	}), 201)
	made := jsonOf(t, res)
	id, _ := made["id"].(string)
	if id == "" || made["has_password"] != true || made["inbound_password_set"] != true || made["enabled"] != true ||
		res.header.Get("Location") != "/v1/trunks/"+id {
		t.Fatalf("created %s", res.body)
	}
	// The store got the password and only hashes of the inbound one.
	st, err := e.db.GetTrunk(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	md5, sha := store.HA1("carrier-in", defaultSIPRealm, inPW)
	if st.Password != pw || st.InboundHA1MD5 != md5 || st.InboundHA1SHA256 != sha {
		t.Fatalf("stored %+v", st)
	}

	fieldOf(t, "unknown field", do("POST", "/v1/trunks", map[string]any{"name": "x", "colour": "red"}), "colour")
	fieldOf(t, "missing name", do("POST", "/v1/trunks", map[string]any{"host": "h.example"}), "name")
	fieldOf(t, "bad transport", do("POST", "/v1/trunks", map[string]any{"name": "x", "transport": "sctp"}), "transport")
	fieldOf(t, "bad port", do("POST", "/v1/trunks", map[string]any{"name": "x", "port": 70000}), "port")
	fieldOf(t, "bad address", do("POST", "/v1/trunks", map[string]any{"name": "x", "inbound_addrs": []string{"nowhere"}}), "inbound_addrs")
	fieldOf(t, "short inbound password", do("POST", "/v1/trunks", map[string]any{"name": "x", "inbound_username": "u2", "inbound_password": "short"}), "inbound_password")
	fieldOf(t, "port as text", do("POST", "/v1/trunks", map[string]any{"name": "x", "port": "5060"}), "port")
	expectError(t, "duplicate name", do("POST", "/v1/trunks", map[string]any{"name": "carrier"}), 409, "conflict")

	got := jsonOf(t, mustStatus(t, "get", do("GET", "/v1/trunks/"+id, nil), 200))
	if got["name"] != "carrier" || got["host"] != "sip.carrier.example" || got["has_password"] != true {
		t.Fatalf("get %v", got)
	}
	expectError(t, "get missing", do("GET", "/v1/trunks/nope", nil), 404, "not_found")

	// PUT replaces; the GET answer sent back (read-only fields and all)
	// keeps both passwords.
	got["priority"] = 5
	got["enabled"] = false
	res = mustStatus(t, "replace", do("PUT", "/v1/trunks/"+id, got), 200)
	after := jsonOf(t, res)
	if after["priority"] != 5.0 || after["enabled"] != false || after["has_password"] != true || after["inbound_password_set"] != true {
		t.Fatalf("replaced %s", res.body)
	}
	if st, _ := e.db.GetTrunk(context.Background(), id); st.Password != pw || st.InboundHA1MD5 != md5 {
		t.Fatalf("replace lost the secrets: %+v", st)
	}
	fieldOf(t, "id mismatch", do("PUT", "/v1/trunks/"+id, map[string]any{"id": "other", "name": "carrier"}), "id")
	expectError(t, "replace missing", do("PUT", "/v1/trunks/nope", map[string]any{"name": "ghost"}), 404, "not_found")

	// Pages of 2 over 5 trunks, by name.
	for i := range 4 {
		mustStatus(t, "create more", do("POST", "/v1/trunks", map[string]any{"name": fmt.Sprintf("t%d", i)}), 201)
	}
	if names := pageThrough(t, e, "/v1/trunks", "name", 3); fmt.Sprint(names) != "[carrier t0 t1 t2 t3]" {
		t.Fatalf("paged %v", names)
	}
	mustStatus(t, "delete", do("DELETE", "/v1/trunks/"+id, nil), 204)
	expectError(t, "delete twice", do("DELETE", "/v1/trunks/"+id, nil), 404, "not_found")
	mustStatus(t, "list", do("GET", "/v1/trunks?page_size=100", nil), 200)
	for _, r := range all {
		noSecret(t, "a trunk answer", r, pw, inPW, md5, sha)
	}
}
