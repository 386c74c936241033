package sip

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Digest algorithms we challenge with, strongest first: RFC 8760 says a
// server offers one challenge per algorithm in its order of preference.
const (
	algSHA256 = "SHA-256"
	algMD5    = "MD5"
)

// authResult is the outcome of checking a request's digest credentials.
type authResult int

const (
	authMissing authResult = iota // no credentials for our realm: challenge
	authOK
	authStale   // right password, expired nonce: challenge with stale=true
	authRenew   // nonce not ours (any more) or nc replayed: challenge afresh, no failure counted
	authFailed  // wrong password, unknown user, malformed: 403, counted
	authInvalid // not even parseable as digest credentials: 400
)

// credentials is what a digest user name stands for: an extension or a
// trunk's inbound account, with the HA1 hashes to check against.
type credentials struct {
	realm             string
	ha1MD5, ha1SHA256 string
	identity          Identity
}

// digestAuth issues and checks RFC 3261 / RFC 8760 digest challenges.
//
// Nonces carry their issue time (unix ms) and a random part, sealed with an HMAC over
// those and the requester's IP, so the server keeps no table of issued
// nonces: a nonce from another address or forged is simply not ours. Only
// the nc values seen per nonce are remembered, to refuse replays.
type digestAuth struct {
	realm    string
	secret   []byte
	lifetime time.Duration
	algs     []string // challenges offered, in order; all are accepted
	now      func() time.Time

	mu    sync.Mutex
	seen  map[string]ncEntry // nonce → highest nc accepted
	limit int
}

type ncEntry struct {
	nc      uint32
	expires time.Time
}

const (
	nonceRandLen = 8
	nonceMACLen  = 16
	nonceLen     = 8 + nonceRandLen + nonceMACLen
)

func newDigestAuth(realm string, secret []byte, lifetime time.Duration, algs []string) (*digestAuth, error) {
	if len(algs) == 0 {
		algs = []string{algSHA256, algMD5}
	}
	norm := make([]string, 0, len(algs))
	for _, a := range algs {
		switch strings.ToUpper(strings.TrimSpace(a)) {
		case "SHA-256", "SHA256":
			norm = append(norm, algSHA256)
		case "MD5":
			norm = append(norm, algMD5)
		default:
			return nil, fmt.Errorf("sip: digest algorithm %q (want SHA-256 or MD5)", a)
		}
	}
	algs = norm
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("sip: nonce secret: %w", err)
		}
	}
	return &digestAuth{realm: realm, secret: secret, lifetime: lifetime, algs: algs, now: time.Now,
		seen: map[string]ncEntry{}, limit: 100_000}, nil
}

// nonce issues a nonce for a request from ip.
func (a *digestAuth) nonce(ip string) string {
	b := make([]byte, nonceLen)
	binary.BigEndian.PutUint64(b, uint64(a.now().UnixMilli()))
	_, _ = rand.Read(b[8 : 8+nonceRandLen])
	copy(b[8+nonceRandLen:], a.mac(b[:8+nonceRandLen], ip))
	return base64.RawURLEncoding.EncodeToString(b)
}

func (a *digestAuth) mac(head []byte, ip string) []byte {
	m := hmac.New(sha256.New, a.secret)
	m.Write(head)
	m.Write([]byte(ip))
	m.Write([]byte{0})
	m.Write([]byte(a.realm))
	return m.Sum(nil)[:nonceMACLen]
}

// checkNonce reports whether nonce was issued by us for ip, and whether it
// has outlived its lifetime.
func (a *digestAuth) checkNonce(nonce, ip string) (ours, expired bool, issued time.Time) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceLen {
		return false, false, time.Time{}
	}
	if !hmac.Equal(b[8+nonceRandLen:], a.mac(b[:8+nonceRandLen], ip)) {
		return false, false, time.Time{}
	}
	issued = time.UnixMilli(int64(binary.BigEndian.Uint64(b)))
	age := a.now().Sub(issued)
	return true, age > a.lifetime || age < -time.Minute, issued
}

// challenges returns the header values to send, one per algorithm in the
// configured order, sharing one nonce.
func (a *digestAuth) challenges(ip string, stale bool) []string {
	n := a.nonce(ip)
	out := make([]string, 0, len(a.algs))
	for _, alg := range a.algs {
		c := digest.Challenge{Realm: a.realm, Nonce: n, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, c.String())
	}
	return out
}

