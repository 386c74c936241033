package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// The transfer target's tone, apart from the caller's and the callee's.
const toneTarget = 1000.0

// referBridge sets up 1001 calling 1002 through voxbridge with both
// talking, and returns the caller's call, the callee's, and the caller's
// record id.
func referBridge(t *testing.T, inst *instance) (a, bc *siptest.Call) {
	t.Helper()
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee})
	a, err := dialAs(t, inst, "1001", "1002")
	if err != nil {
		t.Fatal(err)
	}
	bc = answeredCall(t, b)
	a.Play(media.Tone(toneCaller, 40*time.Second, 0.5))
	hears(t, "the caller", a, toneCallee)
	hears(t, "the callee", bc, toneCaller)
	return a, bc
}

// B, called by A through voxbridge, transfers A to extension 1004 by a
// blind REFER: 1004 rings and answers, A and 1004 hear each other, B gets
// NOTIFY 100 then 200 and its leg is released, and the records say so.
func TestReferBlindTransfer(t *testing.T) {
	inst := bridgeServer(t, nil)
	c := registeredPhone(t, inst, "1004", siptest.AnswerPlan{ToneHz: toneTarget, RingFor: 400 * time.Millisecond, RingEvery: 200 * time.Millisecond})
	a, bc := referBridge(t, inst)

	code, err := bc.Refer(bctx(t), target(inst, "1004"), siptest.ReferOptions{})
	if err != nil || code != 202 {
		t.Fatalf("REFER answered %d, %v; want 202", code, err)
	}
	cc := answeredCall(t, c)
	hears(t, "the transfer target", cc, toneCaller)
	hears(t, "the caller", a, toneTarget)

	final, err := bc.WaitFinalNotify(bctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := bc.Notifies(); n[0].Code != 100 || final.Code != 200 {
		t.Fatalf("the transferor's NOTIFYs: %+v; want 100 then 200", n)
	}
	waitDone(t, bc)
	if !bc.RemoteHungUp() {
		t.Fatal("the transferor's leg ended, but not by voxbridge's BYE")
	}
	select {
	case <-a.Done():
		t.Fatal("the caller was hung up by the transfer")
	default:
	}
	// The target never hears the transferor: what it hears after the
	// bridge is the caller's tone only.
	if _, l := strongest(cc.Heard(), media.SampleRate/4, toneCallee); l > 0.2 {
		t.Errorf("the target heard the transferor's tone (level %.2f)", l)
	}

	if err := a.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, cc)
	rec := callRecord(t, inst, a.CallID())
	legs := finalChained(t, inst, rec.ID, 2)
	var from, to store.Call
	for _, l := range legs {
		switch l.SIPCallID {
		case bc.CallID():
			from = l
		case cc.CallID():
			to = l
		}
	}
	if from.ID == "" || to.ID == "" {
		t.Fatalf("the chained legs %+v are not the transferor's and the target's", legs)
	}
	v := rec.Variables
	if v[flow.VarTransferMethod] != "refer" || v[flow.VarTransferResult] != "answered" ||
		v[flow.VarTransferFrom] != from.ID || v[flow.VarTransferTo] != to.ID || v[flow.VarConnectCallID] != to.ID {
		t.Errorf("caller's transfer variables: %v; want refer/answered from %s to %s", v, from.ID, to.ID)
	}
	if from.Variables["transferred_to"] != to.ID || to.Variables["transferred_from"] != from.ID {
		t.Errorf("leg variables: transferor %v, target %v", from.Variables, to.Variables)
	}
	if from.HangupBy != store.HangupByLocal || to.HangupBy != store.HangupByLocal || to.TMProgressing == nil {
		t.Errorf("legs: transferor hung up by %q, target by %q (answered %v)", from.HangupBy, to.HangupBy, to.TMProgressing)
	}
}

