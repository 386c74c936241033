package sip

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/icholy/digest"
	"github.com/voxbridge/voxbridge/media/rtptest"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

func TestRegisterBothAlgorithmsSeveralContacts(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	ts := startStoreServer(t, db, Config{}, nil)
	ctx := ctxT(t, 10*time.Second)

	// The challenge offers SHA-256 first, then MD5 (RFC 8760 §2.4).
	raw := newRawPeer(t, ts.addr)
	raw.send(rawRegister(raw, "alice", "chal-1", 1, "c1", 3600, ""))
	code, msg := raw.status()
	if code != 401 {
		t.Fatalf("REGISTER without credentials: %d", code)
	}
	algs := regexp.MustCompile(`(?m)^WWW-Authenticate: Digest .*algorithm=([A-Z0-9-]+)`).FindAllStringSubmatch(msg, -1)
	if len(algs) != 2 || algs[0][1] != "SHA-256" || algs[1][1] != "MD5" {
		t.Fatalf("challenges %v, want SHA-256 then MD5:\n%s", algs, msg)
	}

	sha, md := newPhone(t), newPhone(t)
	if _, err := sha.RegisterWith(ctx, ts.hostport(), "alice", "alice-secret-1", siptest.RegisterOptions{Expires: time.Hour, Algorithm: "SHA-256"}); err != nil {
		t.Fatalf("SHA-256 register: %v", err)
	}
	res, err := md.RegisterWith(ctx, ts.hostport(), "alice", "alice-secret-1", siptest.RegisterOptions{Expires: 600 * time.Second, Algorithm: "MD5"})
	if err != nil {
		t.Fatalf("MD5 register: %v", err)
	}
	// The 200 lists every binding of the extension with its expiry.
	if len(res.Bindings) != 2 {
		t.Fatalf("200 lists %v, want both phones", res.Bindings)
	}
	if e := res.Bindings[md.ContactURI("alice")]; e < 590*time.Second || e > 600*time.Second {
		t.Errorf("MD5 phone's binding expires in %v, want ~600s", e)
	}
	if e := res.Bindings[sha.ContactURI("alice")]; e < 3590*time.Second {
		t.Errorf("SHA-256 phone's binding expires in %v, want ~3600s", e)
	}
	cs, err := ts.Contacts(ctx, "1001")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.Contact)
		if c.Transport != "udp" || !strings.HasPrefix(c.SourceAddr, "127.0.0.1:") || c.UserAgent != "voxbridge-phone" {
			t.Errorf("binding %+v", c)
		}
	}
	sort.Strings(got)
	want := []string{sha.ContactURI("alice"), md.ContactURI("alice")}
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("contacts %v, want %v", got, want)
	}
}

func TestRegisterByNumberAndOwnAORonly(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	addExtension(t, db, "1002", "bob", "bob-secret-12", false)
	ts := startStoreServer(t, db, Config{}, nil)
	ctx := ctxT(t, 10*time.Second)
	p := newPhone(t)
	// Alice's credentials, Bob's address of record: refused.
	raw := newRawPeer(t, ts.addr)
	auth := rawAuthorization(t, raw, ts, "bob", "alice", "alice-secret-1")
	raw.send(rawRegister(raw, "bob", "aor-1", 2, "a2", 3600, auth))
	if code, msg := raw.status(); code != 403 {
		t.Fatalf("registering bob's AOR as alice: %d\n%s", code, msg)
	}
	if cs, _ := ts.Contacts(ctx, "1002"); len(cs) != 0 {
		t.Fatalf("bob got bindings: %+v", cs)
	}
	// The AOR may name the extension number instead of the user name.
	if _, err := p.RegisterWith(ctx, ts.hostport(), "1001", "alice-secret-1", siptest.RegisterOptions{Expires: time.Hour, AuthUser: "alice"}); err != nil {
		t.Fatalf("AOR by number: %v", err)
	}
	if cs, _ := ts.Contacts(ctx, "1001"); len(cs) != 1 {
		t.Fatalf("bindings of 1001: %+v", cs)
	}
}

