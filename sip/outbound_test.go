package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// ourMedia is the media side of a call we place: a socket and the offer
// naming it.
type ourMedia struct {
	conn  *net.UDPConn
	offer []byte
}

func newOurMedia(t *testing.T) *ourMedia {
	conn := rtptest.Listen(t)
	offer := sdp.Build(sdp.Local{
		Address: netip.MustParseAddr("127.0.0.1"), Port: conn.LocalAddr().(*net.UDPAddr).Port,
		SessionID: 42, Version: 1, Codecs: []sdp.Codec{sdp.PCMU, sdp.PCMA}, DTMFPayloadType: 101,
	})
	return &ourMedia{conn: conn, offer: offer}
}

// stream starts our media toward what the leg negotiated.
func (m *ourMedia) stream(t *testing.T, n sdp.Negotiated) *media.Stream {
	codec, err := media.CodecByName(n.Codec.Name, n.Codec.PayloadType)
	if err != nil {
		t.Fatal(err)
	}
	return rtptest.NewStream(t, m.conn, net.UDPAddrFromAddrPort(n.RemoteAddr), codec, n.DTMFPayloadType)
}

// carrier is a test phone acting as a carrier's SIP server.
type carrier struct {
	*siptest.Phone
	trunk store.Trunk
}

// newCarrier starts a carrier answering with plan and stores a trunk to
// it (credentials acct / trunk-secret-1) with edit applied.
func newCarrier(t *testing.T, db *store.DB, name string, plan func(*sip.Request) siptest.AnswerPlan, edit func(*store.Trunk)) *carrier {
	t.Helper()
	p := newPhone(t)
	p.OnInvite(plan)
	tr := store.Trunk{Name: name, Enabled: true, Host: "127.0.0.1", Port: p.Addr().(*net.UDPAddr).Port,
		Transport: store.TransportUDP, Username: "acct", Password: "trunk-secret-1", Format: store.NumberE164}
	if edit != nil {
		edit(&tr)
	}
	if err := db.CreateTrunk(context.Background(), &tr); err != nil {
		t.Fatal(err)
	}
	return &carrier{Phone: p, trunk: tr}
}

// answerWith is a plan that answers every INVITE alike.
func answerWith(plan siptest.AnswerPlan) func(*sip.Request) siptest.AnswerPlan {
	return func(*sip.Request) siptest.AnswerPlan { return plan }
}

func trunkDial(m *ourMedia, number string, trunks ...store.Trunk) DialRequest {
	return DialRequest{Number: number, Trunks: trunks, System: true, Offer: m.offer, From: CallerID{User: "1001", Name: "Alice"}}
}

func dialErr(t *testing.T, err error) *DialError {
	t.Helper()
	var de *DialError
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *DialError", err)
	}
	return de
}

// toneHeard reports the level of hz in what s receives over about a second.
func toneHeard(t *testing.T, s *media.Stream, hz float64) float64 {
	t.Helper()
	return media.ToneLevel(rtptest.Frames(t, s, 50, 10*time.Second), hz)
}

