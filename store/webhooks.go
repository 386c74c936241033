package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Webhook is a target that receives events by HTTP POST.
type Webhook struct {
	ID  string `json:"id"` // UUID v4, set by CreateWebhook
	URL string `json:"url"`
	// EventTypes selects the events sent; empty means every event.
	EventTypes  []string `json:"event_types"`
	Description string   `json:"description"`
	// Secret signs deliveries. It is shown once, when the target is made.
	Secret   string    `json:"-"`
	TMCreate time.Time `json:"tm_create"`
}

const webhookColumns = `id, url, event_types, description, secret, tm_create`

// CreateWebhook stores w, setting its ID and TMCreate. What a URL or an
// event type may be is the API's business; the store only bounds sizes.
func (db *DB) CreateWebhook(ctx context.Context, w *Webhook) error {
	switch {
	case w.URL == "":
		return fmt.Errorf("create webhook: %w: empty url", ErrInvalid)
	case w.Secret == "":
		return fmt.Errorf("create webhook: %w: empty secret", ErrInvalid)
	}
	for what, s := range map[string]string{"url": w.URL, "description": w.Description, "secret": w.Secret} {
		if err := checkText(what, s, 2048); err != nil {
			return fmt.Errorf("create webhook: %w", err)
		}
	}
	types, err := jsonText(w.EventTypes, "[]")
	if err != nil {
		return fmt.Errorf("create webhook: %w: event_types: %v", ErrInvalid, err)
	}
	w.ID = uuid.NewString()
	w.TMCreate = fromMillis(db.now().UnixMilli())
	_, err = db.w.ExecContext(ctx, `INSERT INTO webhooks (`+webhookColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		w.ID, w.URL, types, w.Description, w.Secret, w.TMCreate.UnixMilli())
	if err != nil {
		return fmt.Errorf("create webhook: %w", constraintErr(err))
	}
	return nil
}

