package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func newExtension(t *testing.T, number, username, password string) *Extension {
	t.Helper()
	e := &Extension{Number: number, Username: username, DisplayName: "Ext " + number, Enabled: true}
	if err := e.SetPassword("voxbridge", password); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestHA1KnownValues(t *testing.T) {
	// Computed outside Go: printf 'alice:voxbridge:correct horse' | md5sum / sha256sum.
	m, s := HA1("alice", "voxbridge", "correct horse")
	if m != "42dd85d11cdbe31ed992173646ad4c19" {
		t.Errorf("MD5 HA1 = %s", m)
	}
	if s != "2153c469c672320698856792b05739f46f9cf788c23b70296f605cc06a322110" {
		t.Errorf("SHA-256 HA1 = %s", s)
	}
}

func TestExtensionRoundTripKeepsNoPassword(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	const password = "correct horse"
	e := newExtension(t, "1001", "alice", password)
	e.CallOut = true
	if err := db.CreateExtension(ctx, e); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetExtension(ctx, "1001")
	if err != nil {
		t.Fatal(err)
	}
	if got.Username != "alice" || got.DisplayName != "Ext 1001" || !got.CallOut || !got.Enabled || got.Realm != "voxbridge" {
		t.Errorf("got %+v", got)
	}
	if got.HA1MD5 != "42dd85d11cdbe31ed992173646ad4c19" || got.HA1SHA256 != e.HA1SHA256 {
		t.Errorf("hashes not kept: %s %s", got.HA1MD5, got.HA1SHA256)
	}
	if !got.TMCreate.Equal(e.TMCreate) || got.TMCreate.IsZero() {
		t.Errorf("tm_create %v, want %v", got.TMCreate, e.TMCreate)
	}
	byUser, err := db.ExtensionByUsername(ctx, "alice")
	if err != nil || byUser.Number != "1001" {
		t.Fatalf("by username: %+v, %v", byUser, err)
	}
	// The password is nowhere in the row, in any column.
	var row string
	if err := db.r.QueryRow(`SELECT number||username||display_name||realm||ha1_md5||ha1_sha256 FROM extensions`).Scan(&row); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(row, password) || strings.Contains(row, "horse") {
		t.Fatalf("password stored: %q", row)
	}
}

func TestExtensionUsernameDefaultsToNumber(t *testing.T) {
	db, _ := openTestDB(t)
	e := &Extension{Number: "200", Enabled: true}
	if err := e.SetPassword("voxbridge", "long enough"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateExtension(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if e.Username != "200" {
		t.Fatalf("username %q", e.Username)
	}
	// The hash is for "200:voxbridge:long enough".
	if m, _ := HA1("200", "voxbridge", "long enough"); e.HA1MD5 != m {
		t.Fatal("hash not made with the defaulted username")
	}
}

func TestExtensionConflictsAndValidation(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	if err := db.CreateExtension(ctx, newExtension(t, "1001", "alice", "password1")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		e    *Extension
		want error
	}{
		{"same number", newExtension(t, "1001", "bob", "password1"), ErrConflict},
		{"same username", newExtension(t, "1002", "alice", "password1"), ErrConflict},
		{"letters in number", &Extension{Number: "10a1", Username: "x", Realm: "r", HA1MD5: strings.Repeat("0", 32), HA1SHA256: strings.Repeat("0", 64)}, ErrInvalid},
		{"username with @", &Extension{Number: "1003", Username: "a@b", Realm: "r", HA1MD5: strings.Repeat("0", 32), HA1SHA256: strings.Repeat("0", 64)}, ErrInvalid},
		{"no password", &Extension{Number: "1004"}, ErrInvalid},
		{"malformed hash", &Extension{Number: "1005", Realm: "r", HA1MD5: "zz", HA1SHA256: strings.Repeat("0", 64)}, ErrInvalid},
		{"control char in name", &Extension{Number: "1006", DisplayName: "a\r\nVia: x", Realm: "r", HA1MD5: strings.Repeat("0", 32), HA1SHA256: strings.Repeat("0", 64)}, ErrInvalid},
	} {
		if err := db.CreateExtension(ctx, tc.e); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
	short := &Extension{Number: "1007"}
	if err := short.SetPassword("voxbridge", "short"); !errors.Is(err, ErrInvalid) {
		t.Errorf("short password: %v", err)
	}
	if err := short.SetPassword("bad realm", "long enough"); !errors.Is(err, ErrInvalid) {
		t.Errorf("realm with a space: %v", err)
	}
	if _, err := db.GetExtension(ctx, "9999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get missing: %v", err)
	}
	if _, err := db.ExtensionByUsername(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("by missing username: %v", err)
	}
	if err := db.DeleteExtension(ctx, "9999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete missing: %v", err)
	}
}

func TestExtensionUpdate(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	e := newExtension(t, "1001", "alice", "password1")
	if err := db.CreateExtension(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateExtension(ctx, newExtension(t, "1002", "bob", "password2")); err != nil {
		t.Fatal(err)
	}
	e.Enabled = false
	e.DisplayName = "Alice"
	if err := e.SetPassword("voxbridge", "new password"); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateExtension(ctx, e); err != nil {
		t.Fatal(err)
	}
	got, _ := db.GetExtension(ctx, "1001")
	if got.Enabled || got.DisplayName != "Alice" || got.HA1MD5 != e.HA1MD5 {
		t.Fatalf("update not kept: %+v", got)
	}
	e.Username = "bob"
	if err := db.UpdateExtension(ctx, e); !errors.Is(err, ErrConflict) {
		t.Fatalf("taking bob's username: %v", err)
	}
	ghost := newExtension(t, "4040", "ghost", "password1")
	if err := db.UpdateExtension(ctx, ghost); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
}

func TestListExtensionsPages(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	for i := range 7 {
		if err := db.CreateExtension(ctx, newExtension(t, fmt.Sprintf("10%02d", i), fmt.Sprintf("u%d", i), "password1")); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	tok := ""
	pages := 0
	for {
		page, next, err := db.ListExtensions(ctx, ListOptions{PageSize: 3, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range page {
			all = append(all, e.Number)
		}
		if next == "" {
			break
		}
		tok = next
	}
	if got := strings.Join(all, ","); got != "1000,1001,1002,1003,1004,1005,1006" || pages != 3 {
		t.Fatalf("listed %s in %d pages", got, pages)
	}
	if _, _, err := db.ListExtensions(ctx, ListOptions{PageToken: "garbage"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad token: %v", err)
	}
}

func TestDeleteExtensionDropsRegistrations(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	if err := db.CreateExtension(ctx, newExtension(t, "1001", "alice", "password1")); err != nil {
		t.Fatal(err)
	}
	put(t, db, "1001", "sip:alice@10.0.0.1:5060", time.Hour)
	if err := db.DeleteExtension(ctx, "1001"); err != nil {
		t.Fatal(err)
	}
	all, err := db.ListAllRegistrations(ctx)
	if err != nil || len(all) != 0 {
		t.Fatalf("registrations after delete: %v, %v", all, err)
	}
}
