package siptest

import (
	"crypto/rand"
	"encoding/hex"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// digestChecker is a carrier's side of digest authentication: it issues
// challenges and checks the answers with the real algorithm, so a client
// that computes them wrong fails.
type digestChecker struct {
	realm, user, pass, alg string

	mu     sync.Mutex
	issued map[string]bool
}

func newDigestChecker(realm, user, pass, alg string) *digestChecker {
	if realm == "" {
		realm = "carrier.test"
	}
	if alg == "" {
		alg = "MD5"
	}
	return &digestChecker{realm: realm, user: user, pass: pass, alg: alg, issued: map[string]bool{}}
}

// challenge issues a fresh nonce in a challenge header value.
func (d *digestChecker) challenge() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	nonce := hex.EncodeToString(b)
	d.mu.Lock()
	d.issued[nonce] = true
	d.mu.Unlock()
	c := digest.Challenge{Realm: d.realm, Nonce: nonce, Algorithm: d.alg, QOP: []string{"auth"}}
	return c.String()
}

// verify checks the credentials in header hdr of req. present is false
// when there are none.
func (d *digestChecker) verify(req *sip.Request, hdr string) (present, ok bool) {
	h := req.GetHeader(hdr)
	if h == nil {
		return false, false
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return true, false
	}
	d.mu.Lock()
	issued := d.issued[cred.Nonce]
	d.mu.Unlock()
	if !issued || cred.Username != d.user || cred.Realm != d.realm {
		return true, false
	}
	chal := &digest.Challenge{Realm: d.realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm}
	if cred.QOP != "" {
		chal.QOP = []string{cred.QOP}
	}
	want, err := digest.Digest(chal, digest.Options{Method: string(req.Method), URI: cred.URI,
		Username: d.user, Password: d.pass, Cnonce: cred.Cnonce, Count: cred.Nc})
	if err != nil {
		return true, false
	}
	return true, want.Response == cred.Response
}
