package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// TaskStatus is where a scheduled call is in its life:
// pending → in_progress → completed | failed | cancelled, and back from
// in_progress to pending between attempts.
type TaskStatus string

const (
	TaskPending    TaskStatus = "pending"
	TaskInProgress TaskStatus = "in_progress"
	TaskCompleted  TaskStatus = "completed" // a call was answered
	TaskFailed     TaskStatus = "failed"    // attempts exhausted, or a reason not to retry
	TaskCancelled  TaskStatus = "cancelled"
)

// Valid reports whether s is one of the known statuses.
func (s TaskStatus) Valid() bool {
	switch s {
	case TaskPending, TaskInProgress, TaskCompleted, TaskFailed, TaskCancelled:
		return true
	}
	return false
}

// Final reports whether nothing more happens to a task in status s.
func (s TaskStatus) Final() bool {
	return s == TaskCompleted || s == TaskFailed || s == TaskCancelled
}

// CallRequest is an outbound call as asked for: the body of POST
// /v1/calls, and the call a task places.
type CallRequest struct {
	To         string            `json:"to"`
	From       string            `json:"from,omitempty"`
	CallerName string            `json:"caller_name,omitempty"`
	Trunk      string            `json:"trunk,omitempty"`
	FlowID     string            `json:"flow_id,omitempty"`
	Actions    json.RawMessage   `json:"actions,omitempty"`
	AgentID    string            `json:"agent_id,omitempty"`
	Variables  map[string]string `json:"variables,omitempty"`
	Context    string            `json:"context,omitempty"`
	// MaxDurationS ends the call that many seconds after the answer;
	// RingTimeoutS bounds the ringing (default 30).
	MaxDurationS int               `json:"max_duration_s,omitempty"`
	RingTimeoutS int               `json:"ring_timeout_s,omitempty"`
	Record       bool              `json:"record,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

// Task is a scheduled outbound call with its retries. Times are UTC with
// millisecond precision, like a Call's.
type Task struct {
	ID     string     `json:"id"` // UUID v4, set by CreateTask
	Status TaskStatus `json:"status"`
	CallRequest
	ScheduledAt time.Time `json:"scheduled_at"`
	// NextAttemptAt is when a pending task is tried next; nil otherwise.
	NextAttemptAt  *time.Time     `json:"next_attempt_at"`
	MaxAttempts    int            `json:"max_attempts"`
	RetryIntervalS int            `json:"retry_interval_s"`
	RetryOn        []HangupReason `json:"retry_on"`
	// Attempts counts the calls started, the one in progress included.
	Attempts int `json:"attempts"`
	// CallIDs are the calls of every attempt, oldest first;
	// CurrentCallID the one in progress ("" when none).
	CallIDs          []string     `json:"call_ids"`
	CurrentCallID    string       `json:"current_call_id,omitempty"`
	LastHangupReason HangupReason `json:"last_hangup_reason"`
	LastSIPCode      int          `json:"last_sip_code,omitempty"`
	// LastError says why the last attempt could not start a call at all.
	LastError string     `json:"last_error,omitempty"`
	TMCreate  time.Time  `json:"tm_create"`
	TMUpdate  time.Time  `json:"tm_update"`
	TMEnd     *time.Time `json:"tm_end"` // when it became final
}

const taskColumns = `id, status, call, scheduled_at, next_attempt_at, max_attempts, retry_interval_s, retry_on,
	attempts, call_ids, current_call_id, last_hangup_reason, last_sip_code, last_error, tm_create, tm_update, tm_end`

// taskRow is a task converted for the columns after id and status.
type taskRow struct {
	call, retryOn, callIDs string
	scheduledAt            int64
	nextAttemptAt, tmEnd   sql.NullInt64
}

func taskArgs(t *Task) (taskRow, error) {
	switch {
	case !t.Status.Valid():
		return taskRow{}, fmt.Errorf("%w: task status %q", ErrInvalid, t.Status)
	case t.MaxAttempts < 1:
		return taskRow{}, fmt.Errorf("%w: max attempts %d", ErrInvalid, t.MaxAttempts)
	case t.RetryIntervalS < 0:
		return taskRow{}, fmt.Errorf("%w: retry interval %d", ErrInvalid, t.RetryIntervalS)
	case t.Attempts < 0:
		return taskRow{}, fmt.Errorf("%w: attempts %d", ErrInvalid, t.Attempts)
	case !t.LastHangupReason.Valid():
		return taskRow{}, fmt.Errorf("%w: last hangup reason %q", ErrInvalid, t.LastHangupReason)
	case strings.TrimSpace(t.To) == "":
		return taskRow{}, fmt.Errorf("%w: task without a destination", ErrInvalid)
	}
	for _, r := range t.RetryOn {
		if !r.Valid() || r == ReasonNone {
			return taskRow{}, fmt.Errorf("%w: retry on %q", ErrInvalid, r)
		}
	}
	var a taskRow
	var err error
	if a.call, err = jsonText(t.CallRequest, "{}"); err != nil {
		return taskRow{}, fmt.Errorf("%w: call: %v", ErrInvalid, err)
	}
	if a.retryOn, err = jsonText(t.RetryOn, "[]"); err != nil {
		return taskRow{}, err
	}
	if a.callIDs, err = jsonText(t.CallIDs, "[]"); err != nil {
		return taskRow{}, err
	}
	a.scheduledAt = t.ScheduledAt.UnixMilli()
	a.nextAttemptAt, a.tmEnd = nullMillis(t.NextAttemptAt), nullMillis(t.TMEnd)
	return a, nil
}

// normalizeTask rounds t's times to what the database keeps.
func normalizeTask(t *Task) {
	t.ScheduledAt = fromMillis(t.ScheduledAt.UnixMilli())
	for _, p := range []**time.Time{&t.NextAttemptAt, &t.TMEnd} {
		if *p != nil {
			v := fromMillis((*p).UnixMilli())
			*p = &v
		}
	}
}

// CreateTask inserts t as a new pending task: it sets the id, the status,
// the times, and NextAttemptAt to ScheduledAt.
func (db *DB) CreateTask(ctx context.Context, t *Task) error {
	t.ID = uuid.NewString()
	t.Status = TaskPending
	now := fromMillis(db.now().UnixMilli())
	t.TMCreate, t.TMUpdate, t.TMEnd = now, now, nil
	if t.ScheduledAt.IsZero() {
		t.ScheduledAt = now
	}
	next := t.ScheduledAt
	t.NextAttemptAt = &next
	if t.CallIDs == nil {
		t.CallIDs = []string{}
	}
	normalizeTask(t)
	a, err := taskArgs(t)
	if err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	_, err = db.w.ExecContext(ctx, `INSERT INTO tasks (`+taskColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, string(t.Status), a.call, a.scheduledAt, a.nextAttemptAt, t.MaxAttempts, t.RetryIntervalS, a.retryOn,
		t.Attempts, a.callIDs, t.CurrentCallID, string(t.LastHangupReason), t.LastSIPCode, t.LastError,
		now.UnixMilli(), now.UnixMilli(), a.tmEnd)
	if err != nil {
		return fmt.Errorf("create task %s: %w", t.ID, constraintErr(err))
	}
	return nil
}

// UpdateTask writes t's state (everything but its id, call and creation
// time) if the stored task is still in status from: a compare-and-set, so
// that a scheduler finishing an attempt and an API cancel cannot overwrite
// each other. ErrNotFound when there is no such task, ErrConflict when its
// status is no longer from (the caller re-reads and decides).
func (db *DB) UpdateTask(ctx context.Context, t *Task, from TaskStatus) error {
	normalizeTask(t)
	if t.CallIDs == nil {
		t.CallIDs = []string{}
	}
	a, err := taskArgs(t)
	if err != nil {
		return fmt.Errorf("update task %s: %w", t.ID, err)
	}
	now := fromMillis(db.now().UnixMilli())
	res, err := db.w.ExecContext(ctx, `UPDATE tasks SET status = ?, next_attempt_at = ?, max_attempts = ?,
		retry_interval_s = ?, retry_on = ?, attempts = ?, call_ids = ?, current_call_id = ?, last_hangup_reason = ?,
		last_sip_code = ?, last_error = ?, tm_update = ?, tm_end = ? WHERE id = ? AND status = ?`,
		string(t.Status), a.nextAttemptAt, t.MaxAttempts, t.RetryIntervalS, a.retryOn, t.Attempts, a.callIDs,
		t.CurrentCallID, string(t.LastHangupReason), t.LastSIPCode, t.LastError, now.UnixMilli(), a.tmEnd,
		t.ID, string(from))
	if err != nil {
		return fmt.Errorf("update task %s: %w", t.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, gerr := db.GetTask(ctx, t.ID); gerr != nil {
			return fmt.Errorf("update task %s: %w", t.ID, gerr)
		}
		return fmt.Errorf("update task %s: %w: it is no longer %s", t.ID, ErrConflict, from)
	}
	t.TMUpdate = now
	return nil
}

// GetTask returns the task with id, or an error wrapping ErrNotFound.
func (db *DB) GetTask(ctx context.Context, id string) (*Task, error) {
	t, err := scanTask(db.r.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = ?`, id))
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", id, notFound(err))
	}
	return t, nil
}

