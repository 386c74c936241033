package sip

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// serveWith runs a server like serve and hands it back in *out.
func serveWith(t *testing.T, cfg Config, handler CallHandler, out **Server) {
	t.Helper()
	cfg.AdvertiseIP = net.IPv4(127, 0, 0, 1)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Store == nil {
		cfg.AllowAnonymous = true
	}
	s, err := NewServer(cfg, handler)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	s.waitListening()
	*out = s
}

// inviteStatus sends a raw INVITE to user from p and returns the final
// answer; a 200 is acknowledged and hung up.
func inviteStatus(t *testing.T, p *rawPeer, user, id string) (int, string) {
	t.Helper()
	p.send(strings.ReplaceAll(p.request("INVITE", id, id, "", goodOffer), "sip:echo@", "sip:"+user+"@"))
	return p.status()
}

func TestCallCapsAnswer503WithRetryAfter(t *testing.T) {
	t.Run("concurrent", func(t *testing.T) {
		udp, _ := net.ListenPacket("udp", "127.0.0.1:0")
		var s *Server
		serveWith(t, Config{UDP: udp, Protect: ProtectConfig{MaxCalls: 2, RetryAfter: 7 * time.Second}}, answerEcho, &s)
		addr := udp.LocalAddr().(*net.UDPAddr)
		var calls []*siptest.Call
		for range 2 {
			c, err := newPhone(t).Dial(ctxT(t, 10*time.Second), "sip:echo@"+addr.String(), siptest.DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			calls = append(calls, c)
		}
		p := newRawPeer(t, addr)
		code, msg := inviteStatus(t, p, "echo", "third")
		if code != 503 || !strings.Contains(msg, "\r\nRetry-After: 7\r\n") {
			t.Fatalf("third call: %d\n%s", code, msg)
		}
		if r := s.Refusals(); r[RefusedMaxCalls] != 1 {
			t.Fatalf("refusals %v", r)
		}
		// A call ends: the next one gets through.
		if err := calls[0].Hangup(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, func() bool { return len(s.LiveLegs()) == 1 })
		c, err := newPhone(t).Dial(ctxT(t, 10*time.Second), "sip:echo@"+addr.String(), siptest.DialOptions{})
		if err != nil {
			t.Fatalf("after a hangup: %v", err)
		}
		_ = c.Hangup(context.Background())
		_ = calls[1].Hangup(context.Background())
	})
	t.Run("per second", func(t *testing.T) {
		udp, _ := net.ListenPacket("udp", "127.0.0.1:0")
		var s *Server
		// One call per 100 s: the second INVITE cannot find a new token
		// however slowly this machine runs.
		serveWith(t, Config{UDP: udp, Protect: ProtectConfig{MaxCallsPerSecond: 0.01}}, answerEcho, &s)
		p := newRawPeer(t, udp.LocalAddr().(*net.UDPAddr))
		if code, _ := inviteStatus(t, p, "busy", "cps-1"); code != 486 {
			t.Fatalf("first call: %d", code)
		}
		code, msg := inviteStatus(t, p, "busy", "cps-2")
		if code != 503 || !strings.Contains(msg, "\r\nRetry-After: 5\r\n") {
			t.Fatalf("second call: %d\n%s", code, msg)
		}
		// Requests other than new calls are not capped.
		p.send(p.request("OPTIONS", "cps-opt", "cps-opt", "", ""))
		if code, _ := p.status(); code != 200 {
			t.Fatalf("OPTIONS: %d", code)
		}
		if r := s.Refusals(); r[RefusedCPS] != 1 {
			t.Fatalf("refusals %v", r)
		}
	})
	t.Run("overload", func(t *testing.T) {
		udp, _ := net.ListenPacket("udp", "127.0.0.1:0")
		var s *Server
		serveWith(t, Config{UDP: udp, Protect: ProtectConfig{MaxGoroutines: 1}}, answerEcho, &s)
		p := newRawPeer(t, udp.LocalAddr().(*net.UDPAddr))
		if code, msg := inviteStatus(t, p, "echo", "ovl"); code != 503 || !strings.Contains(msg, "Retry-After:") {
			t.Fatalf("call while overloaded: %d\n%s", code, msg)
		}
		if r := s.Refusals(); r[RefusedOverload] != 1 {
			t.Fatalf("refusals %v", r)
		}
	})
	t.Run("store backlog", func(t *testing.T) {
		udp, _ := net.ListenPacket("udp", "127.0.0.1:0")
		var s *Server
		var backlogged atomic.Bool
		backlogged.Store(true)
		serveWith(t, Config{UDP: udp, Protect: ProtectConfig{Backlogged: backlogged.Load}}, answerEcho, &s)
		p := newRawPeer(t, udp.LocalAddr().(*net.UDPAddr))
		if code, msg := inviteStatus(t, p, "busy", "backlog-1"); code != 503 || !strings.Contains(msg, "\r\nRetry-After: 5\r\n") {
			t.Fatalf("call while the records are behind: %d\n%s", code, msg)
		}
		if r := s.Refusals(); r[RefusedBacklog] != 1 {
			t.Fatalf("refusals %v", r)
		}
		// Caught up: calls are taken again.
		backlogged.Store(false)
		if code, _ := inviteStatus(t, p, "busy", "backlog-2"); code != 486 {
			t.Fatalf("call after the backlog cleared: %d", code)
		}
	})
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With SilentUnknown, scanners get nothing, while REGISTER is answered,
// a phone that registered is served, and a trunk's address is served.
func TestSilentUnknown(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	trunk := &store.Trunk{Name: "carrier", Enabled: true, InboundAddrs: []string{"127.0.0.5"}}
	if err := db.CreateTrunk(context.Background(), trunk); err != nil {
		t.Fatal(err)
	}
	ts := startStoreServer(t, db, Config{Protect: ProtectConfig{SilentUnknown: true}}, answerEcho)

	scanner := rawPeerOn(t, "127.0.0.3", ts.addr)
	scanner.send(scanner.request("OPTIONS", "scan-1", "scan-1", "", ""))
	if code, msg := scanner.statusOrZero(); code != 0 {
		t.Fatalf("OPTIONS from an unknown source answered %d:\n%s", code, msg)
	}
	scanner.send(scanner.request("INVITE", "scan-2", "scan-2", "", goodOffer))
	if code, _ := scanner.statusOrZero(); code != 0 {
		t.Fatalf("INVITE from an unknown source answered %d", code)
	}
	// Even malformed requests get no 400.
	scanner.send("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:1;branch=z9hG4bKm\r\nCall-ID: scan-3\r\nCSeq: x INVITE\r\n\r\n")
	if code, _ := scanner.statusOrZero(); code != 0 {
		t.Fatalf("a malformed request from an unknown source answered %d", code)
	}
	// REGISTER is answered, the same way as for anyone.
	scanner.send(rawRegister(scanner, "alice", "scan-reg", 1, "scanreg", 60, ""))
	if code, _ := scanner.status(); code != 401 {
		t.Fatalf("REGISTER from an unknown source: %d, want 401", code)
	}

	// A phone that registers becomes known: its calls are served.
	phone, err := siptest.NewPhone("127.0.0.4", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(phone.Close)
	ctx := ctxT(t, 10*time.Second)
	if _, err := phone.RegisterWith(ctx, ts.hostport(), "alice", "alice-secret-1", siptest.RegisterOptions{Expires: time.Hour}); err != nil {
		t.Fatalf("register: %v", err)
	}
	c, err := phone.Dial(ctx, "sip:echo@"+ts.hostport(), siptest.DialOptions{Username: "alice", Password: "alice-secret-1"})
	if err != nil {
		t.Fatalf("registered phone's call: %v", err)
	}
	_ = c.Hangup(context.Background())

	// The trunk's address is known without registering.
	carrier := rawPeerOn(t, "127.0.0.5", ts.addr)
	if code, _ := inviteStatus(t, carrier, "busy", "trunk-1"); code != 486 {
		t.Fatalf("trunk's call: %d, want the handler's 486", code)
	}
	// And the scanner is still not.
	scanner.send(scanner.request("OPTIONS", "scan-4", "scan-4", "", ""))
	if code, _ := scanner.statusOrZero(); code != 0 {
		t.Fatalf("OPTIONS from the scanner later: %d", code)
	}
	if r := ts.Refusals(); r[RefusedSilentUnknown] != 4 {
		t.Fatalf("refusals %v, want 4 silent", r)
	}
}

// A restart does not forget who registered: a phone registered with the
// first server is served by the next one on the same database without
// registering again, while a scanner is still not answered.
func TestSilentUnknownKnowsStoredRegistrations(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", false)
	cfg := Config{Protect: ProtectConfig{SilentUnknown: true}}
	first := startStoreServer(t, db, cfg, answerEcho)
	phone, err := siptest.NewPhone("127.0.0.4", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(phone.Close)
	ctx := ctxT(t, 10*time.Second)
	if _, err := phone.RegisterWith(ctx, first.hostport(), "alice", "alice-secret-1", siptest.RegisterOptions{Expires: time.Hour}); err != nil {
		t.Fatalf("register: %v", err)
	}
	first.Close()

	next := startStoreServer(t, db, cfg, answerEcho)
	c, err := phone.Dial(ctx, "sip:echo@"+next.hostport(), siptest.DialOptions{Username: "alice", Password: "alice-secret-1"})
	if err != nil {
		t.Fatalf("the registered phone's call after the restart: %v", err)
	}
	_ = c.Hangup(context.Background())
	scanner := rawPeerOn(t, "127.0.0.3", next.addr)
	scanner.send(scanner.request("OPTIONS", "scan-1", "scan-1", "", ""))
	if code, msg := scanner.statusOrZero(); code != 0 {
		t.Fatalf("OPTIONS from an unknown source answered %d:\n%s", code, msg)
	}
}

// The answers to an unknown user and to a known user with a wrong
// password are the same bytes, but for the user name the request itself
// carried, the nonce and the To tag: REGISTER and INVITE, without and
// with credentials.
func TestAuthAnswersIdenticalForUnknownUsers(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1001", "alice", "alice-secret-1", true)
	ts := startStoreServer(t, db, Config{Auth: AuthConfig{MaxFailures: -1}}, answerEcho)
	nonce := regexp.MustCompile(`nonce="[^"]*"`)
	toTag := regexp.MustCompile(`(?m)^(To: .*;tag=)[^\r]*`)
	norm := func(msg, user string) string {
		msg = nonce.ReplaceAllString(msg, `nonce="N"`)
		msg = toTag.ReplaceAllString(msg, "${1}T")
		return strings.ReplaceAll(msg, user, "USER")
	}
	type exchange func(p *rawPeer, user, password string) (int, string)
	register := func(withCreds bool) exchange {
		return func(p *rawPeer, user, password string) (int, string) {
			auth := ""
			if withCreds {
				auth = rawAuthorization(t, p, ts, user, user, password)
			}
			p.send(rawRegister(p, user, "same-call-id", 2, "samebranch"+user+fmt.Sprint(withCreds), 3600, auth))
			return p.status()
		}
	}
	invite := func(withCreds bool) exchange {
		return func(p *rawPeer, user, password string) (int, string) {
			extra := ""
			if withCreds {
				p.send(p.request("INVITE", "get-"+user, "get-"+user, "", goodOffer))
				code, msg := p.status()
				if code != 407 {
					t.Fatalf("no challenge: %d", code)
				}
				m := regexp.MustCompile(`(?m)^Proxy-Authenticate: (.*)\r$`).FindStringSubmatch(msg)
				ch, err := digest.ParseChallenge(m[1])
				if err != nil {
					t.Fatal(err)
				}
				cred, err := digest.Digest(ch, digest.Options{Method: "INVITE", URI: "sip:echo@" + ts.hostport(), Username: user, Password: password})
				if err != nil {
					t.Fatal(err)
				}
				extra = "Proxy-Authorization: " + cred.String() + "\n"
			}
			p.send(strings.Replace(p.request("INVITE", "same-call-id", "samebranch"+user+fmt.Sprint(withCreds), extra, goodOffer),
				"From: <sip:raw@", "From: <sip:"+user+"@", 1))
			return p.status()
		}
	}
	for _, c := range []struct {
		name string
		x    exchange
		code int
	}{
		{"REGISTER without credentials", register(false), 401},
		{"REGISTER with credentials", register(true), 403},
		{"INVITE without credentials", invite(false), 407},
		{"INVITE with credentials", invite(true), 403},
	} {
		// The same source port for both, so the echoed Via is the same.
		p := newRawPeer(t, ts.addr)
		codeA, wrong := c.x(p, "alice", "not-her-password")
		codeB, unknown := c.x(p, "mallory", "whatever-password")
		if codeA != c.code || codeB != c.code {
			t.Errorf("%s: %d and %d, want %d", c.name, codeA, codeB, c.code)
		}
		if a, b := norm(wrong, "alice"), norm(unknown, "mallory"); a != b {
			t.Errorf("%s: answers differ\nwrong password:\n%s\nunknown user:\n%s", c.name, a, b)
		}
	}
}

// With SilentUnknown, a callee we dialed that is neither a trunk nor
// registered still gets its BYE through: it is in a live call.
func TestSilentUnknownLetsLiveCallsThrough(t *testing.T) {
	db := newStore(t)
	ts := startStoreServer(t, db, Config{Protect: ProtectConfig{SilentUnknown: true}}, answerEcho)
	callee := rawPeerOn(t, "127.0.0.6", ts.addr)
	go func() {
		buf := make([]byte, 65535)
		for {
			callee.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, src, err := callee.conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			switch {
			case strings.HasPrefix(msg, "INVITE "):
				ok := strings.Replace(rawOK(msg, callee.port()), "<sip:bob@127.0.0.1:", "<sip:bob@127.0.0.6:", 1)
				callee.conn.WriteToUDP([]byte(ok), src)
			case strings.HasPrefix(msg, "ACK "):
				// As the callee: our From is the INVITE's To with our tag.
				bye := fmt.Sprintf("BYE sip:voxbridge@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKcalleebye\r\n"+
					"From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
					ts.hostport(), callee.conn.LocalAddr(), headerOf(msg, "To"), headerOf(msg, "From"), headerOf(msg, "Call-ID"))
				callee.conn.WriteToUDP([]byte(bye), src)
			}
		}
	}()
	m := newOurMedia(t)
	leg, err := ts.Dial(ctxT(t, 10*time.Second), DialRequest{URI: "sip:bob@" + callee.conn.LocalAddr().String(), Offer: m.offer})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-leg.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("the callee's BYE was dropped (refusals %v)", ts.Refusals())
	}
	if info := leg.EndInfo(); info.By != EndRemote || info.Cause != CauseBye {
		t.Fatalf("end %+v", info)
	}
}

// The read filter's cost for one INVITE over UDP from an untrusted
// source: rate check, caps, a full parse and the RFC checks (sipgo then
// parses it again).
func BenchmarkProtectFilterInvite(b *testing.B) {
	cfg := ProtectConfig{TrustedSources: []netip.Prefix{}, SourceRate: 1e9, SourceBurst: 1e9}
	cfg.setDefaults()
	p := newProtector(cfg, slog.New(slog.DiscardHandler))
	src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5060}
	msg := []byte(strings.ReplaceAll(fmt.Sprintf("INVITE sip:echo@127.0.0.1:5060 SIP/2.0\n"+
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbench;rport\nFrom: <sip:a@192.0.2.1>;tag=1\n"+
		"To: <sip:echo@127.0.0.1>\nCall-ID: bench\nCSeq: 1 INVITE\nContact: <sip:a@192.0.2.1:5060>\n"+
		"Max-Forwards: 70\nContent-Type: application/sdp\nContent-Length: %d\n\n%s", len(goodOffer), goodOffer), "\n", "\r\n"))
	props := sip.TransportReadProps{Transport: "UDP", RemoteAddr: src}
	b.ReportAllocs()
	for b.Loop() {
		if out, _ := p.filter(props, msg); out == nil {
			b.Fatal("refused")
		}
	}
}
