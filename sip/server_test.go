package sip

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawPeer sends hand-written SIP over UDP, as a hostile or quirky peer would.
type rawPeer struct {
	t    *testing.T
	conn *net.UDPConn
	to   *net.UDPAddr
}

func newRawPeer(t *testing.T, to *net.UDPAddr) *rawPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, conn: c, to: to}
}

func (p *rawPeer) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

func (p *rawPeer) send(msg string) {
	p.t.Helper()
	msg = strings.ReplaceAll(msg, "\n", "\r\n")
	if _, err := p.conn.WriteToUDP([]byte(msg), p.to); err != nil {
		p.t.Fatal(err)
	}
}

// status reads responses until one that is not 100 Trying, and returns its
// status code and the whole message.
func (p *rawPeer) status() (int, string) {
	p.t.Helper()
	buf := make([]byte, 65535)
	for {
		p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			p.t.Fatalf("no response: %v", err)
		}
		msg := string(buf[:n])
		var code int
		if _, err := fmt.Sscanf(msg, "SIP/2.0 %d", &code); err != nil {
			continue // a request from the server; not what we wait for
		}
		if code == 100 {
			continue
		}
		return code, msg
	}
}

// request renders a request with the headers every SIP request needs.
func (p *rawPeer) request(method, callID, branch, extra, body string) string {
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\n"
	}
	return fmt.Sprintf("%s sip:echo@%s SIP/2.0\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s\n"+
		"From: <sip:raw@127.0.0.1>;tag=raw1\n"+
		"To: <sip:echo@127.0.0.1>\n"+
		"Call-ID: %s\n"+
		"CSeq: 1 %s\n"+
		"Contact: <sip:raw@127.0.0.1:%d>\n"+
		"Max-Forwards: 70\n%s%s"+
		"Content-Length: %d\n\n%s",
		method, p.to.String(), p.port(), branch, callID, method, p.port(), extra, ct, len(body), body)
}

const goodOffer = `v=0
o=raw 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
`

func startServer(t *testing.T, handler CallHandler) *net.UDPAddr {
	t.Helper()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, Config{UDP: udp}, handler)
	return udp.LocalAddr().(*net.UDPAddr)
}

// serve runs a server on the given listeners until the test ends.
func serve(t *testing.T, cfg Config, handler CallHandler) {
	t.Helper()
	cfg.AdvertiseIP = net.IPv4(127, 0, 0, 1)
	cfg.Logger = slog.New(slog.DiscardHandler)
	if cfg.Store == nil {
		cfg.AllowAnonymous = true // these tests are about SIP, not who calls
	}
	s, err := NewServer(cfg, handler)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func rejectBusy(leg *Leg) { _ = leg.Reject(486, "Busy Here") }

func TestRequestsOutsideCalls(t *testing.T) {
	addr := startServer(t, rejectBusy)
	p := newRawPeer(t, addr)
	cases := []struct {
		name   string
		msg    string
		code   int
		header string // must appear in the response
	}{
		{"options", p.request("OPTIONS", "opt-1", "o1", "", ""), 200, "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"},
		{"bye unknown dialog", p.request("BYE", "bye-1", "b1", "", ""), 481, ""},
		{"info unknown dialog", p.request("INFO", "info-1", "i1", "", ""), 481, ""},
		{"cancel unknown", p.request("CANCEL", "cancel-1", "c1", "", ""), 481, ""},
		{"register without a registrar", p.request("REGISTER", "reg-1", "r1", "", ""), 405, "Allow:"},
		{"unknown method", p.request("FROB", "frob-1", "f1", "", ""), 501, ""},
		{"invite without sdp", p.request("INVITE", "inv-nosdp", "n1", "", ""), 488, ""},
		{"invite garbage sdp", p.request("INVITE", "inv-garbage", "g1", "", "this is not SDP at all\n"), 400, ""},
		{"reinvite unknown dialog", strings.Replace(p.request("INVITE", "inv-reinv", "ri1", "", goodOffer), "To: <sip:echo@127.0.0.1>", "To: <sip:echo@127.0.0.1>;tag=nope", 1), 481, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p.send(tc.msg)
			code, msg := p.status()
			if code != tc.code {
				t.Fatalf("got %d, want %d:\n%s", code, tc.code, msg)
			}
			if tc.header != "" && !strings.Contains(msg, tc.header) {
				t.Fatalf("response lacks %q:\n%s", tc.header, msg)
			}
		})
	}
}

// A negotiation failure reaches the handler (so the call can be recorded)
// with NegotiateErr set.
func TestNoCommonCodecReachesHandler(t *testing.T) {
	got := make(chan error, 1)
	addr := startServer(t, func(leg *Leg) {
		got <- leg.NegotiateErr
		_ = leg.Reject(488, "Not Acceptable Here")
	})
	p := newRawPeer(t, addr)
	offer := strings.Replace(goodOffer, "RTP/AVP 0 101", "RTP/AVP 101", 1)
	p.send(p.request("INVITE", "only-dtmf", "od1", "", offer))
	if code, msg := p.status(); code != 488 {
		t.Fatalf("got %d, want 488:\n%s", code, msg)
	}
	if err := <-got; err == nil {
		t.Fatal("handler saw no negotiation error for an offer with only telephone-event")
	}
}

