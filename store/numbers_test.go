package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNormalizeNumber(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"+1 (415) 555-0100", "+14155550100"},
		{"  0049.30.1234 ", "0049301234"},
		{"1001", "1001"},
		{"+", ""},
		{"12+3", ""},
		{"abc", ""},
		{"", ""},
		{"123456789012345678901", ""},
	} {
		got, err := NormalizeNumber(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("NormalizeNumber(%q) = %q, %v; want ErrInvalid", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeNumber(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNumbersPutLookupDelete(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	clk := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	db.now = clk.now
	if err := db.CreateExtension(ctx, newExtension(t, "1001", "alice", "password1")); err != nil {
		t.Fatal(err)
	}
	tr := &Trunk{Name: "carrier", Enabled: true, InboundAddrs: []string{"192.0.2.1"}}
	if err := db.CreateTrunk(ctx, tr); err != nil {
		t.Fatal(err)
	}
	n := &Number{Number: "+1 415 555 0100", Kind: NumberToExtension, Target: "1001", TrunkID: tr.ID}
	if err := db.PutNumber(ctx, n); err != nil {
		t.Fatal(err)
	}
	if n.Number != "+14155550100" {
		t.Fatalf("stored as %q", n.Number)
	}
	// Found whichever way the carrier writes it.
	for _, dialed := range []string{"+14155550100", "14155550100", "1-415-555-0100"} {
		got, err := db.LookupNumber(ctx, dialed)
		if err != nil || got.Target != "1001" || got.Kind != NumberToExtension || got.TrunkID != tr.ID {
			t.Errorf("lookup %q: %+v, %v", dialed, got, err)
		}
	}
	if _, err := db.LookupNumber(ctx, "14155550199"); !errors.Is(err, ErrNotFound) {
		t.Errorf("lookup unknown: %v", err)
	}
	// Replacing keeps the creation time.
	created := n.TMCreate
	clk.t = clk.t.Add(time.Hour)
	n2 := &Number{Number: "14155550100", Kind: NumberToFlow, Target: "ivr"}
	if err := db.PutNumber(ctx, n2); err != nil {
		t.Fatal(err)
	}
	n3 := &Number{Number: "+14155550100", Kind: NumberToAgent, Target: "support"}
	if err := db.PutNumber(ctx, n3); err != nil {
		t.Fatal(err)
	}
	if !n3.TMCreate.Equal(created) || n3.TMUpdate.Equal(created) {
		t.Errorf("replace: tm_create %v (want %v), tm_update %v", n3.TMCreate, created, n3.TMUpdate)
	}
	// An exact match wins over the other spelling.
	got, err := db.LookupNumber(ctx, "14155550100")
	if err != nil || got.Target != "ivr" {
		t.Errorf("exact spelling: %+v, %v", got, err)
	}
	list, _, err := db.ListNumbers(ctx, ListOptions{})
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %+v, %v", list, err)
	}

	for _, bad := range []*Number{
		{Number: "5551", Kind: "queue", Target: "x"},
		{Number: "5552", Kind: NumberToFlow},
		{Number: "5553", Kind: NumberToExtension, Target: "9999"},
		{Number: "5554", Kind: NumberToFlow, Target: "x", TrunkID: "no-such-trunk"},
		{Number: "55x5", Kind: NumberToFlow, Target: "x"},
	} {
		if err := db.PutNumber(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("put %+v: %v, want ErrInvalid", bad, err)
		}
	}
	// Delete takes the exact spelling first, then the other one.
	if err := db.DeleteNumber(ctx, "+1 415 555 0100"); err != nil {
		t.Fatal(err)
	}
	if got, err := db.LookupNumber(ctx, "+14155550100"); err != nil || got.Number != "14155550100" {
		t.Fatalf("after deleting +14155550100: %+v, %v", got, err)
	}
	if err := db.DeleteNumber(ctx, "+14155550100"); err != nil {
		t.Fatalf("delete by the other spelling: %v", err)
	}
	if err := db.DeleteNumber(ctx, "+14155550100"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete when none is left: %v", err)
	}
}