// A REFER to an extension that turns the call down: B hears the failure
// in the final NOTIFY and A stays with B, still talking.
func TestReferTargetRefuses(t *testing.T) {
	inst := bridgeServer(t, nil)
	registeredPhone(t, inst, "1004", siptest.AnswerPlan{Reject: 486})
	a, bc := referBridge(t, inst)

	if code, err := bc.Refer(bctx(t), target(inst, "1004"), siptest.ReferOptions{}); err != nil || code != 202 {
		t.Fatalf("REFER answered %d, %v; want 202", code, err)
	}
	final, err := bc.WaitFinalNotify(bctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if final.Code != 486 {
		t.Fatalf("final NOTIFY %+v; want 486", final)
	}
	// Still bridged: what each hears from now on is the other.
	before := bc.HeardLen()
	waitFor(t, "more audio at the callee", 10*time.Second, func() bool { return bc.HeardLen() > before+media.SampleRate })
	if _, l := strongest(bc.Heard()[before:], media.SampleRate/4, toneCaller); l < 0.2 {
		t.Errorf("after the failed transfer the callee no longer hears the caller (level %.2f)", l)
	}
	select {
	case <-a.Done():
		t.Fatal("the caller was hung up")
	case <-bc.Done():
		t.Fatal("the transferor was hung up")
	default:
	}

	// A REFER to a user that is neither an extension nor a number would be
	// a call anywhere: 1002 may not call out, so it fails at once, 403.
	if code, err := bc.Refer(bctx(t), target(inst, "nobody"), siptest.ReferOptions{}); err != nil || code != 202 {
		t.Fatalf("second REFER answered %d, %v; want 202", code, err)
	}
	waitFor(t, "the second final NOTIFY", 10*time.Second, func() bool {
		n := bc.Notifies()
		return len(n) >= 4 && n[len(n)-1].Code >= 200
	})
	if n := bc.Notifies(); n[len(n)-1].Code != 403 {
		t.Errorf("REFER to an unknown user ended with %+v; want 403", n[len(n)-1])
	}
	if err := bc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)
	rec := callRecord(t, inst, a.CallID())
	if rec.Variables[flow.VarTransferResult] != string(store.ReasonFailed) || rec.Variables[flow.VarTransferMethod] != "" {
		t.Errorf("caller's variables after failed transfers: %v", rec.Variables)
	}
}

// The transferor hangs up right after the 202, as many phones do: the
// caller hears music on hold, then the target.
func TestReferTransferorLeavesAtOnce(t *testing.T) {
	inst := bridgeServer(t, nil)
	c := registeredPhone(t, inst, "1004", siptest.AnswerPlan{ToneHz: toneTarget, RingFor: 2500 * time.Millisecond, RingEvery: 500 * time.Millisecond})
	a, bc := referBridge(t, inst)
	if code, err := bc.Refer(bctx(t), target(inst, "1004"), siptest.ReferOptions{}); err != nil || code != 202 {
		t.Fatalf("REFER answered %d, %v; want 202", code, err)
	}
	mark := a.HeardLen()
	if err := bc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	cc := answeredCall(t, c)
	// Between the transferor's BYE and the target's answer: music on hold.
	if !heardMusicOnHold(a.Heard()[mark:]) {
		t.Error("the caller heard no music on hold while the target rang")
	}
	hears(t, "the transfer target", cc, toneCaller)
	hears(t, "the caller", a, toneTarget)
	select {
	case <-a.Done():
		t.Fatal("the caller was hung up")
	default:
	}
	if err := cc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)
}

