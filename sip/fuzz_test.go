package sip

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/voxbridge/voxbridge/store"
)

// FuzzParseInfoDTMF: no panic; content types other than the two DTMF ones
// are not ours (ok false, no error); a DTMF body gives a digit of 0-9 * #
// A-D or ErrBadDTMF; and that digit, written back the way phones send it in
// either format, parses to itself.
func FuzzParseInfoDTMF(f *testing.F) {
	f.Add("application/dtmf-relay", []byte("Signal=5\r\nDuration=160\r\n"))
	f.Add("Application/DTMF-Relay; charset=x", []byte("signal= #\nduration=250"))
	f.Add("application/dtmf-relay", []byte("Duration=160\r\nSignal=11\r\n"))
	f.Add("application/dtmf-relay", []byte("Signal=\r\n"))
	f.Add("application/dtmf", []byte("d"))
	f.Add("application/dtmf", []byte("12"))
	f.Add("application/sdp", []byte("Signal=5"))
	f.Add("", []byte{0xff, '=', 0})
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		digit, ok, err := ParseInfoDTMF(ct, body)
		base := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
		isDTMF := base == "application/dtmf-relay" || base == "application/dtmf"
		if ok != isDTMF {
			t.Fatalf("content type %q: ok=%v", ct, ok)
		}
		if !ok {
			if err != nil || digit != 0 {
				t.Fatalf("not DTMF, yet digit %q err %v", digit, err)
			}
			return
		}
		if err != nil {
			if err != ErrBadDTMF || digit != 0 {
				t.Fatalf("bad body: digit %q err %v", digit, err)
			}
			return
		}
		if !strings.ContainsRune("0123456789*#ABCD", digit) {
			t.Fatalf("digit %q from %q", digit, body)
		}
		for _, enc := range []struct{ ct, body string }{
			{"application/dtmf-relay", "Signal=" + string(digit) + "\r\nDuration=250\r\n"},
			{"application/dtmf", string(digit)},
		} {
			if d, ok, err := ParseInfoDTMF(enc.ct, []byte(enc.body)); !ok || err != nil || d != digit {
				t.Fatalf("%q re-encoded as %q: %q %v %v", digit, enc.body, d, ok, err)
			}
		}
	})
}

// digestFuzz is a digest authenticator with one known user, alice.
func digestFuzz(tb testing.TB) (*digestAuth, func(string) (*credentials, bool)) {
	a, err := newDigestAuth(DefaultRealm, []byte("fuzz secret"), time.Minute, nil)
	if err != nil {
		tb.Fatal(err)
	}
	const password = "alice-fuzz-secret"
	ha1 := func(h func([]byte) []byte) string {
		return hex.EncodeToString(h([]byte("alice:" + DefaultRealm + ":" + password)))
	}
	alice := &credentials{realm: DefaultRealm,
		ha1MD5:    ha1(func(b []byte) []byte { s := md5.Sum(b); return s[:] }),
		ha1SHA256: ha1(func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }),
		identity:  Identity{Extension: &store.Extension{Number: "1001", Username: "alice"}}}
	return a, func(u string) (*credentials, bool) { return alice, u == "alice" }
}

func fuzzRequest(tb testing.TB, hdr, value string) *sip.Request {
	req := sip.NewRequest(sip.INVITE, sip.Uri{User: "1002", Host: "127.0.0.1", Port: 5060})
	req.AppendHeader(sip.NewHeader(hdr, value))
	req.SetSource("127.0.0.1:5070")
	return req
}

// FuzzDigestHeader feeds arbitrary Authorization and Proxy-Authorization
// values to the checker. Properties: no panic; a forged value never
// authenticates (its nonce is not one we issued); a value that says
// Digest but does not parse is invalid (400), never a challenge loop; a
// value of another scheme is treated as absent.
func FuzzDigestHeader(f *testing.F) {
	a, lookup := digestFuzz(f)
	f.Add(`Digest username="alice",realm="voxbridge",nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",uri="sip:1002@127.0.0.1:5060",response="0123456789abcdef0123456789abcdef",algorithm=MD5,qop=auth,nc=00000001,cnonce="x"`, true)
	f.Add(`Digest username="alice", realm="voxbridge", nonce="`+a.nonce("127.0.0.1")+`", uri="sip:127.0.0.1", response="00", nc=1, qop=auth, cnonce="a"`, false)
	f.Add(`Digest username="al\"ice",realm="voxbridge",nonce=",,,",nc=zz`, true)
	f.Add(`Digest realm=`, false)
	f.Add(`Digest `, true)
	f.Add(`Basic YWxpY2U6c2VjcmV0`, false)
	f.Add("Digest username=\"alice\"\r\n,realm=\"voxbridge\"", true)
	f.Add(`Digest username="alice",realm="voxbridge",algorithm=SHA-512-256,nonce="x",response="y",uri="sip:1002@127.0.0.1",qop=auth,nc=1,cnonce="c"`, false)
	f.Fuzz(func(t *testing.T, value string, proxy bool) {
		hdr := "Authorization"
		if proxy {
			hdr = "Proxy-Authorization"
		}
		got, id := a.check(fuzzRequest(t, hdr, value), hdr, lookup)
		if got == authOK || got == authStale || id.Extension != nil {
			t.Fatalf("a forged %s authenticated: %d %+v", hdr, got, id)
		}
		_, perr := digest.ParseCredentials(value)
		switch {
		case perr != nil && digest.IsDigest(value) && got != authInvalid:
			t.Fatalf("unparseable digest %q: result %d, want invalid", value, got)
		case perr != nil && !digest.IsDigest(value) && got != authMissing:
			t.Fatalf("another scheme %q: result %d, want missing", value, got)
		}
	})
}