// DeleteTask removes a task that is not in progress: ErrNotFound if there
// is none, ErrConflict while one of its calls is being placed.
func (db *DB) DeleteTask(ctx context.Context, id string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM tasks WHERE id = ? AND status != ?`, id, string(TaskInProgress))
	if err != nil {
		return fmt.Errorf("delete task %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, gerr := db.GetTask(ctx, id); gerr != nil {
			return fmt.Errorf("delete task %s: %w", id, gerr)
		}
		return fmt.Errorf("delete task %s: %w: it is in progress", id, ErrConflict)
	}
	return nil
}

// ListTasks pages through tasks, newest first, optionally only those in
// the given statuses.
func (db *DB) ListTasks(ctx context.Context, opt ListOptions, statuses ...TaskStatus) ([]Task, string, error) {
	size, err := pageSize(opt.PageSize)
	if err != nil {
		return nil, "", fmt.Errorf("list tasks: %w", err)
	}
	var where []string
	var args []any
	if len(statuses) > 0 {
		marks := make([]string, len(statuses))
		for i, st := range statuses {
			if !st.Valid() {
				return nil, "", fmt.Errorf("list tasks: %w: status %q", ErrInvalid, st)
			}
			marks[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, `status IN (`+strings.Join(marks, ", ")+`)`)
	}
	if opt.PageToken != "" {
		tm, id, terr := decodePageToken(opt.PageToken)
		if terr != nil {
			return nil, "", fmt.Errorf("list tasks: %w", terr)
		}
		where, args = append(where, `(tm_create, id) < (?, ?)`), append(args, tm, id)
	}
	q := ``
	if len(where) > 0 {
		q = `WHERE ` + strings.Join(where, ` AND `)
	}
	out, err := db.queryTasks(ctx, q+` ORDER BY tm_create DESC, id DESC LIMIT ?`, append(args, size+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("list tasks: %w", err)
	}
	if len(out) <= size {
		return out, "", nil
	}
	out = out[:size]
	last := out[size-1]
	return out, encodePageToken(last.TMCreate.UnixMilli(), last.ID), nil
}

// DueTasks returns up to limit pending tasks whose next attempt is at or
// before now, the most overdue first.
func (db *DB) DueTasks(ctx context.Context, now time.Time, limit int) ([]Task, error) {
	out, err := db.queryTasks(ctx, `WHERE status = ? AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`,
		string(TaskPending), now.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("due tasks: %w", err)
	}
	return out, nil
}

// NextTaskAttempt is the earliest next attempt of a pending task; ok is
// false when no task is pending.
func (db *DB) NextTaskAttempt(ctx context.Context) (next time.Time, ok bool, err error) {
	var ms sql.NullInt64
	err = db.r.QueryRowContext(ctx, `SELECT MIN(next_attempt_at) FROM tasks WHERE status = ?`, string(TaskPending)).Scan(&ms)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next task attempt: %w", err)
	}
	if !ms.Valid {
		return time.Time{}, false, nil
	}
	return fromMillis(ms.Int64), true, nil
}

// TasksInStatus returns every task in status st, oldest first: the
// scheduler's view of its calls in progress.
func (db *DB) TasksInStatus(ctx context.Context, st TaskStatus) ([]Task, error) {
	out, err := db.queryTasks(ctx, `WHERE status = ? ORDER BY tm_create, id`, string(st))
	if err != nil {
		return nil, fmt.Errorf("tasks %s: %w", st, err)
	}
	return out, nil
}

func (db *DB) queryTasks(ctx context.Context, where string, args ...any) ([]Task, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+taskColumns+` FROM tasks `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Task{}
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, rows.Err()
}

func scanTask(s scanner) (*Task, error) {
	var (
		t                               Task
		status, call, retryOn, callIDs  string
		lastReason                      string
		scheduledAt, tmCreate, tmUpdate int64
		nextAttemptAt, tmEnd            sql.NullInt64
	)
	if err := s.Scan(&t.ID, &status, &call, &scheduledAt, &nextAttemptAt, &t.MaxAttempts, &t.RetryIntervalS, &retryOn,
		&t.Attempts, &callIDs, &t.CurrentCallID, &lastReason, &t.LastSIPCode, &t.LastError, &tmCreate, &tmUpdate, &tmEnd); err != nil {
		return nil, err
	}
	t.Status, t.LastHangupReason = TaskStatus(status), HangupReason(lastReason)
	if err := json.Unmarshal([]byte(call), &t.CallRequest); err != nil {
		return nil, fmt.Errorf("task %s: call: %w", t.ID, err)
	}
	if err := json.Unmarshal([]byte(retryOn), &t.RetryOn); err != nil {
		return nil, fmt.Errorf("task %s: retry_on: %w", t.ID, err)
	}
	if err := json.Unmarshal([]byte(callIDs), &t.CallIDs); err != nil {
		return nil, fmt.Errorf("task %s: call_ids: %w", t.ID, err)
	}
	t.ScheduledAt, t.TMCreate, t.TMUpdate = fromMillis(scheduledAt), fromMillis(tmCreate), fromMillis(tmUpdate)
	t.NextAttemptAt, t.TMEnd = timePtr(nextAttemptAt), timePtr(tmEnd)
	if t.RetryOn == nil {
		t.RetryOn = []HangupReason{}
	}
	return &t, nil
}
