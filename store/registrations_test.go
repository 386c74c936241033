package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// put writes one binding for ext expiring after ttl.
func put(t *testing.T, db *DB, ext, contact string, ttl time.Duration) []Registration {
	t.Helper()
	rs, err := db.UpdateRegistrations(context.Background(), ext, func([]Registration) (RegistrationChange, error) {
		return RegistrationChange{Put: []Registration{{
			Contact: contact, SourceAddr: "10.0.0.1:5060", Transport: "udp",
			ExpiresAt: db.now().Add(ttl), CallID: "cid-" + contact, CSeq: 1, UserAgent: "test",
		}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// clock lets a test move the store's time.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestRegistrationsExpireAndPurge(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	clk := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	db.now = clk.now
	if err := db.CreateExtension(ctx, newExtension(t, "1001", "alice", "password1")); err != nil {
		t.Fatal(err)
	}
	put(t, db, "1001", "sip:a@10.0.0.1", 30*time.Second)
	rs := put(t, db, "1001", "sip:b@10.0.0.2", 90*time.Second)
	if len(rs) != 2 {
		t.Fatalf("%d bindings after two contacts, want 2", len(rs))
	}
	clk.t = clk.t.Add(60 * time.Second)
	rs, err := db.ListRegistrations(ctx, "1001")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Contact != "sip:b@10.0.0.2" {
		t.Fatalf("after 60 s: %+v, want only b", rs)
	}
	// The expired row is still there until purged.
	var rows int
	db.r.QueryRow(`SELECT COUNT(*) FROM registrations`).Scan(&rows)
	if rows != 2 {
		t.Fatalf("%d rows before purge", rows)
	}
	n, err := db.PurgeExpiredRegistrations(ctx)
	if err != nil || n != 1 {
		t.Fatalf("purged %d, %v; want 1", n, err)
	}
	clk.t = clk.t.Add(time.Minute)
	if all, _ := db.ListAllRegistrations(ctx); len(all) != 0 {
		t.Fatalf("after expiry of all: %+v", all)
	}
}

func TestUpdateRegistrationsUpsertRemoveAbort(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	if err := db.CreateExtension(ctx, newExtension(t, "1001", "alice", "password1")); err != nil {
		t.Fatal(err)
	}
	first := put(t, db, "1001", "sip:a@10.0.0.1", time.Hour)
	// Same contact again: one row, updated in place.
	rs, err := db.UpdateRegistrations(ctx, "1001", func(cur []Registration) (RegistrationChange, error) {
		if len(cur) != 1 || cur[0].CSeq != 1 {
			t.Errorf("decide saw %+v", cur)
		}
		r := cur[0]
		r.CSeq, r.SourceAddr, r.Transport = 2, "10.0.0.9:6000", "tcp"
		return RegistrationChange{Put: []Registration{r}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].ID != first[0].ID || rs[0].CSeq != 2 || rs[0].SourceAddr != "10.0.0.9:6000" || rs[0].Transport != "tcp" {
		t.Fatalf("upsert: %+v", rs)
	}
	put(t, db, "1001", "sip:b@10.0.0.2", time.Hour)
	// An error from decide changes nothing.
	boom := errors.New("boom")
	if _, err := db.UpdateRegistrations(ctx, "1001", func([]Registration) (RegistrationChange, error) {
		return RegistrationChange{RemoveAll: true}, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("decide error: %v", err)
	}
	if rs, _ := db.ListRegistrations(ctx, "1001"); len(rs) != 2 {
		t.Fatalf("aborted change applied: %d bindings", len(rs))
	}
	rs, err = db.UpdateRegistrations(ctx, "1001", func([]Registration) (RegistrationChange, error) {
		return RegistrationChange{Remove: []string{"sip:a@10.0.0.1"}}, nil
	})
	if err != nil || len(rs) != 1 || rs[0].Contact != "sip:b@10.0.0.2" {
		t.Fatalf("remove one: %+v, %v", rs, err)
	}
	rs, err = db.UpdateRegistrations(ctx, "1001", func([]Registration) (RegistrationChange, error) {
		return RegistrationChange{RemoveAll: true}, nil
	})
	if err != nil || len(rs) != 0 {
		t.Fatalf("remove all: %+v, %v", rs, err)
	}
	// Bindings need an existing extension and a known transport.
	if _, err := db.UpdateRegistrations(ctx, "4040", func([]Registration) (RegistrationChange, error) {
		return RegistrationChange{Put: []Registration{{Contact: "sip:x@y", Transport: "udp", ExpiresAt: time.Now().Add(time.Hour)}}}, nil
	}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("binding for a missing extension: %v", err)
	}
	if _, err := db.UpdateRegistrations(ctx, "1001", func([]Registration) (RegistrationChange, error) {
		return RegistrationChange{Put: []Registration{{Contact: "sip:x@y", Transport: "sctp", ExpiresAt: time.Now().Add(time.Hour)}}}, nil
	}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown transport: %v", err)
	}
}

func TestRegistrationsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := db.CreateExtension(ctx, newExtension(t, "1001", "alice", "password1")); err != nil {
		t.Fatal(err)
	}
	put(t, db, "1001", "sip:alice@192.0.2.7:5062;transport=tcp", time.Hour)
	db.Close()
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.ListRegistrations(ctx, "1001")
	if err != nil || len(rs) != 1 || rs[0].Contact != "sip:alice@192.0.2.7:5062;transport=tcp" || rs[0].UserAgent != "test" {
		t.Fatalf("after reopen: %+v, %v", rs, err)
	}
}
