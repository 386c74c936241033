package store

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"
)

func TestTranscriptAndLatency(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	c := &Call{Direction: DirectionIncoming, Status: StatusProgressing}
	if err := db.CreateCall(ctx, c); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	turns := []TranscriptTurn{
		{CallID: c.ID, Index: 1, Role: "user", Kind: "speech", Text: "I want sales"},
		{CallID: c.ID, Index: 0, Role: "assistant", Kind: "greeting", Text: "Hello", TMStart: &now},
		{CallID: c.ID, Index: 1, Role: "user", Kind: "speech", Text: "I want sales, please", Interrupted: true,
			ToolCalls: json.RawMessage(`[{"name":"transfer_call"}]`)}, // upsert of turn 1
	}
	for i := range turns {
		if err := db.PutTranscriptTurn(ctx, &turns[i]); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.ListTranscript(ctx, c.ID)
	if err != nil || len(got) != 2 {
		t.Fatalf("transcript: %v %v", got, err)
	}
	if got[0].Text != "Hello" || got[0].TMStart == nil || got[1].Text != "I want sales, please" || !got[1].Interrupted || string(got[1].ToolCalls) != `[{"name":"transfer_call"}]` {
		t.Fatalf("transcript rows: %+v", got)
	}
	if err := db.PutTurnLatency(ctx, c.ID, 2, json.RawMessage(`{"voice_to_voice_ms":812}`)); err != nil {
		t.Fatal(err)
	}
	lat, err := db.ListTurnLatency(ctx, c.ID)
	if err != nil || len(lat) != 1 || string(lat[0]) != `{"voice_to_voice_ms":812}` {
		t.Fatalf("latency: %s %v", lat, err)
	}
}
