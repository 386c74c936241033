package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// Tones of the early media tests: the carrier's announcement before it
// answers, then the callee's voice.
const (
	toneEarly    = 440.0
	toneAnswered = 1000.0
)

// earlyCarrier is a carrier's SIP server (a sipgo UAS) that answers every
// INVITE with 183 Session Progress and an SDP answer, plays toneEarly as
// early media for earlyFor, then sends 200 OK with the same SDP and plays
// toneAnswered until the call ends.
type earlyCarrier struct {
	earlyFor time.Duration
	dialogs  *sipgo.DialogServerCache

	mu      sync.Mutex
	streams []*media.Stream
	invites int
	byes    int
}

// startEarlyCarrier runs an earlyCarrier on loopback with an enabled trunk
// row pointing at it.
func startEarlyCarrier(t *testing.T, inst *instance, earlyFor time.Duration) *earlyCarrier {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("early-carrier"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(port),
		sipgo.WithClientConnectionAddr(conn.LocalAddr().String()))
	if err != nil {
		t.Fatal(err)
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "carrier", Host: "127.0.0.1", Port: port}}
	ec := &earlyCarrier{earlyFor: earlyFor, dialogs: sipgo.NewDialogServerCache(client, contact)}
	srv.OnInvite(ec.onInvite)
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = ec.dialogs.ReadAck(req, tx) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		ec.mu.Lock()
		ec.byes++
		ec.mu.Unlock()
		if err := ec.dialogs.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.ServeUDP(conn)
	}()
	t.Cleanup(func() {
		conn.Close()
		ua.Close()
		<-served
		ec.mu.Lock()
		streams := ec.streams
		ec.mu.Unlock()
		for _, s := range streams {
			s.Close()
		}
	})
	tr := store.Trunk{Name: "early", Enabled: true, Host: "127.0.0.1", Port: port,
		Transport: store.TransportUDP, Format: store.NumberE164}
	if err := inst.db.CreateTrunk(context.Background(), &tr); err != nil {
		t.Fatal(err)
	}
	return ec
}

func (ec *earlyCarrier) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	respond := func(code int, reason string) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
	}
	ec.mu.Lock()
	ec.invites++
	ec.mu.Unlock()
	offer, err := sdp.Parse(req.Body())
	if err != nil {
		respond(400, "Bad SDP")
		return
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		respond(500, "No RTP Socket")
		return
	}
	neg, answer, err := sdp.Answer(offer, []sdp.Codec{sdp.PCMU, sdp.PCMA}, sdp.Local{
		Address: netip.MustParseAddr("127.0.0.1"), Port: conn.LocalAddr().(*net.UDPAddr).Port,
		SessionID: 7, Version: 1, UserAgent: "early-carrier",
	})
	if err != nil {
		conn.Close()
		respond(488, "Not Acceptable Here")
		return
	}
	codec, err := media.CodecByName(neg.Codec.Name, neg.Codec.PayloadType)
	if err != nil {
		conn.Close()
		respond(488, "Not Acceptable Here")
		return
	}
	dlg, err := ec.dialogs.ReadInvite(req, tx)
	if err != nil {
		conn.Close()
		respond(400, "Bad Request")
		return
	}
	st, err := media.NewStream(media.StreamConfig{Conn: conn, Remote: net.UDPAddrFromAddrPort(neg.RemoteAddr),
		Codec: codec, DTMFPayloadType: neg.DTMFPayloadType})
	if err != nil {
		conn.Close()
		_ = dlg.Respond(500, "No Stream", nil)
		return
	}
	ec.mu.Lock()
	ec.streams = append(ec.streams, st)
	ec.mu.Unlock()
	if err := dlg.Respond(183, "Session Progress", answer, sip.NewHeader("Content-Type", "application/sdp")); err != nil {
		return
	}
	st.Start(dlg.Context())
	// The clock paces the announcement: done when its last frame is sent.
	select {
	case <-st.Enqueue(media.Tone(toneEarly, ec.earlyFor, 0.5)):
	case <-dlg.Context().Done(): // cancelled
		return
	}
	if err := dlg.RespondSDP(answer); err != nil {
		return
	}
	st.Enqueue(media.Tone(toneAnswered, 20*time.Second, 0.5))
}

