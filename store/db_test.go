package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
)

// openTestDB opens a fresh file database in a temp dir. On cleanup it checks
// the file's integrity, so every test also proves it left the file sound.
func openTestDB(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "voxbridge.db")
	db, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		checkIntegrity(t, db)
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db, path
}

func checkIntegrity(t *testing.T, db *DB) {
	t.Helper()
	var res string
	if err := db.r.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	if res != "ok" {
		t.Fatalf("integrity_check = %q", res)
	}
	var fk int
	rows, err := db.r.Query("PRAGMA foreign_key_check")
	if err != nil {
		t.Fatalf("foreign_key_check: %v", err)
	}
	for rows.Next() {
		fk++
	}
	rows.Close()
	if fk != 0 {
		t.Fatalf("foreign_key_check: %d violations", fk)
	}
}

func TestOpenPragmasOnEveryConnection(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()

	check := func(name string, pool *sql.DB, queryOnly int) {
		// Hold several connections at once so the pool must open distinct
		// ones: pragmas set only on the first would show up here.
		var conns []*sql.Conn
		for range 3 {
			c, err := pool.Conn(ctx)
			if err != nil {
				t.Fatalf("%s: Conn: %v", name, err)
			}
			conns = append(conns, c)
			if pool == db.w {
				break // the writer pool has exactly one connection
			}
		}
		for i, c := range conns {
			var mode string
			var busy, fk, sync, qo int
			for _, q := range []struct {
				sql  string
				dest any
			}{
				{"PRAGMA journal_mode", &mode},
				{"PRAGMA busy_timeout", &busy},
				{"PRAGMA foreign_keys", &fk},
				{"PRAGMA synchronous", &sync},
				{"PRAGMA query_only", &qo},
			} {
				if err := c.QueryRowContext(ctx, q.sql).Scan(q.dest); err != nil {
					t.Fatalf("%s conn %d: %s: %v", name, i, q.sql, err)
				}
			}
			if mode != "wal" || busy != 5000 || fk != 1 || sync != 1 || qo != queryOnly {
				t.Errorf("%s conn %d: journal_mode=%s busy_timeout=%d foreign_keys=%d synchronous=%d query_only=%d",
					name, i, mode, busy, fk, sync, qo)
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	check("writer", db.w, 0)
	check("reader", db.r, 1)
}

func TestOpenMemory(t *testing.T) {
	db, err := Open(":memory:")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	ctx := context.Background()
	c := &Call{Direction: DirectionIncoming, Status: StatusRinging}
	if err := db.CreateCall(ctx, c); err != nil {
		t.Fatalf("CreateCall: %v", err)
	}
	if _, err := db.GetCall(ctx, c.ID); err != nil {
		t.Fatalf("GetCall: %v", err)
	}
	calls, _, err := db.ListCalls(ctx, ListOptions{})
	if err != nil || len(calls) != 1 {
		t.Fatalf("ListCalls = %d calls, %v", len(calls), err)
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	checkIntegrity(t, db)
}

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", "a?b.db", filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")} {
		if db, err := Open(p); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestReopenKeepsDataAndMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "voxbridge.db")
	ctx := context.Background()

	db, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c := &Call{Direction: DirectionOutgoing, Status: StatusDialing, DTMF: "12#"}
	if err := db.CreateCall(ctx, c); err != nil {
		t.Fatalf("CreateCall: %v", err)
	}
	before := readMigrations(t, db)
	if len(before) == 0 {
		t.Fatal("no migrations recorded")
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db, err = Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	after := readMigrations(t, db)
	if strings.Join(before, "\n") != strings.Join(after, "\n") {
		t.Errorf("schema_migrations changed on reopen:\nbefore %q\nafter  %q", before, after)
	}
	got, err := db.GetCall(ctx, c.ID)
	if err != nil {
		t.Fatalf("GetCall after reopen: %v", err)
	}
	if got.DTMF != "12#" || !got.TMCreate.Equal(c.TMCreate) {
		t.Errorf("after reopen got %+v, want %+v", got, c)
	}
	checkIntegrity(t, db)
}

// readMigrations returns schema_migrations rows, applied times included, so
// a re-application would show up as a changed row.
func readMigrations(t *testing.T, db *DB) []string {
	t.Helper()
	rows, err := db.r.Query("SELECT version || ' ' || name || ' ' || tm_applied FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// openRaw gives a bare connection for exercising migrate on its own.
func openRaw(t *testing.T) *sql.DB {
	t.Helper()
	w, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db")+"?"+writerParams)
	if err != nil {
		t.Fatal(err)
	}
	w.SetMaxOpenConns(1)
	t.Cleanup(func() { w.Close() })
	return w
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestMigrateAppendsCleanly(t *testing.T) {
	ctx := context.Background()
	db := openRaw(t)
	v1 := fstest.MapFS{
		"0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);\nCREATE INDEX a_x ON a (x);")},
		"README.md":  {Data: []byte("not a migration")},
	}
	if err := migrate(ctx, db, v1); err != nil {
		t.Fatalf("migrate v1: %v", err)
	}
	if _, err := db.Exec("INSERT INTO a (x) VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	// A later release appends 0002 (and 0010, to check numeric order); 0001
	// must not run again (it would fail: table a exists).
	v2 := fstest.MapFS{
		"0001_a.sql":    v1["0001_a.sql"],
		"0010_c.sql":    {Data: []byte("ALTER TABLE b ADD COLUMN z TEXT NOT NULL DEFAULT '';")},
		"0002_b.sql":    {Data: []byte("CREATE TABLE b (y INTEGER REFERENCES a (x));")},
		"0003_noop.sql": {Data: []byte("-- nothing yet\n")},
	}
	if err := migrate(ctx, db, v2); err != nil {
		t.Fatalf("migrate v2: %v", err)
	}
	if err := migrate(ctx, db, v2); err != nil {
		t.Fatalf("migrate v2 again: %v", err)
	}
	var versions string
	if err := db.QueryRow("SELECT group_concat(version, ',') FROM (SELECT version FROM schema_migrations ORDER BY version)").Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if versions != "1,2,3,10" {
		t.Errorf("applied versions = %s", versions)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM a").Scan(&n); err != nil || n != 1 {
		t.Errorf("data in a: %d, %v", n, err)
	}

	// Running the old binary on the migrated file must refuse.
	if err := migrate(ctx, db, v1); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("old binary on new schema: err = %v", err)
	}
}

func TestMigrateFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	db := openRaw(t)
	bad := fstest.MapFS{
		"0001_ok.sql":  {Data: []byte("CREATE TABLE ok (x INTEGER);")},
		"0002_bad.sql": {Data: []byte("CREATE TABLE half (x INTEGER);\nTHIS IS NOT SQL;")},
	}
	err := migrate(ctx, db, bad)
	if err == nil || !strings.Contains(err.Error(), "0002_bad.sql") {
		t.Fatalf("migrate = %v, want error naming 0002_bad.sql", err)
	}
	if !tableExists(t, db, "ok") {
		t.Error("0001 should stay applied")
	}
	if tableExists(t, db, "half") {
		t.Error("failed migration left table half behind")
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM schema_migrations WHERE version = 2").Scan(&n); err != nil || n != 0 {
		t.Errorf("failed migration recorded: %d, %v", n, err)
	}

	// Fixed in the next release: applies on the next open.
	fixed := fstest.MapFS{
		"0001_ok.sql":  bad["0001_ok.sql"],
		"0002_bad.sql": {Data: []byte("CREATE TABLE half (x INTEGER);")},
	}
	if err := migrate(ctx, db, fixed); err != nil {
		t.Fatalf("migrate fixed: %v", err)
	}
	if !tableExists(t, db, "half") {
		t.Error("fixed migration not applied")
	}
}

func TestMigrateBadNames(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"no number": {"calls.sql": {Data: []byte("SELECT 1;")}},
		"zero":      {"0000_x.sql": {Data: []byte("SELECT 1;")}},
		"duplicate": {"0001_a.sql": {Data: []byte("SELECT 1;")}, "01_b.sql": {Data: []byte("SELECT 1;")}},
	} {
		if err := migrate(context.Background(), openRaw(t), fsys); err == nil {
			t.Errorf("%s: migrate succeeded", name)
		}
	}
}

func TestEmbeddedMigrationsLoad(t *testing.T) {
	ms, err := loadMigrations(mustSub(migrationFiles, "migrations"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("embedded migrations: %+v", ms)
	}
}

func TestPingAfterClose(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	db.Close()
	if err := db.Ping(context.Background()); err == nil {
		t.Errorf("Ping after Close = %v", err)
	}
}

// Two processes starting on a new file at once (say serve and a CLI command)
// must both open it, and migrate it once.
func TestConcurrentOpenOfNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "race.db")
	var wg sync.WaitGroup
	dbs := make([]*DB, 8)
	errs := make([]error, len(dbs))
	for i := range dbs {
		wg.Go(func() { dbs[i], errs[i] = Open(path) })
	}
	wg.Wait()
	for i, db := range dbs {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		defer db.Close()
		if err := db.CreateCall(context.Background(), &Call{Direction: DirectionIncoming, Status: StatusRinging}); err != nil {
			t.Errorf("CreateCall via handle %d: %v", i, err)
		}
	}
	if dbs[0] != nil {
		// Each migration applied exactly once, however many opened at once.
		ms, err := loadMigrations(mustSub(migrationFiles, "migrations"))
		if err != nil {
			t.Fatal(err)
		}
		if got := readMigrations(t, dbs[0]); len(got) != len(ms) {
			t.Errorf("schema_migrations = %q, want %d rows", got, len(ms))
		}
	}
}
