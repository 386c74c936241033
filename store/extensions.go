package store

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrConflict is returned (wrapped) when a create would duplicate a unique
// key (an extension number or username, a trunk name). The API maps it to 409.
var ErrConflict = errors.New("already exists")

// MinPasswordLength is the shortest password accepted for digest credentials:
// a SIP port on the internet is probed with password lists within hours.
const MinPasswordLength = 8

// Extension is a phone account: it registers and places calls with digest
// credentials. Only the HA1 hashes for Realm are kept, never the password.
type Extension struct {
	Number      string `json:"number"`   // dialable, e.g. "1001"
	Username    string `json:"username"` // digest user name; defaults to Number
	DisplayName string `json:"display_name"`
	Realm       string `json:"realm"` // the realm the hashes were made for
	HA1MD5      string `json:"-"`     // hex MD5(username:realm:password)
	HA1SHA256   string `json:"-"`     // hex SHA-256(username:realm:password)
	// CallOut allows calls from this extension to outside numbers through
	// trunks.
	CallOut  bool      `json:"call_out"`
	Enabled  bool      `json:"enabled"`
	TMCreate time.Time `json:"tm_create"`
	TMUpdate time.Time `json:"tm_update"`
}

// HA1 returns the digest HA1 hashes (hex MD5 and SHA-256 of
// "username:realm:password") that RFC 3261 and RFC 8760 digest
// authentication is checked against.
func HA1(username, realm, password string) (md5Hex, sha256Hex string) {
	s := username + ":" + realm + ":" + password
	m := md5.Sum([]byte(s))
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(m[:]), hex.EncodeToString(h[:])
}

// SetPassword replaces the extension's hashes with ones for password in
// realm. Username must be set first: it is part of the hash.
func (e *Extension) SetPassword(realm, password string) error {
	if e.Username == "" {
		e.Username = e.Number
	}
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("extension %s: %w", e.Number, err)
	}
	if err := checkRealm(realm); err != nil {
		return fmt.Errorf("extension %s: %w", e.Number, err)
	}
	e.Realm = realm
	e.HA1MD5, e.HA1SHA256 = HA1(e.Username, realm, password)
	return nil
}

const extensionColumns = `number, username, display_name, realm, ha1_md5, ha1_sha256, call_out, enabled, tm_create, tm_update`

