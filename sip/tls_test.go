package sip

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/sip/siptest"
)

// sipStream reads SIP messages off a stream connection.
type sipStream struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// next returns the next message, skipping 100 Trying.
func (s *sipStream) next() string {
	s.t.Helper()
	for {
		s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var head strings.Builder
		cl := 0
		for {
			line, err := s.r.ReadString('\n')
			if err != nil {
				s.t.Fatalf("reading: %v (so far %q)", err, head.String())
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
			if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "content-length") {
				cl, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		body := make([]byte, cl)
		if _, err := io.ReadFull(s.r, body); err != nil {
			s.t.Fatal(err)
		}
		msg := head.String() + string(body)
		if !strings.HasPrefix(msg, "SIP/2.0 100 ") {
			return msg
		}
	}
}

func headerOf(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if n, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(n, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// A whole call over TLS: INVITE answered 200 with SDP, ACK, BYE answered
// 200, on one connection to a listener made by NewTLSListener.
func TestCallOverTLS(t *testing.T) {
	certFile, keyFile, pool := siptest.SelfSignedCert(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := NewTLSListener(raw, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	legs := make(chan *Leg, 1)
	var s *Server
	serveWith(t, Config{TLS: tl}, func(l *Leg) { legs <- l; answerEcho(l) }, &s)
	addr := raw.Addr().String()

	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := &sipStream{t: t, c: c, r: bufio.NewReader(c)}
	port := c.LocalAddr().(*net.TCPAddr).Port
	req := func(method, branch, toTag, body string) string {
		ct := ""
		if body != "" {
			ct = "Content-Type: application/sdp\r\n"
		}
		body = strings.ReplaceAll(body, "\n", "\r\n")
		return fmt.Sprintf("%s sip:echo@%s;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bK%s\r\n"+
			"From: <sip:tls@127.0.0.1>;tag=tls1\r\nTo: <sip:echo@127.0.0.1>%s\r\nCall-ID: tls-call\r\nCSeq: %d %s\r\n"+
			"Contact: <sip:tls@127.0.0.1:%d;transport=tls>\r\nMax-Forwards: 70\r\n%sContent-Length: %d\r\n\r\n%s",
			method, addr, port, branch, toTag, map[string]int{"INVITE": 1, "ACK": 1, "BYE": 2}[method], method, port, ct, len(body), body)
	}
	if _, err := io.WriteString(c, req("INVITE", "tlsinv", "", goodOffer)); err != nil {
		t.Fatal(err)
	}
	ok := st.next()
	if !strings.HasPrefix(ok, "SIP/2.0 200 ") || !strings.Contains(ok, "m=audio ") {
		t.Fatalf("INVITE over TLS answered:\n%s", ok)
	}
	leg := <-legs
	if !strings.EqualFold(leg.Transport, "TLS") {
		t.Errorf("leg transport %q", leg.Transport)
	}
	to := headerOf(ok, "To")
	_, tag, _ := strings.Cut(to, ";tag=")
	if _, err := io.WriteString(c, req("ACK", "tlsack", ";tag="+tag, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, req("BYE", "tlsbye", ";tag="+tag, "")); err != nil {
		t.Fatal(err)
	}
	if bye := st.next(); !strings.HasPrefix(bye, "SIP/2.0 200 ") || headerOf(bye, "CSeq") != "2 BYE" {
		t.Fatalf("BYE over TLS answered:\n%s", bye)
	}
	select {
	case <-leg.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the BYE did not end the leg")
	}
}

// A TCP connection that sends nothing is closed after the handshake
// timeout, a TLS one that never finishes its handshake too, and an idle
// one after the idle timeout; the per-source cap closes one too many.
func TestStreamTimeoutsAndConnectionCap(t *testing.T) {
	certFile, keyFile, _ := siptest.SelfSignedCert(t)
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	raw, _ := net.Listen("tcp", "127.0.0.1:0")
	tl, err := NewTLSListener(raw, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var s *Server
	serveWith(t, Config{TCP: tcp, TLS: tl, Protect: ProtectConfig{HandshakeTimeout: 300 * time.Millisecond,
		IdleTimeout: 600 * time.Millisecond, MaxConnsPerSource: 2}}, answerEcho, &s)

	closedWithin := func(c net.Conn, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := readAll(c)
		return !isTimeout(err)
	}
	silentTCP, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silentTCP.Close()
	silentTLS, err := net.Dial("tcp", raw.Addr().String()) // TCP only: no ClientHello
	if err != nil {
		t.Fatal(err)
	}
	defer silentTLS.Close()
	if !closedWithin(silentTCP, 10*time.Second) {
		t.Error("a silent TCP connection was kept past the handshake timeout")
	}
	if !closedWithin(silentTLS, 10*time.Second) {
		t.Error("a TLS connection without a handshake was kept past the handshake timeout")
	}

	// Idle: one OPTIONS answered, then nothing; the server closes it.
	idle, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	start := time.Now()
	idle.Write(tcpOptions(tcp.Addr().String(), idle.LocalAddr().(*net.TCPAddr).Port, "idle-1"))
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := readAll(idle)
	if !strings.HasPrefix(got, "SIP/2.0 200 ") {
		t.Fatalf("idle connection's OPTIONS: %q", truncate(got, 100))
	}
	if isTimeout(err) {
		t.Fatal("an idle connection was kept open")
	}
	if time.Since(start) < 600*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", time.Since(start))
	}

	// Cap: two connections from 127.0.0.1 held open and answering; the
	// third is closed unanswered.
	var held []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
		c.Write(tcpOptions(tcp.Addr().String(), c.LocalAddr().(*net.TCPAddr).Port, fmt.Sprint("cap-", i)))
	}
	for i, c := range held {
		st := &sipStream{t: t, c: c, r: bufio.NewReader(c)}
		if i < 2 {
			if m := st.next(); !strings.HasPrefix(m, "SIP/2.0 200 ") {
				t.Errorf("connection %d: %q", i, truncate(m, 80))
			}
			continue
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if got, err := readAll(c); got != "" || !closedWithin(c, time.Second) {
			t.Errorf("the connection over the cap got %q, %v", truncate(got, 80), err)
		}
	}
	if r := s.Refusals(); r[RefusedConnLimit] != 1 {
		t.Errorf("refusals %v", r)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// flakyListener fails its first Accepts with EMFILE, as a process out of
// file descriptors sees.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestAcceptSurvivesEMFILE(t *testing.T) {
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	fl := &flakyListener{Listener: tcp}
	fl.fails.Store(5)
	var s *Server
	serveWith(t, Config{TCP: fl}, answerEcho, &s)
	c, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(tcpOptions(tcp.Addr().String(), c.LocalAddr().(*net.TCPAddr).Port, "emfile"))
	st := &sipStream{t: t, c: c, r: bufio.NewReader(c)}
	if m := st.next(); !strings.HasPrefix(m, "SIP/2.0 200 ") {
		t.Fatalf("after EMFILE: %q", truncate(m, 80))
	}
	if r := s.Refusals(); r[RefusedAcceptError] != 5 {
		t.Fatalf("refusals %v", r)
	}
}
