package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Agent is an agent definition made over the API. Definition is the agent
// package's JSON, validated there; it holds provider keys, so it never goes
// to a client as it is.
type Agent struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Definition json.RawMessage `json:"-"`
	TMCreate   time.Time       `json:"tm_create"`
	TMUpdate   time.Time       `json:"tm_update"`
}

const agentColumns = `id, name, definition, tm_create, tm_update`

func (a *Agent) check() error {
	if a.ID == "" {
		return fmt.Errorf("%w: empty agent id", ErrInvalid)
	}
	if err := checkText("agent id", a.ID, 128); err != nil {
		return err
	}
	var obj map[string]any
	if json.Unmarshal(a.Definition, &obj) != nil || obj == nil {
		return fmt.Errorf("%w: agent %s: the definition is not a JSON object", ErrInvalid, a.ID)
	}
	return nil
}

// CreateAgent inserts a, setting its times; ErrConflict if the id is taken.
func (db *DB) CreateAgent(ctx context.Context, a *Agent) error {
	if err := a.check(); err != nil {
		return fmt.Errorf("create agent: %w", err)
	}
	now := fromMillis(db.now().UnixMilli())
	_, err := db.w.ExecContext(ctx, `INSERT INTO agents (`+agentColumns+`) VALUES (?, ?, ?, ?, ?)`,
		a.ID, a.Name, string(a.Definition), now.UnixMilli(), now.UnixMilli())
	if err != nil {
		return fmt.Errorf("create agent %s: %w", a.ID, constraintErr(err))
	}
	a.TMCreate, a.TMUpdate = now, now
	return nil
}

// UpdateAgent replaces the name and definition of the agent with a.ID,
// keeping its creation time; ErrNotFound if there is none.
func (db *DB) UpdateAgent(ctx context.Context, a *Agent) error {
	if err := a.check(); err != nil {
		return fmt.Errorf("update agent: %w", err)
	}
	now := fromMillis(db.now().UnixMilli())
	var tmCreate int64
	err := db.w.QueryRowContext(ctx, `UPDATE agents SET name = ?, definition = ?, tm_update = ? WHERE id = ?
		RETURNING tm_create`, a.Name, string(a.Definition), now.UnixMilli(), a.ID).Scan(&tmCreate)
	if err != nil {
		return fmt.Errorf("update agent %s: %w", a.ID, notFound(err))
	}
	a.TMCreate, a.TMUpdate = fromMillis(tmCreate), now
	return nil
}

// GetAgent returns the agent with id, or an error wrapping ErrNotFound.
func (db *DB) GetAgent(ctx context.Context, id string) (*Agent, error) {
	a, err := scanAgent(db.r.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = ?`, id))
	if err != nil {
		return nil, fmt.Errorf("get agent %s: %w", id, notFound(err))
	}
	return a, nil
}

// DeleteAgent removes an agent; ErrNotFound if there was none.
func (db *DB) DeleteAgent(ctx context.Context, id string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM agents WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete agent %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delete agent %s: %w", id, ErrNotFound)
	}
	return nil
}

// ListAgents pages through agents by id.
func (db *DB) ListAgents(ctx context.Context, opt ListOptions) ([]Agent, string, error) {
	size, after, err := keyPage(opt)
	if err != nil {
		return nil, "", fmt.Errorf("list agents: %w", err)
	}
	out, err := db.queryAgents(ctx, `WHERE id > ? ORDER BY id LIMIT ?`, after, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("list agents: %w", err)
	}
	if len(out) <= size {
		return out, "", nil
	}
	out = out[:size]
	return out, encodePageToken(0, out[size-1].ID), nil
}

// AllAgents returns every stored agent by id: what a starting server loads.
func (db *DB) AllAgents(ctx context.Context) ([]Agent, error) {
	out, err := db.queryAgents(ctx, `ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("all agents: %w", err)
	}
	return out, nil
}

func (db *DB) queryAgents(ctx context.Context, where string, args ...any) ([]Agent, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+agentColumns+` FROM agents `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Agent{}
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, rows.Err()
}

func scanAgent(s scanner) (*Agent, error) {
	var a Agent
	var def string
	var tmCreate, tmUpdate int64
	if err := s.Scan(&a.ID, &a.Name, &def, &tmCreate, &tmUpdate); err != nil {
		return nil, err
	}
	a.Definition = json.RawMessage(def)
	a.TMCreate, a.TMUpdate = fromMillis(tmCreate), fromMillis(tmUpdate)
	return &a, nil
}
