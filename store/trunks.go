package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// TrunkTransport is how SIP reaches a trunk's outbound host.
type TrunkTransport string

const (
	TransportUDP TrunkTransport = "udp"
	TransportTCP TrunkTransport = "tcp"
	TransportTLS TrunkTransport = "tls"
)

// Valid reports whether t is one of the known transports.
func (t TrunkTransport) Valid() bool {
	switch t {
	case TransportUDP, TransportTCP, TransportTLS:
		return true
	}
	return false
}

// NumberFormat is how a dialed number is written in the Request-URI and To
// of a call through a trunk.
type NumberFormat string

const (
	NumberE164       NumberFormat = "e164"        // +14155550100
	NumberE164NoPlus NumberFormat = "e164_noplus" // 14155550100
	NumberAsDialed   NumberFormat = "as_dialed"   // unchanged
)

// Valid reports whether f is one of the known formats.
func (f NumberFormat) Valid() bool {
	switch f {
	case NumberE164, NumberE164NoPlus, NumberAsDialed:
		return true
	}
	return false
}

// Header is one extra SIP header sent on a trunk's INVITEs.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Trunk is a carrier connection: the addresses (and/or credentials) its
// inbound calls come from, and how to send calls out through it.
//
// Secrets (Password, the inbound hashes) never appear in JSON, and the list
// API returns trunks with them cleared (see Redacted).
type Trunk struct {
	ID      string `json:"id"` // UUID v4, set by CreateTrunk
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	// Priority orders trunks for outbound failover: lower goes first.
	Priority int `json:"priority"`

	// Inbound: INVITEs from these IPs or CIDRs are this trunk's calls.
	InboundAddrs []string `json:"inbound_addrs"`
	// Inbound digest credentials, for a carrier that authenticates to us.
	InboundUsername  string `json:"inbound_username"`
	InboundRealm     string `json:"inbound_realm"`
	InboundHA1MD5    string `json:"-"`
	InboundHA1SHA256 string `json:"-"`

	// Outbound: where calls go and the credentials answered to its 401/407.
	Host        string         `json:"host"` // empty: the trunk takes no outbound calls
	Port        int            `json:"port"` // 0: 5060, or 5061 for TLS
	Transport   TrunkTransport `json:"transport"`
	Username    string         `json:"username"`
	Password    string         `json:"-"`
	HasPassword bool           `json:"has_password"` // set on reads
	// Register keeps a registration with the carrier; RegisterExpires is
	// the expiry asked for in seconds (0: the registrar's default).
	Register        bool `json:"register"`
	RegisterExpires int  `json:"register_expires"`
	// Caller ID: the user part and display name of From, and the
	// P-Asserted-Identity (a number or a SIP URI). Empty: the caller's own.
	CallerID   string       `json:"caller_id"`
	CallerName string       `json:"caller_name"`
	PAI        string       `json:"pai"`
	Format     NumberFormat `json:"number_format"`
	TechPrefix string       `json:"tech_prefix"` // prepended to the formatted number
	Headers    []Header     `json:"headers"`
	// MaxCalls caps concurrent outbound calls through the trunk; 0: no cap.
	MaxCalls int `json:"max_calls"`
	// AllowedPrefixes limits outbound destinations (E.164 digits, "+"
	// optional); empty allows any.
	AllowedPrefixes []string `json:"allowed_prefixes"`

	TMCreate time.Time `json:"tm_create"`
	TMUpdate time.Time `json:"tm_update"`
}

// Redacted returns a copy of t without secrets.
func (t Trunk) Redacted() Trunk {
	t.Password, t.InboundHA1MD5, t.InboundHA1SHA256 = "", "", ""
	return t
}

// SetInboundPassword sets the inbound credentials' hashes for password in
// realm. InboundUsername must be set.
func (t *Trunk) SetInboundPassword(realm, password string) error {
	if err := checkUsername(t.InboundUsername); err != nil {
		return fmt.Errorf("trunk %s: inbound %w", t.Name, err)
	}
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("trunk %s: inbound %w", t.Name, err)
	}
	if err := checkRealm(realm); err != nil {
		return fmt.Errorf("trunk %s: %w", t.Name, err)
	}
	t.InboundRealm = realm
	t.InboundHA1MD5, t.InboundHA1SHA256 = HA1(t.InboundUsername, realm, password)
	return nil
}

// OutboundPort is the port calls go to: Port, or the transport's default.
func (t *Trunk) OutboundPort() int {
	switch {
	case t.Port != 0:
		return t.Port
	case t.Transport == TransportTLS:
		return 5061
	}
	return 5060
}