// GetWebhook returns the target, secret included, or an error wrapping
// ErrNotFound.
func (db *DB) GetWebhook(ctx context.Context, id string) (*Webhook, error) {
	w, err := scanWebhook(db.r.QueryRowContext(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = ?`, id))
	if err != nil {
		return nil, fmt.Errorf("get webhook %s: %w", id, notFound(err))
	}
	return w, nil
}

// ListWebhooks pages through targets by id.
func (db *DB) ListWebhooks(ctx context.Context, opt ListOptions) ([]Webhook, string, error) {
	size, after, err := keyPage(opt)
	if err != nil {
		return nil, "", fmt.Errorf("list webhooks: %w", err)
	}
	ws, err := db.queryWebhooks(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id > ? ORDER BY id LIMIT ?`, after, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("list webhooks: %w", err)
	}
	if len(ws) <= size {
		return ws, "", nil
	}
	ws = ws[:size]
	return ws, encodePageToken(0, ws[size-1].ID), nil
}

// AllWebhooks returns every target, secrets included, for the deliverer.
func (db *DB) AllWebhooks(ctx context.Context) ([]Webhook, error) {
	ws, err := db.queryWebhooks(ctx, `SELECT `+webhookColumns+` FROM webhooks ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("all webhooks: %w", err)
	}
	return ws, nil
}

func (db *DB) queryWebhooks(ctx context.Context, q string, args ...any) ([]Webhook, error) {
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ws := []Webhook{}
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		ws = append(ws, *w)
	}
	return ws, rows.Err()
}

// DeleteWebhook removes a target and its delivery log; ErrNotFound if there
// was none.
func (db *DB) DeleteWebhook(ctx context.Context, id string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delete webhook %s: %w", id, ErrNotFound)
	}
	return nil
}

func scanWebhook(s scanner) (*Webhook, error) {
	var w Webhook
	var types string
	var tmCreate int64
	if err := s.Scan(&w.ID, &w.URL, &types, &w.Description, &w.Secret, &tmCreate); err != nil {
		return nil, err
	}
	// Written only by jsonText; a hand-edited row reads as "every event"
	// rather than failing the list.
	_ = json.Unmarshal([]byte(types), &w.EventTypes)
	if w.EventTypes == nil {
		w.EventTypes = []string{}
	}
	w.TMCreate = fromMillis(tmCreate)
	return &w, nil
}

// DeliveryStatus is where a webhook delivery is.
type DeliveryStatus string

const (
	DeliveryPending   DeliveryStatus = "pending" // not yet attempted, or waiting to retry
	DeliveryDelivered DeliveryStatus = "delivered"
	DeliveryFailed    DeliveryStatus = "failed" // gave up
)

// Valid reports whether s is one of the known statuses.
func (s DeliveryStatus) Valid() bool {
	return s == DeliveryPending || s == DeliveryDelivered || s == DeliveryFailed
}

// WebhookDelivery is one event sent (or being sent) to one target.
type WebhookDelivery struct {
	ID           string         `json:"id"` // UUID v4, set by CreateWebhookDelivery
	WebhookID    string         `json:"webhook_id"`
	EventID      string         `json:"event_id"`
	EventType    string         `json:"event_type"`
	CallID       string         `json:"call_id"`
	Status       DeliveryStatus `json:"status"`
	Attempts     int            `json:"attempts"`
	ResponseCode int            `json:"response_code"` // of the last attempt; 0: no response
	LastError    string         `json:"last_error"`
	TMCreate     time.Time      `json:"tm_create"`
	TMUpdate     time.Time      `json:"tm_update"`
	// TMNextAttempt is when a pending delivery is retried.
	TMNextAttempt *time.Time `json:"tm_next_attempt"`
}

const deliveryColumns = `id, webhook_id, event_id, event_type, call_id, status, attempts, response_code,
	last_error, tm_create, tm_update, tm_next_attempt`

// maxDeliveryError bounds a stored error: it may quote a response.
const maxDeliveryError = 500

// CreateWebhookDelivery stores d, setting its ID and times. ErrInvalid if
// the target does not exist (any more).
func (db *DB) CreateWebhookDelivery(ctx context.Context, d *WebhookDelivery) error {
	if !d.Status.Valid() {
		return fmt.Errorf("create webhook delivery: %w: status %q", ErrInvalid, d.Status)
	}
	d.ID = uuid.NewString()
	now := fromMillis(db.now().UnixMilli())
	d.TMCreate, d.TMUpdate = now, now
	d.LastError = truncate(d.LastError, maxDeliveryError)
	_, err := db.w.ExecContext(ctx, `INSERT INTO webhook_deliveries (`+deliveryColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.WebhookID, d.EventID, d.EventType, d.CallID, string(d.Status), d.Attempts, d.ResponseCode,
		d.LastError, now.UnixMilli(), now.UnixMilli(), nullMillis(d.TMNextAttempt))
	if err != nil {
		return fmt.Errorf("create webhook delivery: %w", constraintErr(err))
	}
	return nil
}

// UpdateWebhookDelivery writes d's outcome fields (status, attempts,
// response code, error, next attempt) and sets TMUpdate. A delivery whose
// target was deleted meanwhile is gone: that is not an error.
func (db *DB) UpdateWebhookDelivery(ctx context.Context, d *WebhookDelivery) error {
	if !d.Status.Valid() {
		return fmt.Errorf("update webhook delivery %s: %w: status %q", d.ID, ErrInvalid, d.Status)
	}
	d.TMUpdate = fromMillis(db.now().UnixMilli())
	d.LastError = truncate(d.LastError, maxDeliveryError)
	if d.TMNextAttempt != nil {
		t := fromMillis(d.TMNextAttempt.UnixMilli())
		d.TMNextAttempt = &t
	}
	_, err := db.w.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, attempts = ?, response_code = ?,
		last_error = ?, tm_update = ?, tm_next_attempt = ? WHERE id = ?`,
		string(d.Status), d.Attempts, d.ResponseCode, d.LastError, d.TMUpdate.UnixMilli(), nullMillis(d.TMNextAttempt), d.ID)
	if err != nil {
		return fmt.Errorf("update webhook delivery %s: %w", d.ID, err)
	}
	return nil
}

// ListWebhookDeliveries pages through a target's deliveries, newest first.
func (db *DB) ListWebhookDeliveries(ctx context.Context, webhookID string, opt ListOptions) ([]WebhookDelivery, string, error) {
	size, err := pageSize(opt.PageSize)
	if err != nil {
		return nil, "", fmt.Errorf("list webhook deliveries: %w", err)
	}
	q := `SELECT ` + deliveryColumns + ` FROM webhook_deliveries WHERE webhook_id = ?`
	args := []any{webhookID}
	if opt.PageToken != "" {
		tm, id, err := decodePageToken(opt.PageToken)
		if err != nil {
			return nil, "", fmt.Errorf("list webhook deliveries: %w", err)
		}
		q += ` AND (tm_create, id) < (?, ?)`
		args = append(args, tm, id)
	}
	rows, err := db.r.QueryContext(ctx, q+` ORDER BY tm_create DESC, id DESC LIMIT ?`, append(args, size+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("list webhook deliveries: %w", err)
	}
	defer rows.Close()
	ds := make([]WebhookDelivery, 0, size)
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list webhook deliveries: %w", err)
		}
		ds = append(ds, *d)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list webhook deliveries: %w", err)
	}
	if len(ds) <= size {
		return ds, "", nil
	}
	ds = ds[:size]
	last := ds[size-1]
	return ds, encodePageToken(last.TMCreate.UnixMilli(), last.ID), nil
}

// FailPendingWebhookDeliveries marks every pending delivery failed with
// reason and returns how many it changed: at startup, for the deliveries a
// stopped process never finished.
func (db *DB) FailPendingWebhookDeliveries(ctx context.Context, reason string) (int, error) {
	res, err := db.w.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, last_error = ?, tm_update = ?,
		tm_next_attempt = NULL WHERE status = ?`,
		string(DeliveryFailed), truncate(reason, maxDeliveryError), db.now().UTC().UnixMilli(), string(DeliveryPending))
	if err != nil {
		return 0, fmt.Errorf("fail pending webhook deliveries: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// PruneWebhookDeliveries removes deliveries made before t and returns how
// many: the log is for looking back days, not forever.
func (db *DB) PruneWebhookDeliveries(ctx context.Context, before time.Time) (int, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE tm_create < ?`, before.UTC().UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune webhook deliveries: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func scanDelivery(s scanner) (*WebhookDelivery, error) {
	var d WebhookDelivery
	var status string
	var tmCreate, tmUpdate int64
	var next sql.NullInt64
	if err := s.Scan(&d.ID, &d.WebhookID, &d.EventID, &d.EventType, &d.CallID, &status, &d.Attempts,
		&d.ResponseCode, &d.LastError, &tmCreate, &tmUpdate, &next); err != nil {
		return nil, err
	}
	d.Status = DeliveryStatus(status)
	d.TMCreate, d.TMUpdate, d.TMNextAttempt = fromMillis(tmCreate), fromMillis(tmUpdate), timePtr(next)
	return &d, nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