func (ec *earlyCarrier) counts() (invites, byes int) {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	return ec.invites, ec.byes
}

const earlyFlow = `{
  "id": "sales",
  "actions": [
    {"type": "connect", "option": {"destinations": [{"type": "number", "target": "+14155550100"}],
      "early_media": %s}}
  ]
}`

// connect with early_media: the caller gets 183 with our SDP and hears the
// carrier's announcement before the answer, then the carrier's voice
// through the bridge; the 200 repeats the 183's SDP (DialEarlyMedia fails
// otherwise).
func TestConnectEarlyMedia(t *testing.T) {
	inst := bridgeServer(t, mustFlow(t, fmt.Sprintf(earlyFlow, "true")))
	carrier := startEarlyCarrier(t, inst, 3*time.Second)
	var provisional []int
	var mu sync.Mutex
	a, early, err := testPhone(t).DialEarlyMedia(bctx(t), target(inst, "sales"), siptest.DialOptions{
		OnProvisional: func(code int) {
			mu.Lock()
			provisional = append(provisional, code)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	mu.Lock()
	got183 := false
	for _, code := range provisional {
		got183 = got183 || code == 183
	}
	mu.Unlock()
	if !got183 {
		t.Fatalf("provisional responses %v, want a 183", provisional)
	}
	// Most of the 3 s announcement is heard before the answer, and nothing
	// of what the carrier plays after it.
	if len(early) < 2*media.SampleRate {
		t.Fatalf("heard %d ms before the answer, want most of the 3 s announcement", len(early)*1000/media.SampleRate)
	}
	if _, l := strongest(early, media.SampleRate/4, toneEarly); l < 0.25 {
		t.Errorf("early media: %.0f Hz level %.3f, want the announcement", toneEarly, l)
	}
	if _, l := strongest(early, media.SampleRate/4, toneAnswered); l > 0.05 {
		t.Errorf("early media: %.0f Hz level %.3f before the answer", toneAnswered, l)
	}
	heardAfter(t, a, "the carrier after the answer", len(early), echoOf(toneAnswered))

	if err := a.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	rec := callRecord(t, inst, a.CallID())
	leg := finalChained(t, inst, rec.ID, 1)[0]
	if rec.FlowID != "sales" || rec.TMProgressing == nil || leg.TMProgressing == nil || leg.Destination != "+14155550100" {
		t.Errorf("caller flow %q answered %v; leg to %q answered %v", rec.FlowID, rec.TMProgressing, leg.Destination, leg.TMProgressing)
	}
	waitFor(t, "the carrier's BYE", 10*time.Second, func() bool { _, byes := carrier.counts(); return byes == 1 })
	if invites, _ := carrier.counts(); invites != 1 {
		t.Errorf("carrier got %d INVITEs, want 1", invites)
	}
}

// Without early_media the caller gets no SDP before the answer (the 180
// only), hears nothing early, and is bridged on the answer as before.
func TestConnectWithoutEarlyMedia(t *testing.T) {
	inst := bridgeServer(t, mustFlow(t, fmt.Sprintf(earlyFlow, "false")))
	startEarlyCarrier(t, inst, 2*time.Second)
	a, early, err := testPhone(t).DialEarlyMedia(bctx(t), target(inst, "sales"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	if early != nil {
		t.Fatalf("heard %d ms before the answer; want no early media", len(early)*1000/media.SampleRate)
	}
	heardAfter(t, a, "the carrier after the answer", 0, echoOf(toneAnswered))
	if err := a.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	// The caller was answered only once the carrier had answered.
	rec := callRecord(t, inst, a.CallID())
	leg := finalChained(t, inst, rec.ID, 1)[0]
	if rec.TMProgressing == nil || leg.TMProgressing == nil || rec.TMProgressing.Before(*leg.TMProgressing) {
		t.Errorf("caller answered at %v, the carrier at %v", rec.TMProgressing, leg.TMProgressing)
	}
}
