package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/sip/siptest"
)

// answerEcho answers calls to "echo" (with a media address nobody
// listens on: these tests are about signaling) and refuses the others
// with 486.
func answerEcho(leg *Leg) {
	if leg.ToUser != "echo" {
		_ = leg.Reject(486, "Busy Here")
		return
	}
	_ = leg.Answer(netip.MustParseAddr("127.0.0.1"), 9)
}

// rawPeerOn is a raw peer bound to a given loopback address.
func rawPeerOn(t *testing.T, ip string, to *net.UDPAddr) *rawPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatalf("bind %s (Linux routes all of 127.0.0.0/8 to loopback): %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, conn: c, to: to}
}

// A flood of 2000 OPTIONS and INVITEs from one source (127.0.0.2) gets
// that source banned after its burst, while a phone on 127.0.0.1 places a
// call that is answered in the middle of the flood.
func TestFloodBansSourceWhileOtherCallsGetThrough(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const burst = 50
	var s *Server
	serveWith(t, Config{UDP: udp, Protect: ProtectConfig{TrustedSources: []netip.Prefix{},
		SourceRate: 20, SourceBurst: burst, BanDuration: time.Minute}}, answerEcho, &s)
	addr := udp.LocalAddr().(*net.UDPAddr)

	flooder := rawPeerOn(t, "127.0.0.2", addr)
	var answered sync.Map // Call-IDs the flooder got any answer for
	var answers atomic.Int64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 65535)
		for {
			flooder.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, _, err := flooder.conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			answers.Add(1)
			if id := MessageCallID(buf[:n]); id != "" {
				answered.Store(id, true)
			}
		}
	}()

	const total = 2000
	halfway := make(chan struct{})
	go func() {
		for i := range total {
			method := "OPTIONS"
			body := ""
			if i%4 == 0 {
				method, body = "INVITE", goodOffer
			}
			msg := strings.ReplaceAll(flooder.request(method, fmt.Sprint("flood-", i), fmt.Sprint("fl", i), "", body), "\n", "\r\n")
			_, _ = flooder.conn.WriteToUDP([]byte(msg), addr)
			if i == total/2 {
				close(halfway)
			}
		}
	}()

	<-halfway
	phone := newPhone(t) // 127.0.0.1
	call, err := phone.Dial(ctxT(t, 15*time.Second), "sip:echo@"+addr.String(), siptest.DialOptions{})
	if err != nil {
		t.Fatalf("the legitimate call during the flood: %v", err)
	}
	if err := call.Hangup(context.Background()); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	<-readerDone

	distinct := 0
	answered.Range(func(_, _ any) bool { distinct++; return true })
	r := s.Refusals()
	t.Logf("flooder: %d answers for %d of %d messages; refusals %v", answers.Load(), distinct, total, r)
	if distinct > burst+5 {
		t.Errorf("the flooder got answers for %d messages, want at most its burst of %d", distinct, burst)
	}
	if distinct < burst/2 {
		t.Errorf("the flooder got answers for only %d messages before its ban (burst %d)", distinct, burst)
	}
	if r[RefusedRate] != 1 || r[RefusedBanned] < 500 {
		t.Errorf("refusals %v: want one over-rate message, then bans", r)
	}
	// Still banned: an OPTIONS from the flooder's address gets nothing.
	late := rawPeerOn(t, "127.0.0.2", addr)
	late.send(late.request("OPTIONS", "after-flood", "af1", "", ""))
	if code, _ := late.statusOrZero(); code != 0 {
		t.Errorf("a banned source got %d", code)
	}
	// And another source is unaffected.
	ok := newRawPeer(t, addr)
	ok.send(ok.request("OPTIONS", "bystander", "by1", "", ""))
	if code, _ := ok.status(); code != 200 {
		t.Errorf("a bystander got %d", code)
	}
}

// A TCP connection from a banned source is closed at once; a flood over
// TCP bans its source and loses its connection.
func TestFloodOverTCPClosesConnection(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var s *Server
	serveWith(t, Config{TCP: tcp, Protect: ProtectConfig{TrustedSources: []netip.Prefix{},
		SourceRate: 10, SourceBurst: 20, BanDuration: time.Minute}}, answerEcho, &s)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
	c, err := d.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.TCPAddr).Port
	var all []byte
	for i := range 200 {
		all = append(all, tcpOptions(tcp.Addr().String(), port, fmt.Sprint("tf", i))...)
	}
	_, _ = c.Write(all) // may fail once the server has closed
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := readAll(c)
	if isTimeout(err) {
		t.Error("the flooding connection was not closed")
	}
	if n := strings.Count(got, "SIP/2.0 200"); n > 20 {
		t.Errorf("%d answers over TCP, want at most the burst of 20", n)
	}
	if r := s.Refusals(); r[RefusedRate] != 1 {
		t.Errorf("refusals %v", r)
	}
	// A new connection from the banned address is closed unanswered.
	c2, err := d.Dial("tcp", tcp.Addr().String())
	if err != nil {
		return // refused outright is fine too
	}
	defer c2.Close()
	_, _ = c2.Write(tcpOptions(tcp.Addr().String(), c2.LocalAddr().(*net.TCPAddr).Port, "tf-new"))
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := readAll(c2); got != "" || isTimeout(err) {
		t.Errorf("a banned source's new connection got %q", truncate(got, 100))
	}
}

func tcpOptions(to string, port int, id string) []byte {
	return []byte(fmt.Sprintf("OPTIONS sip:echo@%s SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK%s\r\n"+
		"From: <sip:raw@127.0.0.1>;tag=t1\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", to, port, id, id))
}

// readAll reads until EOF, an error or the deadline.
func readAll(c net.Conn) (string, error) {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String(), err
		}
	}
}