// Unknown users and wrong passwords must be indistinguishable from the
// answers: same status, reason and header set.
func TestRegisterFailuresLookAlike(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	disabled := addExtension(t, db, "1003", "carol", "carol-secret-1", false)
	disabled.Enabled = false
	if err := db.UpdateExtension(context.Background(), disabled); err != nil {
		t.Fatal(err)
	}
	ts := startStoreServer(t, db, Config{}, nil)
	ctx := ctxT(t, 10*time.Second)
	p := newPhone(t)

	shape := func(user, password string) string {
		t.Helper()
		raw := newRawPeer(t, ts.addr)
		auth := rawAuthorization(t, raw, ts, user, user, password)
		raw.send(rawRegister(raw, user, "shape-"+user, 2, "s"+user, 3600, auth))
		code, msg := raw.status()
		var names []string
		for _, line := range strings.Split(msg, "\r\n")[1:] {
			name, _, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch strings.ToLower(name) {
			case "via", "from", "to", "call-id", "cseq":
				continue // echoed from the request
			}
			names = append(names, line)
		}
		return fmt.Sprintf("%d %s | %s", code, strings.SplitN(msg, "\r\n", 2)[0], strings.Join(names, " | "))
	}
	wrong := shape("alice", "not-her-password")
	unknown := shape("mallory", "whatever-password")
	off := shape("carol", "carol-secret-1")
	if !strings.HasPrefix(wrong, "403 ") || wrong != unknown || wrong != off {
		t.Fatalf("answers differ:\nwrong password: %s\nunknown user:   %s\ndisabled:       %s", wrong, unknown, off)
	}
	res, err := p.RegisterWith(ctx, ts.hostport(), "alice", "wrong-password", siptest.RegisterOptions{Expires: time.Hour})
	var re *siptest.RegisterError
	if !errors.As(err, &re) || re.Code != 403 || res.Challenges != 1 {
		t.Fatalf("wrong password through the phone: %+v, %v", res, err)
	}
	if cs, _ := ts.Contacts(ctx, "1001"); len(cs) != 0 {
		t.Fatalf("a wrong password made bindings: %+v", cs)
	}
}

