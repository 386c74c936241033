package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWebhooksCRUD(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	w := &Webhook{URL: "http://127.0.0.1:9/hook", EventTypes: []string{"call.hangup", "dtmf"}, Description: "crm", Secret: "s3cret"}
	if err := db.CreateWebhook(ctx, w); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetWebhook(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, w) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, w)
	}
	all := &Webhook{URL: "https://example.invalid/x", Secret: "t"}
	if err := db.CreateWebhook(ctx, all); err != nil {
		t.Fatal(err)
	}
	if g, _ := db.GetWebhook(ctx, all.ID); g.EventTypes == nil || len(g.EventTypes) != 0 {
		t.Fatalf("no filter reads back as %#v, want an empty list", g.EventTypes)
	}
	for _, bad := range []Webhook{{URL: "", Secret: "x"}, {URL: "http://x", Secret: ""}, {URL: "http://x\n", Secret: "x"}} {
		if err := db.CreateWebhook(ctx, &bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v accepted: %v", bad, err)
		}
	}
	list, next, err := db.ListWebhooks(ctx, ListOptions{PageSize: 1})
	if err != nil || len(list) != 1 || next == "" {
		t.Fatalf("first page: %v %q %v", list, next, err)
	}
	rest, next2, err := db.ListWebhooks(ctx, ListOptions{PageSize: 1, PageToken: next})
	if err != nil || len(rest) != 1 || next2 != "" || rest[0].ID == list[0].ID {
		t.Fatalf("second page: %v %q %v", rest, next2, err)
	}
	if ws, err := db.AllWebhooks(ctx); err != nil || len(ws) != 2 || ws[0].Secret == "" {
		t.Fatalf("all: %+v %v", ws, err)
	}

	d := &WebhookDelivery{WebhookID: w.ID, EventID: "e1", EventType: "dtmf", CallID: "c1", Status: DeliveryPending}
	if err := db.CreateWebhookDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteWebhook(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetWebhook(ctx, w.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted webhook still there: %v", err)
	}
	if ds, _, err := db.ListWebhookDeliveries(ctx, w.ID, ListOptions{}); err != nil || len(ds) != 0 {
		t.Fatalf("deliveries outlived their target: %v %v", ds, err)
	}
	if err := db.DeleteWebhook(ctx, w.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	orphan := &WebhookDelivery{WebhookID: w.ID, EventID: "e2", EventType: "dtmf", Status: DeliveryPending}
	if err := db.CreateWebhookDelivery(ctx, orphan); !errors.Is(err, ErrInvalid) {
		t.Fatalf("delivery to a deleted target: %v", err)
	}
}

func TestWebhookDeliveryLog(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	clock := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db.now = func() time.Time { return clock }
	w := &Webhook{URL: "http://127.0.0.1:9/", Secret: "s"}
	if err := db.CreateWebhook(ctx, w); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 5 {
		clock = clock.Add(time.Second)
		d := &WebhookDelivery{WebhookID: w.ID, EventID: string(rune('a' + i)), EventType: "call.hangup", Status: DeliveryPending}
		if err := db.CreateWebhookDelivery(ctx, d); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	// The third one is retried once, then delivered.
	next := clock.Add(2 * time.Second)
	d := &WebhookDelivery{ID: ids[2], Status: DeliveryPending, Attempts: 1, ResponseCode: 500, LastError: strings.Repeat("é", 400), TMNextAttempt: &next}
	if err := db.UpdateWebhookDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	if len(d.LastError) > maxDeliveryError || !strings.HasSuffix(d.LastError, "é") {
		t.Fatalf("error not truncated on a rune boundary: %d bytes", len(d.LastError))
	}
	d.Status, d.Attempts, d.ResponseCode, d.LastError, d.TMNextAttempt = DeliveryDelivered, 2, 204, "", nil
	if err := db.UpdateWebhookDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}

	var seen []WebhookDelivery
	tok := ""
	for {
		page, next, err := db.ListWebhookDeliveries(ctx, w.ID, ListOptions{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, page...)
		if next == "" {
			break
		}
		tok = next
	}
	if len(seen) != 5 || seen[0].ID != ids[4] || seen[4].ID != ids[0] {
		t.Fatalf("log not newest first: %d rows", len(seen))
	}
	if got := seen[2]; got.Status != DeliveryDelivered || got.Attempts != 2 || got.ResponseCode != 204 || got.TMNextAttempt != nil {
		t.Fatalf("updated delivery reads %+v", got)
	}

	if n, err := db.FailPendingWebhookDeliveries(ctx, "server stopped"); err != nil || n != 4 {
		t.Fatalf("failed %d pending deliveries (%v), want 4", n, err)
	}
	page, _, _ := db.ListWebhookDeliveries(ctx, w.ID, ListOptions{PageSize: 1})
	if page[0].Status != DeliveryFailed || page[0].LastError != "server stopped" {
		t.Fatalf("pending delivery after restart: %+v", page[0])
	}
	// Rows from the first three seconds go.
	if n, err := db.PruneWebhookDeliveries(ctx, time.Date(2026, 5, 1, 12, 0, 3, 500_000_000, time.UTC)); err != nil || n != 3 {
		t.Fatalf("pruned %d (%v), want 3", n, err)
	}
}