// FuzzDigestCheck builds credentials from fuzzed fields over a nonce we
// issued, hashed the way a client does, and checks the verdict against
// the rules: accepted exactly when the user is alice, the password is
// hers, the algorithm is MD5 or SHA-256 (absent means MD5), qop is auth,
// nc is positive, the cnonce is not empty and the digest-uri names the
// request's target; the same nc again is then refused as a replay.
func FuzzDigestCheck(f *testing.F) {
	a, lookup := digestFuzz(f)
	f.Add("alice", "alice-fuzz-secret", "MD5", "auth", "sip:1002@127.0.0.1:5060", "c0ffee", uint32(1))
	f.Add("alice", "alice-fuzz-secret", "sha-256", "auth", "sip:127.0.0.1", "c0ffee", uint32(7))
	f.Add("alice", "alice-fuzz-secret", "", "auth", "sip:1002@127.0.0.1;transport=udp", "c", uint32(0xffffffff))
	f.Add("alice", "guess", "MD5", "auth", "sip:1002@127.0.0.1", "c", uint32(1))
	f.Add("bob", "alice-fuzz-secret", "MD5", "auth", "sip:1002@127.0.0.1", "c", uint32(1))
	f.Add("alice", "alice-fuzz-secret", "MD5", "auth-int", "sip:1002@127.0.0.1", "c", uint32(1))
	f.Add("alice", "alice-fuzz-secret", "MD5", "auth", "sip:1003@127.0.0.1", "c", uint32(1))
	f.Add("alice", "alice-fuzz-secret", "MD5", "auth", "sip:1002@198.51.100.1", "c", uint32(1))
	f.Add("alice", "alice-fuzz-secret", "MD5", "auth", "sip:1002@127.0.0.1", "", uint32(1))
	f.Add("alice", "alice-fuzz-secret", "MD5", "auth", "sip:1002@127.0.0.1", "c", uint32(0))
	f.Add("alice", "alice-fuzz-secret", "SHA-512-256", "auth", "sip:1002@127.0.0.1", "c", uint32(1))
	f.Fuzz(func(t *testing.T, user, password, alg, qop, uri, cnonce string, nc uint32) {
		// Quoted-string and token syntax is FuzzDigestHeader's job; here
		// the fields must survive quoting unchanged.
		for _, s := range []string{user, password, alg, qop, uri, cnonce} {
			if strings.ContainsAny(s, "\"\\,=\r\n\x00 \t") || !isPrintableASCII(s) {
				return
			}
		}
		ip := "127.0.0.1"
		nonce := a.nonce(ip)
		hashAlg := strings.ToUpper(alg)
		h := func(s string) string {
			if hashAlg == algSHA256 {
				b := sha256.Sum256([]byte(s))
				return hex.EncodeToString(b[:])
			}
			b := md5.Sum([]byte(s))
			return hex.EncodeToString(b[:])
		}
		ncHex := fmt.Sprintf("%08x", nc)
		resp := h(h(user+":"+DefaultRealm+":"+password) + ":" + nonce + ":" + ncHex + ":" + cnonce + ":" + qop + ":" + h("INVITE:"+uri))
		value := fmt.Sprintf(`Digest username="%s",realm="%s",nonce="%s",uri="%s",response="%s",qop=%s,nc=%s,cnonce="%s"`,
			user, DefaultRealm, nonce, uri, resp, qop, ncHex, cnonce)
		if alg != "" {
			value += ",algorithm=" + alg
		}
		req := fuzzRequest(t, "Authorization", value)
		got, id := a.check(req, "Authorization", lookup)

		algOK := hashAlg == "" || hashAlg == algMD5 || hashAlg == algSHA256
		want := user == "alice" && password == "alice-fuzz-secret" && algOK && qop == "auth" && nc > 0 &&
			cnonce != "" && sameTarget(uri, &req.Recipient)
		if (got == authOK) != want {
			t.Fatalf("%s: result %d, want accepted=%v", value, got, want)
		}
		if !want {
			return
		}
		if id.Extension == nil || id.Extension.Username != "alice" {
			t.Fatalf("accepted without alice's identity: %+v", id)
		}
		if again, _ := a.check(fuzzRequest(t, "Authorization", value), "Authorization", lookup); again != authRenew {
			t.Fatalf("replayed nc %s: result %d, want renew", ncHex, again)
		}
	})
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// FuzzServerDatagram sends each input as one UDP datagram to a running
// server (the real transport, parser, protection and every request
// handler, with a store and a registered-capable extension), then an
// OPTIONS from the same socket: the server must still answer it with 200.
// Responses to the input itself are not judged here (the torture test
// does that for RFC 4475's messages); that the server lives is.
func FuzzServerDatagram(f *testing.F) {
	for _, s := range fuzzServerSeeds(f) {
		f.Add(s)
	}
	db := newStore(f)
	ext := &store.Extension{Number: "1001", Username: "alice", Enabled: true}
	if err := ext.SetPassword(DefaultRealm, "alice-fuzz-secret"); err != nil {
		f.Fatal(err)
	}
	if err := db.CreateExtension(f.Context(), ext); err != nil {
		f.Fatal(err)
	}
	// Lock-out off: failed digests from the fuzzer would otherwise turn
	// every later answer into 403 and hide the handlers behind it.
	ts := startStoreServer(f, db, Config{AllowAnonymous: true, Auth: AuthConfig{MaxFailures: -1}}, rejectBusy)
	n := 0
	f.Fuzz(func(t *testing.T, msg []byte) {
		n++
		p := newRawPeer(t, ts.addr)
		if _, err := p.conn.WriteToUDP(msg, ts.addr); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("alive-%d-%d", p.port(), n)
		p.send(p.request("OPTIONS", id, id, "", ""))
		buf := make([]byte, 65535)
		deadline := time.Now().Add(10 * time.Second)
		for {
			p.conn.SetReadDeadline(deadline)
			k, _, err := p.conn.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("no answer to OPTIONS after %q: %v", truncate(string(msg), 200), err)
			}
			res := string(buf[:k])
			if !strings.Contains(res, "Call-ID: "+id+"\r\n") || !strings.HasPrefix(res, "SIP/2.0 ") {
				continue // the answer to the input, or a request of the server's
			}
			if !strings.HasPrefix(res, "SIP/2.0 200 ") {
				t.Fatalf("OPTIONS after %q answered %q", truncate(string(msg), 200), truncate(res, 100))
			}
			return
		}
	})
}

