package sip

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// keepalivesWithin counts the keepalive pings the raw peer receives in d;
// SIP messages (responses) are skipped.
func keepalivesWithin(t *testing.T, p *rawPeer, d time.Duration) int {
	t.Helper()
	buf := make([]byte, 65535)
	n := 0
	p.conn.SetReadDeadline(time.Now().Add(d))
	for {
		m, _, err := p.conn.ReadFromUDP(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(buf[:m], keepalivePing) {
			n++
		}
	}
}

// A phone registered over UDP gets a double CRLF at its registered source
// every keepalive period, from our SIP port; after it unregisters, none.
func TestKeepalivesToRegisteredPhone(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	const every = 100 * time.Millisecond
	ts := startStoreServer(t, db, Config{Registrar: RegistrarConfig{Keepalive: every}}, nil)
	raw := newRawPeer(t, ts.addr)

	if got := keepalivesWithin(t, raw, 5*every); got != 0 {
		t.Fatalf("%d keepalives before registering", got)
	}
	auth := rawAuthorization(t, raw, ts, "alice", "alice", "alice-secret-1")
	raw.send(rawRegister(raw, "alice", "ka-1", 2, "ka2", 3600, auth))
	if code, msg := raw.status(); code != 200 {
		t.Fatalf("REGISTER: %d\n%s", code, msg)
	}
	// A loaded machine may stretch the ticks; at least 5 of 20.
	if got := keepalivesWithin(t, raw, 20*every); got < 5 {
		t.Fatalf("%d keepalives in 20 periods, want at least 5", got)
	}

	// The unREGISTER answers a challenge of its own (a nonce counts once).
	raw.send(rawRegister(raw, "alice", "ka-1", 3, "ka3", 0, ""))
	code, msg := raw.status()
	if code != 401 {
		t.Fatalf("unREGISTER without credentials: %d\n%s", code, msg)
	}
	c, err := digest.Digest(firstChallenge(t, msg), digest.Options{Method: "REGISTER", URI: "sip:" + ts.hostport(),
		Username: "alice", Password: "alice-secret-1"})
	if err != nil {
		t.Fatal(err)
	}
	raw.send(rawRegister(raw, "alice", "ka-1", 4, "ka4", 0, "Authorization: "+c.String()+"\n"))
	if code, msg := raw.status(); code != 200 {
		t.Fatalf("unREGISTER: %d\n%s", code, msg)
	}
	// One may have been on its way when the binding went.
	keepalivesWithin(t, raw, 2*every)
	if got := keepalivesWithin(t, raw, 10*every); got != 0 {
		t.Fatalf("%d keepalives after unregistering", got)
	}
}

// A binding that expires stops getting keepalives without any REGISTER;
// the loop ends with the server.
func TestKeepalivesEndWithTheBinding(t *testing.T) {
	k := &keepalives{}
	now := time.Now()
	k.update("1001", nil)
	if len(k.due(now)) != 0 {
		t.Fatal("targets without bindings")
	}
	k.targets = map[string]map[string]keepaliveTarget{"1001": {
		"sip:a@127.0.0.1:5070": {source: "127.0.0.1:5070", transport: "udp", expires: now.Add(time.Second)},
		"sip:b@127.0.0.1:5071": {source: "127.0.0.1:5071", transport: "udp", expires: now.Add(time.Hour)},
	}}
	if got := k.due(now); len(got) != 2 {
		t.Fatalf("due now: %+v", got)
	}
	got := k.due(now.Add(time.Minute))
	if len(got) != 1 || got[0].source != "127.0.0.1:5071" {
		t.Fatalf("due after a's expiry: %+v", got)
	}
	if len(k.due(now.Add(2*time.Hour))) != 0 || len(k.targets) != 0 {
		t.Fatalf("left after both expired: %+v", k.targets)
	}
}
