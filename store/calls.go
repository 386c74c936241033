package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ErrBadPageToken is returned (wrapped) by list calls given a page token they
// did not issue. It also matches ErrInvalid.
var ErrBadPageToken = fmt.Errorf("bad page token: %w", ErrInvalid)

const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// ListOptions pages through a list. PageSize 0 means DefaultPageSize; larger
// than MaxPageSize is clamped; negative is an error. PageToken is the
// nextPageToken of the previous page, or "" for the first page.
type ListOptions struct {
	PageSize  int
	PageToken string
}

const callColumns = `id, sip_call_id, direction, source, destination, source_addr, status,
	hangup_by, hangup_reason, sip_code, codec, dtmf, rtp_packets_in, rtp_packets_out, rtp_packets_lost,
	tm_create, tm_ringing, tm_progressing, tm_hangup, flow_id, variables, warnings, master_call_id, quality`

// CreateCall inserts c. It sets c.ID (a UUID v4) if empty and c.TMCreate
// (now) if zero, and normalises c's times to UTC milliseconds.
func (db *DB) CreateCall(ctx context.Context, c *Call) error {
	op, err := db.createCallOp(c)
	return db.writeChecked(ctx, op, err)
}

// QueueCreateCall is CreateCall without the wait: it checks c, sets its
// id and times, queues the insert and returns. The error is c's own.
func (db *DB) QueueCreateCall(c *Call) error { return db.queueChecked(db.createCallOp(c)) }

func (db *DB) createCallOp(c *Call) (*writeOp, error) {
	if c.ID == "" {
		c.ID = uuid.NewString()
	}
	if c.TMCreate.IsZero() {
		c.TMCreate = db.now()
	}
	normalizeTimes(c)
	a, err := callArgs(c)
	if err != nil {
		return nil, fmt.Errorf("create call %s: %w", c.ID, err)
	}
	return &writeOp{what: "create call " + c.ID, query: `INSERT INTO calls (` + callColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		args: []any{c.ID, a.sipCallID, a.direction, a.source, a.destination, a.sourceAddr, a.status,
			a.hangupBy, a.hangupReason, a.sipCode, a.codec, a.dtmf, a.rtpIn, a.rtpOut, a.rtpLost,
			a.tmCreate, a.tmRinging, a.tmProgressing, a.tmHangup, a.flowID, a.variables, a.warnings, c.MasterCallID, a.quality}}, nil
}

// UpdateCall writes every field of c except ID and TMCreate, which never
// change, to the call with c.ID. It normalises c's times like CreateCall.
func (db *DB) UpdateCall(ctx context.Context, c *Call) error {
	op, err := db.updateCallOp(c)
	return db.writeChecked(ctx, op, err)
}

// QueueUpdateCall is UpdateCall without the wait. Updates of one call
// still queued together are written once, with the last one's values.
func (db *DB) QueueUpdateCall(c *Call) error { return db.queueChecked(db.updateCallOp(c)) }

func (db *DB) updateCallOp(c *Call) (*writeOp, error) {
	if c.ID == "" {
		return nil, fmt.Errorf("update call: %w: empty id", ErrInvalid)
	}
	normalizeTimes(c)
	a, err := callArgs(c)
	if err != nil {
		return nil, fmt.Errorf("update call %s: %w", c.ID, err)
	}
	return &writeOp{what: "update call " + c.ID, key: "call " + c.ID, query: `UPDATE calls SET
		sip_call_id = ?, direction = ?, source = ?, destination = ?, source_addr = ?, status = ?,
		hangup_by = ?, hangup_reason = ?, sip_code = ?, codec = ?, dtmf = ?,
		rtp_packets_in = ?, rtp_packets_out = ?, rtp_packets_lost = ?,
		tm_ringing = ?, tm_progressing = ?, tm_hangup = ?,
		flow_id = ?, variables = ?, warnings = ?, master_call_id = ?, quality = ?
		WHERE id = ?`,
		args: []any{a.sipCallID, a.direction, a.source, a.destination, a.sourceAddr, a.status,
			a.hangupBy, a.hangupReason, a.sipCode, a.codec, a.dtmf,
			a.rtpIn, a.rtpOut, a.rtpLost,
			a.tmRinging, a.tmProgressing, a.tmHangup,
			a.flowID, a.variables, a.warnings, c.MasterCallID, a.quality,
			c.ID},
		mustChange: true}, nil
}