func TestDialTrunkAnswersChallenges(t *testing.T) {
	for _, challenge := range []int{401, 407} {
		t.Run(strconv.Itoa(challenge), func(t *testing.T) {
			db := newStore(t)
			ts := startStoreServer(t, db, Config{}, nil)
			c := newCarrier(t, db, "carrier", answerWith(siptest.AnswerPlan{
				Challenge: challenge, Username: "acct", Password: "trunk-secret-1", ToneHz: 1000,
			}), func(tr *store.Trunk) {
				tr.Format, tr.TechPrefix = store.NumberE164NoPlus, "0099"
				tr.CallerID, tr.CallerName, tr.PAI = "+14155550199", "Voxbridge", "+14155550199"
				tr.Headers = []store.Header{{Name: "X-Account", Value: "42"}}
			})
			m := newOurMedia(t)
			leg, err := ts.Dial(ctxT(t, 10*time.Second), trunkDial(m, "+1 (415) 555-0100", c.trunk))
			if err != nil {
				t.Fatal(err)
			}
			invs := c.Invites()
			if len(invs) != 2 {
				t.Fatalf("carrier got %d INVITEs, want the challenged one and the answer", len(invs))
			}
			credHdr := map[int]string{401: "Authorization", 407: "Proxy-Authorization"}[challenge]
			first, second := invs[0], invs[1]
			if first.GetHeader(credHdr) != nil || second.GetHeader(credHdr) == nil {
				t.Fatalf("%s: first %v, second %v", credHdr, first.GetHeader(credHdr), second.GetHeader(credHdr))
			}
			if second.CSeq().SeqNo != first.CSeq().SeqNo+1 || second.CallID().Value() != first.CallID().Value() {
				t.Errorf("retry CSeq %d after %d, Call-ID %s vs %s", second.CSeq().SeqNo, first.CSeq().SeqNo,
					second.CallID().Value(), first.CallID().Value())
			}
			if u := second.Recipient.User; u != "009914155550100" {
				t.Errorf("Request-URI user %q, want tech prefix + E.164 without +", u)
			}
			if f := second.From(); f.Address.User != "+14155550199" || f.DisplayName != "Voxbridge" {
				t.Errorf("From %s", f.Value())
			}
			if h := second.GetHeader("P-Asserted-Identity"); h == nil || h.Value() != "<sip:+14155550199@127.0.0.1>" {
				t.Errorf("P-Asserted-Identity %v", h)
			}
			if h := second.GetHeader("X-Account"); h == nil || h.Value() != "42" {
				t.Errorf("X-Account %v", h)
			}
			if leg.Trunk == nil || leg.Trunk.Name != "carrier" || ts.TrunkCalls(c.trunk.ID) != 1 {
				t.Errorf("leg trunk %v, trunk calls %d", leg.Trunk, ts.TrunkCalls(c.trunk.ID))
			}
			// Audio both ways: the carrier's 1000 Hz reaches us, our 700 Hz
			// reaches the carrier.
			st := m.stream(t, leg.Media())
			st.Enqueue(media.Tone(700, 3*time.Second, 0.3))
			if lvl := toneHeard(t, st, 1000); lvl < 0.1 {
				t.Fatalf("carrier's tone level %.3f", lvl)
			}
			var far *siptest.Call
			select {
			case far = <-c.Calls():
			case <-time.After(5 * time.Second):
				t.Fatal("carrier delivered no answered call")
			}
			rtptest.Eventually(t, 5*time.Second, "the carrier to hear 1 s", func() bool { return far.HeardLen() > 8000 })
			heard := far.Heard()
			if lvl := media.ToneLevel(heard[len(heard)-4000:], 700); lvl < 0.1 {
				t.Fatalf("our tone at the carrier: level %.3f", lvl)
			}
			if err := leg.Hangup(context.Background()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-far.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("our BYE did not end the carrier's call")
			}
			if info := leg.EndInfo(); info.By != EndLocal || info.Cause != CauseBye || ts.TrunkCalls(c.trunk.ID) != 0 {
				t.Errorf("end %+v, trunk calls %d", info, ts.TrunkCalls(c.trunk.ID))
			}
		})
	}
}

// More than ten provisional responses (sipgo's WaitAnswer gives up there).
func TestDialLongRinging(t *testing.T) {
	db := newStore(t)
	ts := startStoreServer(t, db, Config{}, nil)
	c := newCarrier(t, db, "carrier", answerWith(siptest.AnswerPlan{RingFor: 2500 * time.Millisecond, RingEvery: 100 * time.Millisecond}), nil)
	m := newOurMedia(t)
	var rings atomic.Int32
	r := trunkDial(m, "+14155550100", c.trunk)
	r.OnProgress = func(p Progress) {
		if p.Code == 180 && p.Trunk == "carrier" {
			rings.Add(1)
		}
	}
	leg, err := ts.Dial(ctxT(t, 20*time.Second), r)
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Hangup(context.Background())
	if n := rings.Load(); n < 12 {
		t.Fatalf("saw %d 180s before the answer, want at least 12", n)
	}
}

