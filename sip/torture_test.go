package sip

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
)

// tortureDir finds RFC 4475's torture messages in sipgo's module.
func tortureDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/emiago/sipgo").Output()
	if err != nil {
		t.Fatalf("locating sipgo's module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "sip", "testdata", "torture")
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// silent means no answer is right: the message is a response.
const silent = -1

// The whole RFC 4475 suite, sent over UDP to a running server. sipgo files
// them in valid/ and invalid/; where RFC 4475 names the right answer for a
// UAS we expect that one. Responses are never answered. Notes:
//   - badvers gets 505, novelsc and unkscm 416, bext01 420, invut 415 (RFC
//     4475 §3.1.2.16, §3.3.2-3, §3.3.5-6);
//   - zeromf (§3.3.11: an endpoint processes Max-Forwards 0), cparam01,
//     cparam02, regescrt (§3.3.12-14: well-formed REGISTERs), regaut01
//     (§3.3.7: an unknown scheme gets a fresh challenge) and inv2543 (§3.4:
//     RFC 2543 requests are accepted) are valid for us, though sipgo files
//     them as invalid; they get what any such request gets.
//
// The valid INVITEs get what the test handler (rejectBusy) or the dialog
// layer gives any such call: esc01 and longreq 486 (their "a=rtpmap:31
// LPC" without a clock rate is on a video line we never use, and
// longreq's 3.5 KB answer goes out over UDP whole); inv2543 486 (its
// missing From tag is taken as empty and, with no Contact, its From is
// the remote target, as RFC 2543 had it); wsinv 481, as any INVITE with a
// To tag outside a dialog, once the blanks of "tag = x" are dropped.
var tortureExpect = map[string]int{
	// valid/
	"dblreq": 401, "esc01": 486, "esc02": 501, "escnull": 401, "intmeth": 501, "longreq": 486,
	"lwsdisp": 200, "mpart01": 405, "noreason": silent, "semiuri": 200, "transports": 200,
	"unreason": silent, "wsinv": 481,
	// invalid/
	"badaspec": 400, "badbranch": 400, "baddate": 400, "baddn": 400, "badinv01": 400, "badvers": 505,
	"bcast": silent, "bext01": 420, "bigcode": silent, "clerr": 400, "cparam01": 401, "cparam02": 401,
	"escruri": 400, "insuf": 400, "inv2543": 486, "invut": 415, "ltgtruri": 400, "lwsruri": 400,
	"lwsstart": 400, "mcl01": 400, "mismatch01": 400, "mismatch02": 400, "multi01": 400, "ncl": 400,
	"novelsc": 416, "quotbal": 400, "regaut01": 401, "regbadct": 400, "regescrt": 401, "scalar02": 400,
	"scalarlg": silent, "sdp01": 400, "test": 400, "trws": 400, "unkscm": 416, "unksm2": 400, "zeromf": 200,
}

func TestTortureMessages(t *testing.T) {
	dir := tortureDir(t)
	db := newStore(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.dat"))
	if len(files) < 45 {
		t.Fatalf("found %d torture messages in %s", len(files), dir)
	}
	seen := map[string]bool{}
	var malformed, invalid uint64
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".dat")
		seen[name] = true
		want, ok := tortureExpect[name]
		if !ok {
			t.Errorf("%s: a torture message this test does not know", name)
			continue
		}
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A server each: many of the messages share a Via branch and
		// sent-by, so one server would take them for retransmissions of
		// each other.
		t.Run(name, func(t *testing.T) {
			ts := startStoreServer(t, db, Config{AllowAnonymous: true}, rejectBusy)
			p := port5060Peer(t, ts.addr)
			if _, err := p.conn.WriteToUDP(msg, ts.addr); err != nil {
				t.Fatal(err)
			}
			got := firstFinal(t, p, want == silent)
			if got != want {
				t.Errorf("%s (%s): answered %d, want %d", name, filepath.Base(filepath.Dir(f)), got, want)
			}
			// Nothing crashed or wedged the server.
			alive := newRawPeer(t, ts.addr)
			alive.send(alive.request("OPTIONS", "after-"+name, "after-"+name, "", ""))
			if code, _ := alive.status(); code != 200 {
				t.Fatalf("OPTIONS after %s: %d", name, code)
			}
			r := ts.Refusals()
			malformed += r[RefusedMalformed]
			invalid += r[RefusedInvalid]
		})
	}
	for name := range tortureExpect {
		if !seen[name] {
			t.Errorf("%s: expected but not found in %s", name, dir)
		}
	}
	if malformed < 10 || invalid < 10 {
		t.Errorf("refusals counted: %d malformed, %d invalid", malformed, invalid)
	}
}

// port5060Peer is a raw peer on port 5060 of a random loopback address:
// most torture messages have no rport, so their answers go to the
// source address at the Via's port, 5060 by default (RFC 3261 §18.2.2).
func port5060Peer(t *testing.T, to *net.UDPAddr) *rawPeer {
	t.Helper()
	for range 20 {
		ip := net.IPv4(127, byte(100+rand.IntN(100)), byte(rand.IntN(256)), byte(1+rand.IntN(250)))
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: 5060})
		if err != nil {
			continue
		}
		t.Cleanup(func() { c.Close() })
		return &rawPeer{t: t, conn: c, to: to}
	}
	t.Fatal("no free loopback address with port 5060")
	return nil
}

