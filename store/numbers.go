package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// NumberKind says what a call to a number runs.
type NumberKind string

const (
	NumberToFlow      NumberKind = "flow"      // Target is a flow id
	NumberToAgent     NumberKind = "agent"     // Target is an agent id
	NumberToExtension NumberKind = "extension" // Target is an extension number
)

// Valid reports whether k is one of the known kinds.
func (k NumberKind) Valid() bool {
	switch k {
	case NumberToFlow, NumberToAgent, NumberToExtension:
		return true
	}
	return false
}

// Number is a DID: calls to it run Target.
type Number struct {
	Number  string     `json:"number"` // normalised, see NormalizeNumber
	Kind    NumberKind `json:"kind"`
	Target  string     `json:"target"`
	TrunkID string     `json:"trunk_id"` // the trunk that delivers it; "" for any
	// TMCreate and TMUpdate are set by the store.
	TMCreate time.Time `json:"tm_create"`
	TMUpdate time.Time `json:"tm_update"`
}

// NormalizeNumber strips the visual separators people write in numbers
// (spaces, '-', '.', '(', ')') and checks what is left: an optional leading
// '+' and 1 to 20 digits.
func NormalizeNumber(s string) (string, error) {
	var b strings.Builder
	for i, r := range strings.TrimSpace(s) {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", fmt.Errorf("%w: number %q: unexpected %q", ErrInvalid, s, r)
		}
	}
	n := b.String()
	if digits := strings.TrimPrefix(n, "+"); len(digits) == 0 || len(digits) > 20 {
		return "", fmt.Errorf("%w: number %q must have 1 to 20 digits", ErrInvalid, s)
	}
	return n, nil
}

const numberColumns = `number, kind, target, trunk_id, tm_create, tm_update`

// PutNumber creates the number or replaces the one with the same number,
// keeping its creation time. An extension target must exist, and so must
// the trunk when one is given.
func (db *DB) PutNumber(ctx context.Context, n *Number) error {
	num, err := NormalizeNumber(n.Number)
	if err != nil {
		return fmt.Errorf("put number: %w", err)
	}
	n.Number = num
	if !n.Kind.Valid() {
		return fmt.Errorf("put number %s: %w: kind %q (want flow, agent or extension)", num, ErrInvalid, n.Kind)
	}
	if n.Target == "" {
		return fmt.Errorf("put number %s: %w: empty target", num, ErrInvalid)
	}
	if err := checkText("target", n.Target, 128); err != nil {
		return fmt.Errorf("put number %s: %w", num, err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("put number %s: %w", num, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if n.Kind == NumberToExtension {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM extensions WHERE number = ?`, n.Target).Scan(&one)
		if err != nil {
			return fmt.Errorf("put number %s: %w: extension %q: %v", num, ErrInvalid, n.Target, notFound(err))
		}
	}
	now := fromMillis(db.now().UnixMilli())
	trunk := sql.NullString{String: n.TrunkID, Valid: n.TrunkID != ""}
	_, err = tx.ExecContext(ctx, `INSERT INTO numbers (`+numberColumns+`) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (number) DO UPDATE SET kind = excluded.kind, target = excluded.target,
			trunk_id = excluded.trunk_id, tm_update = excluded.tm_update`,
		num, string(n.Kind), n.Target, trunk, now.UnixMilli(), now.UnixMilli())
	if err != nil {
		return fmt.Errorf("put number %s: %w", num, constraintErr(err))
	}
	var tmCreate int64
	if err := tx.QueryRowContext(ctx, `SELECT tm_create FROM numbers WHERE number = ?`, num).Scan(&tmCreate); err != nil {
		return fmt.Errorf("put number %s: %w", num, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("put number %s: %w", num, err)
	}
	n.TMCreate, n.TMUpdate = fromMillis(tmCreate), now
	return nil
}

// GetNumber returns the number, or an error wrapping ErrNotFound.
func (db *DB) GetNumber(ctx context.Context, number string) (*Number, error) {
	num, err := NormalizeNumber(number)
	if err != nil {
		return nil, fmt.Errorf("get number: %w", err)
	}
	n, err := scanNumber(db.r.QueryRowContext(ctx, `SELECT `+numberColumns+` FROM numbers WHERE number = ?`, num))
	if err != nil {
		return nil, fmt.Errorf("get number %s: %w", num, notFound(err))
	}
	return n, nil
}

// LookupNumber finds the number a call was dialed to, accepting it with or
// without the leading '+' whichever way it was stored: carriers differ in
// how they send E.164.
func (db *DB) LookupNumber(ctx context.Context, dialed string) (*Number, error) {
	num, err := NormalizeNumber(dialed)
	if err != nil {
		return nil, fmt.Errorf("lookup number: %w", err)
	}
	digits := strings.TrimPrefix(num, "+")
	n, err := scanNumber(db.r.QueryRowContext(ctx, `SELECT `+numberColumns+` FROM numbers
		WHERE number IN (?, ?) ORDER BY number = ? DESC LIMIT 1`, digits, "+"+digits, num))
	if err != nil {
		return nil, fmt.Errorf("lookup number %s: %w", num, notFound(err))
	}
	return n, nil
}

// DeleteNumber removes a number, found as LookupNumber finds it; ErrNotFound
// if there was none.
func (db *DB) DeleteNumber(ctx context.Context, number string) error {
	num, err := NormalizeNumber(number)
	if err != nil {
		return fmt.Errorf("delete number: %w", err)
	}
	digits := strings.TrimPrefix(num, "+")
	res, err := db.w.ExecContext(ctx, `DELETE FROM numbers WHERE number = (SELECT number FROM numbers
		WHERE number IN (?, ?) ORDER BY number = ? DESC LIMIT 1)`, digits, "+"+digits, num)
	if err != nil {
		return fmt.Errorf("delete number %s: %w", num, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delete number %s: %w", num, ErrNotFound)
	}
	return nil
}

// ListNumbers pages through numbers in text order.
func (db *DB) ListNumbers(ctx context.Context, opt ListOptions) ([]Number, string, error) {
	size, after, err := keyPage(opt)
	if err != nil {
		return nil, "", fmt.Errorf("list numbers: %w", err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+numberColumns+` FROM numbers WHERE number > ? ORDER BY number LIMIT ?`, after, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("list numbers: %w", err)
	}
	defer rows.Close()
	out := make([]Number, 0, size)
	for rows.Next() {
		n, err := scanNumber(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list numbers: %w", err)
		}
		out = append(out, *n)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list numbers: %w", err)
	}
	if len(out) <= size {
		return out, "", nil
	}
	out = out[:size]
	return out, encodePageToken(0, out[size-1].Number), nil
}

func scanNumber(s scanner) (*Number, error) {
	var n Number
	var kind string
	var trunk sql.NullString
	var tmCreate, tmUpdate int64
	if err := s.Scan(&n.Number, &kind, &n.Target, &trunk, &tmCreate, &tmUpdate); err != nil {
		return nil, err
	}
	n.Kind, n.TrunkID = NumberKind(kind), trunk.String
	n.TMCreate, n.TMUpdate = fromMillis(tmCreate), fromMillis(tmUpdate)
	return &n, nil
}
