package sip

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/sip/siptest"
)

// referServer answers every call and hands over its leg; REFERs on it go
// to refers when accept says so.
type referServer struct {
	addr   *net.UDPAddr
	legs   chan *Leg
	refers chan *Refer
}

func startReferServer(t *testing.T, accept bool) *referServer {
	t.Helper()
	rs := &referServer{legs: make(chan *Leg, 4), refers: make(chan *Refer, 4)}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs.addr = udp.LocalAddr().(*net.UDPAddr)
	serve(t, Config{UDP: udp}, func(l *Leg) {
		rtp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			_ = l.Reject(500, "No Port")
			return
		}
		defer rtp.Close()
		l.OnRefer(func(r *Refer) bool {
			if accept {
				rs.refers <- r
			}
			return accept
		})
		if err := l.Answer(netip.MustParseAddr("127.0.0.1"), rtp.LocalAddr().(*net.UDPAddr).Port); err != nil {
			return
		}
		rs.legs <- l
		<-l.Done()
	})
	return rs
}

func (rs *referServer) call(t *testing.T, p *siptest.Phone) (*siptest.Call, *Leg) {
	t.Helper()
	c, err := p.Dial(ctxT(t, 10*time.Second), "sip:echo@"+rs.addr.String(), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	select {
	case l := <-rs.legs:
		return c, l
	case <-time.After(10 * time.Second):
		t.Fatal("no answered leg")
	}
	return nil, nil
}

// A phone's blind REFER: 202, NOTIFY 100 at once, then the final status
// the flow reports, which ends the subscription.
func TestReferReceived(t *testing.T) {
	rs := startReferServer(t, true)
	c, _ := rs.call(t, newPhone(t))
	code, err := c.Refer(ctxT(t, 10*time.Second), "sip:1004@127.0.0.1", siptest.ReferOptions{})
	if err != nil || code != 202 {
		t.Fatalf("REFER answered %d, %v; want 202", code, err)
	}
	var r *Refer
	select {
	case r = <-rs.refers:
	case <-time.After(5 * time.Second):
		t.Fatal("the REFER never reached the leg's handler")
	}
	if r.User != "1004" || r.Target != "sip:1004@127.0.0.1" || r.Replaces != nil {
		t.Fatalf("refer %+v", r)
	}
	if err := r.Notify(ctxT(t, 10*time.Second), 180, "Ringing"); err != nil {
		t.Fatal(err)
	}
	if err := r.Notify(ctxT(t, 10*time.Second), 200, "OK"); err != nil {
		t.Fatal(err)
	}
	if err := r.Notify(ctxT(t, 10*time.Second), 486, "Busy"); err != nil || !r.Finished() {
		t.Fatalf("a notify after the final one: %v (finished %v)", err, r.Finished())
	}
	final, err := c.WaitFinalNotify(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Notifies()
	if len(got) != 3 || got[0].Code != 100 || got[1].Code != 180 || final.Code != 200 {
		t.Fatalf("notifies %+v; want 100, 180, 200", got)
	}
	if !strings.HasPrefix(got[0].State, "active") || !strings.HasPrefix(final.State, "terminated") {
		t.Errorf("subscription states %q then %q", got[0].State, final.State)
	}
}

// An attended transfer's Refer-To carries the dialog it replaces; the
// server finds that dialog whichever way round the tags are named.
func TestReferWithReplaces(t *testing.T) {
	rs := startReferServer(t, true)
	p := newPhone(t)
	c1, _ := rs.call(t, p)
	c2, leg2 := rs.call(t, p)
	replaces, err := siptest.ReplacesOf(c2)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := c1.Refer(ctxT(t, 10*time.Second), "sip:1003@127.0.0.1", siptest.ReferOptions{Replaces: replaces}); err != nil || code != 202 {
		t.Fatalf("REFER answered %d, %v", code, err)
	}
	r := <-rs.refers
	if r.Replaces == nil || r.Replaces.CallID != c2.CallID() || r.User != "1003" {
		t.Fatalf("refer %+v replaces %+v; want call %s", r, r.Replaces, c2.CallID())
	}
	// The server that received it is the one holding the dialog.
	srv := leg2.srv
	d, err := srv.FindDialog(*r.Replaces)
	if err != nil || d.SIPCallID() != c2.CallID() {
		t.Fatalf("FindDialog: %v, %v", d, err)
	}
	if _, err := srv.FindDialog(ReplacesID{CallID: "nope", ToTag: "a", FromTag: "b"}); err == nil {
		t.Fatal("an unknown dialog was found")
	}
	_ = r.Notify(ctxT(t, 5*time.Second), 200, "OK")
}

// Without a handler willing to take it, a REFER is declined; a REFER with
// no usable Refer-To is a 400; one outside any dialog a 481.
func TestReferRefused(t *testing.T) {
	rs := startReferServer(t, false)
	c, _ := rs.call(t, newPhone(t))
	if code, err := c.Refer(ctxT(t, 10*time.Second), "sip:1004@127.0.0.1", siptest.ReferOptions{}); err != nil || code != 603 {
		t.Fatalf("REFER answered %d, %v; want 603", code, err)
	}
	if code, err := c.Refer(ctxT(t, 10*time.Second), "mailto:someone@example.org", siptest.ReferOptions{}); err != nil || code != 400 {
		t.Fatalf("REFER to a mailto: answered %d, %v; want 400", code, err)
	}
	if code, err := c.Refer(ctxT(t, 10*time.Second), "sip:1004@127.0.0.1", siptest.ReferOptions{Replaces: "only-a-call-id"}); err != nil || code != 400 {
		t.Fatalf("REFER with a broken Replaces answered %d, %v; want 400", code, err)
	}
	if len(c.Notifies()) != 0 {
		t.Fatalf("notifies for refused REFERs: %+v", c.Notifies())
	}

	raw := newRawPeer(t, rs.addr)
	raw.send(raw.request("REFER", "no-such-dialog", "refer1", "Refer-To: <sip:1004@127.0.0.1>\n", ""))
	if code, _ := raw.status(); code != 481 {
		t.Fatalf("REFER outside a dialog answered %d; want 481", code)
	}
}

// Our REFER to a peer: accepted and reported done; accepted but the target
// busy; refused outright.
func TestReferSent(t *testing.T) {
	rs := startReferServer(t, true)
	p := newPhone(t)
	for _, tc := range []struct {
		name        string
		plan        siptest.ReferPlan
		code, final int
		transferred bool
	}{
		{"accepted", siptest.ReferPlan{FinalCode: 200, FinalDelay: 200 * time.Millisecond}, 202, 200, true},
		{"target busy", siptest.ReferPlan{FinalCode: 486}, 202, 486, false},
		{"refused", siptest.ReferPlan{Reject: 603}, 603, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.OnRefer(func(*sip.Request) siptest.ReferPlan { return tc.plan })
			_, leg := rs.call(t, p)
			before := len(p.ReferTargets())
			res, err := leg.Refer(ctxT(t, 20*time.Second), "sip:+15550001111@carrier.example")
			if err != nil {
				t.Fatal(err)
			}
			if res.Code != tc.code || res.FinalCode != tc.final || res.Transferred() != tc.transferred {
				t.Fatalf("result %+v; want code %d final %d", res, tc.code, tc.final)
			}
			targets := p.ReferTargets()
			if len(targets) != before+1 || !strings.Contains(targets[len(targets)-1], "+15550001111@carrier.example") {
				t.Fatalf("the peer was asked for %q", targets)
			}
		})
	}
}

// A sipfrag must start with a status line.
func TestParseSipfrag(t *testing.T) {
	for body, want := range map[string]int{
		"SIP/2.0 200 OK\r\n":                 200,
		"SIP/2.0 100 Trying":                 100,
		"SIP/2.0 603 Declined\r\nVia: x\r\n": 603,
		"":                                   0,
		"HTTP/1.1 200 OK":                    0,
		"SIP/2.0 abc":                        0,
		"SIP/2.0 999 Nope":                   0,
	} {
		f, err := parseSipfrag([]byte(body))
		if (err == nil) != (want != 0) || f.code != want {
			t.Errorf("%q: %+v, %v; want %d", body, f, err, want)
		}
	}
}