const trunkColumns = `id, name, enabled, priority, inbound_addrs, inbound_username, inbound_realm, inbound_ha1_md5,
	inbound_ha1_sha256, host, port, transport, username, password, register, register_expires, caller_id,
	caller_name, pai, number_format, tech_prefix, headers, max_calls, allowed_prefixes, tm_create, tm_update`

// CreateTrunk inserts t, setting t.ID (a UUID v4) if empty. ErrConflict if
// the name or the inbound username is taken.
func (db *DB) CreateTrunk(ctx context.Context, t *Trunk) error {
	if t.ID == "" {
		t.ID = uuid.NewString()
	}
	if t.Transport == "" {
		t.Transport = TransportUDP
	}
	if t.Format == "" {
		t.Format = NumberE164
	}
	a, err := t.args()
	if err != nil {
		return fmt.Errorf("create trunk %q: %w", t.Name, err)
	}
	now := fromMillis(db.now().UnixMilli())
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create trunk %q: %w", t.Name, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if t.InboundUsername != "" {
		if err := usernameFree(ctx, tx, t.InboundUsername, "", t.ID); err != nil {
			return fmt.Errorf("create trunk %q: %w", t.Name, err)
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO trunks (`+trunkColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		append([]any{t.ID}, append(a, now.UnixMilli(), now.UnixMilli())...)...)
	if err != nil {
		return fmt.Errorf("create trunk %q: %w", t.Name, constraintErr(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create trunk %q: %w", t.Name, err)
	}
	t.TMCreate, t.TMUpdate = now, now
	t.HasPassword = t.Password != ""
	return nil
}

// UpdateTrunk writes every field of t except ID and TMCreate to the trunk
// with t.ID. An empty Password or inbound hash keeps the stored one, so a
// redacted copy can be edited and written back.
func (db *DB) UpdateTrunk(ctx context.Context, t *Trunk) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update trunk %s: %w", t.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	old, err := scanTrunk(tx.QueryRowContext(ctx, `SELECT `+trunkColumns+` FROM trunks WHERE id = ?`, t.ID))
	if err != nil {
		return fmt.Errorf("update trunk %s: %w", t.ID, notFound(err))
	}
	if t.Password == "" {
		t.Password = old.Password
	}
	if t.InboundHA1MD5 == "" && t.InboundUsername == old.InboundUsername {
		t.InboundRealm, t.InboundHA1MD5, t.InboundHA1SHA256 = old.InboundRealm, old.InboundHA1MD5, old.InboundHA1SHA256
	}
	a, err := t.args()
	if err != nil {
		return fmt.Errorf("update trunk %s: %w", t.ID, err)
	}
	if t.InboundUsername != "" {
		if err := usernameFree(ctx, tx, t.InboundUsername, "", t.ID); err != nil {
			return fmt.Errorf("update trunk %s: %w", t.ID, err)
		}
	}
	now := fromMillis(db.now().UnixMilli())
	_, err = tx.ExecContext(ctx, `UPDATE trunks SET name = ?, enabled = ?, priority = ?, inbound_addrs = ?,
		inbound_username = ?, inbound_realm = ?, inbound_ha1_md5 = ?, inbound_ha1_sha256 = ?, host = ?, port = ?,
		transport = ?, username = ?, password = ?, register = ?, register_expires = ?, caller_id = ?,
		caller_name = ?, pai = ?, number_format = ?, tech_prefix = ?, headers = ?, max_calls = ?,
		allowed_prefixes = ?, tm_update = ? WHERE id = ?`,
		append(a, now.UnixMilli(), t.ID)...)
	if err != nil {
		return fmt.Errorf("update trunk %s: %w", t.ID, constraintErr(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update trunk %s: %w", t.ID, err)
	}
	t.TMCreate, t.TMUpdate = old.TMCreate, now
	t.HasPassword = t.Password != ""
	return nil
}

// GetTrunk returns the trunk with id, secrets included, or an error
// wrapping ErrNotFound.
func (db *DB) GetTrunk(ctx context.Context, id string) (*Trunk, error) {
	t, err := scanTrunk(db.r.QueryRowContext(ctx, `SELECT `+trunkColumns+` FROM trunks WHERE id = ?`, id))
	if err != nil {
		return nil, fmt.Errorf("get trunk %s: %w", id, notFound(err))
	}
	return t, nil
}

// TrunkByName returns the trunk called name, secrets included, or an error
// wrapping ErrNotFound.
func (db *DB) TrunkByName(ctx context.Context, name string) (*Trunk, error) {
	t, err := scanTrunk(db.r.QueryRowContext(ctx, `SELECT `+trunkColumns+` FROM trunks WHERE name = ?`, name))
	if err != nil {
		return nil, fmt.Errorf("trunk %q: %w", name, notFound(err))
	}
	return t, nil
}

// DeleteTrunk removes a trunk; numbers it delivered keep their targets and
// lose the trunk. ErrNotFound if there was none.
func (db *DB) DeleteTrunk(ctx context.Context, id string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM trunks WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete trunk %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delete trunk %s: %w", id, ErrNotFound)
	}
	return nil
}

// ListTrunks pages through trunks by name, redacted.
func (db *DB) ListTrunks(ctx context.Context, opt ListOptions) ([]Trunk, string, error) {
	size, after, err := keyPage(opt)
	if err != nil {
		return nil, "", fmt.Errorf("list trunks: %w", err)
	}
	ts, err := db.queryTrunks(ctx, `WHERE name > ? ORDER BY name LIMIT ?`, after, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("list trunks: %w", err)
	}
	for i := range ts {
		ts[i] = ts[i].Redacted()
	}
	if len(ts) <= size {
		return ts, "", nil
	}
	ts = ts[:size]
	return ts, encodePageToken(0, ts[size-1].Name), nil
}

// EnabledTrunks returns every enabled trunk, secrets included, by priority
// then name: the order outbound failover tries them in. For the SIP layer
// only; never hand its result to an API.
func (db *DB) EnabledTrunks(ctx context.Context) ([]Trunk, error) {
	ts, err := db.queryTrunks(ctx, `WHERE enabled = 1 ORDER BY priority, name`)
	if err != nil {
		return nil, fmt.Errorf("enabled trunks: %w", err)
	}
	return ts, nil
}

func (db *DB) queryTrunks(ctx context.Context, where string, args ...any) ([]Trunk, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+trunkColumns+` FROM trunks `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Trunk{}
	for rows.Next() {
		t, err := scanTrunk(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, rows.Err()
}

func scanTrunk(s scanner) (*Trunk, error) {
	var t Trunk
	var inbound, headers, prefixes, transport, format string
	var tmCreate, tmUpdate int64
	if err := s.Scan(&t.ID, &t.Name, &t.Enabled, &t.Priority, &inbound, &t.InboundUsername, &t.InboundRealm,
		&t.InboundHA1MD5, &t.InboundHA1SHA256, &t.Host, &t.Port, &transport, &t.Username, &t.Password,
		&t.Register, &t.RegisterExpires, &t.CallerID, &t.CallerName, &t.PAI, &format, &t.TechPrefix,
		&headers, &t.MaxCalls, &prefixes, &tmCreate, &tmUpdate); err != nil {
		return nil, err
	}
	// JSON columns are only written by args; a row edited by hand into
	// something else reads as empty rather than failing every read.
	_ = json.Unmarshal([]byte(inbound), &t.InboundAddrs)
	_ = json.Unmarshal([]byte(headers), &t.Headers)
	_ = json.Unmarshal([]byte(prefixes), &t.AllowedPrefixes)
	if t.InboundAddrs == nil {
		t.InboundAddrs = []string{}
	}
	if t.Headers == nil {
		t.Headers = []Header{}
	}
	if t.AllowedPrefixes == nil {
		t.AllowedPrefixes = []string{}
	}
	t.Transport, t.Format = TrunkTransport(transport), NumberFormat(format)
	t.HasPassword = t.Password != ""
	t.TMCreate, t.TMUpdate = fromMillis(tmCreate), fromMillis(tmUpdate)
	return &t, nil
}

var (
	trunkNameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	hostRE        = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)
	headerNameRE  = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	callerIDRE    = regexp.MustCompile(`^\+?[0-9A-Za-z._-]{1,32}$`)
	techPrefixRE  = regexp.MustCompile(`^[0-9*#]{0,16}$`)
	numberDigitRE = regexp.MustCompile(`^\+?[0-9]{1,16}$`)
)

// reservedHeaders are built by the SIP layer; a trunk may not set them.
var reservedHeaders = map[string]bool{
	"via": true, "from": true, "to": true, "call-id": true, "cseq": true, "contact": true, "max-forwards": true,
	"content-length": true, "content-type": true, "route": true, "record-route": true, "authorization": true,
	"proxy-authorization": true, "p-asserted-identity": true, "expires": true, "l": true, "f": true, "t": true,
	"i": true, "m": true, "v": true, "c": true,
}

// args validates t, canonicalises its addresses and returns the column
// values after id, up to (not including) the times.
func (t *Trunk) args() ([]any, error) {
	if !trunkNameRE.MatchString(t.Name) {
		return nil, fmt.Errorf("%w: name %q must be 1 to 64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)", ErrInvalid, t.Name)
	}
	addrs := make([]string, 0, len(t.InboundAddrs))
	for _, s := range t.InboundAddrs {
		canon, err := canonicalAddr(s)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, canon)
	}
	t.InboundAddrs = addrs
	if t.InboundUsername != "" {
		if err := checkUsername(t.InboundUsername); err != nil {
			return nil, fmt.Errorf("inbound %w", err)
		}
		if t.InboundHA1MD5 == "" {
			return nil, fmt.Errorf("%w: inbound user name without a password", ErrInvalid)
		}
	} else {
		t.InboundRealm, t.InboundHA1MD5, t.InboundHA1SHA256 = "", "", ""
	}
	if t.Host != "" {
		if _, err := netip.ParseAddr(strings.Trim(t.Host, "[]")); err != nil && !hostRE.MatchString(t.Host) {
			return nil, fmt.Errorf("%w: host %q is neither an IP address nor a host name", ErrInvalid, t.Host)
		}
	}
	if t.Port < 0 || t.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d", ErrInvalid, t.Port)
	}
	if !t.Transport.Valid() {
		return nil, fmt.Errorf("%w: transport %q (want udp, tcp or tls)", ErrInvalid, t.Transport)
	}
	if t.Username != "" {
		if err := checkUsername(t.Username); err != nil {
			return nil, err
		}
	}
	if err := checkText("password", t.Password, 128); err != nil {
		return nil, err
	}
	if t.Register && (t.Host == "" || t.Username == "" || t.Password == "") {
		return nil, fmt.Errorf("%w: registering needs a host, a user name and a password", ErrInvalid)
	}
	if t.RegisterExpires < 0 || t.RegisterExpires > 86400 {
		return nil, fmt.Errorf("%w: register expiry %d s (want 0 to 86400)", ErrInvalid, t.RegisterExpires)
	}
	if t.CallerID != "" && !callerIDRE.MatchString(t.CallerID) {
		return nil, fmt.Errorf("%w: caller ID %q", ErrInvalid, t.CallerID)
	}
	if err := checkText("caller name", t.CallerName, 64); err != nil {
		return nil, err
	}
	if strings.ContainsAny(t.CallerName, `"\`) {
		return nil, fmt.Errorf("%w: caller name may not contain quotes or backslashes", ErrInvalid)
	}
	if err := checkText("P-Asserted-Identity", t.PAI, 256); err != nil {
		return nil, err
	}
	if strings.ContainsAny(t.PAI, "<>\" ") {
		return nil, fmt.Errorf("%w: P-Asserted-Identity %q must be a number or a bare SIP URI", ErrInvalid, t.PAI)
	}
	if !t.Format.Valid() {
		return nil, fmt.Errorf("%w: number format %q (want e164, e164_noplus or as_dialed)", ErrInvalid, t.Format)
	}
	if !techPrefixRE.MatchString(t.TechPrefix) {
		return nil, fmt.Errorf("%w: tech prefix %q must be up to 16 of 0-9 * #", ErrInvalid, t.TechPrefix)
	}
	for _, h := range t.Headers {
		if !headerNameRE.MatchString(h.Name) || reservedHeaders[strings.ToLower(h.Name)] {
			return nil, fmt.Errorf("%w: header name %q", ErrInvalid, h.Name)
		}
		if err := checkText("header "+h.Name, h.Value, 256); err != nil {
			return nil, err
		}
	}
	if t.MaxCalls < 0 {
		return nil, fmt.Errorf("%w: max calls %d", ErrInvalid, t.MaxCalls)
	}
	for _, p := range t.AllowedPrefixes {
		if !numberDigitRE.MatchString(p) {
			return nil, fmt.Errorf("%w: allowed prefix %q must be digits, optionally after +", ErrInvalid, p)
		}
	}
	if t.Headers == nil {
		t.Headers = []Header{}
	}
	if t.AllowedPrefixes == nil {
		t.AllowedPrefixes = []string{}
	}
	inbound, _ := json.Marshal(t.InboundAddrs)
	headers, _ := json.Marshal(t.Headers)
	prefixes, _ := json.Marshal(t.AllowedPrefixes)
	return []any{t.Name, t.Enabled, t.Priority, string(inbound), t.InboundUsername, t.InboundRealm, t.InboundHA1MD5,
		t.InboundHA1SHA256, t.Host, t.Port, string(t.Transport), t.Username, t.Password, t.Register,
		t.RegisterExpires, t.CallerID, t.CallerName, t.PAI, string(t.Format), t.TechPrefix, string(headers),
		t.MaxCalls, string(prefixes)}, nil
}

// canonicalAddr accepts an IP or a CIDR and returns it in canonical form
// (a bare IP stays a bare IP; a prefix is masked).
func canonicalAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().String(), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return "", fmt.Errorf("%w: inbound address %q is neither an IP nor a CIDR", ErrInvalid, s)
	}
	return p.Masked().String(), nil
}