func TestDialFailuresMapToReasons(t *testing.T) {
	db := newStore(t)
	ts := startStoreServer(t, db, Config{}, nil)
	// The number's last three digits are the carrier's answer.
	c := newCarrier(t, db, "carrier", func(req *sip.Request) siptest.AnswerPlan {
		u := req.Recipient.User
		code, _ := strconv.Atoi(u[len(u)-3:])
		return siptest.AnswerPlan{Reject: code}
	}, nil)
	m := newOurMedia(t)
	for _, tc := range []struct {
		code   int
		reason store.HangupReason
	}{
		{486, store.ReasonBusy}, {600, store.ReasonBusy}, {480, store.ReasonNoAnswer}, {408, store.ReasonNoAnswer},
		{487, store.ReasonCancel}, {403, store.ReasonFailed}, {404, store.ReasonFailed}, {484, store.ReasonFailed},
		{500, store.ReasonFailed}, {604, store.ReasonFailed},
	} {
		_, err := ts.Dial(ctxT(t, 10*time.Second), trunkDial(m, fmt.Sprintf("+1415555%d", tc.code), c.trunk))
		de := dialErr(t, err)
		if de.Reason != tc.reason || de.Code != tc.code || de.Trunk != "carrier" {
			t.Errorf("%d: got %+v, want reason %s", tc.code, de, tc.reason)
		}
	}
	if n := ts.TrunkCalls(c.trunk.ID); n != 0 {
		t.Fatalf("%d trunk slots held after failed calls", n)
	}
}

func TestDialEarlyMedia(t *testing.T) {
	db := newStore(t)
	ts := startStoreServer(t, db, Config{}, nil)
	c := newCarrier(t, db, "carrier", answerWith(siptest.AnswerPlan{EarlyMedia: true, RingFor: 1500 * time.Millisecond, ToneHz: 1500}), nil)
	m := newOurMedia(t)

	// Count RTP reaching our socket while the call is not answered yet.
	var early atomic.Int32
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 1500)
		for {
			if _, _, err := m.conn.ReadFromUDP(buf); err != nil {
				return
			}
			early.Add(1)
		}
	}()
	var progress []Progress
	var mu sync.Mutex
	r := trunkDial(m, "+14155550100", c.trunk)
	r.OnProgress = func(p Progress) {
		mu.Lock()
		progress = append(progress, p)
		mu.Unlock()
	}
	leg, err := ts.Dial(ctxT(t, 10*time.Second), r)
	m.conn.SetReadDeadline(time.Now())
	<-readerDone
	m.conn.SetReadDeadline(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Hangup(context.Background())
	mu.Lock()
	defer mu.Unlock()
	// Responses may overtake each other: look for the 183, not at the first.
	var em *sdp.Negotiated
	for _, p := range progress {
		if p.Code == 183 {
			em = p.EarlyMedia
		}
	}
	if em == nil {
		t.Fatalf("progress %+v, want a 183 with early media", progress)
	}
	if em.RemoteAddr != leg.Media().RemoteAddr || em.Codec.Name != "PCMU" {
		t.Fatalf("early media %+v, answer %+v", em, leg.Media())
	}
	if n := early.Load(); n < 20 {
		t.Fatalf("%d RTP packets before the answer, want the carrier's early media", n)
	}
}

func TestDialFailover(t *testing.T) {
	db := newStore(t)
	ts := startStoreServer(t, db, Config{}, nil)
	var aCode atomic.Int32
	a := newCarrier(t, db, "a", func(*sip.Request) siptest.AnswerPlan { return siptest.AnswerPlan{Reject: int(aCode.Load())} },
		func(tr *store.Trunk) { tr.Priority = 1 })
	b := newCarrier(t, db, "b", answerWith(siptest.AnswerPlan{}), func(tr *store.Trunk) { tr.Priority = 2 })
	trunks, err := db.EnabledTrunks(context.Background())
	if err != nil || len(trunks) != 2 || trunks[0].Name != "a" {
		t.Fatalf("trunks %v, %v", trunks, err)
	}
	m := newOurMedia(t)

	aCode.Store(503)
	leg, err := ts.Dial(ctxT(t, 10*time.Second), trunkDial(m, "+14155550100", trunks...))
	if err != nil {
		t.Fatalf("503 then the next trunk: %v", err)
	}
	if leg.Trunk.Name != "b" || len(a.Invites()) != 1 || len(b.Invites()) != 1 {
		t.Fatalf("answered by %s; INVITEs a %d, b %d", leg.Trunk.Name, len(a.Invites()), len(b.Invites()))
	}
	leg.Hangup(context.Background())

	// Busy is an answer: no failover.
	aCode.Store(486)
	_, err = ts.Dial(ctxT(t, 10*time.Second), trunkDial(m, "+14155550100", trunks...))
	if de := dialErr(t, err); de.Reason != store.ReasonBusy || de.Trunk != "a" || len(b.Invites()) != 1 {
		t.Fatalf("486 on a: %+v, b got %d INVITEs", de, len(b.Invites()))
	}

	// A trunk that never answers at all is skipped after the response
	// timeout.
	hole := rtptest.Listen(t) // reads nothing, answers nothing
	dead := trunks[0]
	dead.Name, dead.Port = "dead", hole.LocalAddr().(*net.UDPAddr).Port
	r := trunkDial(m, "+14155550100", dead, trunks[1])
	r.ResponseTimeout = 500 * time.Millisecond
	leg, err = ts.Dial(ctxT(t, 10*time.Second), r)
	if err != nil || leg.Trunk.Name != "b" {
		t.Fatalf("after a silent trunk: %v, %v", leg, err)
	}
	leg.Hangup(context.Background())
}

