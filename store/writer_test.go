package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"
)

// blockWriter queues a write that holds the writer until release is
// called, so the writes queued meanwhile commit together in the next batch.
func blockWriter(t *testing.T, db *DB) (release func()) {
	t.Helper()
	started, gate := make(chan struct{}), make(chan struct{})
	db.wr.enqueue(&writeOp{what: "block", exec: func(context.Context, *sql.Tx) error {
		close(started)
		<-gate
		return nil
	}})
	<-started
	var done bool
	release = func() {
		if !done {
			done = true
			close(gate)
		}
	}
	t.Cleanup(release)
	return release
}

func ringingCall(i int) *Call {
	return &Call{Direction: DirectionIncoming, Status: StatusRinging, Source: fmt.Sprintf("sip:%d@a", i), Destination: "sip:echo@b"}
}

// A call's writes queued while the writer is busy land in one transaction,
// in order: its last update is what the row says, and its action runs are
// all there.
func TestWriterGroupCommitKeepsEveryWriteInOrder(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	release := blockWriter(t, db)
	before := db.WriterStats()

	const calls = 50
	ids := make([]string, calls)
	for i := range calls {
		c := ringingCall(i)
		if err := db.QueueCreateCall(c); err != nil {
			t.Fatal(err)
		}
		ids[i] = c.ID
		c.Status = StatusProgressing
		if err := db.QueueUpdateCall(c); err != nil {
			t.Fatal(err)
		}
		for seq := 1; seq <= 3; seq++ {
			db.QueueActionRun(&ActionRun{CallID: c.ID, Seq: seq, FlowID: "echo", ActionID: fmt.Sprint(seq), Type: "echo",
				TMStart: time.Now(), TMEnd: time.Now(), Result: "ok"})
		}
		c.Status, c.HangupBy, c.HangupReason, c.TMHangup = StatusHangup, HangupByRemote, ReasonNormal, tp(time.Now())
		if err := db.QueueUpdateCall(c); err != nil {
			t.Fatal(err)
		}
	}
	if got := db.WriterStats().Queued; got != calls*6 {
		t.Fatalf("queued = %d, want %d", got, calls*6)
	}
	release()
	if err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		c, err := db.GetCall(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status != StatusHangup || c.HangupReason != ReasonNormal {
			t.Errorf("call %s: status %s reason %s, want the last update's hangup/normal", id, c.Status, c.HangupReason)
		}
		runs, err := db.ListActionRuns(ctx, id)
		if err != nil || len(runs) != 3 {
			t.Errorf("call %s: %d action runs (%v), want 3", id, len(runs), err)
		}
	}
	st := db.WriterStats()
	// The block, one batch for all the queued writes, the sync.
	if n := st.Batches - before.Batches; n > 3 {
		t.Errorf("%d batches for %d queued writes, want them grouped", n, calls*6)
	}
	if n := st.Coalesced - before.Coalesced; n != calls {
		t.Errorf("coalesced %d updates, want %d (each call's first update is replaced by its last)", n, calls)
	}
	if st.MaxBatch < calls*5 {
		t.Errorf("largest batch %d, want at least %d", st.MaxBatch, calls*5)
	}
}

// One write the database refuses (an action run of a call that does not
// exist) is reported alone; the rest of its batch is committed.
func TestWriterRefusedWriteLosesNothingElse(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	release := blockWriter(t, db)

	good := ringingCall(1)
	if err := db.QueueCreateCall(good); err != nil {
		t.Fatal(err)
	}
	db.QueueActionRun(&ActionRun{CallID: "no-such-call", Seq: 1, FlowID: "f", ActionID: "a", Type: "echo", Result: "ok"})
	db.QueueActionRun(&ActionRun{CallID: good.ID, Seq: 1, FlowID: "f", ActionID: "a", Type: "echo", Result: "ok"})
	release()
	if err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetCall(ctx, good.ID); err != nil {
		t.Fatalf("the good call was lost with the bad write: %v", err)
	}
	if runs, _ := db.ListActionRuns(ctx, good.ID); len(runs) != 1 {
		t.Errorf("good call's action runs = %d, want 1", len(runs))
	}
	if st := db.WriterStats(); st.Failed != 1 {
		t.Errorf("failed = %d, want 1", st.Failed)
	}
	// The synchronous form reports the same refusal to its caller.
	err := db.AddActionRun(ctx, &ActionRun{CallID: "no-such-call", Seq: 2, FlowID: "f", ActionID: "a", Type: "echo", Result: "ok"})
	if err == nil {
		t.Error("AddActionRun of an unknown call: no error")
	}
}

// A write that fails for a passing reason is tried again until it lands;
// it is never dropped for taking long.
func TestWriterRetriesPassingFailures(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	fails := 3
	c := ringingCall(1)
	op, err := db.createCallOp(c)
	if err != nil {
		t.Fatal(err)
	}
	insert := *op
	op.exec = func(ctx context.Context, tx *sql.Tx) error {
		if fails > 0 {
			fails--
			return errors.New("disk I/O error") // not the row's fault
		}
		return insert.run(ctx, tx, nil)
	}
	if err := db.write(ctx, op); err != nil {
		t.Fatalf("write after passing failures: %v", err)
	}
	if _, err := db.GetCall(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if st := db.WriterStats(); fails != 0 || st.Retries == 0 || st.Failed != 0 {
		t.Errorf("failures left %d, retries %d, failed %d: want 0, > 0, 0", fails, st.Retries, st.Failed)
	}
}

// Close commits everything queued; a write queued after Close still lands.
func TestWriterCloseDrainsTheQueue(t *testing.T) {
	path := t.TempDir() + "/voxbridge.db"
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	ids := make([]string, 0, n)
	for i := range n {
		c := ringingCall(i)
		if err := db.QueueCreateCall(c); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	var count int
	if err := db.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM calls").Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Fatalf("%d calls after Close, want %d", count, n)
	}
	if _, err := db.GetCall(ctx, ids[n-1]); err != nil {
		t.Fatal(err)
	}
}

// Backlogged turns true while a quarter of the queue waits, and false
// again once it is committed.
func TestWriterBacklogged(t *testing.T) {
	db, _ := openTestDB(t)
	c := ringingCall(1)
	if err := db.CreateCall(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	release := blockWriter(t, db)
	for i := range backlogThreshold - 1 {
		db.QueueTurnLatency(c.ID, i, []byte("{}"))
	}
	if db.Backlogged() {
		t.Fatal("backlogged below the threshold")
	}
	db.QueueTurnLatency(c.ID, backlogThreshold, []byte("{}"))
	if !db.Backlogged() {
		t.Fatal("not backlogged at the threshold")
	}
	release()
	if err := db.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if db.Backlogged() {
		t.Fatal("still backlogged after the queue was committed")
	}
}

// Sync's caller stops waiting at its deadline, but its write is not
// abandoned.
func TestWriterSyncDeadlineDoesNotAbandon(t *testing.T) {
	db, _ := openTestDB(t)
	release := blockWriter(t, db)
	c := ringingCall(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.CreateCall(ctx, c); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateCall with a cancelled context = %v, want context.Canceled", err)
	}
	release()
	if err := db.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetCall(context.Background(), c.ID); err != nil {
		t.Fatalf("the write was abandoned: %v", err)
	}
}
