package sip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/sip/siptest"
)

// answeringServer answers every call from a real UDP port standing for
// the media socket, and hands over each answered leg and its media
// changes.
type answeringServer struct {
	addr    *net.UDPAddr
	legs    chan *Leg
	changes chan MediaChange
}

func startAnswering(t *testing.T, cfg Config) *answeringServer {
	t.Helper()
	as := &answeringServer{legs: make(chan *Leg, 4), changes: make(chan MediaChange, 16)}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	as.addr = udp.LocalAddr().(*net.UDPAddr)
	cfg.UDP = udp
	serve(t, cfg, func(l *Leg) {
		rtp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			_ = l.Reject(500, "No Port")
			return
		}
		defer rtp.Close()
		l.OnMediaChange(func(c MediaChange) { as.changes <- c })
		if err := l.Answer(netip.MustParseAddr("127.0.0.1"), rtp.LocalAddr().(*net.UDPAddr).Port); err != nil {
			return
		}
		as.legs <- l
		<-l.Done()
	})
	return as
}

func (as *answeringServer) call(t *testing.T, p *siptest.Phone, opt siptest.DialOptions) (*siptest.Call, *Leg) {
	t.Helper()
	c, err := p.Dial(ctxT(t, 10*time.Second), "sip:echo@"+as.addr.String(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Hangup(context.Background()) })
	select {
	case l := <-as.legs:
		return c, l
	case <-time.After(10 * time.Second):
		t.Fatal("no answered leg")
	}
	return nil, nil
}

func (as *answeringServer) change(t *testing.T) MediaChange {
	t.Helper()
	select {
	case c := <-as.changes:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no media change reported")
	}
	return MediaChange{}
}

func (as *answeringServer) noChange(t *testing.T) {
	t.Helper()
	select {
	case c := <-as.changes:
		t.Fatalf("unexpected media change %+v", c)
	default:
	}
}

// direction of the first audio section of a parsed body.
func direction(s *sdp.Session) sdp.Direction {
	if s == nil || len(s.Media) == 0 {
		return ""
	}
	if d := s.Media[0].Direction; d != "" {
		return d
	}
	return s.Direction
}