func TestRegisterExpiryMinExpiresAndPurge(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	ts := startStoreServer(t, db, Config{Registrar: RegistrarConfig{
		MinExpires: 2 * time.Second, MaxExpires: 3 * time.Second, PurgeInterval: 100 * time.Millisecond,
	}}, nil)
	ctx := ctxT(t, 20*time.Second)
	p := newPhone(t)

	res, err := p.RegisterWith(ctx, ts.hostport(), "alice", "alice-secret-1", siptest.RegisterOptions{Expires: time.Second})
	var re *siptest.RegisterError
	if !errors.As(err, &re) || re.Code != 423 || res.MinExpires != 2 {
		t.Fatalf("1 s registration: %+v, %v; want 423 with Min-Expires 2", res, err)
	}
	// Longer than the maximum is cut to it.
	res, err = p.RegisterWith(ctx, ts.hostport(), "alice", "alice-secret-1", siptest.RegisterOptions{Expires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Bindings[p.ContactURI("alice")]; e > 3*time.Second || e < 2*time.Second {
		t.Fatalf("granted %v, want the 3 s maximum", e)
	}
	if cs, _ := ts.Contacts(ctx, "1001"); len(cs) != 1 {
		t.Fatalf("contacts right after registering: %d", len(cs))
	}
	// Expired bindings are no longer contacts, and the purge removes them.
	rtptest.Eventually(t, 6*time.Second, "the binding to expire", func() bool {
		cs, err := ts.Contacts(ctx, "1001")
		return err == nil && len(cs) == 0
	})
	rtptest.Eventually(t, 3*time.Second, "the purge", func() bool {
		n, err := db.PurgeExpiredRegistrations(ctx)
		return err == nil && n == 0
	})
}

func TestUnregisterOneAndAll(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	ts := startStoreServer(t, db, Config{}, nil)
	ctx := ctxT(t, 10*time.Second)
	a, b := newPhone(t), newPhone(t)
	for _, p := range []*siptest.Phone{a, b} {
		if err := p.Register(ctx, ts.hostport(), "alice", "alice-secret-1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Unregister(ctx, ts.hostport(), "alice", "alice-secret-1"); err != nil {
		t.Fatal(err)
	}
	cs, _ := ts.Contacts(ctx, "1001")
	if len(cs) != 1 || cs[0].Contact != b.ContactURI("alice") {
		t.Fatalf("after a unregistered: %+v", cs)
	}
	if err := a.Register(ctx, ts.hostport(), "alice", "alice-secret-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RegisterWith(ctx, ts.hostport(), "alice", "alice-secret-1", siptest.RegisterOptions{All: true}); err != nil {
		t.Fatalf("Contact: *: %v", err)
	}
	if cs, _ := ts.Contacts(ctx, "1001"); len(cs) != 0 {
		t.Fatalf("after Contact: *: %+v", cs)
	}
	// "*" with a non-zero expiry is malformed.
	raw := newRawPeer(t, ts.addr)
	auth := rawAuthorization(t, raw, ts, "alice", "alice", "alice-secret-1")
	raw.send(strings.Replace(rawRegister(raw, "alice", "star-1", 2, "st2", 3600, auth),
		fmt.Sprintf("Contact: <sip:alice@127.0.0.1:%d>", raw.port()), "Contact: *", 1))
	if code, msg := raw.status(); code != 400 {
		t.Fatalf("Contact: * with Expires 3600: %d\n%s", code, msg)
	}
}

func TestRegisterReplayStaleAndOutOfOrder(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	// The nonces' clock runs ahead on demand, so staleness needs no sleep.
	var ahead atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	ts := startStoreServer(t, db, Config{Auth: AuthConfig{NonceLifetime: time.Minute}, now: clock}, nil)
	raw := newRawPeer(t, ts.addr)

	raw.send(rawRegister(raw, "alice", "rp-1", 1, "rp1", 3600, ""))
	_, msg := raw.status()
	chal := firstChallenge(t, msg)
	cred := func(nc int) string {
		c, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + ts.hostport(),
			Username: "alice", Password: "alice-secret-1", Count: nc, Cnonce: "abcdef"})
		if err != nil {
			t.Fatal(err)
		}
		return c.String()
	}
	raw.send(rawRegister(raw, "alice", "rp-1", 2, "rp2", 3600, "Authorization: "+cred(1)+"\n"))
	if code, _ := raw.status(); code != 200 {
		t.Fatalf("first use of the nonce: %d", code)
	}
	// The same credentials again (a new transaction): a replay.
	raw.send(rawRegister(raw, "alice", "rp-1", 3, "rp3", 3600, "Authorization: "+cred(1)+"\n"))
	if code, msg := raw.status(); code != 401 || strings.Contains(msg, "stale=true") {
		t.Fatalf("replayed nc: %d, want a fresh 401:\n%s", code, msg)
	}
	// The next nc is fine, but a lower CSeq on the same Call-ID is not.
	raw.send(rawRegister(raw, "alice", "rp-1", 4, "rp4", 3600, "Authorization: "+cred(2)+"\n"))
	if code, _ := raw.status(); code != 200 {
		t.Fatalf("nc 2: %d", code)
	}
	raw.send(rawRegister(raw, "alice", "rp-1", 3, "rp5", 3600, "Authorization: "+cred(3)+"\n"))
	if code, _ := raw.status(); code != 400 {
		t.Fatalf("older CSeq: %d, want 400", code)
	}
	// Past its lifetime the nonce is stale: the right password gets a new
	// challenge marked stale, not a 403.
	ahead.Store(int64(2 * time.Minute))
	raw.send(rawRegister(raw, "alice", "rp-1", 6, "rp6", 3600, "Authorization: "+cred(4)+"\n"))
	code, msg := raw.status()
	if code != 401 || strings.Count(msg, "stale=true") != 2 {
		t.Fatalf("expired nonce: %d, want 401 with stale=true on both challenges:\n%s", code, msg)
	}
}

func TestNonceBoundToSource(t *testing.T) {
	a, err := newDigestAuth("voxbridge", nil, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := a.nonce("192.0.2.1")
	if ours, expired, _ := a.checkNonce(n, "192.0.2.1"); !ours || expired {
		t.Fatalf("own nonce: ours %v expired %v", ours, expired)
	}
	if ours, _, _ := a.checkNonce(n, "192.0.2.2"); ours {
		t.Fatal("nonce accepted from another address")
	}
	other, _ := newDigestAuth("voxbridge", nil, time.Minute, nil)
	if ours, _, _ := other.checkNonce(n, "192.0.2.1"); ours {
		t.Fatal("nonce accepted by a server with another secret")
	}
	if ours, _, _ := a.checkNonce(n[:len(n)-2]+"AA", "192.0.2.1"); ours {
		t.Fatal("tampered nonce accepted")
	}
}

func TestLockoutAfterFailures(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	ts := startStoreServer(t, db, Config{Auth: AuthConfig{MaxFailures: 3, FailureWindow: time.Minute, LockoutDuration: time.Minute}}, nil)
	ctx := ctxT(t, 10*time.Second)
	p := newPhone(t)
	for i := range 3 {
		if _, err := p.RegisterWith(ctx, ts.hostport(), "alice", fmt.Sprintf("guess-%d-pw", i), siptest.RegisterOptions{Expires: time.Hour}); err == nil {
			t.Fatal("a guess registered")
		}
	}
	// Locked out: even the right password gets 403, without a challenge.
	res, err := p.RegisterWith(ctx, ts.hostport(), "alice", "alice-secret-1", siptest.RegisterOptions{Expires: time.Hour})
	var re *siptest.RegisterError
	if !errors.As(err, &re) || re.Code != 403 || res.Challenges != 0 {
		t.Fatalf("right password while locked out: %+v, %v", res, err)
	}
	if cs, _ := ts.Contacts(ctx, "1001"); len(cs) != 0 {
		t.Fatalf("bindings while locked out: %+v", cs)
	}
}

func TestRegistrationsSurviveRestart(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	ctx := ctxT(t, 10*time.Second)
	p := newPhone(t)
	first := startStoreServer(t, db, Config{}, nil)
	if err := p.Register(ctx, first.hostport(), "alice", "alice-secret-1"); err != nil {
		t.Fatal(err)
	}
	first.Close()
	ts := startStoreServer(t, db, Config{}, nil)
	cs, err := ts.Contacts(ctx, "1001")
	if err != nil || len(cs) != 1 || cs[0].Contact != p.ContactURI("alice") {
		t.Fatalf("after restart: %+v, %v", cs, err)
	}
}

func TestDecideBindings(t *testing.T) {
	now := time.Now()
	cur := []store.Registration{{Contact: "sip:a@x", CallID: "c1", CSeq: 5, ExpiresAt: now.Add(time.Hour)}}
	put := func(contact string) bindingChange {
		return bindingChange{put: []store.Registration{{Contact: contact, ExpiresAt: now.Add(time.Hour)}}}
	}
	if _, err := decideBindings(cur, put("sip:a@x"), "c1", 5, 10); !errors.Is(err, errOutOfOrder) {
		t.Errorf("same Call-ID, same CSeq: %v", err)
	}
	if ch, err := decideBindings(cur, put("sip:a@x"), "c1", 6, 10); err != nil || len(ch.Put) != 1 || ch.Put[0].CSeq != 6 {
		t.Errorf("higher CSeq: %+v, %v", ch, err)
	}
	// Another Call-ID replaces the binding whatever its CSeq.
	if ch, err := decideBindings(cur, put("sip:a@x"), "c2", 1, 10); err != nil || ch.Put[0].CallID != "c2" {
		t.Errorf("other Call-ID: %+v, %v", ch, err)
	}
	if _, err := decideBindings(cur, bindingChange{remove: []string{"sip:a@x"}}, "c1", 4, 10); !errors.Is(err, errOutOfOrder) {
		t.Errorf("removal with an old CSeq: %v", err)
	}
	if _, err := decideBindings(cur, put("sip:b@x"), "c3", 1, 1); !errors.Is(err, errTooMany) {
		t.Errorf("second contact with a maximum of 1: %v", err)
	}
}

// rawRegister renders a REGISTER for user from the raw peer.
func rawRegister(p *rawPeer, user, callID string, cseq int, branch string, expires int, extra string) string {
	return fmt.Sprintf("REGISTER sip:%s SIP/2.0\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s\n"+
		"From: <sip:%s@127.0.0.1>;tag=r%s\n"+
		"To: <sip:%s@127.0.0.1>\n"+
		"Call-ID: %s\n"+
		"CSeq: %d REGISTER\n"+
		"Contact: <sip:%s@127.0.0.1:%d>\n"+
		"Expires: %d\n"+
		"Max-Forwards: 70\n%s"+
		"Content-Length: 0\n\n",
		p.to.String(), p.port(), branch, user, callID, user, callID, cseq, user, p.port(), expires, extra)
}

// firstChallenge parses the first WWW-Authenticate of a raw response.
func firstChallenge(t *testing.T, msg string) *digest.Challenge {
	t.Helper()
	m := regexp.MustCompile(`(?m)^WWW-Authenticate: (.*)\r$`).FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("no challenge in:\n%s", msg)
	}
	c, err := digest.ParseChallenge(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawAuthorization gets a challenge for aorUser and returns an
// Authorization header line answering it as user with password.
func rawAuthorization(t *testing.T, p *rawPeer, ts *testServer, aorUser, user, password string) string {
	t.Helper()
	p.send(rawRegister(p, aorUser, "get-"+aorUser+user, 1, "g"+aorUser+user, 3600, ""))
	code, msg := p.status()
	if code != 401 {
		t.Fatalf("expected a challenge, got %d", code)
	}
	c, err := digest.Digest(firstChallenge(t, msg), digest.Options{Method: "REGISTER", URI: "sip:" + ts.hostport(),
		Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	return "Authorization: " + c.String() + "\n"
}
