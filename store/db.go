// Package store persists voxbridge state (call records first; recordings,
// transcripts, flows and trunks later) in one SQLite file, using the pure-Go
// modernc.org/sqlite driver.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrNotFound is returned (wrapped) when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrInvalid is returned (wrapped) for arguments the store refuses, such as a
// negative page size or a call with an unknown status. The API maps it to 400.
var ErrInvalid = errors.New("invalid argument")

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Pragmas are per connection, so they go in the DSN: the driver runs them on
// every connection the pool opens, not just the first one.
const (
	// busy_timeout first matters: it lets the pragmas after it wait for a lock
	// held by another process instead of failing (the driver sorts it first).
	baseParams = "_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	// BEGIN IMMEDIATE takes the write lock up front: a deferred transaction
	// that reads and then writes can fail with SQLITE_BUSY at the upgrade
	// without the busy handler ever being consulted. journal_mode is not
	// here on purpose, see enableWAL.
	writerParams = baseParams + "&_txlock=immediate"
	// Readers can never write by mistake, so every write goes through the
	// single writer connection.
	readerParams = baseParams + "&_pragma=query_only(1)"

	busyTimeout = 5 * time.Second // matches busy_timeout above
)

// DB is the SQLite-backed store. It is safe for concurrent use.
//
// Writes go through a pool of exactly one connection: SQLite allows one
// writer at a time anyway, and queueing in database/sql is fair and cheap
// where SQLite's busy handler polls with sleeps. Reads use their own pool and,
// thanks to WAL, never wait for the writer. busy_timeout still covers other
// processes (e.g. a CLI subcommand) using the same file. The writes of a
// call's life are queued and committed in batches by one goroutine on that
// connection (writer.go); the others run on it directly, in their turn.
type DB struct {
	w   *sql.DB
	r   *sql.DB // == w for ":memory:"
	now func() time.Time
	wr  *writer // the call writes' queue (writer.go)
	// flowsVersion counts flow writes (FlowsVersion).
	flowsVersion atomic.Uint64
}

// Open opens the SQLite database at path, creating it if needed, and applies
// any pending migrations. path ":memory:" gives a private in-memory database
// (one connection, so every query sees the same data).
func Open(path string) (*DB, error) {
	if path == "" {
		// SQLite would open a temporary database private to each connection,
		// which is never what a caller means.
		return nil, fmt.Errorf("open store: %w: empty path", ErrInvalid)
	}
	if strings.ContainsAny(path, "?#") {
		// The driver splits the DSN at '?', so such a path would be mangled.
		return nil, fmt.Errorf("open store %q: %w: path must not contain '?' or '#'", path, ErrInvalid)
	}
	memory := path == ":memory:"

	w, err := sql.Open("sqlite", path+"?"+writerParams)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// One long-lived connection: for ":memory:" closing it would drop the
	// database, for a file it is the single writer.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	db := &DB{w: w, r: w, now: time.Now}
	ctx := context.Background()
	mode, err := enableWAL(ctx, w)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if !memory && mode != "wal" {
		// Without WAL readers block the writer; fail now rather than with
		// SQLITE_BUSY under load (WAL does not work on network filesystems).
		w.Close()
		return nil, fmt.Errorf("open store %s: journal mode is %q, want wal", path, mode)
	}
	if err := migrate(ctx, w, mustSub(migrationFiles, "migrations")); err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if !memory {
		r, err := sql.Open("sqlite", path+"?"+readerParams)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
		n := max(4, runtime.GOMAXPROCS(0))
		r.SetMaxOpenConns(n)
		r.SetMaxIdleConns(n)
		db.r = r
	}
	db.wr = newWriter(db)
	return db, nil
}

