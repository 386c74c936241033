package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// APIKeyRole is what a key may do over the HTTP API.
type APIKeyRole string

const (
	RoleAdmin    APIKeyRole = "admin"     // everything
	RoleReadOnly APIKeyRole = "read_only" // GET only
)

// Valid reports whether r is one of the known roles.
func (r APIKeyRole) Valid() bool { return r == RoleAdmin || r == RoleReadOnly }

// APIKey is a stored API key: never the key itself, only its hash.
type APIKey struct {
	ID     string     `json:"id"` // UUID v4, set by CreateAPIKey
	Name   string     `json:"name"`
	Prefix string     `json:"prefix"` // the key's first characters, for people
	Hash   string     `json:"-"`      // hex SHA-256 of the whole key
	Role   APIKeyRole `json:"role"`
	// TMCreate is set by CreateAPIKey. TMLastUsed is updated at most about
	// once a minute (see TouchAPIKey); TMRevoke is set by RevokeAPIKey.
	TMCreate   time.Time  `json:"tm_create"`
	TMLastUsed *time.Time `json:"tm_last_used"`
	TMRevoke   *time.Time `json:"tm_revoke"`
}

// Revoked reports whether the key has been revoked.
func (k *APIKey) Revoked() bool { return k.TMRevoke != nil }

const apiKeyColumns = `id, name, prefix, hash, role, tm_create, tm_last_used, tm_revoke`

// CreateAPIKey stores k, setting its ID and TMCreate. ErrConflict if a key
// with the same hash exists (revoked or not).
func (db *DB) CreateAPIKey(ctx context.Context, k *APIKey) error {
	switch {
	case k.Name == "":
		return fmt.Errorf("create api key: %w: empty name", ErrInvalid)
	case !isHex(k.Hash, 32):
		return fmt.Errorf("create api key: %w: hash must be a hex SHA-256", ErrInvalid)
	case !k.Role.Valid():
		return fmt.Errorf("create api key: %w: role %q (want admin or read_only)", ErrInvalid, k.Role)
	}
	if err := checkText("name", k.Name, 128); err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	if err := checkText("prefix", k.Prefix, 32); err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	k.ID = uuid.NewString()
	k.TMCreate = fromMillis(db.now().UnixMilli())
	k.TMLastUsed, k.TMRevoke = nil, nil
	_, err := db.w.ExecContext(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)`,
		k.ID, k.Name, k.Prefix, k.Hash, string(k.Role), k.TMCreate.UnixMilli())
	if err != nil {
		return fmt.Errorf("create api key %s: %w", k.Name, constraintErr(err))
	}
	return nil
}

// APIKeyByHash returns the key with the given hash, revoked or not, or an
// error wrapping ErrNotFound.
func (db *DB) APIKeyByHash(ctx context.Context, hash string) (*APIKey, error) {
	k, err := scanAPIKey(db.r.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE hash = ?`, hash))
	if err != nil {
		return nil, fmt.Errorf("api key by hash: %w", notFound(err))
	}
	return k, nil
}

// ListAPIKeys pages through keys by id, revoked ones included.
func (db *DB) ListAPIKeys(ctx context.Context, opt ListOptions) ([]APIKey, string, error) {
	size, after, err := keyPage(opt)
	if err != nil {
		return nil, "", fmt.Errorf("list api keys: %w", err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id > ? ORDER BY id LIMIT ?`, after, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	keys := make([]APIKey, 0, size)
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list api keys: %w", err)
		}
		keys = append(keys, *k)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list api keys: %w", err)
	}
	if len(keys) <= size {
		return keys, "", nil
	}
	keys = keys[:size]
	return keys, encodePageToken(0, keys[size-1].ID), nil
}

// CountActiveAPIKeys returns how many keys are not revoked.
func (db *DB) CountActiveAPIKeys(ctx context.Context) (int, error) {
	var n int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_keys WHERE tm_revoke IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count api keys: %w", err)
	}
	return n, nil
}

// RevokeAPIKey marks the key revoked from now on. ErrNotFound if there is
// no such key; revoking a revoked key keeps its first revocation time.
func (db *DB) RevokeAPIKey(ctx context.Context, id string) error {
	res, err := db.w.ExecContext(ctx, `UPDATE api_keys SET tm_revoke = coalesce(tm_revoke, ?) WHERE id = ?`,
		db.now().UTC().UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("revoke api key %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("revoke api key %s: %w", id, ErrNotFound)
	}
	return nil
}

// TouchAPIKey records that the key was used at t. Callers throttle it:
// a write per request would compete with call records for the writer.
func (db *DB) TouchAPIKey(ctx context.Context, id string, t time.Time) error {
	if _, err := db.w.ExecContext(ctx, `UPDATE api_keys SET tm_last_used = ? WHERE id = ?`, t.UTC().UnixMilli(), id); err != nil {
		return fmt.Errorf("touch api key %s: %w", id, err)
	}
	return nil
}

func scanAPIKey(s scanner) (*APIKey, error) {
	var k APIKey
	var role string
	var tmCreate int64
	var lastUsed, revoke sql.NullInt64
	if err := s.Scan(&k.ID, &k.Name, &k.Prefix, &k.Hash, &role, &tmCreate, &lastUsed, &revoke); err != nil {
		return nil, err
	}
	k.Role = APIKeyRole(role)
	k.TMCreate = fromMillis(tmCreate)
	k.TMLastUsed, k.TMRevoke = timePtr(lastUsed), timePtr(revoke)
	return &k, nil
}