func reinvite(t *testing.T, c *siptest.Call, opt siptest.ReinviteOptions) *siptest.ReinviteResult {
	t.Helper()
	r, err := c.Reinvite(ctxT(t, 10*time.Second), opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReinviteHoldResumeFromPhone(t *testing.T) {
	as := startAnswering(t, Config{})
	c, leg := as.call(t, newPhone(t), siptest.DialOptions{})
	first := leg.Media()

	for _, tc := range []struct {
		name    string
		opt     siptest.ReinviteOptions
		answer  sdp.Direction
		holding bool
	}{
		{"sendonly", siptest.ReinviteOptions{Direction: sdp.SendOnly}, sdp.RecvOnly, true},
		{"resume", siptest.ReinviteOptions{}, sdp.SendRecv, false},
		{"inactive", siptest.ReinviteOptions{Direction: sdp.Inactive}, sdp.Inactive, true},
		{"resume again", siptest.ReinviteOptions{}, sdp.SendRecv, false},
		{"c=0.0.0.0", siptest.ReinviteOptions{OldHold: true}, sdp.Inactive, true},
		{"resume from old hold", siptest.ReinviteOptions{}, sdp.SendRecv, false},
	} {
		r := reinvite(t, c, tc.opt)
		if r.Code != 200 {
			t.Fatalf("%s: %d %s", tc.name, r.Code, r.Reason)
		}
		if got := direction(r.SDP); got != tc.answer {
			t.Errorf("%s: answer direction %q, want %q", tc.name, got, tc.answer)
		}
		ch := as.change(t)
		if ch.RemoteHold != tc.holding || ch.LocalHold {
			t.Errorf("%s: change %+v, want remote hold %v", tc.name, ch, tc.holding)
		}
		if ch.AddressChanged || ch.CodecChanged {
			t.Errorf("%s: hold reported as an address or codec change: %+v", tc.name, ch)
		}
		// The old hold's 0.0.0.0 is no address to send to.
		if m := leg.Media(); m.RemoteAddr != first.RemoteAddr {
			t.Errorf("%s: remote media %v, want %v kept", tc.name, m.RemoteAddr, first.RemoteAddr)
		}
	}
	// A refresh that changes nothing reports nothing.
	if r := reinvite(t, c, siptest.ReinviteOptions{}); r.Code != 200 || direction(r.SDP) != sdp.SendRecv {
		t.Fatalf("refresh: %d, direction %q", r.Code, direction(r.SDP))
	}
	as.noChange(t)
}

func TestReinviteAddressAndCodecChange(t *testing.T) {
	as := startAnswering(t, Config{})
	c, leg := as.call(t, newPhone(t), siptest.DialOptions{})
	if leg.Media().Codec.Name != "PCMU" {
		t.Fatalf("first codec %s", leg.Media().Codec.Name)
	}
	r := reinvite(t, c, siptest.ReinviteOptions{Port: 40000})
	if r.Code != 200 {
		t.Fatalf("%d %s", r.Code, r.Reason)
	}
	ch := as.change(t)
	if !ch.AddressChanged || ch.Media.RemoteAddr.Port() != 40000 || ch.CodecChanged {
		t.Errorf("address change reported as %+v", ch)
	}
	if leg.Media().RemoteAddr.Port() != 40000 {
		t.Errorf("leg media %v, want port 40000", leg.Media().RemoteAddr)
	}

	r = reinvite(t, c, siptest.ReinviteOptions{Port: 40000, Codecs: []sdp.Codec{sdp.PCMA}})
	if r.Code != 200 || r.Media.Codec.Name != "PCMA" {
		t.Fatalf("codec change: %d, answer codec %q", r.Code, r.Media.Codec.Name)
	}
	ch = as.change(t)
	if !ch.CodecChanged || ch.Media.Codec.Name != "PCMA" || ch.AddressChanged {
		t.Errorf("codec change reported as %+v", ch)
	}
	// Nothing we can decode: refused, and the call keeps its media.
	r = reinvite(t, c, siptest.ReinviteOptions{Codecs: []sdp.Codec{{Name: "G729", PayloadType: 18, ClockRate: 8000}}})
	if r.Code != 488 {
		t.Errorf("G.729-only offer answered %d, want 488", r.Code)
	}
	if m := leg.Media(); m.Codec.Name != "PCMA" || m.RemoteAddr.Port() != 40000 {
		t.Errorf("media after a refused offer: %v %s", m.RemoteAddr, m.Codec.Name)
	}
	as.noChange(t)
}

// An offerless re-INVITE gets our offer in the 2xx; the ACK's answer
// moves the media.
func TestReinviteWithoutSDP(t *testing.T) {
	as := startAnswering(t, Config{})
	c, leg := as.call(t, newPhone(t), siptest.DialOptions{})
	r := reinvite(t, c, siptest.ReinviteOptions{NoSDP: true, Port: 40002})
	if r.Code != 200 || r.SDP == nil {
		t.Fatalf("%d, offer %v", r.Code, r.SDP)
	}
	if direction(r.SDP) != sdp.SendRecv || len(r.SDP.Media) != 1 || len(r.SDP.Media[0].Formats) < 2 {
		t.Errorf("our offer: %+v", r.SDP.Media)
	}
	ch := as.change(t)
	if !ch.AddressChanged || ch.Media.RemoteAddr.Port() != 40002 {
		t.Errorf("change from the ACK's answer: %+v", ch)
	}
	if leg.Media().RemoteAddr.Port() != 40002 {
		t.Errorf("leg media %v", leg.Media().RemoteAddr)
	}
}

func TestUpdateHoldAndRefresh(t *testing.T) {
	as := startAnswering(t, Config{})
	c, _ := as.call(t, newPhone(t), siptest.DialOptions{})
	r := reinvite(t, c, siptest.ReinviteOptions{Update: true, Direction: sdp.SendOnly})
	if r.Code != 200 || direction(r.SDP) != sdp.RecvOnly {
		t.Fatalf("UPDATE hold: %d, direction %q", r.Code, direction(r.SDP))
	}
	if ch := as.change(t); !ch.RemoteHold {
		t.Errorf("UPDATE hold reported as %+v", ch)
	}
	r = reinvite(t, c, siptest.ReinviteOptions{Update: true, NoSDP: true})
	if r.Code != 200 || r.SDP != nil {
		t.Fatalf("bare UPDATE: %d, body %v", r.Code, r.SDP)
	}
	as.noChange(t)
}

// We hold the phone: it sees a sendonly offer, answers recvonly; resume
// offers sendrecv.
func TestServerHoldsPhone(t *testing.T) {
	as := startAnswering(t, Config{})
	p := newPhone(t)
	_, leg := as.call(t, p, siptest.DialOptions{})
	if err := leg.Hold(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	ch := as.change(t)
	if !ch.LocalHold || ch.RemoteHold {
		t.Errorf("hold reported as %+v", ch)
	}
	if err := leg.Resume(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ch := as.change(t); ch.LocalHold || ch.RemoteHold {
		t.Errorf("resume reported as %+v", ch)
	}
	got := p.Reinvites()
	if len(got) != 2 {
		t.Fatalf("phone got %d re-INVITEs, want 2", len(got))
	}
	var versions []uint64
	for i, want := range []sdp.Direction{sdp.SendOnly, sdp.SendRecv} {
		s, err := sdp.Parse(got[i].Body())
		if err != nil {
			t.Fatal(err)
		}
		if d := direction(s); d != want {
			t.Errorf("re-INVITE %d offers %q, want %q", i, d, want)
		}
		versions = append(versions, s.Origin.Version)
	}
	if versions[1] <= versions[0] || versions[0] < 2 {
		t.Errorf("o= versions %v: each new offer must bump it", versions)
	}
}

// Glare: our re-INVITE meets one from the phone. The phone's gets 491
// while ours is pending; ours, refused with 491 once, is retried.
func TestReinviteGlare(t *testing.T) {
	as := startAnswering(t, Config{})
	p := newPhone(t)
	c, leg := as.call(t, p, siptest.DialOptions{})
	var seen atomic.Int32
	inFlight := make(chan struct{})
	release := make(chan struct{})
	p.OnReinvite(func(*sip.Request) siptest.ReinvitePlan {
		if seen.Add(1) == 1 {
			close(inFlight) // ours is pending at the phone now
			<-release
			return siptest.ReinvitePlan{Reject: 491}
		}
		return siptest.ReinvitePlan{}
	})
	held := make(chan error, 1)
	go func() { held <- leg.Hold(ctxT(t, 20*time.Second)) }()
	<-inFlight
	r := reinvite(t, c, siptest.ReinviteOptions{Direction: sdp.SendOnly})
	close(release)
	if r.Code != 491 {
		t.Errorf("phone's re-INVITE during ours answered %d, want 491", r.Code)
	}
	if err := <-held; err != nil {
		t.Fatalf("Hold after 491: %v", err)
	}
	if n := seen.Load(); n != 2 {
		t.Errorf("phone saw %d re-INVITEs, want 2 (one refused, one retried)", n)
	}
	if ch := as.change(t); !ch.LocalHold {
		t.Errorf("hold reported as %+v", ch)
	}
}

// A peer that keeps refusing wins nothing: Hold gives up with
// ErrOfferPending.
func TestReinviteGlareGivesUp(t *testing.T) {
	as := startAnswering(t, Config{})
	p := newPhone(t)
	_, leg := as.call(t, p, siptest.DialOptions{})
	p.OnReinvite(func(*sip.Request) siptest.ReinvitePlan { return siptest.ReinvitePlan{Reject: 491} })
	err := leg.Hold(ctxT(t, 30*time.Second))
	if !errors.Is(err, ErrOfferPending) {
		t.Fatalf("Hold = %v, want ErrOfferPending", err)
	}
	if n := len(p.Reinvites()); n != reofferAttempts {
		t.Errorf("%d attempts, want %d", n, reofferAttempts)
	}
}

func sessionExpires(secs string, refresher string, supported bool) []sip.Header {
	v := secs
	if refresher != "" {
		v += ";refresher=" + refresher
	}
	h := []sip.Header{sip.NewHeader("Session-Expires", v)}
	if supported {
		h = append(h, sip.NewHeader("Supported", "timer"))
	}
	return h
}

func TestSessionTimerTooSmall(t *testing.T) {
	as := startAnswering(t, Config{}) // Min-SE 90 s
	_, err := newPhone(t).Dial(ctxT(t, 10*time.Second), "sip:echo@"+as.addr.String(),
		siptest.DialOptions{Headers: sessionExpires("30", "uac", true)})
	var de *siptest.DialError
	if !errors.As(err, &de) || de.Code != 422 {
		t.Fatalf("Dial = %v, want 422", err)
	}
}

// The phone refreshes (refresher=uac) while it can, then stops: we end
// the dialog with BYE.
func TestSessionTimerExpiresWithoutRefresh(t *testing.T) {
	as := startAnswering(t, Config{SessionTimer: SessionTimerConfig{MinSE: time.Second}})
	c, leg := as.call(t, newPhone(t), siptest.DialOptions{Headers: sessionExpires("2", "uac", true)})
	res := c.InviteResponse()
	if se := res.GetHeader("Session-Expires"); se == nil || se.Value() != "2;refresher=uac" {
		t.Fatalf("200 Session-Expires = %v", se)
	}
	if rq := res.GetHeader("Require"); rq == nil || !strings.Contains(rq.Value(), "timer") {
		t.Errorf("200 without Require: timer for a refreshing UAC")
	}
	// Refresh past two whole intervals: the call stays.
	for range 6 {
		time.Sleep(700 * time.Millisecond)
		if r := reinvite(t, c, siptest.ReinviteOptions{Update: true, NoSDP: true}); r.Code != 200 {
			t.Fatalf("refresh answered %d", r.Code)
		}
	}
	select {
	case <-leg.Done():
		t.Fatalf("refreshed dialog ended: %+v", leg.EndInfo())
	default:
	}
	// Then silence: the expiry (2 s - 2/3 s) ends it from our side.
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("no BYE after refreshes stopped")
	}
	if !c.RemoteHungUp() {
		t.Error("the phone did not see a BYE from the server")
	}
	<-leg.Done()
	if info := leg.EndInfo(); info.By != EndLocal || info.Cause != CauseSessionExpired {
		t.Errorf("leg ended %+v, want local session_expired", info)
	}
}

// The phone does not do timers (no Supported: timer): we are the refresher
// and re-INVITE it every half interval.
func TestSessionTimerWeRefresh(t *testing.T) {
	as := startAnswering(t, Config{SessionTimer: SessionTimerConfig{MinSE: time.Second}})
	p := newPhone(t)
	c, leg := as.call(t, p, siptest.DialOptions{Headers: sessionExpires("2", "", false)})
	if se := c.InviteResponse().GetHeader("Session-Expires"); se == nil || se.Value() != "2;refresher=uas" {
		t.Fatalf("200 Session-Expires = %v", se)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(p.Reinvites()) < 3 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(p.Reinvites()); n < 3 {
		t.Fatalf("%d refreshes from us, want at least 3", n)
	}
	select {
	case <-leg.Done():
		t.Fatalf("refreshed dialog ended: %+v", leg.EndInfo())
	default:
	}
	// Refreshes change nothing, so the flow hears nothing.
	as.noChange(t)
	if s, err := sdp.Parse(p.Reinvites()[0].Body()); err != nil || direction(s) != sdp.SendRecv {
		t.Errorf("refresh offer: %v, direction %q", err, direction(s))
	}
}

// Both directions on an outbound leg: the callee holds us, and we hold it.
func TestOutLegReinvite(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Config{UDP: udp, AdvertiseIP: net.IPv4(127, 0, 0, 1), Logger: testLogger()}, rejectBusy)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { s.Serve(ctx); close(served) }()
	t.Cleanup(func() { cancel(); <-served })
	s.waitListening()

	callee := newPhone(t)
	callee.AutoAnswer(0)
	offer := sdp.Build(sdp.Local{Address: netip.MustParseAddr("127.0.0.1"), Port: 41000, SessionID: 7, Version: 1,
		Codecs: SupportedCodecs, DTMFPayloadType: 101})
	o, err := s.Dial(ctxT(t, 10*time.Second), DialRequest{URI: "sip:bob@" + callee.Addr().String(), Offer: offer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Hangup(context.Background()) })
	changes := make(chan MediaChange, 4)
	o.OnMediaChange(func(c MediaChange) { changes <- c })
	var call *siptest.Call
	select {
	case call = <-callee.Calls():
	case <-time.After(10 * time.Second):
		t.Fatal("callee has no call")
	}

	if err := call.Hold(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case ch := <-changes:
		if !ch.RemoteHold {
			t.Errorf("callee's hold reported as %+v", ch)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change for the callee's hold")
	}
	if err := call.Resume(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	<-changes

	if err := o.Hold(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	got := callee.Reinvites()
	if len(got) != 1 {
		t.Fatalf("callee got %d re-INVITEs, want 1", len(got))
	}
	sess, err := sdp.Parse(got[0].Body())
	if err != nil {
		t.Fatal(err)
	}
	if direction(sess) != sdp.SendOnly || sess.Origin.SessionID != 7 || sess.Media[0].Port != 41000 {
		t.Errorf("our hold offer: direction %q, o= id %d, port %d", direction(sess), sess.Origin.SessionID, sess.Media[0].Port)
	}
	select {
	case ch := <-changes:
		if !ch.LocalHold {
			t.Errorf("our hold reported as %+v", ch)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change for our hold")
	}
}

// SIPp holds and resumes a call by re-INVITE (testdata/sipp/reinvite-hold.xml
// checks our answers' directions; this checks what the flow hears).
func TestSIPpReinviteHold(t *testing.T) {
	sippBin, err := exec.LookPath("sipp")
	if err != nil {
		t.Skip("sipp not installed (Debian package sip-tester)")
	}
	as := startAnswering(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sippBin, as.addr.String(), "-sf", "../testdata/sipp/reinvite-hold.xml",
		"-s", "echo", "-i", "127.0.0.1", "-p", strconv.Itoa(freeUDPPort(t)), "-m", "1", "-nostdin",
		"-timeout", "20s", "-timeout_error")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		t.Fatalf("sipp: %v\n%s", err, out.String())
	}
	if ch := as.change(t); !ch.RemoteHold {
		t.Errorf("SIPp's hold reported as %+v", ch)
	}
	if ch := as.change(t); ch.RemoteHold {
		t.Errorf("SIPp's resume reported as %+v", ch)
	}
	as.noChange(t) // the old-style hold while held, and the UPDATE, change nothing
}
