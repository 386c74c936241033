package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The writes of a call's life (its record, action runs, transcript turns,
// latency rows, recordings) go through one goroutine that commits whatever
// is queued in one transaction at a time (group commit). A call never waits
// for the database: it queues its write and goes on. The queue is FIFO, so
// a call's writes land in the order it made them; it is bounded, and a
// write that finds it full waits for room instead of being dropped. No write
// has a deadline: each waits its turn.
const (
	// WriteQueueCapacity bounds the queue (about 300 bytes an entry).
	WriteQueueCapacity = 1 << 16
	// backlogThreshold is where Backlogged turns true, so that new calls
	// are refused while three quarters of the queue is still free for the
	// calls already up (a call makes about a dozen writes in its life).
	backlogThreshold = WriteQueueCapacity / 4
	// maxBatch caps one transaction, so a huge backlog still commits in
	// steps that readers see.
	maxBatch = 2048
	// batchWindow is how long the writer waits for more writes to join a
	// batch when the queue runs dry, unless someone waits for one of them.
	// Without it a server at 100 calls/s committed two writes a
	// transaction, and BEGIN and COMMIT were half the writer's CPU. It is
	// also what a kill -9 can lose beyond the batch being committed.
	batchWindow = 10 * time.Millisecond
	// Retries of a write the database failed for a passing reason (disk
	// full, a lock another process held past busy_timeout) back off up to
	// maxRetryWait; after Close, a write still failing after closeRetryFor
	// is given up, loudly, so a broken disk cannot hold a shutdown forever.
	firstRetryWait = 50 * time.Millisecond
	maxRetryWait   = 5 * time.Second
	closeRetryFor  = 30 * time.Second
)

// writeOp is one queued write: one statement and its arguments, all
// computed when it is queued (times included), so when it runs does not
// change what it says.
type writeOp struct {
	what  string
	query string // "" for a write that only marks its place (Sync)
	args  []any
	// mustChange: a statement that changes no row failed (ErrNotFound).
	mustChange bool
	// key, when set, names the row a write replaces whole (a call record):
	// within one batch only the last write of a key runs.
	key string
	// exec, when set, runs instead of query (tests hold the writer with it).
	exec func(ctx context.Context, tx *sql.Tx) error
	// done, when set, receives the write's result (a synchronous write).
	done   chan error
	queued time.Time
}

// WriterStats describes the write queue, for metrics and benchmarks.
type WriterStats struct {
	Queued    int    // writes waiting now
	Capacity  int    // the queue's bound
	Written   uint64 // writes committed (a replaced call-record write counts once)
	Coalesced uint64 // call-record writes a later one of the same batch replaced
	Batches   uint64 // transactions committed
	Failed    uint64 // writes the database refused (invalid data); logged
	Retries   uint64 // batches or writes tried again after a passing failure
	// MaxDelay is the longest a write waited from queued to committed;
	// LastDelay the oldest write's wait in the last batch. A process killed
	// at any moment loses at most the writes of that window.
	MaxDelay, LastDelay time.Duration
	MaxBatch            int // the largest batch committed
}

type writer struct {
	db  *DB
	log *slog.Logger
	q   chan *writeOp
	// stmts holds each statement the writes use, prepared once on the
	// writer connection: parsing it for every write was most of a write's
	// cost. Only the writer goroutine (and writes after close) use it.
	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt

	mu     sync.RWMutex // held shared while queueing, exclusively to close
	closed bool
	done   chan struct{} // closed when run returns

	written, coalesced, batches, failed, retries atomic.Uint64
	maxDelay, lastDelay                          atomic.Int64
	maxBatch                                     atomic.Int64
}

func newWriter(db *DB) *writer {
	w := &writer{db: db, log: slog.Default(), q: make(chan *writeOp, WriteQueueCapacity), done: make(chan struct{}),
		stmts: map[string]*sql.Stmt{}}
	go w.run()
	return w
}

// enqueue queues op, waiting for room when the queue is full. After close
// the write runs at once on the caller's goroutine: nothing is dropped
// because it came late.
func (w *writer) enqueue(op *writeOp) {
	op.queued = w.db.now()
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		w.commit([]*writeOp{op}, true)
		return
	}
	w.q <- op
	w.mu.RUnlock()
}

// close stops taking writes into the queue and returns once every queued
// write has been committed (or given up, see closeRetryFor).
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.q)
	}
	w.mu.Unlock()
	<-w.done
}

// closeStmts releases the prepared statements; the writes that come after
// run unprepared.
func (w *writer) closeStmts() {
	w.stmtMu.Lock()
	defer w.stmtMu.Unlock()
	for q, st := range w.stmts {
		st.Close()
		delete(w.stmts, q)
	}
	w.stmts = nil
}

