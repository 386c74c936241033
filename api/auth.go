package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

// Key and token prefixes make a leaked secret recognisable (to people and
// to secret scanners) and say what it is.
const (
	KeyPrefix     = "vbk_"  // API keys
	sessionPrefix = "vbs_"  // websocket session tokens
	secretPrefix  = "vbws_" // webhook signing secrets

	roleAdmin = store.RoleAdmin

	// MinKeyLength bounds keys given from outside (VOXBRIDGE_API_KEY).
	MinKeyLength = 20
	// shownPrefix is how many characters of a key lists show.
	shownPrefix = len(KeyPrefix) + 6
	// touchEvery throttles the key's last-used time: it is a write.
	touchEvery = time.Minute
	// maxSessions bounds session tokens waiting to be used.
	maxSessions = 10000
)

// randomToken returns prefix followed by 32 random bytes in base64url.
func randomToken(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails, see crypto/rand
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// HashKey is what the store keeps of a key: its hex SHA-256. A key is 32
// random bytes, so a slow password hash would add nothing.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// NewKey makes a new API key: the key, to show once, and the record to
// store (ID and times are set by the store).
func NewKey(name string, role store.APIKeyRole) (string, *store.APIKey) {
	key := randomToken(KeyPrefix)
	return key, KeyRecord(key, name, role)
}

// KeyRecord is the record of a key: its hash and, for a key we generated,
// its first characters (6 of 43 random ones). A key chosen by a person
// (VOXBRIDGE_API_KEY) may be short enough that any part of it matters, so
// none of it is kept.
func KeyRecord(key, name string, role store.APIKeyRole) *store.APIKey {
	k := &store.APIKey{Name: name, Hash: HashKey(key), Role: role}
	if strings.HasPrefix(key, KeyPrefix) && len(key) >= 40 {
		k.Prefix = key[:shownPrefix]
	}
	return k
}

// ErrKeyRevoked is returned (wrapped) by SeedKey for a key that exists
// and was revoked.
var ErrKeyRevoked = errors.New("API key revoked")

// SeedKey stores key (hashed) under name unless a key with the same hash
// exists, so starting twice with the same VOXBRIDGE_API_KEY is harmless.
// A revoked key stays revoked: the environment does not undo a revocation.
// It reports whether it stored a new key.
func SeedKey(ctx context.Context, db *store.DB, key, name string) (bool, error) {
	if len(key) < MinKeyLength {
		return false, fmt.Errorf("API key: shorter than %d characters", MinKeyLength)
	}
	k, err := db.APIKeyByHash(ctx, HashKey(key))
	switch {
	case err == nil && k.Revoked():
		return false, fmt.Errorf("%w: %s (%s…)", ErrKeyRevoked, k.ID, k.Prefix)
	case err == nil:
		return false, nil
	case !errors.Is(err, store.ErrNotFound):
		return false, err
	}
	err = db.CreateAPIKey(ctx, KeyRecord(key, name, store.RoleAdmin))
	if errors.Is(err, store.ErrConflict) {
		return false, nil // another process seeded it meanwhile
	}
	return err == nil, err
}

type ctxKey struct{}

func withKey(ctx context.Context, k *store.APIKey) context.Context {
	return context.WithValue(ctx, ctxKey{}, k)
}

// authenticator checks keys and session tokens and rate-limits per key.
type authenticator struct {
	db      *store.DB
	now     func() time.Time
	log     *slog.Logger
	limiter *limiter
	ttl     time.Duration

	mu       sync.Mutex
	sessions map[string]session // by token hash
	touched  map[string]time.Time
}

type session struct {
	keyHash string
	expires time.Time
}

func newAuthenticator(db *store.DB, now func() time.Time, rate float64, burst int, ttl time.Duration, log *slog.Logger) *authenticator {
	return &authenticator{db: db, now: now, log: log, ttl: ttl,
		limiter:  &limiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}},
		sessions: map[string]session{}, touched: map[string]time.Time{}}
}

func unauthenticated(msg string) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: "unauthenticated", msg: msg}
}

// authenticate finds the request's key: "Authorization: Bearer <key>",
// or, where queryAuth allows, ?api_key=<key> or ?session_token=<token>.
func (a *authenticator) authenticate(r *http.Request, queryAuth bool) (*store.APIKey, *apiError) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return nil, unauthenticated("malformed Authorization header: want \"Bearer <api key>\"")
		}
		return a.byKey(r.Context(), tok)
	}
	if queryAuth {
		q := r.URL.Query()
		if k := q.Get("api_key"); k != "" {
			return a.byKey(r.Context(), k)
		}
		if t := q.Get("session_token"); t != "" {
			return a.bySession(r.Context(), t)
		}
		return nil, unauthenticated("missing credentials: send Authorization: Bearer <api key>, ?api_key= or ?session_token= (from POST /v1/sessions)")
	}
	return nil, unauthenticated("missing API key: send Authorization: Bearer <api key> (create one with: voxbridge keys create --name NAME)")
}