// CreateExtension inserts e. Username defaults to Number; SetPassword must
// have been called. ErrConflict if the number or username is taken (by an
// extension or a trunk's inbound username).
func (db *DB) CreateExtension(ctx context.Context, e *Extension) error {
	if e.Username == "" {
		e.Username = e.Number
	}
	if err := e.validate(); err != nil {
		return fmt.Errorf("create extension %s: %w", e.Number, err)
	}
	now := fromMillis(db.now().UnixMilli())
	e.TMCreate, e.TMUpdate = now, now
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create extension %s: %w", e.Number, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if err := usernameFree(ctx, tx, e.Username, "", ""); err != nil {
		return fmt.Errorf("create extension %s: %w", e.Number, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO extensions (`+extensionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Number, e.Username, e.DisplayName, e.Realm, e.HA1MD5, e.HA1SHA256, e.CallOut, e.Enabled,
		now.UnixMilli(), now.UnixMilli())
	if err != nil {
		return fmt.Errorf("create extension %s: %w", e.Number, constraintErr(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create extension %s: %w", e.Number, err)
	}
	return nil
}

// UpdateExtension writes every field of e except Number and TMCreate to the
// extension with e.Number.
func (db *DB) UpdateExtension(ctx context.Context, e *Extension) error {
	if err := e.validate(); err != nil {
		return fmt.Errorf("update extension %s: %w", e.Number, err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update extension %s: %w", e.Number, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if err := usernameFree(ctx, tx, e.Username, e.Number, ""); err != nil {
		return fmt.Errorf("update extension %s: %w", e.Number, err)
	}
	now := fromMillis(db.now().UnixMilli())
	res, err := tx.ExecContext(ctx, `UPDATE extensions SET username = ?, display_name = ?, realm = ?,
		ha1_md5 = ?, ha1_sha256 = ?, call_out = ?, enabled = ?, tm_update = ? WHERE number = ?`,
		e.Username, e.DisplayName, e.Realm, e.HA1MD5, e.HA1SHA256, e.CallOut, e.Enabled, now.UnixMilli(), e.Number)
	if err != nil {
		return fmt.Errorf("update extension %s: %w", e.Number, constraintErr(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("update extension %s: %w", e.Number, ErrNotFound)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update extension %s: %w", e.Number, err)
	}
	e.TMUpdate = now
	return nil
}

// GetExtension returns the extension with number, or an error wrapping
// ErrNotFound.
func (db *DB) GetExtension(ctx context.Context, number string) (*Extension, error) {
	row := db.r.QueryRowContext(ctx, `SELECT `+extensionColumns+` FROM extensions WHERE number = ?`, number)
	e, err := scanExtension(row)
	if err != nil {
		return nil, fmt.Errorf("get extension %s: %w", number, notFound(err))
	}
	return e, nil
}

// ExtensionByUsername returns the extension whose digest user name is
// username, or an error wrapping ErrNotFound.
func (db *DB) ExtensionByUsername(ctx context.Context, username string) (*Extension, error) {
	row := db.r.QueryRowContext(ctx, `SELECT `+extensionColumns+` FROM extensions WHERE username = ?`, username)
	e, err := scanExtension(row)
	if err != nil {
		return nil, fmt.Errorf("extension by username %q: %w", username, notFound(err))
	}
	return e, nil
}

// DeleteExtension removes an extension and its registrations; ErrNotFound
// if there was none.
func (db *DB) DeleteExtension(ctx context.Context, number string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM extensions WHERE number = ?`, number)
	if err != nil {
		return fmt.Errorf("delete extension %s: %w", number, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delete extension %s: %w", number, ErrNotFound)
	}
	return nil
}

// ListExtensions pages through extensions by number.
func (db *DB) ListExtensions(ctx context.Context, opt ListOptions) ([]Extension, string, error) {
	size, after, err := keyPage(opt)
	if err != nil {
		return nil, "", fmt.Errorf("list extensions: %w", err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+extensionColumns+` FROM extensions WHERE number > ? ORDER BY number LIMIT ?`, after, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("list extensions: %w", err)
	}
	defer rows.Close()
	out := make([]Extension, 0, size)
	for rows.Next() {
		e, err := scanExtension(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list extensions: %w", err)
		}
		out = append(out, *e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list extensions: %w", err)
	}
	if len(out) <= size {
		return out, "", nil
	}
	out = out[:size]
	return out, encodePageToken(0, out[size-1].Number), nil
}

func scanExtension(s scanner) (*Extension, error) {
	var e Extension
	var tmCreate, tmUpdate int64
	if err := s.Scan(&e.Number, &e.Username, &e.DisplayName, &e.Realm, &e.HA1MD5, &e.HA1SHA256,
		&e.CallOut, &e.Enabled, &tmCreate, &tmUpdate); err != nil {
		return nil, err
	}
	e.TMCreate, e.TMUpdate = fromMillis(tmCreate), fromMillis(tmUpdate)
	return &e, nil
}

func (e *Extension) validate() error {
	if err := checkExtensionNumber(e.Number); err != nil {
		return err
	}
	if err := checkUsername(e.Username); err != nil {
		return err
	}
	if err := checkText("display name", e.DisplayName, 64); err != nil {
		return err
	}
	if e.HA1MD5 == "" || e.HA1SHA256 == "" || e.Realm == "" {
		return fmt.Errorf("%w: no password set", ErrInvalid)
	}
	if !isHex(e.HA1MD5, md5.Size) || !isHex(e.HA1SHA256, sha256.Size) {
		return fmt.Errorf("%w: malformed password hash", ErrInvalid)
	}
	return nil
}

// usernameFree fails with ErrConflict if username is a digest user name of
// an extension other than exceptExt or of a trunk other than exceptTrunk:
// one name must lead to one set of credentials.
func usernameFree(ctx context.Context, tx *sql.Tx, username, exceptExt, exceptTrunk string) error {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM extensions WHERE username = ? AND number <> ?) +
		(SELECT COUNT(*) FROM trunks WHERE inbound_username = ? AND id <> ?)`,
		username, exceptExt, username, exceptTrunk).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w: user name %q is taken", ErrConflict, username)
	}
	return nil
}

// keyPage reads the page size and the key to resume after from opt, for
// lists ordered by a text key.
func keyPage(opt ListOptions) (size int, after string, err error) {
	if size, err = pageSize(opt.PageSize); err != nil {
		return 0, "", err
	}
	if opt.PageToken != "" {
		if _, after, err = decodePageToken(opt.PageToken); err != nil {
			return 0, "", err
		}
	}
	return size, after, nil
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// constraintErr turns a UNIQUE or PRIMARY KEY violation into ErrConflict and
// a foreign key violation into ErrInvalid.
func constraintErr(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("%w: %v", ErrConflict, err)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return err
}

var (
	extensionNumberRE = regexp.MustCompile(`^[0-9]{1,20}$`)
	// RFC 3261 "unreserved" and a few user-safe marks: no '@', ':', quotes,
	// separators or whitespace, so the name is safe in a URI and a header.
	usernameRE = regexp.MustCompile(`^[A-Za-z0-9._~+-]{1,64}$`)
	realmRE    = regexp.MustCompile(`^[A-Za-z0-9._~+-]{1,128}$`)
)

func checkExtensionNumber(s string) error {
	if !extensionNumberRE.MatchString(s) {
		return fmt.Errorf("%w: extension number %q must be 1 to 20 digits", ErrInvalid, s)
	}
	return nil
}

func checkUsername(s string) error {
	if !usernameRE.MatchString(s) {
		return fmt.Errorf("%w: user name %q must be 1 to 64 of A-Z a-z 0-9 . _ ~ + -", ErrInvalid, s)
	}
	return nil
}

func checkRealm(s string) error {
	if !realmRE.MatchString(s) {
		return fmt.Errorf("%w: realm %q must be 1 to 128 of A-Z a-z 0-9 . _ ~ + -", ErrInvalid, s)
	}
	return nil
}

func checkPassword(p string) error {
	if len(p) < MinPasswordLength {
		return fmt.Errorf("%w: password shorter than %d characters", ErrInvalid, MinPasswordLength)
	}
	if len(p) > 128 {
		return fmt.Errorf("%w: password longer than 128 characters", ErrInvalid)
	}
	if strings.IndexFunc(p, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: password contains control characters", ErrInvalid)
	}
	return nil
}

// checkText refuses control characters (they would break a SIP header) and
// overlong values.
func checkText(what, s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, what, maxLen)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: %s contains control characters", ErrInvalid, what)
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
