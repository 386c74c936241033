package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestRecordings(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	c := &Call{Direction: DirectionIncoming, Status: StatusProgressing}
	if err := db.CreateCall(ctx, c); err != nil {
		t.Fatal(err)
	}
	a := &Recording{CallID: c.ID, Path: "/tmp/a.wav", Format: "wav", Channels: 2}
	b := &Recording{CallID: c.ID, Path: "/tmp/b.wav", Format: "wav", Channels: 2, TMStart: time.Now().Add(time.Second)}
	for _, r := range []*Recording{a, b} {
		if err := db.CreateRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.FinishRecording(ctx, a.ID, RecordingCompleted, "", 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishRecording(ctx, "nope", RecordingCompleted, "", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finish unknown: %v", err)
	}
	n, err := db.FailUnfinishedRecordings(ctx, "server_restart")
	if err != nil || n != 1 {
		t.Fatalf("fail unfinished: %d, %v", n, err)
	}
	rs, err := db.ListRecordings(ctx, c.ID)
	if err != nil || len(rs) != 2 {
		t.Fatalf("list: %v %v", rs, err)
	}
	if rs[0].ID != a.ID || rs[0].Status != RecordingCompleted || rs[0].DurationMS != 1500 || rs[0].TMEnd == nil {
		t.Fatalf("first recording: %+v", rs[0])
	}
	if rs[1].Status != RecordingFailed || rs[1].Error != "server_restart" {
		t.Fatalf("second recording: %+v", rs[1])
	}
	got, err := db.GetRecording(ctx, b.ID)
	if err != nil || got.Path != "/tmp/b.wav" {
		t.Fatalf("get: %+v %v", got, err)
	}
}
