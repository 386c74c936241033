package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestAgentsCRUD(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	clk := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	db.now = clk.now
	a := &Agent{ID: "booking", Name: "Booking", Definition: json.RawMessage(`{"id":"booking","llm":{"api_key":"sk-1"}}`)}
	if err := db.CreateAgent(ctx, a); err != nil {
		t.Fatal(err)
	}
	if !a.TMCreate.Equal(clk.t) {
		t.Fatalf("created at %v", a.TMCreate)
	}
	if err := db.CreateAgent(ctx, &Agent{ID: "booking", Definition: json.RawMessage(`{}`)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate: %v, want ErrConflict", err)
	}
	for _, bad := range []string{``, `[]`, `null`, `{`} {
		if err := db.CreateAgent(ctx, &Agent{ID: "x", Definition: json.RawMessage(bad)}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("definition %q: %v, want ErrInvalid", bad, err)
		}
	}
	created := clk.t
	clk.t = clk.t.Add(time.Minute)
	a.Name, a.Definition = "Bookings", json.RawMessage(`{"id":"booking","name":"Bookings"}`)
	if err := db.UpdateAgent(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetAgent(ctx, "booking")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Bookings" || string(got.Definition) != `{"id":"booking","name":"Bookings"}` ||
		!got.TMCreate.Equal(created) || !got.TMUpdate.Equal(clk.t) {
		t.Fatalf("after update: %+v %s", got, got.Definition)
	}
	if err := db.UpdateAgent(ctx, &Agent{ID: "nope", Definition: json.RawMessage(`{}`)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	if _, err := db.GetAgent(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if err := db.DeleteAgent(ctx, "booking"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteAgent(ctx, "booking"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestAgentsPage(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	for i := range 5 {
		if err := db.CreateAgent(ctx, &Agent{ID: fmt.Sprintf("a%d", i), Definition: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	tok := ""
	for pages := 1; ; pages++ {
		page, next, err := db.ListAgents(ctx, ListOptions{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page {
			ids = append(ids, a.ID)
		}
		if tok = next; tok == "" {
			if pages != 3 {
				t.Fatalf("%d pages of 2 for 5 agents", pages)
			}
			break
		}
	}
	if fmt.Sprint(ids) != "[a0 a1 a2 a3 a4]" {
		t.Fatalf("paged %v", ids)
	}
	all, err := db.AllAgents(ctx)
	if err != nil || len(all) != 5 {
		t.Fatalf("all: %d %v", len(all), err)
	}
	if _, _, err := db.ListAgents(ctx, ListOptions{PageToken: "garbage"}); !errors.Is(err, ErrBadPageToken) {
		t.Fatalf("bad token: %v", err)
	}
}