func TestRetransmittedInviteMakesOneLeg(t *testing.T) {
	var legs atomic.Int32
	release := make(chan struct{})
	addr := startServer(t, func(leg *Leg) {
		legs.Add(1)
		<-release
		_ = leg.Reject(486, "Busy Here")
	})
	p := newRawPeer(t, addr)
	inv := p.request("INVITE", "retrans-1", "rt1", "", goodOffer)
	p.send(inv)
	p.send(inv)
	p.send(inv)
	close(release)
	if code, _ := p.status(); code != 486 {
		t.Fatalf("got %d, want 486", code)
	}
	if n := legs.Load(); n != 1 {
		t.Fatalf("%d legs for one retransmitted INVITE, want 1", n)
	}
}

func TestGarbageDoesNotStopServer(t *testing.T) {
	addr := startServer(t, rejectBusy)
	p := newRawPeer(t, addr)
	for _, g := range []string{
		"", "\x00\x01\x02", "INVITE\n\n", "SIP/2.0 200 OK\n\n",
		"INVITE sip:x SIP/2.0\nVia: garbage\nContent-Length: 99999\n\n",
		"OPTIONS sip:x@y SIP/2.0\nCSeq: notanumber OPTIONS\n\n",
		strings.Repeat("A", 60000),
	} {
		p.send(g)
	}
	p.send(p.request("OPTIONS", "after-garbage", "ag1", "", ""))
	// Garbage that still names a request gets its one 400 first; anything
	// else before the OPTIONS answer is a mistake.
	for {
		code, msg := p.status()
		if strings.Contains(msg, "after-garbage") {
			if code != 200 {
				t.Fatalf("server answered %d to OPTIONS after garbage", code)
			}
			return
		}
		if code != 400 {
			t.Fatalf("server answered garbage with %d, want 400:\n%s", code, msg)
		}
	}
}

func TestParseInfoDTMF(t *testing.T) {
	cases := []struct {
		ct, body string
		want     rune
		ok, err  bool
	}{
		{"application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", '5', true, false},
		{"application/dtmf-relay", "Signal= #\nDuration=100", '#', true, false},
		{"application/dtmf-relay; charset=x", "signal=11", '#', true, false},
		{"application/dtmf", "*", '*', true, false},
		{"application/dtmf", "b", 'B', true, false},
		{"application/dtmf-relay", "Signal=55", 0, true, true},
		{"application/dtmf-relay", "", 0, true, true},
		{"text/plain", "5", 0, false, false},
	}
	for _, c := range cases {
		d, ok, err := ParseInfoDTMF(c.ct, []byte(c.body))
		if d != c.want || ok != c.ok || (err != nil) != c.err {
			t.Errorf("ParseInfoDTMF(%q, %q) = %q, %v, %v; want %q, %v, err %v", c.ct, c.body, d, ok, err, c.want, c.ok, c.err)
		}
	}
}

// Mutated INVITEs (bytes flipped, cut, duplicated) must never take the
// server down: afterwards it still answers OPTIONS.
func TestMutatedInvitesDoNotCrash(t *testing.T) {
	addr := startServer(t, rejectBusy)
	p := newRawPeer(t, addr)
	base := []byte(strings.ReplaceAll(p.request("INVITE", "mut", "m0", "", goodOffer), "\n", "\r\n"))
	rng := rand.New(rand.NewPCG(1, 2))
	alive := newRawPeer(t, addr)
	for i := range 400 {
		m := append([]byte(nil), base...)
		switch i % 4 {
		case 0: // flip a few bytes
			for range 1 + rng.IntN(8) {
				m[rng.IntN(len(m))] = byte(rng.IntN(256))
			}
		case 1: // cut anywhere
			m = m[:rng.IntN(len(m))]
		case 2: // duplicate a slice into the middle
			a := rng.IntN(len(m))
			b := a + rng.IntN(len(m)-a)
			m = append(m[:b], append(append([]byte(nil), m[a:b]...), m[b:]...)...)
		case 3: // mangle the SDP only
			sdpAt := strings.Index(string(m), "v=0")
			for range 1 + rng.IntN(6) {
				m[sdpAt+rng.IntN(len(m)-sdpAt)] = byte(rng.IntN(256))
			}
		}
		// Unique branch and Call-ID so each is a new transaction.
		m = []byte(strings.Replace(strings.Replace(string(m), "branch=z9hG4bKm0", fmt.Sprintf("branch=z9hG4bKm%d", i+1), 1), "Call-ID: mut", fmt.Sprintf("Call-ID: mut%d", i), 1))
		if _, err := p.conn.WriteToUDP(m, addr); err != nil {
			t.Fatal(err)
		}
		// Every 25 messages, check the server still answers. This also
		// paces the test: a burst of 400 datagrams overflows the socket
		// buffer and would lose the check itself.
		if i%25 == 24 {
			alive.send(alive.request("OPTIONS", fmt.Sprintf("alive%d", i), fmt.Sprintf("al%d", i), "", ""))
			if code, _ := alive.status(); code != 200 {
				t.Fatalf("OPTIONS after %d mutated INVITEs: %d", i+1, code)
			}
		}
	}
}

func TestOptionsOverTCP(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, Config{TCP: tcp}, rejectBusy)

	c, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.TCPAddr).Port
	msg := fmt.Sprintf("OPTIONS sip:echo@%s SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bKtcp1\r\nFrom: <sip:raw@127.0.0.1>;tag=t1\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: tcp-opt\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", tcp.Addr(), port)
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		t.Fatalf("TCP OPTIONS answer: %q", buf[:n])
	}
}
