package sip

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMessageCallID(t *testing.T) {
	for _, tc := range []struct{ name, msg, want string }{
		{"long form", "INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCall-ID: abc@host\r\n\r\n", "abc@host"},
		{"any case, blanks", "BYE sip:a@b SIP/2.0\r\nCALL-id \t:  x-1 \r\n\r\n", "x-1"},
		{"compact form", "SIP/2.0 200 OK\r\nv: x\r\ni:compact\r\n\r\n", "compact"},
		{"bare LF", "OPTIONS sip:a SIP/2.0\nCall-ID: lf\n\n", "lf"},
		{"other header starting with i", "SIP/2.0 200 OK\r\nIn-Reply-To: no\r\nCall-ID: yes\r\n\r\n", "yes"},
		{"only in body", "INVITE sip:a SIP/2.0\r\nVia: x\r\n\r\nCall-ID: body\r\n", ""},
		{"none", "SIP/2.0 200 OK\r\nVia: x\r\n\r\n", ""},
		{"start line only", "garbage", ""},
		{"empty", "", ""},
		{"no colon", "INVITE sip:a SIP/2.0\r\nCall-ID abc\r\n\r\n", ""},
	} {
		if got := MessageCallID([]byte(tc.msg)); got != tc.want {
			t.Errorf("%s: MessageCallID = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestCaptureSeesUDPBothWays: with Config.Capture, a request read on the
// UDP listener and the server's response to it reach the callback, with
// the right addresses and Call-ID.
func TestCaptureSeesUDPBothWays(t *testing.T) {
	type seen struct {
		src, dst netip.AddrPort
		msg      string
	}
	var mu sync.Mutex
	var got []seen
	capture := func(_ time.Time, src, dst netip.AddrPort, msg []byte) {
		mu.Lock()
		got = append(got, seen{src, dst, string(msg)})
		mu.Unlock()
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := udp.LocalAddr().(*net.UDPAddr)
	serve(t, Config{UDP: udp, Capture: capture}, rejectBusy)

	p := newRawPeer(t, server)
	p.send(p.request("OPTIONS", "cap-1", "opt1", "", ""))
	if code, _ := p.status(); code != 200 {
		t.Fatalf("OPTIONS answered %d", code)
	}
	peer := p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	srv := server.AddrPort()
	var in, out int
	deadline := time.Now().Add(10 * time.Second)
	for (in == 0 || out == 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the response is captured after it is written
		mu.Lock()
		in, out = 0, 0
		for _, s := range got {
			if MessageCallID([]byte(s.msg)) != "cap-1" {
				t.Errorf("captured datagram of another call: %.60q", s.msg)
				continue
			}
			switch {
			case s.src == peer && s.dst == srv && strings.HasPrefix(s.msg, "OPTIONS "):
				in++
			case s.src == srv && s.dst == peer && strings.HasPrefix(s.msg, "SIP/2.0 200"):
				out++
			}
		}
		mu.Unlock()
	}
	if in != 1 || out != 1 {
		t.Errorf("captured %d OPTIONS in and %d 200 OK out, want 1 and 1", in, out)
	}
}