func TestDialRingTimeoutAndCancel(t *testing.T) {
	db := newStore(t)
	ts := startStoreServer(t, db, Config{}, nil)
	c := newCarrier(t, db, "carrier", answerWith(siptest.AnswerPlan{RingFor: 30 * time.Second, RingEvery: 200 * time.Millisecond}), nil)
	m := newOurMedia(t)

	r := trunkDial(m, "+14155550100", c.trunk)
	r.RingTimeout = 700 * time.Millisecond
	_, err := ts.Dial(ctxT(t, 10*time.Second), r)
	if de := dialErr(t, err); de.Reason != store.ReasonNoAnswer {
		t.Fatalf("ring timeout: %+v", de)
	}
	rtptest.Eventually(t, 5*time.Second, "the carrier to see CANCEL", func() bool { return c.Cancels() == 1 })

	// The caller giving up (its context) cancels too, with reason cancel.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r = trunkDial(m, "+14155550100", c.trunk)
	r.OnProgress = func(p Progress) {
		if p.Code == 180 {
			cancel()
		}
	}
	_, err = ts.Dial(ctx, r)
	if de := dialErr(t, err); de.Reason != store.ReasonCancel {
		t.Fatalf("context cancelled: %+v", de)
	}
	rtptest.Eventually(t, 5*time.Second, "the second CANCEL", func() bool { return c.Cancels() == 2 })
	if n := ts.TrunkCalls(c.trunk.ID); n != 0 {
		t.Fatalf("%d trunk slots held", n)
	}
}

// Credentials go only to their own trunk, and callers who may not use
// trunks cause no INVITE at all.
func TestDialNeverLeaksOrOverreaches(t *testing.T) {
	db := newStore(t)
	ts := startStoreServer(t, db, Config{}, nil)
	plan := siptest.AnswerPlan{Challenge: 407, Username: "acct", Password: "trunk-secret-1"}
	c := newCarrier(t, db, "carrier", answerWith(plan), func(tr *store.Trunk) { tr.AllowedPrefixes = []string{"+1"} })
	m := newOurMedia(t)
	ctx := ctxT(t, 20*time.Second)

	// Straight to the carrier's address as a plain URI: its challenge is
	// not answered, though the same host is a trunk.
	_, err := ts.Dial(ctx, DialRequest{URI: "sip:+14155550100@" + c.Addr().String(), System: true, Offer: m.offer})
	if de := dialErr(t, err); de.Code != 407 || de.Reason != store.ReasonFailed {
		t.Fatalf("URI target challenged: %+v", de)
	}
	for _, inv := range c.Invites() {
		if inv.GetHeader("Proxy-Authorization") != nil || inv.GetHeader("Authorization") != nil {
			t.Fatal("credentials sent to a URI target")
		}
	}
	before := len(c.Invites())

	noCallOut := &store.Extension{Number: "1001", Enabled: true}
	for name, r := range map[string]DialRequest{
		"anonymous caller":          {Number: "+14155550100", Trunks: []store.Trunk{c.trunk}, Offer: m.offer},
		"extension without callout": {Number: "+14155550100", Trunks: []store.Trunk{c.trunk}, Offer: m.offer, Caller: Identity{Extension: noCallOut}},
		"outside allowed prefixes":  {Number: "+447700900123", Trunks: []store.Trunk{c.trunk}, Offer: m.offer, System: true},
	} {
		_, err := ts.Dial(ctx, r)
		if de := dialErr(t, err); !errors.Is(err, ErrNotAllowed) || de.Code != 403 {
			t.Errorf("%s: %+v", name, de)
		}
	}
	if n := len(c.Invites()); n != before {
		t.Fatalf("refused dials sent %d INVITEs", n-before)
	}

	// Wrong trunk password: the challenge is answered once, then given up.
	bad := c.trunk
	bad.Password = "not-the-secret"
	_, err = ts.Dial(ctx, trunkDial(m, "+14155550100", bad))
	if de := dialErr(t, err); de.Code != 403 {
		t.Fatalf("wrong trunk password: %+v", de)
	}
	if n := len(c.Invites()) - before; n != 2 {
		t.Fatalf("%d INVITEs for a refused password, want 2", n)
	}
}

