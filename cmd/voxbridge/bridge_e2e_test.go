package main

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// Tones of the bridge tests: each side plays its own, so what a side hears
// says where it came from.
const (
	toneCaller = 700.0
	toneCallee = 1400.0
	extPass    = "bridge-secret-1"
)

// bridgeServer starts voxbridge where only "echo" is open to anonymous
// callers, so calls to extensions are challenged and carry the caller's
// extension, with extensions 1001 (no call-out), 1002, 1003 (call-out) and
// 1004.
func bridgeServer(t *testing.T, f *flow.Flow) *instance {
	t.Helper()
	return bridgeServerWith(t, f, nil)
}

// bridgeServerWith is bridgeServer with changes to its configuration.
func bridgeServerWith(t *testing.T, f *flow.Flow, change func(*serveConfig)) *instance {
	t.Helper()
	cfg := defaultServeConfig()
	cfg.SIPAnonymous = "echo,sales"
	cfg.SIPAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.DB = filepath.Join(t.TempDir(), "voxbridge.db")
	if change != nil {
		change(&cfg)
	}
	inst, err := startInstance(cfg, testLogger(t), instanceOptions{flow: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	for _, e := range []struct {
		num     string
		callOut bool
	}{{"1001", false}, {"1002", false}, {"1003", true}, {"1004", false}} {
		ext := store.Extension{Number: e.num, DisplayName: "Ext " + e.num, Enabled: true, CallOut: e.callOut}
		if err := ext.SetPassword(cfg.SIPRealm, extPass); err != nil {
			t.Fatal(err)
		}
		if err := inst.db.CreateExtension(context.Background(), &ext); err != nil {
			t.Fatal(err)
		}
	}
	return inst
}

func bctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// registeredPhone registers a test phone as ext and answers as plan says.
func registeredPhone(t *testing.T, inst *instance, ext string, plan siptest.AnswerPlan) *siptest.Phone {
	t.Helper()
	p := testPhone(t)
	p.OnInvite(func(*sip.Request) siptest.AnswerPlan { return plan })
	if err := p.Register(bctx(t), inst.SIPUDP.String(), ext, extPass); err != nil {
		t.Fatalf("register %s: %v", ext, err)
	}
	return p
}

// dialAs calls user from a phone that authenticates as extension from.
func dialAs(t *testing.T, inst *instance, from, user string) (*siptest.Call, error) {
	t.Helper()
	call, err := testPhone(t).Dial(bctx(t), target(inst, user), siptest.DialOptions{Username: from, Password: extPass})
	if err == nil {
		t.Cleanup(call.Close)
	}
	return call, err
}

func answeredCall(t *testing.T, p *siptest.Phone) *siptest.Call {
	t.Helper()
	select {
	case c := <-p.Calls():
		t.Cleanup(c.Close)
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("the callee never answered")
		return nil
	}
}

// hears waits until call has heard hz clearly, failing after a generous
// wait with the best level heard.
func hears(t *testing.T, who string, call *siptest.Call, hz float64) {
	t.Helper()
	best := 0.0
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if heard := call.Heard(); len(heard) >= media.SampleRate/2 {
			_, l := strongest(heard, media.SampleRate/4, hz)
			best = max(best, l)
			if l > 0.2 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never heard %.0f Hz (best level %.3f)", who, hz, best)
}

// chainedCalls lists the records of the legs the call with id placed.
func chainedCalls(t *testing.T, inst *instance, id string) []store.Call {
	t.Helper()
	calls, _, err := inst.db.ListCalls(context.Background(), store.ListOptions{PageSize: store.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Call
	for _, c := range calls {
		if c.MasterCallID == id {
			out = append(out, c)
		}
	}
	return out
}

// finalChained waits until the call placed n legs and all are hung up.
func finalChained(t *testing.T, inst *instance, id string, n int) []store.Call {
	t.Helper()
	var legs []store.Call
	waitFor(t, "the chained records to be final", 15*time.Second, func() bool {
		legs = chainedCalls(t, inst, id)
		if len(legs) != n {
			return false
		}
		for _, l := range legs {
			if l.Status != store.StatusHangup {
				return false
			}
		}
		return true
	})
	return legs
}

// Extension 1001 calls 1002: audio both ways, DTMF from the caller reaches
// the callee, the callee's BYE ends the caller, and both records are linked.
func TestBridgeExtensionToExtension(t *testing.T) {
	inst := bridgeServer(t, nil)
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee, RingFor: 600 * time.Millisecond, RingEvery: 200 * time.Millisecond})
	a, err := dialAs(t, inst, "1001", "1002")
	if err != nil {
		t.Fatal(err)
	}
	bc := answeredCall(t, b)
	a.Play(media.Tone(toneCaller, 4*time.Second, 0.5))

	hears(t, "the caller", a, toneCallee)
	hears(t, "the callee", bc, toneCaller)
	if _, err := a.SendDTMF('7', 160*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the caller's digit at the callee", 10*time.Second, func() bool { return bc.Summary().DigitsHeard == "7" })

	if err := bc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)
	if !a.RemoteHungUp() {
		t.Fatal("the caller's call ended but not by voxbridge's BYE")
	}

	rec, actions := getCallView(t, inst, a.CallID())
	if rec.HangupBy != store.HangupByLocal || rec.HangupReason != store.ReasonNormal || rec.DTMF != "7" {
		t.Errorf("caller record: hangup_by %q reason %q dtmf %q; want local/normal/7", rec.HangupBy, rec.HangupReason, rec.DTMF)
	}
	if rec.FlowID != "route:extension:1002" || actionTrail(actions) != "connect(stop)" {
		t.Errorf("caller ran flow %q: %s", rec.FlowID, actionTrail(actions))
	}
	legs := finalChained(t, inst, rec.ID, 1)
	leg := legs[0]
	if rec.Variables[flow.VarConnectCallID] != leg.ID {
		t.Errorf("caller's %s = %q, want the leg's id %s", flow.VarConnectCallID, rec.Variables[flow.VarConnectCallID], leg.ID)
	}
	if leg.Direction != store.DirectionOutgoing || leg.SIPCallID != bc.CallID() || leg.Codec != "PCMU" {
		t.Errorf("leg record: direction %q sip_call_id %q codec %q", leg.Direction, leg.SIPCallID, leg.Codec)
	}
	if leg.HangupBy != store.HangupByRemote || leg.HangupReason != store.ReasonNormal {
		t.Errorf("leg record: hangup_by %q reason %q; want remote/normal", leg.HangupBy, leg.HangupReason)
	}
	if leg.TMRinging == nil || leg.TMProgressing == nil || leg.TMHangup == nil {
		t.Errorf("leg record lacks times: ringing %v progressing %v hangup %v", leg.TMRinging, leg.TMProgressing, leg.TMHangup)
	}
	// What the callee's phone counted matches the leg's record (loopback:
	// no loss; a few packets may cross the BYE).
	sum := bc.Summary()
	if leg.RTPPacketsIn < 10 || leg.RTPPacketsOut < 10 || leg.RTPPacketsLost != 0 ||
		absDiff(sum.PacketsIn, leg.RTPPacketsOut) > 5 || absDiff(sum.PacketsOut, leg.RTPPacketsIn) > 5 {
		t.Errorf("leg record: packets in %d out %d lost %d; the callee sent %d and received %d",
			leg.RTPPacketsIn, leg.RTPPacketsOut, leg.RTPPacketsLost, sum.PacketsOut, sum.PacketsIn)
	}
}

// The caller hanging up ends the callee's leg with a BYE from voxbridge.
func TestBridgeCallerHangsUp(t *testing.T) {
	inst := bridgeServer(t, nil)
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee})
	a, err := dialAs(t, inst, "1001", "1002")
	if err != nil {
		t.Fatal(err)
	}
	bc := answeredCall(t, b)
	hears(t, "the caller", a, toneCallee)
	if err := a.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, bc)
	if !bc.RemoteHungUp() {
		t.Fatal("the callee's call ended but not by voxbridge's BYE")
	}
	rec := callRecord(t, inst, a.CallID())
	if rec.HangupBy != store.HangupByRemote || rec.HangupReason != store.ReasonNormal {
		t.Errorf("caller record: hangup_by %q reason %q; want remote/normal", rec.HangupBy, rec.HangupReason)
	}
	leg := finalChained(t, inst, rec.ID, 1)[0]
	if leg.HangupBy != store.HangupByLocal || leg.HangupReason != store.ReasonNormal {
		t.Errorf("leg record: hangup_by %q reason %q; want local/normal", leg.HangupBy, leg.HangupReason)
	}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

func wantRejected(t *testing.T, err error, code int) {
	t.Helper()
	var de *siptest.DialError
	if !errors.As(err, &de) || de.Code != code {
		t.Fatalf("call: %v; want rejected with %d", err, code)
	}
}

// lastCallRecord is the newest incoming call's record, once final.
func lastIncoming(t *testing.T, inst *instance) store.Call {
	t.Helper()
	var rec store.Call
	waitFor(t, "the caller's record", 10*time.Second, func() bool {
		calls, _, err := inst.db.ListCalls(context.Background(), store.ListOptions{}, store.CallFilter{Direction: store.DirectionIncoming})
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) == 0 {
			return false
		}
		rec = calls[0]
		return rec.Status == store.StatusHangup
	})
	return rec
}