// prepare returns query prepared on the writer connection, preparing it
// the first time. It must be called outside a transaction: the pool has
// one connection, which the transaction would hold. nil means unprepared
// (the statement is then run as text, and its error reported there).
func (w *writer) prepare(ctx context.Context, query string) *sql.Stmt {
	w.stmtMu.Lock()
	defer w.stmtMu.Unlock()
	if w.stmts == nil {
		return nil
	}
	if st, ok := w.stmts[query]; ok {
		return st
	}
	st, err := w.db.w.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	w.stmts[query] = st
	return st
}

func (w *writer) run() {
	defer close(w.done)
	batch := make([]*writeOp, 0, 64)
	window := time.NewTimer(time.Hour)
	window.Stop()
	for op := range w.q {
		batch = append(batch[:0], op)
		waited := op.done != nil     // a waiter's write goes at once
		var windowC <-chan time.Time // set once the queue has run dry
	fill:
		for len(batch) < maxBatch {
			var next *writeOp
			ok := true
			select {
			case next, ok = <-w.q:
			default:
				if waited {
					break fill
				}
				if windowC == nil {
					window.Reset(batchWindow)
					windowC = window.C
				}
				select {
				case next, ok = <-w.q:
				case <-windowC:
					break fill
				}
			}
			if !ok {
				break fill
			}
			batch = append(batch, next)
			waited = waited || next.done != nil
		}
		window.Stop()
		w.commit(batch, false)
		clear(batch) // let the ops go
	}
}

// commit writes batch in one transaction. If any write fails, the batch
// is rolled back and each write is tried alone, so one bad row cannot take
// the others with it.
func (w *writer) commit(batch []*writeOp, closing bool) {
	live := w.coalesce(batch)
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		err := w.tryBatch(ctx, live)
		if err == nil {
			w.committed(live, nil)
			return
		}
		var opErr *batchOpError
		if errors.As(err, &opErr) || len(live) == 1 {
			break // a write's own failure: sort it out one by one below
		}
		// The transaction itself failed (begin or commit): try again.
		if !w.wait(attempt, closing || w.isClosed(), live[0], err) {
			w.giveUp(live, err)
			return
		}
	}
	for _, op := range live {
		w.commitAlone(ctx, op, closing)
	}
}

// onlyMarks reports whether ops write nothing (Sync's place markers).
func onlyMarks(ops []*writeOp) bool {
	for _, op := range ops {
		if !op.isMark() {
			return false
		}
	}
	return true
}

// isMark reports whether op writes nothing (Sync's place in the queue).
func (op *writeOp) isMark() bool { return op.query == "" && op.exec == nil }

// run executes op in tx, with st when the statement is prepared.
func (op *writeOp) run(ctx context.Context, tx *sql.Tx, st *sql.Stmt) error {
	if op.exec != nil {
		return op.exec(ctx, tx)
	}
	if op.query == "" {
		return nil
	}
	var res sql.Result
	var err error
	if st != nil {
		res, err = tx.StmtContext(ctx, st).ExecContext(ctx, op.args...)
	} else {
		res, err = tx.ExecContext(ctx, op.query, op.args...)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op.what, err)
	}
	if op.mustChange {
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("%s: %w", op.what, err)
		} else if n == 0 {
			return fmt.Errorf("%s: %w", op.what, ErrNotFound)
		}
	}
	return nil
}

// batchOpError is one write's failure inside a batch.
type batchOpError struct{ err error }

func (e *batchOpError) Error() string { return e.err.Error() }
func (e *batchOpError) Unwrap() error { return e.err }