// Close commits every queued write, then closes the database. Pending WAL
// content is checkpointed by SQLite when the last connection closes.
func (db *DB) Close() error {
	db.wr.close()
	db.wr.closeStmts()
	// Recommended by SQLite before closing: cheap, and keeps planner
	// statistics current for long-lived files.
	_, optErr := db.w.Exec("PRAGMA optimize")
	var rErr error
	if db.r != db.w {
		rErr = db.r.Close()
	}
	wErr := db.w.Close()
	if err := errors.Join(wErr, rErr); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	if optErr != nil {
		return fmt.Errorf("close store: optimize: %w", optErr)
	}
	return nil
}

// Ping checks that both the write and the read side can reach the database.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.w.PingContext(ctx); err != nil {
		return fmt.Errorf("ping store (writer): %w", err)
	}
	if err := db.r.PingContext(ctx); err != nil {
		return fmt.Errorf("ping store (reader): %w", err)
	}
	return nil
}

// enableWAL switches the file to WAL and returns the resulting journal mode
// ("memory" for ":memory:"). The mode is stored in the file, so doing it once
// per Open covers every later connection. It is not a DSN pragma because, on
// a new file opened by two processes at once, the switch can fail with
// SQLITE_BUSY without waiting for busy_timeout, so it is retried here.
func enableWAL(ctx context.Context, db *sql.DB) (string, error) {
	deadline := time.Now().Add(busyTimeout)
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		if err == nil {
			return strings.ToLower(mode), nil
		}
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return "", fmt.Errorf("set journal mode: %w", err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("set journal mode: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads NNNN_name.sql files and orders them by number. The
// number, not the name, identifies a migration, so a file may be renamed but
// never renumbered or edited once released: add a new file instead.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		prefix, _, _ := strings.Cut(name, "_")
		v, err := strconv.Atoi(prefix)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and '_'", name)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// migrate applies, in order, each migration not yet recorded in
// schema_migrations, each in its own transaction with its bookkeeping row, so
// a failed migration leaves no trace and the next Open retries it.
//
// Note for later migrations: PRAGMA foreign_keys cannot change inside a
// transaction; a table rebuild should use PRAGMA defer_foreign_keys instead.
func migrate(ctx context.Context, db *sql.DB, fsys fs.FS) error {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	known := 0
	if len(ms) > 0 {
		known = ms[len(ms)-1].version
	}
	if err := bootstrapMigrations(ctx, db, known); err != nil {
		return err
	}
	for _, m := range ms {
		if err := applyMigration(ctx, db, m); err != nil {
			return err
		}
	}
	return nil
}

// bootstrapMigrations creates schema_migrations and refuses a schema newer
// than known. It runs in a write transaction (BEGIN IMMEDIATE, see
// writerParams) even though it usually writes nothing: as an autocommit
// statement, CREATE TABLE IF NOT EXISTS would take a read lock first and, if
// another process is creating the same file, fail with SQLITE_BUSY at the
// upgrade without waiting.
func bootstrapMigrations(ctx context.Context, db *sql.DB, known int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrations: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit

	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL,
	tm_applied INTEGER NOT NULL -- unix ms, UTC
) STRICT`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var newest sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&newest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if newest.Valid && newest.Int64 > int64(known) {
		// A newer binary migrated this file; running old code on it could
		// corrupt data the old code does not understand.
		return fmt.Errorf("schema version %d is newer than this binary knows (%d)", newest.Int64, known)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrations: commit: %w", err)
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %s: begin: %w", m.name, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit

	// Checked inside the write transaction so that two processes opening
	// the same new file cannot both apply it.
	var applied int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&applied); err != nil {
		return fmt.Errorf("migration %s: check: %w", m.name, err)
	}
	if applied > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, tm_applied) VALUES (?, ?, ?)",
		m.version, m.name, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("migration %s: record: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %s: commit: %w", m.name, err)
	}
	return nil
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // dir is a constant matching the embed pattern
	}
	return sub
}

// IntegrityCheck runs SQLite's full integrity check; nil means "ok".
func (db *DB) IntegrityCheck(ctx context.Context) error {
	var res string
	if err := db.r.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("integrity check: %s", res)
	}
	return nil
}