// check verifies the credentials in header hdr ("Authorization" or
// "Proxy-Authorization") of req against lookup. On authOK it returns the
// identity.
func (a *digestAuth) check(req *sip.Request, hdr string, lookup func(username string) (*credentials, bool)) (authResult, Identity) {
	ip := sourceIP(req)
	var cred *digest.Credentials
	for _, h := range req.GetHeaders(hdr) {
		c, err := digest.ParseCredentials(h.Value())
		if err != nil {
			if !digest.IsDigest(h.Value()) {
				continue // another scheme; not ours to judge
			}
			return authInvalid, Identity{}
		}
		if c.Realm == a.realm {
			cred = c
			break
		}
	}
	if cred == nil {
		return authMissing, Identity{}
	}
	alg := strings.ToUpper(cred.Algorithm)
	if alg == "" {
		alg = algMD5
	}
	if (alg != algMD5 && alg != algSHA256) || cred.Username == "" || cred.Response == "" || cred.Nonce == "" {
		return authFailed, Identity{}
	}
	ours, expired, issued := a.checkNonce(cred.Nonce, ip)
	if !ours {
		return authRenew, Identity{}
	}
	// The digest must be for this request's target, or a response captured
	// for one URI could be replayed to another.
	if !sameTarget(cred.URI, &req.Recipient) {
		return authFailed, Identity{}
	}
	if cred.QOP != "auth" || cred.Nc <= 0 || cred.Cnonce == "" {
		return authFailed, Identity{}
	}

	known, found := lookup(cred.Username)
	ha1 := ""
	if found && known.realm == a.realm {
		ha1 = known.ha1MD5
		if alg == algSHA256 {
			ha1 = known.ha1SHA256
		}
	}
	if ha1 == "" {
		// Do the same work for an unknown user as for a known one, so the
		// answer's timing says nothing about which user names exist.
		ha1 = strings.Repeat("0", 64)
		found = false
	}
	want := digestResponse(alg, ha1, cred.Nonce, fmt.Sprintf("%08x", cred.Nc), cred.Cnonce, cred.QOP, string(req.Method), cred.URI)
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(cred.Response)), []byte(want)) != 1 || !found {
		return authFailed, Identity{}
	}
	if expired {
		return authStale, Identity{}
	}
	if !a.acceptNC(cred.Nonce, uint32(cred.Nc), issued.Add(a.lifetime)) {
		return authRenew, Identity{}
	}
	return authOK, known.identity
}

// acceptNC records nc for nonce if it is higher than any seen before.
func (a *digestAuth) acceptNC(nonce string, nc uint32, expires time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.seen[nonce]; ok {
		if nc <= e.nc {
			return false
		}
		a.seen[nonce] = ncEntry{nc: nc, expires: e.expires}
		return true
	}
	if len(a.seen) >= a.limit {
		a.purgeLocked()
		if len(a.seen) >= a.limit {
			// Refusing is safe (the client is challenged again); forgetting
			// a nonce would reopen it to replay.
			return false
		}
	}
	a.seen[nonce] = ncEntry{nc: nc, expires: expires}
	return true
}

// purge forgets nc values of expired nonces: those nonces only get stale
// answers now, never authOK, so replay protection does not need them.
func (a *digestAuth) purge() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.purgeLocked()
}

func (a *digestAuth) purgeLocked() {
	now := a.now()
	for k, e := range a.seen {
		if now.After(e.expires) {
			delete(a.seen, k)
		}
	}
}

// digestResponse computes the RFC 7616 / RFC 8760 response for qop=auth.
func digestResponse(alg, ha1, nonce, nc, cnonce, qop, method, uri string) string {
	var h hash.Hash
	if alg == algSHA256 {
		h = sha256.New()
	} else {
		h = md5.New()
	}
	hx := func(s string) string {
		h.Reset()
		h.Write([]byte(s))
		return hex.EncodeToString(h.Sum(nil))
	}
	ha2 := hx(method + ":" + uri)
	return hx(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + ha2)
}

// sameTarget reports whether the digest-uri names the request's target
// (user and host; clients differ in the parameters they copy) or the server
// the request was sent to (the target's host without a user): SIPp, among
// others, hashes "sip:host:port" for every request, an INVITE to a number
// included. A uri naming another user or another host is refused.
func sameTarget(digestURI string, target *sip.Uri) bool {
	var u sip.Uri
	if err := sip.ParseUri(digestURI, &u); err != nil {
		return false
	}
	if !strings.EqualFold(u.Host, target.Host) {
		return false
	}
	return u.User == target.User || u.User == ""
}

// sourceIP is the IP a request came from, without the port.
func sourceIP(req *sip.Request) string {
	host, _, err := net.SplitHostPort(req.Source())
	if err != nil {
		return req.Source()
	}
	return host
}