func (a *authenticator) byKey(ctx context.Context, key string) (*store.APIKey, *apiError) {
	return a.byHash(ctx, HashKey(key))
}

func (a *authenticator) byHash(ctx context.Context, hash string) (*store.APIKey, *apiError) {
	k, err := a.db.APIKeyByHash(ctx, hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, unauthenticated("invalid API key")
	case err != nil:
		a.log.Error("api key lookup", "err", err)
		return nil, &apiError{status: http.StatusServiceUnavailable, code: "unavailable", msg: "cannot check the API key now"}
	case k.Revoked():
		return nil, unauthenticated("this API key was revoked")
	}
	a.touch(ctx, k)
	return k, nil
}

// touch records the key's use at most once per touchEvery.
func (a *authenticator) touch(ctx context.Context, k *store.APIKey) {
	now := a.now()
	a.mu.Lock()
	last, ok := a.touched[k.ID]
	if ok && now.Sub(last) < touchEvery {
		a.mu.Unlock()
		return
	}
	a.touched[k.ID] = now
	a.mu.Unlock()
	if err := a.db.TouchAPIKey(ctx, k.ID, now); err != nil {
		a.log.Debug("record api key use", "key_id", k.ID, "err", err)
	}
}

// newSession makes a one-use token for the websocket, valid for ttl.
func (a *authenticator) newSession(k *store.APIKey) (string, time.Time, *apiError) {
	tok := randomToken(sessionPrefix)
	now := a.now()
	exp := now.Add(a.ttl)
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.sessions) >= maxSessions {
		for h, s := range a.sessions {
			if !now.Before(s.expires) {
				delete(a.sessions, h)
			}
		}
		if len(a.sessions) >= maxSessions {
			return "", time.Time{}, &apiError{status: http.StatusServiceUnavailable, code: "unavailable", msg: "too many unused session tokens; retry in a minute"}
		}
	}
	a.sessions[HashKey(tok)] = session{keyHash: k.Hash, expires: exp}
	return tok, exp, nil
}

// bySession spends a session token. The key behind it is looked up again,
// so revoking a key also voids its unused tokens.
func (a *authenticator) bySession(ctx context.Context, tok string) (*store.APIKey, *apiError) {
	h := HashKey(tok)
	a.mu.Lock()
	s, ok := a.sessions[h]
	delete(a.sessions, h)
	a.mu.Unlock()
	if !ok {
		return nil, unauthenticated("invalid or already used session token")
	}
	if !a.now().Before(s.expires) {
		return nil, unauthenticated("session token expired")
	}
	return a.byHash(ctx, s.keyHash)
}

// limit takes a token from the key's bucket and sets the X-RateLimit-*
// headers (and Retry-After when refused).
func (a *authenticator) limit(keyID string, h http.Header) bool {
	ok, remaining, reset, retry := a.limiter.take(keyID)
	h.Set("X-RateLimit-Limit", strconv.Itoa(int(a.limiter.burst)))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", strconv.Itoa(ceilSeconds(reset)))
	if !ok {
		h.Set("Retry-After", strconv.Itoa(ceilSeconds(retry)))
	}
	return ok
}

func ceilSeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// limiter is a token bucket per key: burst tokens, refilled at rate per
// second.
type limiter struct {
	rate, burst float64
	now         func() time.Time
	mu          sync.Mutex
	buckets     map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// take spends a token if there is one. It returns the whole tokens left,
// the time until the bucket is full again and, when refused, until the
// next token.
func (l *limiter) take(id string) (ok bool, remaining int, reset, retry time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, found := l.buckets[id]
	if !found {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[id] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		ok = true
	} else {
		retry = time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	reset = time.Duration((l.burst - b.tokens) / l.rate * float64(time.Second))
	return ok, int(b.tokens), reset, retry
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	k, _ := r.Context().Value(ctxKey{}).(*store.APIKey)
	tok, exp, e := s.auth.newSession(k)
	if e != nil {
		e.write(w)
		return
	}
	writeJSON(w, http.StatusCreated, sessionView{Token: tok, ExpiresAt: exp.UTC(), TTLSeconds: int(s.cfg.SessionTTL / time.Second)})
}

// sessionView answers POST /v1/sessions.
type sessionView struct {
	Token      string    `json:"token"`
	ExpiresAt  time.Time `json:"expires_at"`
	TTLSeconds int       `json:"ttl_s"`
}
