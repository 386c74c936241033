package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Recording statuses.
const (
	RecordingActive    = "recording"
	RecordingCompleted = "completed"
	RecordingFailed    = "failed"
)

// Recording is one recording of a call.
type Recording struct {
	ID         string     `json:"id"`
	CallID     string     `json:"call_id"`
	Path       string     `json:"-"` // a server path; the API serves the audio instead
	Format     string     `json:"format"`
	Channels   int        `json:"channels"`
	DurationMS int64      `json:"duration_ms"`
	Status     string     `json:"status"`
	Error      string     `json:"error,omitempty"`
	TMStart    time.Time  `json:"tm_start"`
	TMEnd      *time.Time `json:"tm_end"`
}

const recordingColumns = `id, call_id, path, format, channels, duration_ms, status, error, tm_start, tm_end`

// CreateRecording inserts r, setting its id and start time when empty.
func (db *DB) CreateRecording(ctx context.Context, r *Recording) error {
	return db.write(ctx, db.createRecordingOp(r))
}

// QueueCreateRecording is CreateRecording without the wait.
func (db *DB) QueueCreateRecording(r *Recording) { db.wr.enqueue(db.createRecordingOp(r)) }

func (db *DB) createRecordingOp(r *Recording) *writeOp {
	if r.ID == "" {
		r.ID = uuid.NewString()
	}
	if r.TMStart.IsZero() {
		r.TMStart = db.now()
	}
	r.TMStart = fromMillis(r.TMStart.UnixMilli())
	if r.Status == "" {
		r.Status = RecordingActive
	}
	return &writeOp{what: "create recording " + r.ID, query: `INSERT INTO recordings (` + recordingColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		args: []any{r.ID, r.CallID, r.Path, r.Format, r.Channels, r.DurationMS, r.Status, r.Error,
			r.TMStart.UnixMilli(), nullMillis(r.TMEnd)}}
}

// FinishRecording records how a recording ended.
func (db *DB) FinishRecording(ctx context.Context, id, status, errMsg string, duration time.Duration) error {
	return db.write(ctx, db.finishRecordingOp(id, status, errMsg, duration))
}

// QueueFinishRecording is FinishRecording without the wait.
func (db *DB) QueueFinishRecording(id, status, errMsg string, duration time.Duration) {
	db.wr.enqueue(db.finishRecordingOp(id, status, errMsg, duration))
}

func (db *DB) finishRecordingOp(id, status, errMsg string, duration time.Duration) *writeOp {
	end := db.now().UTC().UnixMilli()
	return &writeOp{what: "finish recording " + id,
		query: `UPDATE recordings SET status = ?, error = ?, duration_ms = ?, tm_end = ? WHERE id = ?`,
		args:  []any{status, errMsg, duration.Milliseconds(), end, id}, mustChange: true}
}

// ListRecordings returns a call's recordings, oldest first.
func (db *DB) ListRecordings(ctx context.Context, callID string) ([]Recording, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+recordingColumns+` FROM recordings WHERE call_id = ? ORDER BY tm_start, id`, callID)
	if err != nil {
		return nil, fmt.Errorf("list recordings %s: %w", callID, err)
	}
	defer rows.Close()
	out := []Recording{}
	for rows.Next() {
		r, err := scanRecording(rows)
		if err != nil {
			return nil, fmt.Errorf("list recordings %s: %w", callID, err)
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

// GetRecording returns one recording, or an error wrapping ErrNotFound.
func (db *DB) GetRecording(ctx context.Context, id string) (*Recording, error) {
	r, err := scanRecording(db.r.QueryRowContext(ctx, `SELECT `+recordingColumns+` FROM recordings WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get recording %s: %w", id, err)
	}
	return r, nil
}

// FailUnfinishedRecordings marks recordings a crashed process left open as
// failed (their files stay playable: the writer keeps the header valid).
func (db *DB) FailUnfinishedRecordings(ctx context.Context, reason string) (int, error) {
	res, err := db.w.ExecContext(ctx, `UPDATE recordings SET status = ?, error = ?, tm_end = ? WHERE status = ?`,
		RecordingFailed, reason, db.now().UTC().UnixMilli(), RecordingActive)
	if err != nil {
		return 0, fmt.Errorf("fail unfinished recordings: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func scanRecording(s scanner) (*Recording, error) {
	var r Recording
	var start int64
	var end sql.NullInt64
	if err := s.Scan(&r.ID, &r.CallID, &r.Path, &r.Format, &r.Channels, &r.DurationMS, &r.Status, &r.Error, &start, &end); err != nil {
		return nil, err
	}
	r.TMStart, r.TMEnd = fromMillis(start), timePtr(end)
	return &r, nil
}