// firstFinal returns the first non-100 status p receives. For a message
// that must get no answer, it sends an OPTIONS after a pause and returns
// silent if the OPTIONS' 200 is the first thing back.
func firstFinal(t *testing.T, p *rawPeer, expectSilence bool) int {
	t.Helper()
	if expectSilence {
		time.Sleep(200 * time.Millisecond)
		probe := fmt.Sprintf("probe-%s", p.conn.LocalAddr())
		p.send(p.request("OPTIONS", probe, probe, "", ""))
	}
	code, msg := p.statusOrZero()
	if expectSilence && code == 200 && strings.Contains(msg, "probe-") {
		return silent
	}
	return code
}

// statusOrZero is status, but 0 when nothing comes within 3 s.
func (p *rawPeer) statusOrZero() (int, string) {
	buf := make([]byte, 65535)
	for {
		p.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return 0, ""
		}
		msg := string(buf[:n])
		var code int
		if _, err := fmt.Sscanf(msg, "SIP/2.0 %d", &code); err != nil || code == 100 {
			continue
		}
		return code, msg
	}
}

// An INVITE over the size cap, one with too many headers, and one with
// an overlong line are refused with 513 or 400 and counted by reason.
func TestMessageCaps(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var s *Server
	serveWith(t, Config{UDP: udp, Protect: ProtectConfig{MaxMessageSize: 4000, MaxHeaders: 30, MaxLineLength: 1000}}, rejectBusy, &s)
	addr := udp.LocalAddr().(*net.UDPAddr)
	p := newRawPeer(t, addr)
	cases := []struct {
		name, extra, body string
		code              int
		reason            string
	}{
		{"too large", "", strings.Repeat("a=x-filler\n", 400), 513, RefusedTooLarge},
		{"too many headers", strings.Repeat("X-Filler: 1\n", 40), "", 400, RefusedHeaders},
		{"long line", "Subject: " + strings.Repeat("x", 1200) + "\n", "", 400, RefusedLineLength},
		{"fine", strings.Repeat("X-Filler: 1\n", 10), "", 486, ""},
	}
	for i, c := range cases {
		p.send(p.request("INVITE", fmt.Sprint("caps-", i), fmt.Sprint("cp", i), c.extra, goodOffer+c.body))
		if code, msg := p.status(); code != c.code {
			t.Errorf("%s: %d, want %d\n%s", c.name, code, c.code, truncate(msg, 300))
		} else if c.code != 486 && !strings.Contains(msg, "Call-ID: "+fmt.Sprint("caps-", i)) {
			t.Errorf("%s: the answer does not echo the Call-ID:\n%s", c.name, msg)
		}
		if c.reason != "" && s.Refusals()[c.reason] != 1 {
			t.Errorf("%s: refusals %v", c.name, s.Refusals())
		}
	}
}

