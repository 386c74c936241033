package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestAPIKeysCreateFindRevoke(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	k := &APIKey{Name: "ops", Prefix: "vbk_abcd", Hash: hashOf("vbk_abcdef"), Role: RoleAdmin}
	if err := db.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if k.ID == "" || k.TMCreate.IsZero() {
		t.Fatalf("id and time not set: %+v", k)
	}
	got, err := db.APIKeyByHash(ctx, hashOf("vbk_abcdef"))
	if err != nil || got.ID != k.ID || got.Name != "ops" || got.Role != RoleAdmin || got.Revoked() {
		t.Fatalf("by hash: %+v %v", got, err)
	}
	if _, err := db.APIKeyByHash(ctx, hashOf("other")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown hash: %v", err)
	}
	dup := &APIKey{Name: "again", Hash: k.Hash, Role: RoleReadOnly}
	if err := db.CreateAPIKey(ctx, dup); !errors.Is(err, ErrConflict) {
		t.Fatalf("same hash twice: %v", err)
	}
	for _, bad := range []APIKey{
		{Name: "", Hash: hashOf("x"), Role: RoleAdmin},
		{Name: "x", Hash: "not-hex", Role: RoleAdmin},
		{Name: "x", Hash: hashOf("y"), Role: "root"},
		{Name: "a\nb", Hash: hashOf("z"), Role: RoleAdmin},
	} {
		if err := db.CreateAPIKey(ctx, &bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v accepted: %v", bad, err)
		}
	}
	if n, err := db.CountActiveAPIKeys(ctx); err != nil || n != 1 {
		t.Fatalf("active keys %d %v", n, err)
	}

	used := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := db.TouchAPIKey(ctx, k.ID, used); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeAPIKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	got, _ = db.APIKeyByHash(ctx, k.Hash)
	if !got.Revoked() || got.TMLastUsed == nil || !got.TMLastUsed.Equal(used) {
		t.Fatalf("after touch and revoke: %+v", got)
	}
	first := *got.TMRevoke
	if err := db.RevokeAPIKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if again, _ := db.APIKeyByHash(ctx, k.Hash); !again.TMRevoke.Equal(first) {
		t.Fatalf("second revoke moved the time: %v then %v", first, again.TMRevoke)
	}
	if err := db.RevokeAPIKey(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if n, _ := db.CountActiveAPIKeys(ctx); n != 0 {
		t.Fatalf("%d active keys after revoke", n)
	}
}

func TestAPIKeysListPages(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	for i := range 5 {
		if err := db.CreateAPIKey(ctx, &APIKey{Name: "k", Hash: hashOf(string(rune('a' + i))), Role: RoleReadOnly}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	tok := ""
	for pages := 1; ; pages++ {
		ks, next, err := db.ListAPIKeys(ctx, ListOptions{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			if seen[k.ID] {
				t.Fatalf("key %s listed twice", k.ID)
			}
			seen[k.ID] = true
		}
		if next == "" {
			if pages != 3 {
				t.Fatalf("%d pages for 5 keys of 2", pages)
			}
			break
		}
		tok = next
	}
	if len(seen) != 5 {
		t.Fatalf("listed %d keys, want 5", len(seen))
	}
}
