package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Flow is a stored flow. Actions is the JSON array the flow package
// validated; store keeps it as written.
type Flow struct {
	ID               string          `json:"id"`
	Name             string          `json:"name"`
	Detail           string          `json:"detail"`
	Actions          json.RawMessage `json:"actions"`
	OnCompleteFlowID string          `json:"on_complete_flow_id"`
	Source           string          `json:"source"` // "" or "file:<path>"
	TMCreate         time.Time       `json:"tm_create"`
	TMUpdate         time.Time       `json:"tm_update"`
}

const flowColumns = `id, name, detail, actions, on_complete_flow_id, source, tm_create, tm_update`

// PutFlow creates the flow or replaces the one with the same id, keeping its
// creation time.
func (db *DB) PutFlow(ctx context.Context, f *Flow) error {
	if f.ID == "" {
		return fmt.Errorf("put flow: %w: empty id", ErrInvalid)
	}
	if !json.Valid(f.Actions) {
		return fmt.Errorf("put flow %s: %w: actions are not JSON", f.ID, ErrInvalid)
	}
	now := db.now().UTC()
	f.TMUpdate = fromMillis(now.UnixMilli())
	if f.TMCreate.IsZero() {
		f.TMCreate = f.TMUpdate
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO flows (`+flowColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, detail = excluded.detail,
			actions = excluded.actions, on_complete_flow_id = excluded.on_complete_flow_id,
			source = excluded.source, tm_update = excluded.tm_update`,
		f.ID, f.Name, f.Detail, string(f.Actions), f.OnCompleteFlowID, f.Source,
		f.TMCreate.UnixMilli(), f.TMUpdate.UnixMilli())
	if err != nil {
		return fmt.Errorf("put flow %s: %w", f.ID, err)
	}
	db.flowsVersion.Add(1)
	return nil
}

// FlowsVersion changes whenever a flow is written or deleted through this
// DB, so a cache of compiled flows knows when to drop what it holds.
func (db *DB) FlowsVersion() uint64 { return db.flowsVersion.Load() }

// GetFlow returns the flow with id, or an error wrapping ErrNotFound.
func (db *DB) GetFlow(ctx context.Context, id string) (*Flow, error) {
	row := db.r.QueryRowContext(ctx, `SELECT `+flowColumns+` FROM flows WHERE id = ?`, id)
	f, err := scanFlow(row)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get flow %s: %w", id, err)
	}
	return f, nil
}

// DeleteFlow removes a flow; ErrNotFound if there was none.
func (db *DB) DeleteFlow(ctx context.Context, id string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM flows WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete flow %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delete flow %s: %w", id, ErrNotFound)
	}
	db.flowsVersion.Add(1)
	return nil
}

// ListFlows pages through flows by id.
func (db *DB) ListFlows(ctx context.Context, opt ListOptions) ([]Flow, string, error) {
	size, err := pageSize(opt.PageSize)
	if err != nil {
		return nil, "", fmt.Errorf("list flows: %w", err)
	}
	after := ""
	if opt.PageToken != "" {
		if _, after, err = decodePageToken(opt.PageToken); err != nil {
			return nil, "", fmt.Errorf("list flows: %w", err)
		}
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+flowColumns+` FROM flows WHERE id > ? ORDER BY id LIMIT ?`, after, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("list flows: %w", err)
	}
	defer rows.Close()
	flows := make([]Flow, 0, size)
	for rows.Next() {
		f, err := scanFlow(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list flows: %w", err)
		}
		flows = append(flows, *f)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list flows: %w", err)
	}
	if len(flows) <= size {
		return flows, "", nil
	}
	flows = flows[:size]
	return flows, encodePageToken(0, flows[size-1].ID), nil
}