// The valid torture INVITEs reach the call handler and their answers echo
// what RFC 3261 §8.2.6.2 says they must, however large.
func TestTortureValidInvites(t *testing.T) {
	dir := tortureDir(t)
	db := newStore(t)
	for _, tc := range []struct{ file, fromUser string }{
		{"valid/longreq.dat", "amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername"},
		{"valid/esc01.dat", "I%20have%20spaces"}, // sipgo keeps URI escapes
		{"invalid/inv2543.dat", "+13035551111"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			legs := make(chan *Leg, 1)
			ts := startStoreServer(t, db, Config{AllowAnonymous: true}, func(l *Leg) { legs <- l; rejectBusy(l) })
			p := port5060Peer(t, ts.addr)
			if _, err := p.conn.WriteToUDP(raw, ts.addr); err != nil {
				t.Fatal(err)
			}
			code, msg := p.statusOrZero()
			if code != 486 {
				t.Fatalf("answered %d, want 486\n%s", code, truncate(msg, 400))
			}
			select {
			case l := <-legs:
				if l.FromUser != tc.fromUser {
					t.Errorf("leg from %q, want %q", l.FromUser, tc.fromUser)
				}
				if l.Negotiated.Codec != sdpPCMU() {
					t.Errorf("negotiated %+v, want PCMU", l.Negotiated.Codec)
				}
			default:
				t.Fatal("the handler never saw the call")
			}
			reqMsg, err := sip.ParseMessage(raw)
			if err != nil {
				t.Fatal(err)
			}
			resMsg, err := sip.ParseMessage([]byte(msg))
			if err != nil {
				t.Fatalf("our answer does not parse: %v", err)
			}
			req, res := reqMsg.(*sip.Request), resMsg.(*sip.Response)
			if got, want := len(res.GetHeaders("Via")), len(req.GetHeaders("Via")); got != want || want == 0 {
				t.Errorf("answer has %d Via values, request %d", got, want)
			}
			if res.CallID().Value() != req.CallID().Value() || res.CSeq().SeqNo != req.CSeq().SeqNo {
				t.Errorf("answer's Call-ID/CSeq %q/%d differ from %q/%d", res.CallID().Value(), res.CSeq().SeqNo,
					req.CallID().Value(), req.CSeq().SeqNo)
			}
			if res.From().Address.User != tc.fromUser {
				t.Errorf("answer's From user %q", res.From().Address.User)
			}
			if tag, _ := res.To().Params.Get("tag"); tag == "" {
				t.Errorf("answer's To has no tag: %s", res.To().Value())
			}
			if tc.file == "valid/longreq.dat" && len(msg) <= 1300 {
				t.Errorf("longreq's answer is only %d bytes; the test no longer covers large UDP answers", len(msg))
			}
		})
	}
}

func sdpPCMU() sdp.Codec { return SupportedCodecs[0] }