func TestBridgeCalleeBusy(t *testing.T) {
	inst := bridgeServer(t, nil)
	registeredPhone(t, inst, "1002", siptest.AnswerPlan{Reject: 486})
	_, err := dialAs(t, inst, "1001", "1002")
	wantRejected(t, err, 486)
	rec := lastIncoming(t, inst)
	if rec.HangupReason != store.ReasonBusy || rec.SIPCode != 486 || rec.Variables[flow.VarConnectResult] != "busy" {
		t.Errorf("caller record: reason %q code %d result %q; want busy 486", rec.HangupReason, rec.SIPCode, rec.Variables[flow.VarConnectResult])
	}
	leg := finalChained(t, inst, rec.ID, 1)[0]
	if leg.HangupBy != store.HangupByRemote || leg.HangupReason != store.ReasonBusy || leg.SIPCode != 486 {
		t.Errorf("leg record: hangup_by %q reason %q code %d; want remote busy 486", leg.HangupBy, leg.HangupReason, leg.SIPCode)
	}
}

func TestBridgeCalleeNotRegistered(t *testing.T) {
	inst := bridgeServer(t, nil)
	_, err := dialAs(t, inst, "1001", "1002")
	wantRejected(t, err, 480)
	rec := lastIncoming(t, inst)
	if rec.HangupReason != store.ReasonNoAnswer || rec.SIPCode != 480 {
		t.Errorf("caller record: reason %q code %d; want noanswer 480", rec.HangupReason, rec.SIPCode)
	}
	if legs := chainedCalls(t, inst, rec.ID); len(legs) != 0 {
		t.Errorf("%d legs placed to an extension with no contact", len(legs))
	}
}

