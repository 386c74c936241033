package store

import (
	"context"
	"testing"
	"time"
)

func TestListCallsByAgent(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Nine calls a minute apart: agents cycle support, sales, none; the
	// third "support" call also has a look-alike variable that must not
	// match.
	agents := []string{"support", "sales", ""}
	for i := range 9 {
		c := &Call{Direction: DirectionIncoming, Status: StatusHangup, TMCreate: base.Add(time.Duration(i) * time.Minute)}
		if a := agents[i%3]; a != "" {
			c.Variables = map[string]string{"agent.id": a}
		} else {
			c.Variables = map[string]string{"agent": "support", "id": "support"}
		}
		if err := db.CreateCall(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	count := func(f CallFilter) int {
		t.Helper()
		n := 0
		for tok := ""; ; {
			page, next, err := db.ListCalls(ctx, ListOptions{PageSize: 2, PageToken: tok}, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range page {
				if f.AgentID != "" && c.Variables["agent.id"] != f.AgentID {
					t.Fatalf("agent %s: got call with variables %v", f.AgentID, c.Variables)
				}
			}
			n += len(page)
			if tok = next; tok == "" {
				return n
			}
		}
	}
	if n := count(CallFilter{AgentID: "support"}); n != 3 {
		t.Fatalf("support: %d calls, want 3", n)
	}
	if n := count(CallFilter{AgentID: "nobody"}); n != 0 {
		t.Fatalf("nobody: %d calls, want 0", n)
	}
	// Minutes [3, 9): calls 3..8; sales among them: 4 and 7.
	if n := count(CallFilter{AgentID: "sales", From: base.Add(3 * time.Minute), To: base.Add(9 * time.Minute)}); n != 2 {
		t.Fatalf("sales in window: %d calls, want 2", n)
	}
	// A quote in the id is a value, not SQL or a JSON path.
	if n := count(CallFilter{AgentID: `support" OR 1=1 --`}); n != 0 {
		t.Fatalf("quoted id: %d calls, want 0", n)
	}
}