func TestDialTrunkMaxCallsAndRemoteBye(t *testing.T) {
	db := newStore(t)
	ts := startStoreServer(t, db, Config{}, nil)
	c := newCarrier(t, db, "carrier", answerWith(siptest.AnswerPlan{ToneHz: 440}), func(tr *store.Trunk) { tr.MaxCalls = 1 })
	m := newOurMedia(t)
	leg, err := ts.Dial(ctxT(t, 10*time.Second), trunkDial(m, "+14155550100", c.trunk))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.Dial(ctxT(t, 10*time.Second), trunkDial(newOurMedia(t), "+14155550101", c.trunk))
	if de := dialErr(t, err); de.Code != 503 || de.Reason != store.ReasonFailed || len(c.Invites()) != 1 {
		t.Fatalf("second call on a 1-call trunk: %+v, carrier got %d INVITEs", de, len(c.Invites()))
	}
	// The far end hangs up: the leg ends as remote BYE and frees the slot.
	far := <-c.Calls()
	if err := far.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-leg.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the carrier's BYE did not end the leg")
	}
	if info := leg.EndInfo(); info.By != EndRemote || info.Cause != CauseBye {
		t.Fatalf("end %+v", info)
	}
	if n := ts.TrunkCalls(c.trunk.ID); n != 0 {
		t.Fatalf("%d slots held after BYE", n)
	}
}

func TestDialRegisteredExtension(t *testing.T) {
	db := newStore(t)
	addExtension(t, db, "1002", "bob", "bob-secret-12", false)
	ts := startStoreServer(t, db, Config{}, nil)
	ctx := ctxT(t, 10*time.Second)
	bob := newPhone(t)
	bob.AutoAnswer(800)
	if err := bob.Register(ctx, ts.hostport(), "bob", "bob-secret-12"); err != nil {
		t.Fatal(err)
	}
	cs, err := ts.Contacts(ctx, "1002")
	if err != nil || len(cs) != 1 {
		t.Fatalf("contacts %v, %v", cs, err)
	}
	m := newOurMedia(t)
	leg, err := ts.Dial(ctx, DialRequest{Binding: &cs[0], Offer: m.offer, From: CallerID{User: "1001", Name: "Alice"}})
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Hangup(context.Background())
	inv := bob.Invites()[0]
	if inv.Recipient.String() != bob.ContactURI("bob") || inv.From().DisplayName != "Alice" || inv.To().Address.User != "1002" {
		t.Errorf("INVITE to %s from %s to %s", inv.Recipient.String(), inv.From().Value(), inv.To().Value())
	}
	if lvl := toneHeard(t, m.stream(t, leg.Media()), 800); lvl < 0.1 {
		t.Fatalf("bob's tone level %.3f", lvl)
	}
}