func TestFixAddrHeaders(t *testing.T) {
	const head = "INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
	const tail = "Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@h>\r\nContent-Length: 4\r\n\r\nbody"
	tests := []struct {
		name, in          string
		fromTag, toTag    string
		fromOK, toOK      bool
		contact, fromLine string // "" skips the check
	}{
		{name: "blanks around = and ;", in: head + "From: <sip:a@example.com> ;  tag = 1f\r\nTo: sip:b@example.com ; tag=2t\r\n" + tail,
			fromTag: "1f", fromOK: true, toTag: "2t", toOK: true, fromLine: "From: <sip:a@example.com>;tag=1f"},
		{name: "folded", in: head + "f: \"J \\\"R\\\"\"  <sip:a@example.com>\r\n  ;\r\n  tag = 98a\r\nt: <sip:b@example.com>\r\n" + tail,
			fromTag: "98a", fromOK: true, fromLine: "f: \"J \\\"R\\\"\"  <sip:a@example.com>;tag=98a"},
		{name: "quoted ; and < kept", in: head + "From: \"a; <b>\" <sip:a@example.com>;tag=x\r\nTo: <sip:b@example.com>\r\n" + tail,
			fromTag: "x", fromOK: true},
		{name: "tagless From gets an empty tag", in: head + "From: <sip:a@example.com>;user=phone\r\nTo: <sip:b@example.com>\r\n" + tail,
			fromTag: "", fromOK: true, fromLine: "From: <sip:a@example.com>;user=phone;tag"},
		{name: "RFC 2543 INVITE gets its From as Contact",
			in:      "INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: sip:+1303@gw.example.net;user=phone\r\nTo: sip:b@example.com\r\nCall-ID: c2\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nbody",
			fromTag: "", fromOK: true, contact: "<sip:+1303@gw.example.net>"}, // ;user=phone is a header param without <>
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := fixAddrHeaders([]byte(tt.in))
			m, err := sip.ParseMessage(out)
			if err != nil {
				t.Fatalf("fixed message does not parse: %v\n%s", err, out)
			}
			req := m.(*sip.Request)
			if tag, ok := req.From().Params.Get("tag"); tag != tt.fromTag || ok != tt.fromOK {
				t.Errorf("From tag %q %v, want %q %v\n%s", tag, ok, tt.fromTag, tt.fromOK, out)
			}
			if tag, ok := req.To().Params.Get("tag"); tag != tt.toTag || ok != tt.toOK {
				t.Errorf("To tag %q %v, want %q %v\n%s", tag, ok, tt.toTag, tt.toOK, out)
			}
			if tt.fromLine != "" && !strings.Contains(string(out), tt.fromLine+"\r\n") {
				t.Errorf("no line %q in\n%s", tt.fromLine, out)
			}
			if tt.contact != "" && (req.Contact() == nil || req.Contact().Value() != tt.contact) {
				t.Errorf("Contact %v, want %s\n%s", req.Contact(), tt.contact, out)
			}
			if string(req.Body()) != "body" {
				t.Errorf("body %q", req.Body())
			}
		})
	}
	// What needs no fixing is passed on as it came: responses, RFC 3261
	// requests with tags, and INVITEs without Contact that are not RFC 2543.
	for _, in := range []string{
		head + "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n" + tail,
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@x> ; tag = 1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
		head + "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
	} {
		msg := []byte(in)
		if out := fixAddrHeaders(msg); &out[0] != &msg[0] || len(out) != len(msg) {
			t.Errorf("rewrote a message that needed nothing:\n%s\n->\n%s", msg, out)
		}
	}
}

// A broken rtpmap sinks an INVITE only when it describes the one codec we
// could use: then it is still refused as malformed SDP.
func TestInviteBrokenRTPMap(t *testing.T) {
	addr := startServer(t, rejectBusy)
	p := newRawPeer(t, addr)
	cases := []struct {
		name, offer string
		code        int
	}{
		{"broken telephone-event", strings.Replace(goodOffer, "telephone-event/8000", "telephone-event", 1), 486},
		{"broken PCMU, the only codec", strings.Replace(goodOffer, "PCMU/8000", "PCMU", 1), 400},
	}
	for i, c := range cases {
		p.send(p.request("INVITE", fmt.Sprint("rtpmap-", i), fmt.Sprint("rm", i), "", c.offer))
		if code, msg := p.status(); code != c.code {
			t.Errorf("%s: %d, want %d\n%s", c.name, code, c.code, truncate(msg, 300))
		}
	}
}
