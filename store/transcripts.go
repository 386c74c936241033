package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// TranscriptTurn is one turn of a conversation on a call.
type TranscriptTurn struct {
	CallID      string          `json:"-"`
	Index       int             `json:"index"`
	Role        string          `json:"role"`
	Kind        string          `json:"kind"`
	Text        string          `json:"text"`
	TMStart     *time.Time      `json:"tm_start"`
	TMEnd       *time.Time      `json:"tm_end"`
	Interrupted bool            `json:"interrupted"`
	ToolCalls   json.RawMessage `json:"tool_calls"`
}

// PutTranscriptTurn writes a turn, replacing an earlier version of it (turns
// are upserted as they change and become final).
func (db *DB) PutTranscriptTurn(ctx context.Context, t *TranscriptTurn) error {
	return db.write(ctx, putTranscriptTurnOp(t))
}

// QueueTranscriptTurn is PutTranscriptTurn without the wait.
func (db *DB) QueueTranscriptTurn(t *TranscriptTurn) { db.wr.enqueue(putTranscriptTurnOp(t)) }

func putTranscriptTurnOp(t *TranscriptTurn) *writeOp {
	tools := string(t.ToolCalls)
	if tools == "" || tools == "null" {
		tools = "[]"
	}
	return &writeOp{what: fmt.Sprintf("put transcript turn %s/%d", t.CallID, t.Index), query: `INSERT INTO transcript_turns
		(call_id, idx, role, kind, text, tm_start, tm_end, interrupted, tool_calls) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (call_id, idx) DO UPDATE SET role = excluded.role, kind = excluded.kind, text = excluded.text,
			tm_start = excluded.tm_start, tm_end = excluded.tm_end, interrupted = excluded.interrupted,
			tool_calls = excluded.tool_calls`,
		args: []any{t.CallID, t.Index, t.Role, t.Kind, t.Text, nullMillis(t.TMStart), nullMillis(t.TMEnd), t.Interrupted, tools}}
}

// ListTranscript returns a call's turns in order.
func (db *DB) ListTranscript(ctx context.Context, callID string) ([]TranscriptTurn, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT idx, role, kind, text, tm_start, tm_end, interrupted, tool_calls
		FROM transcript_turns WHERE call_id = ? ORDER BY idx`, callID)
	if err != nil {
		return nil, fmt.Errorf("list transcript %s: %w", callID, err)
	}
	defer rows.Close()
	out := []TranscriptTurn{}
	for rows.Next() {
		t := TranscriptTurn{CallID: callID}
		var start, end sql.NullInt64
		var tools string
		if err := rows.Scan(&t.Index, &t.Role, &t.Kind, &t.Text, &start, &end, &t.Interrupted, &tools); err != nil {
			return nil, fmt.Errorf("list transcript %s: %w", callID, err)
		}
		t.TMStart, t.TMEnd, t.ToolCalls = timePtr(start), timePtr(end), json.RawMessage(tools)
		out = append(out, t)
	}
	return out, rows.Err()
}

// PutTurnLatency stores one agent turn's latency row (JSON as the agent
// package writes it).
func (db *DB) PutTurnLatency(ctx context.Context, callID string, turn int, data json.RawMessage) error {
	return db.write(ctx, putTurnLatencyOp(callID, turn, data))
}

// QueueTurnLatency is PutTurnLatency without the wait.
func (db *DB) QueueTurnLatency(callID string, turn int, data json.RawMessage) {
	db.wr.enqueue(putTurnLatencyOp(callID, turn, data))
}

func putTurnLatencyOp(callID string, turn int, data json.RawMessage) *writeOp {
	return &writeOp{what: fmt.Sprintf("put turn latency %s/%d", callID, turn), query: `INSERT INTO turn_latency (call_id, turn, data) VALUES (?, ?, ?)
		ON CONFLICT (call_id, turn) DO UPDATE SET data = excluded.data`, args: []any{callID, turn, string(data)}}
}

// ListTurnLatency returns a call's latency rows in turn order.
func (db *DB) ListTurnLatency(ctx context.Context, callID string) ([]json.RawMessage, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT data FROM turn_latency WHERE call_id = ? ORDER BY turn`, callID)
	if err != nil {
		return nil, fmt.Errorf("list turn latency %s: %w", callID, err)
	}
	defer rows.Close()
	out := []json.RawMessage{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, json.RawMessage(s))
	}
	return out, rows.Err()
}