func (w *writer) tryBatch(ctx context.Context, live []*writeOp) error {
	if onlyMarks(live) {
		return nil // Syncs alone: nothing to write
	}
	stmts := make([]*sql.Stmt, len(live))
	for i, op := range live {
		if op.query != "" {
			stmts[i] = w.prepare(ctx, op.query)
		}
	}
	tx, err := w.db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	for i, op := range live {
		if err := op.run(ctx, tx, stmts[i]); err != nil {
			_ = tx.Rollback()
			return &batchOpError{err}
		}
	}
	if err := tx.Commit(); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// commitAlone writes op in its own transaction, retrying passing failures.
func (w *writer) commitAlone(ctx context.Context, op *writeOp, closing bool) {
	one := []*writeOp{op}
	for attempt := 0; ; attempt++ {
		err := w.tryBatch(ctx, one)
		if err == nil {
			w.committed(one, nil)
			return
		}
		if permanent(err) {
			w.log.Error("store write refused", "write", op.what, "err", err)
			w.committed(one, err)
			return
		}
		if !w.wait(attempt, closing || w.isClosed(), op, err) {
			w.giveUp(one, err)
			return
		}
	}
}

// wait sleeps before a retry; false means stop trying (only after close).
func (w *writer) wait(attempt int, closing bool, op *writeOp, err error) bool {
	if closing && w.db.now().Sub(op.queued) > closeRetryFor {
		return false
	}
	w.retries.Add(1)
	d := min(firstRetryWait<<min(attempt, 10), maxRetryWait)
	w.log.Warn("store write failed, retrying", "write", op.what, "attempt", attempt+1, "in", d, "err", err)
	time.Sleep(d)
	return true
}

func (w *writer) giveUp(live []*writeOp, err error) {
	for _, op := range live {
		w.log.Error("store write lost at shutdown", "write", op.what, "err", err)
	}
	w.committed(live, err)
}

// coalesce returns batch without the queued call-record writes that a
// later write of the same record replaces: each writes every column, so
// only the last one's values would survive anyway. A write someone waits
// for (done set) always runs.
func (w *writer) coalesce(batch []*writeOp) []*writeOp {
	var last map[string]int
	for i, op := range batch {
		if op.key != "" {
			if last == nil {
				last = map[string]int{}
			}
			last[op.key] = i
		}
	}
	if last == nil {
		return batch
	}
	live := make([]*writeOp, 0, len(batch))
	for i, op := range batch {
		if op.key == "" || op.done != nil || last[op.key] == i {
			live = append(live, op)
		}
	}
	w.coalesced.Add(uint64(len(batch) - len(live)))
	return live
}

// committed answers live's waiters with err and counts the writes.
func (w *writer) committed(live []*writeOp, err error) {
	now := w.db.now()
	var oldest time.Duration
	writes := 0 // Sync's markers write nothing and count for nothing
	for _, op := range live {
		if op.done != nil {
			op.done <- err
		}
		if op.isMark() {
			continue
		}
		writes++
		oldest = max(oldest, now.Sub(op.queued))
	}
	if writes == 0 {
		return
	}
	if err != nil {
		w.failed.Add(uint64(writes))
		return
	}
	w.written.Add(uint64(writes))
	w.batches.Add(1)
	w.lastDelay.Store(int64(oldest))
	if int64(oldest) > w.maxDelay.Load() {
		w.maxDelay.Store(int64(oldest))
	}
	if int64(writes) > w.maxBatch.Load() {
		w.maxBatch.Store(int64(writes))
	}
}

func (w *writer) isClosed() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.closed
}

// permanent says whether a write failed for its own data (it would fail
// again) rather than for a passing state of the database.
func permanent(err error) bool {
	if errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		return true
	}
	// database/sql's error for a closed *sql.DB is not exported; a write
	// that comes after Close (a call outliving its store) cannot succeed.
	if strings.Contains(err.Error(), "sql: database is closed") {
		return true
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_RANGE:
			return true
		}
	}
	return false
}

// write queues op and waits for its result: the synchronous form of a
// queued write, for callers that must read what they wrote. If ctx ends
// first the write still happens in its turn; the caller only stops waiting.
func (db *DB) write(ctx context.Context, op *writeOp) error {
	op.done = make(chan error, 1)
	db.wr.enqueue(op)
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s: still queued: %w", op.what, ctx.Err())
	}
}

// writeChecked is write for an op whose making may have failed (err: the
// data's own fault, nothing is queued).
func (db *DB) writeChecked(ctx context.Context, op *writeOp, err error) error {
	if err != nil {
		return err
	}
	return db.write(ctx, op)
}

// queueChecked queues op unless its making failed, and returns that error.
func (db *DB) queueChecked(op *writeOp, err error) error {
	if err != nil {
		return err
	}
	db.wr.enqueue(op)
	return nil
}

// Sync waits until every write queued before it is committed, so that a
// read after it sees them (the API reading its own writes).
func (db *DB) Sync(ctx context.Context) error {
	return db.write(ctx, &writeOp{what: "sync"})
}

// Backlogged reports that the write queue is filling faster than it is
// committed: the time to refuse new calls, while the queue still has room
// for everything the calls already up will write.
func (db *DB) Backlogged() bool { return len(db.wr.q) >= backlogThreshold }

// WriterStats returns the write queue's counters.
func (db *DB) WriterStats() WriterStats {
	w := db.wr
	return WriterStats{
		Queued:    len(w.q),
		Capacity:  cap(w.q),
		Written:   w.written.Load(),
		Coalesced: w.coalesced.Load(),
		Batches:   w.batches.Load(),
		Failed:    w.failed.Load(),
		Retries:   w.retries.Load(),
		MaxDelay:  time.Duration(w.maxDelay.Load()),
		LastDelay: time.Duration(w.lastDelay.Load()),
		MaxBatch:  int(w.maxBatch.Load()),
	}
}