// ReplaceSourceFlows makes the flows from one source (a flows directory)
// exactly fs: it writes each and removes the ones of that source prefix not
// in fs, in one transaction, so a reload never leaves half a directory.
func (db *DB) ReplaceSourceFlows(ctx context.Context, sourcePrefix string, fs []Flow) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("replace flows: %w", err)
	}
	defer tx.Rollback()
	now := db.now().UTC().UnixMilli()
	keep := make([]any, 0, len(fs)+2)
	keep = append(keep, len(sourcePrefix), sourcePrefix)
	placeholders := ""
	for i := range fs {
		f := &fs[i]
		if f.ID == "" || !json.Valid(f.Actions) {
			return fmt.Errorf("replace flows: %w: flow %q", ErrInvalid, f.ID)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO flows (`+flowColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET name = excluded.name, detail = excluded.detail,
				actions = excluded.actions, on_complete_flow_id = excluded.on_complete_flow_id,
				source = excluded.source, tm_update = excluded.tm_update`,
			f.ID, f.Name, f.Detail, string(f.Actions), f.OnCompleteFlowID, f.Source, now, now); err != nil {
			return fmt.Errorf("replace flows: %s: %w", f.ID, err)
		}
		keep = append(keep, f.ID)
		if placeholders != "" {
			placeholders += ", "
		}
		placeholders += "?"
	}
	// A prefix compare, not LIKE: a path may contain % or _.
	q := `DELETE FROM flows WHERE substr(source, 1, ?) = ?`
	if placeholders != "" {
		q += ` AND id NOT IN (` + placeholders + `)`
	}
	if _, err := tx.ExecContext(ctx, q, keep...); err != nil {
		return fmt.Errorf("replace flows: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("replace flows: %w", err)
	}
	db.flowsVersion.Add(1)
	return nil
}

func scanFlow(s scanner) (*Flow, error) {
	var f Flow
	var actions string
	var tmCreate, tmUpdate int64
	if err := s.Scan(&f.ID, &f.Name, &f.Detail, &actions, &f.OnCompleteFlowID, &f.Source, &tmCreate, &tmUpdate); err != nil {
		return nil, err
	}
	f.Actions = json.RawMessage(actions)
	f.TMCreate, f.TMUpdate = fromMillis(tmCreate), fromMillis(tmUpdate)
	return &f, nil
}

// ActionRun is one action a call executed.
type ActionRun struct {
	CallID   string    `json:"-"`
	Seq      int       `json:"seq"`
	FlowID   string    `json:"flow_id"`
	ActionID string    `json:"action_id"`
	Type     string    `json:"type"`
	TMStart  time.Time `json:"tm_start"`
	TMEnd    time.Time `json:"tm_end"`
	Result   string    `json:"result"` // ok, error, jump:<id>, stop, hangup
	Error    string    `json:"error,omitempty"`
}

// AddActionRun records one executed action.
func (db *DB) AddActionRun(ctx context.Context, a *ActionRun) error {
	return db.write(ctx, addActionRunOp(a))
}

// QueueActionRun is AddActionRun without the wait.
func (db *DB) QueueActionRun(a *ActionRun) { db.wr.enqueue(addActionRunOp(a)) }

func addActionRunOp(a *ActionRun) *writeOp {
	return &writeOp{what: fmt.Sprintf("add action run %s/%d", a.CallID, a.Seq), query: `INSERT INTO call_actions
		(call_id, seq, flow_id, action_id, type, tm_start, tm_end, result, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		args: []any{a.CallID, a.Seq, a.FlowID, a.ActionID, a.Type, a.TMStart.UnixMilli(), a.TMEnd.UnixMilli(), a.Result, a.Error}}
}

// ListActionRuns returns what a call executed, in order.
func (db *DB) ListActionRuns(ctx context.Context, callID string) ([]ActionRun, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT seq, flow_id, action_id, type, tm_start, tm_end, result, error
		FROM call_actions WHERE call_id = ? ORDER BY seq`, callID)
	if err != nil {
		return nil, fmt.Errorf("list action runs %s: %w", callID, err)
	}
	defer rows.Close()
	runs := []ActionRun{}
	for rows.Next() {
		a := ActionRun{CallID: callID}
		var start, end int64
		if err := rows.Scan(&a.Seq, &a.FlowID, &a.ActionID, &a.Type, &start, &end, &a.Result, &a.Error); err != nil {
			return nil, fmt.Errorf("list action runs %s: %w", callID, err)
		}
		a.TMStart, a.TMEnd = fromMillis(start), fromMillis(end)
		runs = append(runs, a)
	}
	return runs, rows.Err()
}
