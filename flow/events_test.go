package flow

import "testing"

func TestBusFansOutWithoutBlocking(t *testing.T) {
	b := NewBus()
	all := b.Subscribe(10, nil)
	onlyA := b.Subscribe(10, func(e Event) bool { return e.CallID == "a" })
	slow := b.Subscribe(1, nil)
	for i := 0; i < 3; i++ {
		b.Publish(EventDTMF, "a", i)
	}
	b.Publish(EventCallHangup, "b", nil)

	if n := len(all.C); n != 4 {
		t.Fatalf("all got %d events, want 4", n)
	}
	if n := len(onlyA.C); n != 3 {
		t.Fatalf("filtered subscriber got %d events, want 3", n)
	}
	// The slow subscriber kept one and lost three, and Publish never waited.
	if n, d := len(slow.C), slow.Dropped(); n != 1 || d != 3 {
		t.Fatalf("slow subscriber: %d queued, %d dropped; want 1 and 3", n, d)
	}
	first := <-all.C
	if first.ID == 0 || first.Type != EventDTMF || first.Time.IsZero() {
		t.Fatalf("event not stamped: %+v", first)
	}
	onlyA.Close()
	onlyA.Close() // idempotent
	b.Publish(EventDTMF, "a", nil)
	// What was queued before Close is still there, nothing after it, and
	// the channel is closed (the range ends).
	n := 0
	for range onlyA.C {
		n++
	}
	if n != 3 {
		t.Fatalf("closed subscriber yielded %d events, want the 3 queued before Close", n)
	}
	var nilBus *Bus
	nilBus.Publish(EventDTMF, "x", nil) // a controller without a bus publishes nothing
}