// A call from a carrier is transferred to an outside number by the
// transfer action with method refer: a carrier that takes the REFER and
// reports 200 ends our part in the call; one that refuses it (603) gets
// the call bridged back out through the trunk instead.
func TestTransferByReferToCarrier(t *testing.T) {
	for _, tc := range []struct {
		name   string
		plan   siptest.ReferPlan
		method string
	}{
		{"carrier transfers", siptest.ReferPlan{FinalCode: 200, FinalDelay: 300 * time.Millisecond}, "refer"},
		{"carrier refuses", siptest.ReferPlan{Reject: 603}, "bridge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := bridgeServer(t, mustFlow(t, `{"id":"xfer","actions":[{"type":"answer"},
			  {"type":"transfer","option":{"destination":{"type":"number","target":"+14155550123"},"method":"refer"}}]}`))
			carrier := referCarrier(t, inst)
			carrier.OnRefer(func(*sip.Request) siptest.ReferPlan { return tc.plan })
			call, err := carrier.Dial(bctx(t), target(inst, "echo"), siptest.DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(call.Close)
			call.Play(media.Tone(toneCaller, 20*time.Second, 0.5))
			waitFor(t, "the REFER at the carrier", 15*time.Second, func() bool { return len(carrier.ReferTargets()) == 1 })
			if got := carrier.ReferTargets()[0]; !strings.Contains(got, "sip:+14155550123@127.0.0.1") {
				t.Fatalf("Refer-To %q", got)
			}
			if tc.method == "refer" {
				waitDone(t, call)
				if !call.RemoteHungUp() {
					t.Fatal("voxbridge did not hang up after the carrier took the call")
				}
				if n := len(carrier.Invites()); n != 0 {
					t.Fatalf("the carrier got %d INVITEs: the call was bridged too", n)
				}
			} else {
				far := answeredCall(t, carrier)
				hears(t, "the transfer target", far, toneCaller)
				hears(t, "the caller", call, toneCallee)
				if err := call.Hangup(bctx(t)); err != nil {
					t.Fatal(err)
				}
			}
			rec := callRecord(t, inst, call.CallID())
			if rec.Variables[flow.VarTransferMethod] != tc.method || rec.Variables[flow.VarTransferResult] != "answered" {
				t.Errorf("caller's variables %v; want transfer by %s, answered", rec.Variables, tc.method)
			}
		})
	}
}

// referCarrier is fakeCarrier whose own calls voxbridge also recognises
// by their source address (loopback: only for tests with no other caller).
func referCarrier(t *testing.T, inst *instance) *siptest.Phone {
	t.Helper()
	p := fakeCarrier(t, inst)
	ctx := context.Background()
	trunks, err := inst.db.EnabledTrunks(ctx)
	if err != nil || len(trunks) != 1 {
		t.Fatalf("trunks %v, %v", trunks, err)
	}
	trunks[0].InboundAddrs = []string{"127.0.0.1"}
	if err := inst.db.UpdateTrunk(ctx, &trunks[0]); err != nil {
		t.Fatal(err)
	}
	inst.sip.ReloadTrunks() // the trunk registration loop cached none at start
	return p
}

// An attended transfer done by a phone: 1001 calls 1002, 1002 calls 1003
// (both through voxbridge), then 1002 REFERs its call with 1001 with
// Replaces naming its call with 1003: 1001 and 1003 talk, and both of
// 1002's calls end.
func TestReferAttendedTransfer(t *testing.T) {
	inst := bridgeServer(t, nil)
	c := registeredPhone(t, inst, "1003", siptest.AnswerPlan{ToneHz: toneTarget})
	a, bc := referBridge(t, inst)
	b2, err := dialAs(t, inst, "1002", "1003")
	if err != nil {
		t.Fatal(err)
	}
	cc := answeredCall(t, c)
	hears(t, "the transferor's second call", b2, toneTarget)

	replaces, err := siptest.ReplacesOf(b2)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := bc.Refer(bctx(t), target(inst, "1003"), siptest.ReferOptions{Replaces: replaces}); err != nil || code != 202 {
		t.Fatalf("REFER answered %d, %v; want 202", code, err)
	}
	mark := cc.HeardLen()
	hears(t, "the caller", a, toneTarget)
	waitFor(t, "the target to hear the caller", 15*time.Second, func() bool {
		h := cc.Heard()
		return len(h) > mark+media.SampleRate/2 && media.ToneLevel(h[len(h)-media.SampleRate/4:], toneCaller) > 0.2
	})
	final, err := bc.WaitFinalNotify(bctx(t))
	if err != nil || final.Code != 200 {
		t.Fatalf("final NOTIFY %+v, %v; want 200", final, err)
	}
	waitDone(t, bc)
	waitDone(t, b2)
	if !bc.RemoteHungUp() || !b2.RemoteHungUp() {
		t.Fatalf("the transferor's calls ended, but not by voxbridge's BYEs (%v, %v)", bc.RemoteHungUp(), b2.RemoteHungUp())
	}
	select {
	case <-a.Done():
		t.Fatal("the caller was hung up")
	case <-cc.Done():
		t.Fatal("the target was hung up")
	default:
	}

	if err := cc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)
	rec := callRecord(t, inst, a.CallID())
	second := callRecord(t, inst, b2.CallID())
	toC := finalChained(t, inst, second.ID, 1)[0]
	v := rec.Variables
	if v[flow.VarTransferMethod] != "refer" || v[flow.VarTransferTo] != toC.ID || v[flow.VarTransferReplaces] != second.ID {
		t.Errorf("caller's variables %v; want a transfer by refer to %s replacing call %s", v, toC.ID, second.ID)
	}
	if second.Variables[flow.VarTransferMethod] != "replaced" || second.HangupBy != store.HangupByLocal {
		t.Errorf("the replaced call: variables %v, hung up by %q", second.Variables, second.HangupBy)
	}
	if toC.HangupBy != store.HangupByRemote || toC.Variables["transferred_from"] == "" {
		t.Errorf("the target's leg: hung up by %q, variables %v", toC.HangupBy, toC.Variables)
	}
}

// A phone can only name its own calls in Replaces: 1004 cannot take over
// 1002's call with 1003.
func TestReferReplacesOthersCallRefused(t *testing.T) {
	inst := bridgeServer(t, nil)
	c := registeredPhone(t, inst, "1003", siptest.AnswerPlan{ToneHz: toneTarget})
	d := registeredPhone(t, inst, "1004", siptest.AnswerPlan{ToneHz: toneCallee})
	b2, err := dialAs(t, inst, "1002", "1003")
	if err != nil {
		t.Fatal(err)
	}
	cc := answeredCall(t, c)
	a, err := dialAs(t, inst, "1001", "1004")
	if err != nil {
		t.Fatal(err)
	}
	dc := answeredCall(t, d)
	hears(t, "the caller", a, toneCallee)
	replaces, err := siptest.ReplacesOf(b2)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := dc.Refer(bctx(t), target(inst, "1003"), siptest.ReferOptions{Replaces: replaces}); err != nil || code != 202 {
		t.Fatalf("REFER answered %d, %v; want 202", code, err)
	}
	final, err := dc.WaitFinalNotify(bctx(t))
	if err != nil || final.Code != 403 {
		t.Fatalf("final NOTIFY %+v, %v; want 403", final, err)
	}
	for _, call := range []*siptest.Call{a, dc, b2, cc} {
		select {
		case <-call.Done():
			t.Fatal("a call ended")
		default:
		}
	}
	for _, call := range []*siptest.Call{a, b2} {
		if err := call.Hangup(bctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	waitDone(t, dc)
	waitDone(t, cc)
}

// An INVITE with Replaces (RFC 3891) from another phone of extension 1001
// takes over 1001's call with 1002: the new phone is answered and talks
// with 1002, and the old one is hung up. Another extension may not.
func TestInviteWithReplaces(t *testing.T) {
	inst := bridgeServer(t, nil)
	a, bc := referBridge(t, inst)
	replaces, err := siptest.ReplacesOf(a)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(ext string) (*siptest.Call, error) {
		call, err := testPhone(t).Dial(bctx(t), target(inst, "1002"), siptest.DialOptions{Username: ext, Password: extPass,
			Headers: []sip.Header{sip.NewHeader("Replaces", replaces)}})
		if err == nil {
			t.Cleanup(call.Close)
		}
		return call, err
	}
	_, err = dial("1004")
	wantRejected(t, err, 403)

	moved, err := dial("1001")
	if err != nil {
		t.Fatal(err)
	}
	moved.Play(media.Tone(toneTarget, 20*time.Second, 0.5))
	waitDone(t, a)
	if !a.RemoteHungUp() {
		t.Fatal("the replaced call ended, but not by voxbridge's BYE")
	}
	hears(t, "the new phone", moved, toneCallee)
	mark := bc.HeardLen()
	waitFor(t, "the callee to hear the new phone", 15*time.Second, func() bool {
		h := bc.Heard()
		return len(h) > mark+media.SampleRate/2 && media.ToneLevel(h[len(h)-media.SampleRate/4:], toneTarget) > 0.2
	})
	if err := moved.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, bc)
	rec := callRecord(t, inst, moved.CallID())
	old := callRecord(t, inst, a.CallID())
	if rec.FlowID != "route:replaces" || rec.Variables[flow.VarTransferReplaces] != old.ID || old.Variables[flow.VarTransferMethod] != "replaced" {
		t.Errorf("new call: flow %q variables %v; old call variables %v", rec.FlowID, rec.Variables, old.Variables)
	}
}
