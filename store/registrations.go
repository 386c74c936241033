package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Registration is one binding of an extension to a contact: where to send
// its calls until ExpiresAt.
type Registration struct {
	ID         int64     `json:"id"`
	Extension  string    `json:"extension"`   // extension number
	Contact    string    `json:"contact"`     // Contact URI as registered
	SourceAddr string    `json:"source_addr"` // "ip:port" the REGISTER came from
	Transport  string    `json:"transport"`   // "udp", "tcp" or "tls"
	ExpiresAt  time.Time `json:"expires_at"`
	CallID     string    `json:"call_id"`
	CSeq       uint32    `json:"cseq"`
	UserAgent  string    `json:"user_agent"`
	TMCreate   time.Time `json:"tm_create"`
	TMUpdate   time.Time `json:"tm_update"`
}

const registrationColumns = `id, extension, contact, source_addr, transport, expires_at, call_id, cseq, user_agent, tm_create, tm_update`

// RegistrationChange is what a registrar decided for one extension: the
// bindings to write (matched to existing ones by contact) and the contacts
// to remove.
type RegistrationChange struct {
	Put       []Registration
	Remove    []string // contacts
	RemoveAll bool     // "Contact: *"
}

// UpdateRegistrations runs decide on the extension's unexpired bindings and
// applies its change, in one transaction, so two REGISTERs for the same
// extension cannot interleave. It returns the bindings in force afterwards.
// Expired bindings of the extension are dropped on the way. An error from
// decide aborts the change and is returned as is.
func (db *DB) UpdateRegistrations(ctx context.Context, extension string,
	decide func(current []Registration) (RegistrationChange, error)) ([]Registration, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("update registrations %s: %w", extension, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	now := db.now().UTC()
	nowMS := now.UnixMilli()
	if _, err := tx.ExecContext(ctx, `DELETE FROM registrations WHERE extension = ? AND expires_at <= ?`, extension, nowMS); err != nil {
		return nil, fmt.Errorf("update registrations %s: %w", extension, err)
	}
	current, err := queryRegistrations(ctx, tx, `WHERE extension = ? ORDER BY id`, extension)
	if err != nil {
		return nil, fmt.Errorf("update registrations %s: %w", extension, err)
	}
	change, err := decide(current)
	if err != nil {
		return nil, err
	}
	if change.RemoveAll {
		if _, err := tx.ExecContext(ctx, `DELETE FROM registrations WHERE extension = ?`, extension); err != nil {
			return nil, fmt.Errorf("update registrations %s: %w", extension, err)
		}
	}
	for _, c := range change.Remove {
		if _, err := tx.ExecContext(ctx, `DELETE FROM registrations WHERE extension = ? AND contact = ?`, extension, c); err != nil {
			return nil, fmt.Errorf("update registrations %s: %w", extension, err)
		}
	}
	for i := range change.Put {
		r := &change.Put[i]
		r.Extension = extension
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("update registrations %s: %w", extension, err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO registrations
			(extension, contact, source_addr, transport, expires_at, call_id, cseq, user_agent, tm_create, tm_update)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (extension, contact) DO UPDATE SET source_addr = excluded.source_addr,
				transport = excluded.transport, expires_at = excluded.expires_at, call_id = excluded.call_id,
				cseq = excluded.cseq, user_agent = excluded.user_agent, tm_update = excluded.tm_update`,
			extension, r.Contact, r.SourceAddr, r.Transport, r.ExpiresAt.UnixMilli(), r.CallID, int64(r.CSeq),
			r.UserAgent, nowMS, nowMS)
		if err != nil {
			return nil, fmt.Errorf("update registrations %s: %w", extension, constraintErr(err))
		}
	}
	after, err := queryRegistrations(ctx, tx, `WHERE extension = ? AND expires_at > ? ORDER BY id`, extension, nowMS)
	if err != nil {
		return nil, fmt.Errorf("update registrations %s: %w", extension, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("update registrations %s: %w", extension, err)
	}
	return after, nil
}

// ListRegistrations returns the extension's unexpired bindings, oldest first.
func (db *DB) ListRegistrations(ctx context.Context, extension string) ([]Registration, error) {
	rs, err := queryRegistrations(ctx, db.r, `WHERE extension = ? AND expires_at > ? ORDER BY id`, extension, db.now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("list registrations %s: %w", extension, err)
	}
	return rs, nil
}

// ListAllRegistrations returns every unexpired binding, by extension.
func (db *DB) ListAllRegistrations(ctx context.Context) ([]Registration, error) {
	rs, err := queryRegistrations(ctx, db.r, `WHERE expires_at > ? ORDER BY extension, id`, db.now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("list registrations: %w", err)
	}
	return rs, nil
}

// PurgeExpiredRegistrations deletes bindings past their expiry and returns
// how many it deleted.
func (db *DB) PurgeExpiredRegistrations(ctx context.Context) (int, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM registrations WHERE expires_at <= ?`, db.now().UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("purge registrations: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purge registrations: %w", err)
	}
	return int(n), nil
}

// querier is what *sql.DB and *sql.Tx share for reads.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryRegistrations(ctx context.Context, q querier, where string, args ...any) ([]Registration, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+registrationColumns+` FROM registrations `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Registration{}
	for rows.Next() {
		var r Registration
		var expires, cseq, tmCreate, tmUpdate int64
		if err := rows.Scan(&r.ID, &r.Extension, &r.Contact, &r.SourceAddr, &r.Transport, &expires, &r.CallID,
			&cseq, &r.UserAgent, &tmCreate, &tmUpdate); err != nil {
			return nil, err
		}
		r.ExpiresAt, r.TMCreate, r.TMUpdate = fromMillis(expires), fromMillis(tmCreate), fromMillis(tmUpdate)
		r.CSeq = uint32(max(min(cseq, 1<<32-1), 0)) // written from a uint32
		out = append(out, r)
	}
	return out, rows.Err()
}

func (r *Registration) validate() error {
	switch r.Transport {
	case "udp", "tcp", "tls":
	default:
		return fmt.Errorf("%w: transport %q", ErrInvalid, r.Transport)
	}
	if r.Contact == "" || len(r.Contact) > 512 {
		return fmt.Errorf("%w: contact must be 1 to 512 bytes", ErrInvalid)
	}
	if err := checkText("contact", r.Contact, 512); err != nil {
		return err
	}
	if err := checkText("user agent", r.UserAgent, 256); err != nil {
		return err
	}
	if r.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: no expiry", ErrInvalid)
	}
	return nil
}