// fuzzServerSeeds are requests of every method the server handles, and
// RFC 4475's torture messages.
func fuzzServerSeeds(tb testing.TB) [][]byte {
	crlf := func(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }
	req := func(method, extra, ct, body string) []byte {
		return crlf(fmt.Sprintf("%s sip:1001@127.0.0.1:5060 SIP/2.0\n"+
			"Via: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK-seed-%s\n"+
			"From: <sip:alice@127.0.0.1>;tag=seed\nTo: <sip:1001@127.0.0.1>\n"+
			"Call-ID: seed-%s\nCSeq: 1 %s\nContact: <sip:alice@127.0.0.1:5070>\nMax-Forwards: 70\n%s"+
			"Content-Type: %s\nContent-Length: %d\n\n%s", method, method, method, method, extra, ct, len(body), body))
	}
	seeds := [][]byte{
		req("INVITE", "", "application/sdp", goodOffer),
		req("INVITE", "Session-Expires: 90;refresher=uac\nSupported: timer\n", "application/sdp", strings.Replace(goodOffer, "RTP/AVP 0 101", "RTP/AVP 18 99", 1)),
		req("REGISTER", "Expires: 3600\nAuthorization: Digest username=\"alice\",realm=\"voxbridge\",nonce=\"x\",uri=\"sip:127.0.0.1\",response=\"0\"\n", "text/plain", ""),
		req("INFO", "", "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
		req("BYE", "", "text/plain", ""),
		req("CANCEL", "", "text/plain", ""),
		req("ACK", "", "text/plain", ""),
		req("REFER", "Refer-To: <sip:1002@127.0.0.1>\n", "text/plain", ""),
		req("SUBSCRIBE", "Event: presence\n", "text/plain", ""),
		req("NOTIFY", "Event: refer\nSubscription-State: active\n", "message/sipfrag", "SIP/2.0 200 OK"),
		req("MESSAGE", "", "text/plain", "hello"),
		req("UPDATE", "", "application/sdp", goodOffer),
		req("PRACK", "RAck: 1 1 INVITE\n", "text/plain", ""),
		crlf("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-r\nCall-ID: r\nCSeq: 1 INVITE\nContent-Length: 0\n\n"),
		[]byte("\r\n\r\n"), // a keep-alive
		{},
	}
	// RFC 4475's messages ship with sipgo's module.
	dir := tortureDir(tb)
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.dat"))
	if len(files) < 45 {
		tb.Fatalf("found %d torture messages in %s", len(files), dir)
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && len(b) < 60000 {
			seeds = append(seeds, b)
		}
	}
	return seeds
}