// GetCall returns the call with the given id, or an error wrapping
// ErrNotFound.
func (db *DB) GetCall(ctx context.Context, id string) (*Call, error) {
	row := db.r.QueryRowContext(ctx, `SELECT `+callColumns+` FROM calls WHERE id = ?`, id)
	var c Call
	if err := scanCall(row, &c); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = ErrNotFound
		}
		return nil, fmt.Errorf("get call %s: %w", id, err)
	}
	return &c, nil
}

// CallFilter narrows a call list. The zero value matches every call.
type CallFilter struct {
	// Statuses, when not empty, keeps calls in one of them.
	Statuses []CallStatus
	// Direction, when set, keeps calls of that direction.
	Direction Direction
	// From and To, when not zero, keep calls created at or after From and
	// before To.
	From, To time.Time
	// AgentID, when set, keeps calls whose agent.id variable is it: the
	// agent an ai_talk action ran (the last one, if several did).
	AgentID string
}

// ListCalls returns a page of calls, newest first (ties broken by id,
// descending), and the token of the next page, "" after the last one. The
// result is never nil so that it encodes as a JSON array. An optional
// filter narrows the list; the next page must be asked with the same one.
//
// Paging is by key, not offset: pages stay consistent while new calls arrive
// (they sort before the first page) and cost the same however deep.
func (db *DB) ListCalls(ctx context.Context, opt ListOptions, filter ...CallFilter) ([]Call, string, error) {
	size, err := pageSize(opt.PageSize)
	if err != nil {
		return nil, "", fmt.Errorf("list calls: %w", err)
	}
	var where []string
	var args []any
	for _, f := range filter {
		w, a, err := f.where()
		if err != nil {
			return nil, "", fmt.Errorf("list calls: %w", err)
		}
		where, args = append(where, w...), append(args, a...)
	}
	if opt.PageToken != "" {
		tm, id, terr := decodePageToken(opt.PageToken)
		if terr != nil {
			return nil, "", fmt.Errorf("list calls: %w", terr)
		}
		where, args = append(where, `(tm_create, id) < (?, ?)`), append(args, tm, id)
	}
	q := `SELECT ` + callColumns + ` FROM calls`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	rows, err := db.r.QueryContext(ctx, q+` ORDER BY tm_create DESC, id DESC LIMIT ?`, append(args, size+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("list calls: %w", err)
	}
	defer rows.Close()

	calls := make([]Call, 0, size)
	for rows.Next() {
		var c Call
		if err := scanCall(rows, &c); err != nil {
			return nil, "", fmt.Errorf("list calls: %w", err)
		}
		calls = append(calls, c)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list calls: %w", err)
	}

	// One row more than asked says whether another page exists, so the last
	// page gets "" instead of a token leading to an empty page.
	if len(calls) <= size {
		return calls, "", nil
	}
	calls = calls[:size]
	last := calls[size-1]
	return calls, encodePageToken(last.TMCreate.UnixMilli(), last.ID), nil
}

// where returns f's conditions on the calls table and their arguments.
func (f CallFilter) where() ([]string, []any, error) {
	var where []string
	var args []any
	if len(f.Statuses) > 0 {
		marks := make([]string, len(f.Statuses))
		for i, st := range f.Statuses {
			if !st.Valid() {
				return nil, nil, fmt.Errorf("%w: status %q", ErrInvalid, st)
			}
			marks[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, `status IN (`+strings.Join(marks, ", ")+`)`)
	}
	if f.Direction != "" {
		if !f.Direction.Valid() {
			return nil, nil, fmt.Errorf("%w: direction %q", ErrInvalid, f.Direction)
		}
		where, args = append(where, `direction = ?`), append(args, string(f.Direction))
	}
	if !f.From.IsZero() {
		where, args = append(where, `tm_create >= ?`), append(args, f.From.UnixMilli())
	}
	if !f.To.IsZero() {
		where, args = append(where, `tm_create < ?`), append(args, f.To.UnixMilli())
	}
	if f.AgentID != "" {
		// The key has a dot, so it is quoted in the JSON path.
		where, args = append(where, `json_extract(variables, '$."agent.id"') = ?`), append(args, f.AgentID)
	}
	return where, args, nil
}

// CloseUnfinishedCalls marks every call not yet hung up as hung up locally
// for reason, now, and returns how many it changed. It is meant for startup,
// for the calls a crashed or killed process left open.
func (db *DB) CloseUnfinishedCalls(ctx context.Context, reason HangupReason) (int, error) {
	if reason == ReasonNone || !reason.Valid() {
		return 0, fmt.Errorf("close unfinished calls: %w: hangup reason %q", ErrInvalid, reason)
	}
	now := db.now().UTC().UnixMilli()
	// The literal 'hangup' (not a parameter) lets SQLite use the partial
	// index calls_unfinished, whose WHERE must match it.
	res, err := db.w.ExecContext(ctx, `UPDATE calls
		SET status = ?, hangup_by = ?, hangup_reason = ?, tm_hangup = ?
		WHERE status <> 'hangup'`,
		string(StatusHangup), string(HangupByLocal), string(reason), now)
	if err != nil {
		return 0, fmt.Errorf("close unfinished calls: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("close unfinished calls: %w", err)
	}
	return int(n), nil
}

func pageSize(n int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("%w: negative page size %d", ErrInvalid, n)
	case n == 0:
		return DefaultPageSize, nil
	case n > MaxPageSize:
		return MaxPageSize, nil
	}
	return n, nil
}

// Page token layout, before base64url: version byte, tm_create in unix ms
// (8 bytes, big endian), id bytes, CRC-32 of all that. The CRC is not for
// security (a token only says where to resume a list the caller may read
// anyway) but so a truncated or mangled token is reported, not obeyed.
const pageTokenV1 = 1

func encodePageToken(tm int64, id string) string {
	b := make([]byte, 0, 1+8+len(id)+4)
	b = append(b, pageTokenV1)
	b = binary.BigEndian.AppendUint64(b, uint64(tm))
	b = append(b, id...)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(tok string) (tm int64, id string, err error) {
	// The decoder skips CR and LF even when strict; a token we issue has
	// neither, so one that does is not ours.
	if strings.ContainsAny(tok, "\r\n") {
		return 0, "", fmt.Errorf("%w: line break", ErrBadPageToken)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil {
		return 0, "", fmt.Errorf("%w: %v", ErrBadPageToken, err)
	}
	// version + time + at least one id byte + crc
	if len(b) < 1+8+1+4 {
		return 0, "", fmt.Errorf("%w: too short", ErrBadPageToken)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return 0, "", fmt.Errorf("%w: checksum mismatch", ErrBadPageToken)
	}
	if body[0] != pageTokenV1 {
		return 0, "", fmt.Errorf("%w: unknown version %d", ErrBadPageToken, body[0])
	}
	return int64(binary.BigEndian.Uint64(body[1:9])), string(body[9:]), nil
}

// callRow holds c's fields converted to what the columns store.
type callRow struct {
	sipCallID, direction, source, destination, sourceAddr, status string
	hangupBy, hangupReason, codec, dtmf                           string
	sipCode                                                       int
	rtpIn, rtpOut, rtpLost                                        int64
	tmCreate                                                      int64
	tmRinging, tmProgressing, tmHangup                            sql.NullInt64
	flowID, variables, warnings, quality                          string
}

// callArgs validates c and converts it for the database. Enumerations are
// checked here rather than by CHECK constraints, see migrations/0001.
func callArgs(c *Call) (callRow, error) {
	switch {
	case !c.Direction.Valid():
		return callRow{}, fmt.Errorf("%w: direction %q", ErrInvalid, c.Direction)
	case !c.Status.Valid():
		return callRow{}, fmt.Errorf("%w: status %q", ErrInvalid, c.Status)
	case !c.HangupBy.Valid():
		return callRow{}, fmt.Errorf("%w: hangup_by %q", ErrInvalid, c.HangupBy)
	case !c.HangupReason.Valid():
		return callRow{}, fmt.Errorf("%w: hangup_reason %q", ErrInvalid, c.HangupReason)
	}
	var a callRow
	var err error
	if a.rtpIn, err = toInt64("rtp_packets_in", c.RTPPacketsIn); err != nil {
		return callRow{}, err
	}
	if a.rtpOut, err = toInt64("rtp_packets_out", c.RTPPacketsOut); err != nil {
		return callRow{}, err
	}
	if a.rtpLost, err = toInt64("rtp_packets_lost", c.RTPPacketsLost); err != nil {
		return callRow{}, err
	}
	a.sipCallID, a.direction, a.source, a.destination = c.SIPCallID, string(c.Direction), c.Source, c.Destination
	a.sourceAddr, a.status = c.SourceAddr, string(c.Status)
	a.hangupBy, a.hangupReason = string(c.HangupBy), string(c.HangupReason)
	a.sipCode, a.codec, a.dtmf = c.SIPCode, c.Codec, c.DTMF
	a.tmCreate = c.TMCreate.UnixMilli()
	a.tmRinging, a.tmProgressing, a.tmHangup = nullMillis(c.TMRinging), nullMillis(c.TMProgressing), nullMillis(c.TMHangup)
	a.flowID = c.FlowID
	if a.variables, err = jsonText(c.Variables, "{}"); err != nil {
		return callRow{}, fmt.Errorf("%w: variables: %v", ErrInvalid, err)
	}
	if a.warnings, err = jsonText(c.Warnings, "[]"); err != nil {
		return callRow{}, fmt.Errorf("%w: warnings: %v", ErrInvalid, err)
	}
	if a.quality, err = jsonText(c.Quality, "null"); err != nil {
		return callRow{}, fmt.Errorf("%w: quality: %v", ErrInvalid, err)
	}
	return a, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanCall(s scanner, c *Call) error {
	var (
		direction, status, hangupBy, hangupReason string
		rtpIn, rtpOut, rtpLost, tmCreate          int64
		tmRinging, tmProgressing, tmHangup        sql.NullInt64
		variables, warnings, quality              string
	)
	if err := s.Scan(&c.ID, &c.SIPCallID, &direction, &c.Source, &c.Destination, &c.SourceAddr, &status,
		&hangupBy, &hangupReason, &c.SIPCode, &c.Codec, &c.DTMF, &rtpIn, &rtpOut, &rtpLost,
		&tmCreate, &tmRinging, &tmProgressing, &tmHangup, &c.FlowID, &variables, &warnings, &c.MasterCallID, &quality); err != nil {
		return err
	}
	// JSON columns are only ever written by jsonText; a row edited by hand
	// into something else reads as empty rather than failing the list.
	// Empty ones read as nil, as they were written.
	if variables != "{}" {
		_ = json.Unmarshal([]byte(variables), &c.Variables)
	}
	if warnings != "[]" {
		_ = json.Unmarshal([]byte(warnings), &c.Warnings)
	}
	if quality != "null" {
		_ = json.Unmarshal([]byte(quality), &c.Quality)
	}
	c.Direction, c.Status = Direction(direction), CallStatus(status)
	c.HangupBy, c.HangupReason = HangupBy(hangupBy), HangupReason(hangupReason)
	// Counters are written from uint64 values checked to fit in int64; a
	// negative one could only come from outside and reads as 0, not 2^64-n.
	c.RTPPacketsIn, c.RTPPacketsOut, c.RTPPacketsLost = uint64(max(rtpIn, 0)), uint64(max(rtpOut, 0)), uint64(max(rtpLost, 0))
	c.TMCreate = fromMillis(tmCreate)
	c.TMRinging, c.TMProgressing, c.TMHangup = timePtr(tmRinging), timePtr(tmProgressing), timePtr(tmHangup)
	return nil
}

// jsonText encodes v for a JSON column, with empty for a nil map or slice.
func jsonText[T any](v T, empty string) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	if string(b) == "null" {
		return empty, nil
	}
	return string(b), nil
}

func toInt64(field string, v uint64) (int64, error) {
	if v > math.MaxInt64 {
		// SQLite integers are signed 64-bit.
		return 0, fmt.Errorf("%w: %s %d out of range", ErrInvalid, field, v)
	}
	return int64(v), nil
}

// normalizeTimes rounds c's times down to the millisecond in UTC, the
// precision the database keeps. Pointers are replaced, not written through,
// since the caller may share what they point to.
func normalizeTimes(c *Call) {
	c.TMCreate = fromMillis(c.TMCreate.UnixMilli())
	for _, p := range []**time.Time{&c.TMRinging, &c.TMProgressing, &c.TMHangup} {
		if *p != nil {
			t := fromMillis((*p).UnixMilli())
			*p = &t
		}
	}
}

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func nullMillis(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func timePtr(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromMillis(n.Int64)
	return &t
}
