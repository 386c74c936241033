package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestListCallsFilters(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// 12 calls one minute apart: directions alternate, every third one is
	// still ringing.
	for i := range 12 {
		c := &Call{Direction: DirectionIncoming, Status: StatusHangup, TMCreate: base.Add(time.Duration(i) * time.Minute)}
		if i%2 == 1 {
			c.Direction = DirectionOutgoing
		}
		if i%3 == 0 {
			c.Status = StatusRinging
		}
		if err := db.CreateCall(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	all := func(f CallFilter) []Call {
		var out []Call
		tok := ""
		for {
			page, next, err := db.ListCalls(ctx, ListOptions{PageSize: 2, PageToken: tok}, f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, page...)
			if next == "" {
				return out
			}
			tok = next
		}
	}
	if got := all(CallFilter{}); len(got) != 12 {
		t.Fatalf("no filter: %d calls", len(got))
	}
	out := all(CallFilter{Direction: DirectionOutgoing})
	if len(out) != 6 {
		t.Fatalf("outgoing: %d calls, want 6", len(out))
	}
	for _, c := range out {
		if c.Direction != DirectionOutgoing {
			t.Fatalf("outgoing filter let through %+v", c)
		}
	}
	if got := all(CallFilter{Statuses: []CallStatus{StatusRinging}}); len(got) != 4 {
		t.Fatalf("ringing: %d calls, want 4", len(got))
	}
	if got := all(CallFilter{Statuses: []CallStatus{StatusRinging, StatusHangup}}); len(got) != 12 {
		t.Fatalf("ringing or hangup: %d calls, want 12", len(got))
	}
	// [minute 3, minute 7): calls 3..6; outgoing among them: 3 and 5.
	window := CallFilter{From: base.Add(3 * time.Minute), To: base.Add(7 * time.Minute)}
	if got := all(window); len(got) != 4 || !got[0].TMCreate.Equal(base.Add(6*time.Minute)) || !got[3].TMCreate.Equal(base.Add(3*time.Minute)) {
		t.Fatalf("window: %d calls %v", len(got), got)
	}
	window.Direction = DirectionOutgoing
	if got := all(window); len(got) != 2 {
		t.Fatalf("window and outgoing: %d calls, want 2", len(got))
	}
	for _, bad := range []CallFilter{{Direction: "sideways"}, {Statuses: []CallStatus{"asleep"}}} {
		if _, _, err := db.ListCalls(ctx, ListOptions{}, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