// fakeCarrier is a test phone acting as a carrier, with an enabled trunk
// row pointing at it.
func fakeCarrier(t *testing.T, inst *instance) *siptest.Phone {
	t.Helper()
	p := testPhone(t)
	p.AutoAnswer(toneCallee)
	tr := store.Trunk{Name: "carrier", Enabled: true, Host: "127.0.0.1", Port: p.Addr().(*net.UDPAddr).Port,
		Transport: store.TransportUDP, Format: store.NumberE164}
	if err := inst.db.CreateTrunk(context.Background(), &tr); err != nil {
		t.Fatal(err)
	}
	return p
}

// An extension without call-out cannot reach a trunk: 403, and the carrier
// never sees an INVITE.
func TestBridgeNumberWithoutCallOut(t *testing.T) {
	inst := bridgeServer(t, nil)
	carrier := fakeCarrier(t, inst)
	_, err := dialAs(t, inst, "1001", "+14155550100")
	wantRejected(t, err, 403)
	if n := len(carrier.Invites()); n != 0 {
		t.Fatalf("carrier got %d INVITEs", n)
	}
	rec := lastIncoming(t, inst)
	if rec.HangupReason != store.ReasonFailed || rec.SIPCode != 403 || rec.FlowID != "route:forbidden" {
		t.Errorf("caller record: reason %q code %d flow %q; want failed 403 route:forbidden", rec.HangupReason, rec.SIPCode, rec.FlowID)
	}
}

// An extension with call-out reaches the carrier through the trunk, and
// audio flows both ways.
func TestBridgeNumberThroughTrunk(t *testing.T) {
	inst := bridgeServer(t, nil)
	carrier := fakeCarrier(t, inst)
	a, err := dialAs(t, inst, "1003", "+14155550100")
	if err != nil {
		t.Fatal(err)
	}
	cc := answeredCall(t, carrier)
	a.Play(media.Tone(toneCaller, 4*time.Second, 0.5))
	hears(t, "the caller", a, toneCallee)
	hears(t, "the carrier", cc, toneCaller)
	invs := carrier.Invites()
	if len(invs) != 1 || invs[0].Recipient.User != "+14155550100" {
		t.Fatalf("carrier INVITEs: %d, first to %v", len(invs), invs)
	}
	if err := a.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, cc)
	rec := callRecord(t, inst, a.CallID())
	leg := finalChained(t, inst, rec.ID, 1)[0]
	if rec.FlowID != "route:trunk" || leg.SIPCallID != cc.CallID() || leg.HangupBy != store.HangupByLocal {
		t.Errorf("caller flow %q; leg sip_call_id %q (carrier saw %q) hangup_by %q", rec.FlowID, leg.SIPCallID, cc.CallID(), leg.HangupBy)
	}
}

