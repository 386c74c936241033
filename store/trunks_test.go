package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func fullTrunk() *Trunk {
	return &Trunk{
		Name:            "carrier-a",
		Enabled:         true,
		Priority:        10,
		InboundAddrs:    []string{"192.0.2.10", "198.51.100.7/24", "::ffff:203.0.113.5"},
		Host:            "sip.carrier.example",
		Port:            5080,
		Transport:       TransportTCP,
		Username:        "acct42",
		Password:        "s3cret-carrier-pw",
		Register:        true,
		RegisterExpires: 600,
		CallerID:        "+14155550100",
		CallerName:      "Voxbridge",
		PAI:             "sip:+14155550100@carrier.example",
		Format:          NumberE164NoPlus,
		TechPrefix:      "1234#",
		Headers:         []Header{{"X-Account", "42"}, {"X-Route", "premium"}},
		MaxCalls:        4,
		AllowedPrefixes: []string{"+1", "44"},
	}
}

func TestTrunkRoundTripAndRedaction(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	tr := fullTrunk()
	tr.InboundUsername = "carrier-in"
	if err := tr.SetInboundPassword("voxbridge", "inbound-pw-1"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateTrunk(ctx, tr); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetTrunk(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Addresses come back canonical: a masked prefix, an unmapped IPv4.
	if strings.Join(got.InboundAddrs, " ") != "192.0.2.10 198.51.100.0/24 203.0.113.5" {
		t.Errorf("inbound addrs %v", got.InboundAddrs)
	}
	if got.Password != "s3cret-carrier-pw" || !got.HasPassword || got.Transport != TransportTCP || got.Format != NumberE164NoPlus ||
		got.TechPrefix != "1234#" || len(got.Headers) != 2 || got.Headers[1].Value != "premium" || got.MaxCalls != 4 ||
		strings.Join(got.AllowedPrefixes, ",") != "+1,44" || got.PAI != tr.PAI || !got.Register || got.RegisterExpires != 600 ||
		got.InboundHA1SHA256 == "" || got.OutboundPort() != 5080 {
		t.Errorf("round trip: %+v", got)
	}
	byName, err := db.TrunkByName(ctx, "carrier-a")
	if err != nil || byName.ID != tr.ID {
		t.Fatalf("by name: %v", err)
	}
	// Neither JSON nor the list carries a secret.
	b, _ := json.Marshal(got)
	list, _, err := db.ListTrunks(ctx, ListOptions{})
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	lb, _ := json.Marshal(list)
	for _, s := range []string{string(b), string(lb), list[0].Password, list[0].InboundHA1MD5} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, got.InboundHA1MD5) {
			t.Fatalf("secret leaked: %s", s)
		}
	}
	if !list[0].HasPassword {
		t.Error("list lost has_password")
	}
}

func TestTrunkValidation(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		edit func(*Trunk)
	}{
		{"empty name", func(t *Trunk) { t.Name = "" }},
		{"bad inbound addr", func(t *Trunk) { t.InboundAddrs = []string{"10.0.0.300"} }},
		{"bad host", func(t *Trunk) { t.Host = "a b" }},
		{"bad port", func(t *Trunk) { t.Port = 70000 }},
		{"bad transport", func(t *Trunk) { t.Transport = "sctp" }},
		{"register without password", func(t *Trunk) { t.Password = "" }},
		{"bad caller id", func(t *Trunk) { t.CallerID = "14 15" }},
		{"quote in caller name", func(t *Trunk) { t.CallerName = `a"b` }},
		{"PAI with brackets", func(t *Trunk) { t.PAI = "<sip:x@y>" }},
		{"bad format", func(t *Trunk) { t.Format = "e123" }},
		{"bad tech prefix", func(t *Trunk) { t.TechPrefix = "ab" }},
		{"reserved header", func(t *Trunk) { t.Headers = []Header{{"Via", "x"}} }},
		{"header injection", func(t *Trunk) { t.Headers = []Header{{"X-A", "1\r\nVia: evil"}} }},
		{"bad prefix", func(t *Trunk) { t.AllowedPrefixes = []string{"1x"} }},
		{"negative max calls", func(t *Trunk) { t.MaxCalls = -1 }},
		{"inbound user without password", func(t *Trunk) { t.InboundUsername = "in" }},
	} {
		tr := fullTrunk()
		tc.edit(tr)
		if err := db.CreateTrunk(ctx, tr); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
	if list, _, _ := db.ListTrunks(ctx, ListOptions{}); len(list) != 0 {
		t.Fatalf("invalid trunks stored: %d", len(list))
	}
}

func TestTrunkConflictsUpdateDelete(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	if err := db.CreateExtension(ctx, newExtension(t, "1001", "alice", "password1")); err != nil {
		t.Fatal(err)
	}
	tr := fullTrunk()
	if err := db.CreateTrunk(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateTrunk(ctx, fullTrunk()); !errors.Is(err, ErrConflict) {
		t.Fatalf("same name: %v", err)
	}
	// An inbound user name may not shadow an extension's.
	other := fullTrunk()
	other.Name = "carrier-b"
	other.InboundUsername = "alice"
	if err := other.SetInboundPassword("voxbridge", "password9"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateTrunk(ctx, other); !errors.Is(err, ErrConflict) {
		t.Fatalf("inbound username of an extension: %v", err)
	}
	// Nor the other way round.
	other.InboundUsername = "trunkin"
	if err := other.SetInboundPassword("voxbridge", "password9"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateTrunk(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateExtension(ctx, newExtension(t, "1002", "trunkin", "password1")); !errors.Is(err, ErrConflict) {
		t.Fatalf("extension username of a trunk: %v", err)
	}

	// An update from a redacted copy keeps the password.
	red := tr.Redacted()
	red.Priority = 1
	red.Enabled = false
	if err := db.UpdateTrunk(ctx, &red); err != nil {
		t.Fatal(err)
	}
	got, _ := db.GetTrunk(ctx, tr.ID)
	if got.Password != "s3cret-carrier-pw" || got.Priority != 1 || got.Enabled {
		t.Fatalf("after update: %+v", got)
	}
	ghost := fullTrunk()
	ghost.ID = "nope"
	if err := db.UpdateTrunk(ctx, ghost); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	enabled, err := db.EnabledTrunks(ctx)
	if err != nil || len(enabled) != 1 || enabled[0].Name != "carrier-b" || enabled[0].Password == "" {
		t.Fatalf("enabled trunks: %+v, %v", enabled, err)
	}

	// A number delivered by a deleted trunk stays, without the trunk.
	if err := db.PutNumber(ctx, &Number{Number: "+14155550100", Kind: NumberToFlow, Target: "main", TrunkID: tr.ID}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteTrunk(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	n, err := db.GetNumber(ctx, "+14155550100")
	if err != nil || n.TrunkID != "" || n.Target != "main" {
		t.Fatalf("number after trunk delete: %+v, %v", n, err)
	}
	if err := db.DeleteTrunk(ctx, tr.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestEnabledTrunksByPriority(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	for _, p := range []struct {
		name string
		prio int
	}{{"c", 5}, {"a", 20}, {"b", 5}, {"d", 1}} {
		if err := db.CreateTrunk(ctx, &Trunk{Name: p.name, Enabled: true, Priority: p.prio, Host: "127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := db.EnabledTrunks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tr := range ts {
		names = append(names, tr.Name)
	}
	if got := strings.Join(names, ","); got != "d,b,c,a" {
		t.Fatalf("order %s, want d,b,c,a", got)
	}
}
