package sip

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// identityRecorder is a CallHandler that reports each leg's identity and
// rejects the call with 486, which tells the caller it got through.
type identityRecorder chan Identity

func (r identityRecorder) handle(leg *Leg) {
	r <- leg.Identity
	_ = leg.Reject(486, "Busy Here")
}

// dialCode calls uri and returns the final status (200 is hung up at once).
func dialCode(t *testing.T, p *siptest.Phone, uri, user, password string) int {
	t.Helper()
	c, err := p.Dial(ctxT(t, 10*time.Second), uri, siptest.DialOptions{Username: user, Password: password})
	if err == nil {
		_ = c.Hangup(context.Background())
		return 200
	}
	var de *siptest.DialError
	if !errors.As(err, &de) {
		t.Fatalf("dial %s: %v", uri, err)
	}
	return de.Code
}

func noLeg(t *testing.T, rec identityRecorder) {
	t.Helper()
	select {
	case id := <-rec:
		t.Fatalf("a leg reached the flow: %+v", id)
	default:
	}
}

func TestInviteNeedsExtensionCredentials(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	rec := make(identityRecorder, 4)
	ts := startStoreServer(t, db, Config{}, rec.handle)
	p := newPhone(t)
	uri := "sip:1002@" + ts.hostport()

	if code := dialCode(t, p, uri, "", ""); code != 407 {
		t.Fatalf("no credentials: %d, want 407", code)
	}
	if code := dialCode(t, p, uri, "alice", "wrong-password"); code != 403 {
		t.Fatalf("wrong password: %d, want 403", code)
	}
	if code := dialCode(t, p, uri, "mallory", "wrong-password"); code != 403 {
		t.Fatalf("unknown user: %d, want 403", code)
	}
	noLeg(t, rec)
	if code := dialCode(t, p, uri, "alice", "alice-secret-1"); code != 486 {
		t.Fatalf("right password: %d, want the handler's 486", code)
	}
	id := <-rec
	if id.Extension == nil || id.Extension.Number != "1001" || id.Trunk != nil || !id.Authenticated() || id.MayUseTrunks() {
		t.Fatalf("identity %+v", id)
	}
	// The challenge of a 407 offers both algorithms, SHA-256 first.
	raw := newRawPeer(t, ts.addr)
	raw.send(raw.request("INVITE", "inv-chal", "ic1", "", goodOffer))
	code, msg := raw.status()
	if code != 407 || strings.Index(msg, "algorithm=SHA-256") > strings.Index(msg, "algorithm=MD5") ||
		strings.Count(msg, "Proxy-Authenticate: Digest") != 2 {
		t.Fatalf("challenge %d:\n%s", code, msg)
	}
}

func TestAnonymousPolicy(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", true)
	rec := make(identityRecorder, 4)
	ts := startStoreServer(t, db, Config{AllowAnonymous: true, AnonymousTo: func(user string) bool { return user == "echo" }}, rec.handle)
	p := newPhone(t)

	if code := dialCode(t, p, "sip:echo@"+ts.hostport(), "", ""); code != 486 {
		t.Fatalf("anonymous call to echo: %d", code)
	}
	if id := <-rec; id.Authenticated() || id.MayUseTrunks() {
		t.Fatalf("anonymous identity %+v", id)
	}
	// Other targets still need credentials.
	if code := dialCode(t, p, "sip:14155550100@"+ts.hostport(), "", ""); code != 407 {
		t.Fatalf("anonymous call to a number: %d, want 407", code)
	}
	noLeg(t, rec)
	if code := dialCode(t, p, "sip:14155550100@"+ts.hostport(), "alice", "alice-secret-1"); code != 486 {
		t.Fatalf("authenticated call to a number: %d", code)
	}
	if id := <-rec; id.Extension == nil || !id.MayUseTrunks() {
		t.Fatalf("identity %+v", id)
	}
}

func TestTrunkRecognisedBySource(t *testing.T) {
	db := newStore(t)
	ctx := context.Background()
	off := &store.Trunk{Name: "disabled", Enabled: false, Priority: 0, InboundAddrs: []string{"127.0.0.1"}}
	on := &store.Trunk{Name: "carrier", Enabled: true, Priority: 5, InboundAddrs: []string{"127.0.0.0/8"}}
	for _, tr := range []*store.Trunk{off, on} {
		if err := db.CreateTrunk(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	rec := make(identityRecorder, 4)
	ts := startStoreServer(t, db, Config{}, rec.handle)
	p := newPhone(t)
	if code := dialCode(t, p, "sip:+14155550100@"+ts.hostport(), "", ""); code != 486 {
		t.Fatalf("call from the trunk's address: %d", code)
	}
	id := <-rec
	if id.Trunk == nil || id.Trunk.Name != "carrier" || id.Extension != nil || !id.MayUseTrunks() {
		t.Fatalf("identity %+v", id)
	}
}

func TestTrunkInboundCredentials(t *testing.T) {
	db := newStore(t)
	tr := &store.Trunk{Name: "carrier", Enabled: true, InboundUsername: "carrier-in"}
	if err := tr.SetInboundPassword(DefaultRealm, "carrier-in-secret"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateTrunk(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	rec := make(identityRecorder, 4)
	ts := startStoreServer(t, db, Config{}, rec.handle)
	p := newPhone(t)
	if code := dialCode(t, p, "sip:+14155550100@"+ts.hostport(), "carrier-in", "wrong-secret"); code != 403 {
		t.Fatalf("wrong trunk password: %d", code)
	}
	if code := dialCode(t, p, "sip:+14155550100@"+ts.hostport(), "carrier-in", "carrier-in-secret"); code != 486 {
		t.Fatalf("trunk credentials: %d", code)
	}
	if id := <-rec; id.Trunk == nil || id.Trunk.Name != "carrier" {
		t.Fatalf("identity %+v", id)
	}
	// A trunk account cannot register as a phone.
	if err := p.Register(ctxT(t, 5*time.Second), ts.hostport(), "carrier-in", "carrier-in-secret"); err == nil {
		t.Fatal("trunk account registered")
	}
}

func TestNoStoreRefusesUnlessAnonymous(t *testing.T) {
	rec := make(identityRecorder, 1)
	addr := startServer(t, rec.handle) // AllowAnonymous, no store
	p := newRawPeer(t, addr)
	p.send(p.request("INVITE", "nostore-1", "ns1", "", goodOffer))
	if code, _ := p.status(); code != 486 {
		t.Fatalf("anonymous without a store: %d", code)
	}
	<-rec

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Config{UDP: udp, AdvertiseIP: net.IPv4(127, 0, 0, 1), Logger: testLogger()}, rec.handle)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	q := newRawPeer(t, udp.LocalAddr().(*net.UDPAddr))
	q.send(q.request("INVITE", "nostore-2", "ns2", "", goodOffer))
	if code, _ := q.status(); code != 403 {
		t.Fatalf("no store, anonymous not allowed: %d, want 403", code)
	}
	noLeg(t, rec)
}