// A flow's connect rings two extensions one after another: the first is
// busy, the second answers and is bridged.
func TestConnectActionSequential(t *testing.T) {
	inst := bridgeServer(t, mustFlow(t, `{
  "id": "sales",
  "actions": [
    {"id": "connect", "type": "connect", "option": {
      "destinations": [{"type": "extension", "target": "1002"}, {"type": "extension", "target": "1004"}],
      "ring": "sequential", "timeout_s": 10}}
  ]
}`))
	first := registeredPhone(t, inst, "1002", siptest.AnswerPlan{Reject: 486})
	second := registeredPhone(t, inst, "1004", siptest.AnswerPlan{ToneHz: toneCallee})
	a, err := testPhone(t).Dial(bctx(t), target(inst, "sales"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	sc := answeredCall(t, second)
	a.Play(media.Tone(toneCaller, 4*time.Second, 0.5))
	hears(t, "the caller", a, toneCallee)
	hears(t, "the second extension", sc, toneCaller)
	if n := len(first.Invites()); n != 1 {
		t.Errorf("first extension got %d INVITEs, want 1", n)
	}
	if err := sc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)

	rec := callRecord(t, inst, a.CallID())
	legs := finalChained(t, inst, rec.ID, 2)
	byDest := map[string]store.Call{}
	for _, l := range legs {
		byDest[l.Destination] = l
	}
	busy, ok1 := byDest[first.ContactURI("1002")]
	answered, ok2 := byDest[second.ContactURI("1004")]
	if !ok1 || !ok2 {
		t.Fatalf("legs to %q and %q, want the two contacts", legs[0].Destination, legs[1].Destination)
	}
	if busy.HangupReason != store.ReasonBusy || busy.SIPCode != 486 {
		t.Errorf("first leg: reason %q code %d; want busy 486", busy.HangupReason, busy.SIPCode)
	}
	if answered.HangupBy != store.HangupByRemote || answered.TMProgressing == nil || rec.Variables[flow.VarConnectCallID] != answered.ID {
		t.Errorf("second leg: hangup_by %q progressing %v; caller's connect.call_id %q want %s",
			answered.HangupBy, answered.TMProgressing, rec.Variables[flow.VarConnectCallID], answered.ID)
	}
}

// timeout_s, caller_id and relay_hangup_reason: the callee rings past the
// timeout, is cancelled, saw our caller ID, and the caller gets a plain 480
// with reason dialout.
func TestConnectTimeoutCallerIDNoRelay(t *testing.T) {
	inst := bridgeServer(t, mustFlow(t, `{
  "id": "sales",
  "actions": [
    {"type": "connect", "option": {"destinations": [{"type": "extension", "target": "1002"}],
      "timeout_s": 1, "caller_id": "+15550001", "relay_hangup_reason": false}}
  ]
}`))
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{RingFor: 20 * time.Second, ToneHz: toneCallee})
	_, err := testPhone(t).Dial(bctx(t), target(inst, "sales"), siptest.DialOptions{})
	wantRejected(t, err, 480)
	rec := lastIncoming(t, inst)
	if rec.HangupReason != store.ReasonDialout || rec.Variables[flow.VarConnectResult] != "noanswer" {
		t.Errorf("caller record: reason %q result %q; want dialout, noanswer", rec.HangupReason, rec.Variables[flow.VarConnectResult])
	}
	leg := finalChained(t, inst, rec.ID, 1)[0]
	if leg.HangupBy != store.HangupByLocal || leg.HangupReason != store.ReasonNoAnswer {
		t.Errorf("leg record: hangup_by %q reason %q; want local noanswer", leg.HangupBy, leg.HangupReason)
	}
	invs := b.Invites()
	if len(invs) != 1 || invs[0].From().Address.User != "+15550001" {
		t.Fatalf("callee INVITEs %d, From %v", len(invs), invs)
	}
	waitFor(t, "the CANCEL at the callee", 10*time.Second, func() bool { return b.Cancels() == 1 })
}

// An answered caller whose connect fails goes on with its flow.
func TestConnectFailureContinuesFlow(t *testing.T) {
	inst := bridgeServer(t, mustFlow(t, `{
  "id": "sales",
  "actions": [
    {"type": "answer"},
    {"id": "connect", "type": "connect", "option": {"destinations": [{"type": "extension", "target": "1002"}]}},
    {"type": "beep", "option": {"frequency_hz": 1000, "duration_ms": 600}},
    {"type": "hangup"}
  ]
}`))
	registeredPhone(t, inst, "1002", siptest.AnswerPlan{Reject: 486})
	a, err := testPhone(t).Dial(bctx(t), target(inst, "sales"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	waitDone(t, a)
	if _, l := strongest(a.Heard(), media.SampleRate/4, 1000); l < 0.2 {
		t.Fatalf("no beep after the failed connect (level %.3f)", l)
	}
	rec, actions := getCallView(t, inst, a.CallID())
	if trail := actionTrail(actions); trail != "answer connect(error) beep hangup(stop)" {
		t.Errorf("actions: %s", trail)
	}
	if rec.Variables[flow.VarConnectResult] != "busy" || rec.Variables[flow.VarConnectSIPCode] != "486" {
		t.Errorf("connect variables: result %q code %q", rec.Variables[flow.VarConnectResult], rec.Variables[flow.VarConnectSIPCode])
	}
}
