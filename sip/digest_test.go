package sip

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/store"
)

// sippInvite is the authenticated INVITE SIPp 3.6 sends after our 407, as
// captured on loopback: SIPp hashes uri="sip:remote_ip:remote_port" for
// every request (its -auth_uri is global), so an INVITE to a number carries
// a digest-uri without the number. nc and qop are unquoted, algorithm last.
const sippInvite = "INVITE %s SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:25270;branch=z9hG4bK-8568-1-8\r\n" +
	"From: \"alice\" <sip:alice@127.0.0.1>;tag=8568SIPpTag011\r\n" +
	"To: <sip:+14155550100@127.0.0.1:25260>\r\n" +
	"Call-ID: 1-8568@127.0.0.1\r\n" +
	"CSeq: 4 INVITE\r\n" +
	"Contact: <sip:alice@127.0.0.1:25270;transport=UDP>\r\n" +
	"Proxy-Authorization: Digest username=\"alice\",realm=\"voxbridge\",cnonce=\"327b23c6\",nc=%s,qop=auth," +
	"uri=\"%s\",nonce=\"%s\",response=\"%s\",algorithm=MD5\r\n" +
	"Max-Forwards: 70\r\n" +
	"User-Agent: SIPp\r\n" +
	"Content-Length: 0\r\n\r\n"

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// sippRequest is sippInvite answered like SIPp: MD5, qop=auth, its fixed cnonce.
func sippRequest(t *testing.T, ruri, digestURI, nonce, nc, password string) *sip.Request {
	t.Helper()
	ha1 := md5hex("alice:voxbridge:" + password)
	ha2 := md5hex("INVITE:" + digestURI)
	resp := md5hex(ha1 + ":" + nonce + ":" + nc + ":327b23c6:auth:" + ha2)
	msg, err := sip.ParseMessage([]byte(fmt.Sprintf(sippInvite, ruri, nc, digestURI, nonce, resp)))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetSource("127.0.0.1:25270")
	return req
}

func TestDigestAcceptsSIPpProxyAuthorization(t *testing.T) {
	// SHA-256 and MD5 offered, SIPp answers the MD5 one.
	a, err := newDigestAuth("voxbridge", []byte("fixed test secret"), time.Minute, []string{"SHA-256", "MD5"})
	if err != nil {
		t.Fatal(err)
	}
	const password = "alice-interop-secret"
	alice := &credentials{realm: "voxbridge", ha1MD5: md5hex("alice:voxbridge:" + password),
		identity: Identity{Extension: &store.Extension{Number: "1001", Username: "alice"}}}
	lookup := func(u string) (*credentials, bool) { return alice, u == "alice" }
	nonce := a.nonce("127.0.0.1")
	const ruri = "sip:+14155550100@127.0.0.1:25260"

	cases := []struct {
		name, uri, nc, password string
		want                    authResult
	}{
		{"SIPp's server uri", "sip:127.0.0.1:25260", "00000001", password, authOK},
		{"request-uri itself", ruri, "00000002", password, authOK},
		{"replayed nc", ruri, "00000002", password, authRenew},
		{"another number", "sip:+19995550100@127.0.0.1:25260", "00000003", password, authFailed},
		{"another host", "sip:198.51.100.7:5060", "00000004", password, authFailed},
		{"wrong password", "sip:127.0.0.1:25260", "00000005", "guess", authFailed},
	}
	for _, c := range cases {
		req := sippRequest(t, ruri, c.uri, nonce, c.nc, c.password)
		got, id := a.check(req, "Proxy-Authorization", lookup)
		if got != c.want {
			t.Errorf("%s: uri=%q nc=%s: got result %d, want %d", c.name, c.uri, c.nc, got, c.want)
		}
		if got == authOK && (id.Extension == nil || id.Extension.Number != "1001") {
			t.Errorf("%s: authenticated as %+v, want extension 1001", c.name, id)
		}
	}
}

func TestSameTarget(t *testing.T) {
	var target sip.Uri
	if err := sip.ParseUri("sip:1002@pbx.example.com;user=phone", &target); err != nil {
		t.Fatal(err)
	}
	for uri, want := range map[string]bool{
		"sip:1002@pbx.example.com":      true,
		"sip:1002@PBX.example.com:5060": true,
		"sip:pbx.example.com":           true, // the server itself
		"sip:pbx.example.com:5080;lr":   true,
		"sip:1003@pbx.example.com":      false,
		"sip:1002@other.example.com":    false,
		"sip:other.example.com":         false,
		"":                              false,
	} {
		if got := sameTarget(uri, &target); got != want {
			t.Errorf("sameTarget(%q) = %v, want %v", uri, got, want)
		}
	}
}