// A 2xx sent again (our ACK lost) is ACKed again.
func TestDialAcksRetransmitted2xx(t *testing.T) {
	db := newStore(t)
	ts := startStoreServer(t, db, Config{}, nil)
	uas := rtptest.Listen(t) // a hand-driven UAS
	m := newOurMedia(t)
	acks := make(chan string, 4)
	inviteCSeq := make(chan string, 1)
	go func() {
		buf := make([]byte, 65535)
		var ok200 []byte
		var to *net.UDPAddr
		nAcks := 0
		for {
			uas.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, from, err := uas.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			switch {
			case strings.HasPrefix(msg, "INVITE "):
				ok200, to = []byte(rawOK(msg, uas.LocalAddr().(*net.UDPAddr).Port)), from
				if m := regexp.MustCompile(`(?m)^CSeq: (\d+) INVITE`).FindStringSubmatch(msg); m != nil {
					inviteCSeq <- m[1]
				}
				uas.WriteToUDP(ok200, to)
			case strings.HasPrefix(msg, "ACK "):
				acks <- msg
				if nAcks++; nAcks == 1 {
					uas.WriteToUDP(ok200, to) // as if the ACK were lost
				}
			}
		}
	}()
	leg, err := ts.Dial(ctxT(t, 10*time.Second), DialRequest{URI: "sip:bob@" + uas.LocalAddr().String(), Offer: m.offer})
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Hangup(ctxT(t, 100*time.Millisecond)) // the raw UAS never answers BYE
	cseq := <-inviteCSeq
	for i := range 2 {
		select {
		case ack := <-acks:
			// The ACK of a 2xx carries the INVITE's CSeq number and the
			// remote tag.
			if !strings.Contains(ack, "CSeq: "+cseq+" ACK\r\n") || !strings.Contains(ack, "tag=uas1") {
				t.Errorf("ACK %d:\n%s", i, ack)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d ACKs, want 2 (one per 2xx)", i)
		}
	}
}

// rawOK answers a raw INVITE with 200 and an SDP answer.
func rawOK(inv string, port int) string {
	var via, from, to, callID, cseq string
	for _, line := range strings.Split(inv, "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "via", "v":
			via = line
		case "from", "f":
			from = line
		case "to", "t":
			to = line + ";tag=uas1"
		case "call-id", "i":
			callID = line
		case "cseq":
			cseq = line
		}
	}
	body := "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	return fmt.Sprintf("SIP/2.0 200 OK\r\n%s\r\n%s\r\n%s\r\n%s\r\n%s\r\nContact: <sip:bob@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		via, from, to, callID, cseq, port, len(body), body)
}

// The far end's in-dialog requests reach an outbound leg through the same
// listener: INFO digits, then BYE.
func TestOutLegReceivesInfoAndBye(t *testing.T) {
	db := newStore(t)
	ts := startStoreServer(t, db, Config{}, nil)
	uas := rtptest.Listen(t)
	m := newOurMedia(t)
	type inDialog struct{ info, bye string }
	sent := make(chan inDialog, 1)
	codes := make(chan string, 4)
	go func() {
		buf := make([]byte, 65535)
		var from, to, callID string
		for {
			uas.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, src, err := uas.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			switch {
			case strings.HasPrefix(msg, "INVITE "):
				ok := rawOK(msg, uas.LocalAddr().(*net.UDPAddr).Port)
				for _, line := range strings.Split(ok, "\r\n") {
					switch {
					case strings.HasPrefix(line, "From:"):
						from = strings.TrimPrefix(line, "From:")
					case strings.HasPrefix(line, "To:"):
						to = strings.TrimPrefix(line, "To:")
					case strings.HasPrefix(line, "Call-ID:"):
						callID = strings.TrimSpace(strings.TrimPrefix(line, "Call-ID:"))
					}
				}
				uas.WriteToUDP([]byte(ok), src)
			case strings.HasPrefix(msg, "ACK "):
				// As the callee: From is its To, To its From.
				req := func(method string, cseq int, ct, body string) string {
					return fmt.Sprintf("%s sip:voxbridge@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKfar%d\r\n"+
						"From:%s\r\nTo:%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nMax-Forwards: 70\r\n%sContent-Length: %d\r\n\r\n%s",
						method, ts.hostport(), uas.LocalAddr(), cseq, to, from, callID, cseq, method, ct, len(body), body)
				}
				info := req("INFO", 1, "Content-Type: application/dtmf-relay\r\n", "Signal=5\r\nDuration=160\r\n")
				bye := req("BYE", 2, "", "")
				sent <- inDialog{info, bye}
				uas.WriteToUDP([]byte(info), src)
			case strings.HasPrefix(msg, "SIP/2.0 "):
				codes <- msg[8:11]
			}
		}
	}()
	leg, err := ts.Dial(ctxT(t, 10*time.Second), DialRequest{URI: "sip:bob@" + uas.LocalAddr().String(), Offer: m.offer})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-leg.InfoDTMF():
		if d != '5' {
			t.Fatalf("digit %q", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no INFO digit on the outbound leg")
	}
	if c := <-codes; c != "200" {
		t.Fatalf("INFO answered %s", c)
	}
	msgs := <-sent
	uas.WriteToUDP([]byte(msgs.bye), ts.addr)
	select {
	case <-leg.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("BYE did not end the outbound leg")
	}
	if info := leg.EndInfo(); info.By != EndRemote || info.Cause != CauseBye {
		t.Fatalf("end %+v", info)
	}
	if c := <-codes; c != "200" {
		t.Fatalf("BYE answered %s", c)
	}
}
