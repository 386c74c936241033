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

// B transfers A to one of our numbers that runs a flow (an echo): B is
// released with NOTIFY 200, A hears itself, nothing goes out through a
// trunk, and the record shows the connect ending in a switch to the flow.
// The caller may not do the same to B (B has no flow to run it in).
func TestReferToOurFlowNumber(t *testing.T) {
	inst := bridgeServer(t, nil)
	sf, err := (&flow.Flow{ID: "support", Actions: []flow.Action{{Type: "echo", Option: []byte(`{"duration_ms":30000}`)}}}).ToStore("")
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.db.PutFlow(context.Background(), sf); err != nil {
		t.Fatal(err)
	}
	if err := inst.db.PutNumber(context.Background(), &store.Number{Number: "+15550009000", Kind: store.NumberToFlow, Target: "support"}); err != nil {
		t.Fatal(err)
	}
	a, bc := referBridge(t, inst)

	if code, err := a.Refer(bctx(t), target(inst, "+15550009000"), siptest.ReferOptions{}); err != nil || code != 202 {
		t.Fatalf("caller's REFER answered %d, %v; want 202", code, err)
	}
	if final, err := a.WaitFinalNotify(bctx(t)); err != nil || final.Code != 501 {
		t.Fatalf("caller's REFER to a flow: final NOTIFY %+v, %v; want 501", final, err)
	}

	if code, err := bc.Refer(bctx(t), target(inst, "+15550009000"), siptest.ReferOptions{}); err != nil || code != 202 {
		t.Fatalf("callee's REFER answered %d, %v; want 202", code, err)
	}
	if final, err := bc.WaitFinalNotify(bctx(t)); err != nil || final.Code != 200 {
		t.Fatalf("final NOTIFY %+v, %v; want 200", final, err)
	}
	waitDone(t, bc)
	if !bc.RemoteHungUp() {
		t.Fatal("the transferor's leg ended, but not by voxbridge's BYE")
	}
	mark := a.HeardLen()
	waitFor(t, "the caller to hear its echo", 15*time.Second, func() bool {
		h := a.Heard()
		return len(h) > mark+media.SampleRate/2 && media.ToneLevel(h[len(h)-media.SampleRate/4:], toneCaller) > 0.2
	})
	if err := a.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	rec := callRecord(t, inst, a.CallID())
	if rec.FlowID != "support" || rec.Variables[flow.VarTransferFlow] != "support" || rec.Variables[flow.VarTransferMethod] != "refer" {
		t.Errorf("caller's record: flow %q, variables %v", rec.FlowID, rec.Variables)
	}
	runs, err := inst.db.ListActionRuns(context.Background(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range runs {
		got = append(got, r.FlowID+"/"+r.Type+"="+r.Result)
	}
	if len(got) != 2 || !strings.HasSuffix(got[0], "/connect=flow:support") || got[1] != "support/echo=hangup" {
		t.Errorf("actions run: %v; want the connect switching to support, then its echo", got)
	}
	legs := finalChained(t, inst, rec.ID, 1)
	if legs[0].Variables[flow.VarTransferFlow] != "support" {
		t.Errorf("transferor's leg variables %v", legs[0].Variables)
	}
}

// A, who called B through voxbridge, transfers B to extension 1004 by a
// blind REFER on its own dialog: 1004 rings and answers, B and 1004 hear
// each other, A gets NOTIFY 100 then 200 and is released, and the call
// goes on without A until 1004 hangs up, which ends B.
func TestReferFromCaller(t *testing.T) {
	inst := bridgeServer(t, nil)
	c := registeredPhone(t, inst, "1004", siptest.AnswerPlan{ToneHz: toneTarget, RingFor: 400 * time.Millisecond, RingEvery: 200 * time.Millisecond})
	a, bc := referBridge(t, inst)
	// The caller names one of our numbers, which rings extension 1004.
	if err := inst.db.PutNumber(context.Background(), &store.Number{Number: "+15550001004", Kind: store.NumberToExtension, Target: "1004"}); err != nil {
		t.Fatal(err)
	}

	if code, err := a.Refer(bctx(t), target(inst, "+15550001004"), siptest.ReferOptions{}); err != nil || code != 202 {
		t.Fatalf("REFER answered %d, %v; want 202", code, err)
	}
	cc := answeredCall(t, c)
	hears(t, "the transfer target", cc, toneCallee)
	hears(t, "the callee", bc, toneTarget)
	final, err := a.WaitFinalNotify(bctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := a.Notifies(); n[0].Code != 100 || final.Code != 200 {
		t.Fatalf("the caller's NOTIFYs: %+v; want 100 then 200", n)
	}
	waitDone(t, a)
	if !a.RemoteHungUp() {
		t.Fatal("the caller's leg ended, but not by voxbridge's BYE")
	}
	// With the caller gone the two still talk.
	mark := bc.HeardLen()
	waitFor(t, "more audio at the callee", 10*time.Second, func() bool { return bc.HeardLen() > mark+media.SampleRate })
	if _, l := strongest(bc.Heard()[mark:], media.SampleRate/4, toneTarget); l < 0.2 {
		t.Errorf("after the caller left the callee no longer hears the target (level %.2f)", l)
	}
	if _, l := strongest(cc.Heard(), media.SampleRate/4, toneCaller); l > 0.2 {
		t.Errorf("the target heard the caller's tone (level %.2f)", l)
	}

	if err := cc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, bc)
	if !bc.RemoteHungUp() {
		t.Fatal("the callee's leg ended, but not by voxbridge's BYE")
	}
	rec := callRecord(t, inst, a.CallID())
	legs := finalChained(t, inst, rec.ID, 2)
	var callee, to store.Call
	for _, l := range legs {
		switch l.SIPCallID {
		case bc.CallID():
			callee = l
		case cc.CallID():
			to = l
		}
	}
	if callee.ID == "" || to.ID == "" {
		t.Fatalf("the chained legs %+v are not the callee's and the target's", legs)
	}
	v := rec.Variables
	if v[flow.VarTransferMethod] != "refer" || v[flow.VarTransferResult] != "answered" ||
		v[flow.VarTransferFrom] != rec.ID || v[flow.VarTransferTo] != to.ID {
		t.Errorf("caller's transfer variables: %v; want refer/answered from %s to %s", v, rec.ID, to.ID)
	}
	if rec.HangupBy != store.HangupByLocal || rec.HangupReason != store.ReasonNormal {
		t.Errorf("the caller's record: hung up by %q, %q; want local, normal", rec.HangupBy, rec.HangupReason)
	}
	if to.Variables["transferred_from"] != rec.ID || to.HangupBy != store.HangupByRemote || callee.HangupBy != store.HangupByLocal {
		t.Errorf("legs: target %v hung up by %q, callee hung up by %q", to.Variables, to.HangupBy, callee.HangupBy)
	}
}

// An attended transfer by the caller: 1001 calls 1002, then 1003 (both
// through voxbridge), then REFERs its first call with Replaces naming the
// second: 1002 and 1003 talk, and both of 1001's calls end.
func TestReferFromCallerAttended(t *testing.T) {
	inst := bridgeServer(t, nil)
	c := registeredPhone(t, inst, "1003", siptest.AnswerPlan{ToneHz: toneTarget})
	a, bc := referBridge(t, inst)
	a2, err := dialAs(t, inst, "1001", "1003")
	if err != nil {
		t.Fatal(err)
	}
	cc := answeredCall(t, c)
	hears(t, "the caller's second call", a2, toneTarget)
	replaces, err := siptest.ReplacesOf(a2)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := a.Refer(bctx(t), target(inst, "1003"), siptest.ReferOptions{Replaces: replaces}); err != nil || code != 202 {
		t.Fatalf("REFER answered %d, %v; want 202", code, err)
	}
	final, err := a.WaitFinalNotify(bctx(t))
	if err != nil || final.Code != 200 {
		t.Fatalf("final NOTIFY %+v, %v; want 200", final, err)
	}
	waitDone(t, a)
	waitDone(t, a2)
	mark, markC := bc.HeardLen(), cc.HeardLen()
	waitFor(t, "the callee and the target to hear each other", 15*time.Second, func() bool {
		hb, hc := bc.Heard(), cc.Heard()
		return len(hb) > mark+media.SampleRate/2 && len(hc) > markC+media.SampleRate/2 &&
			media.ToneLevel(hb[len(hb)-media.SampleRate/4:], toneTarget) > 0.2 &&
			media.ToneLevel(hc[len(hc)-media.SampleRate/4:], toneCallee) > 0.2
	})
	if err := bc.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, cc)
	rec := callRecord(t, inst, a.CallID())
	second := callRecord(t, inst, a2.CallID())
	if v := rec.Variables; v[flow.VarTransferMethod] != "refer" || v[flow.VarTransferReplaces] != second.ID {
		t.Errorf("caller's variables %v; want a transfer by refer replacing call %s", v, second.ID)
	}
	if second.Variables[flow.VarTransferMethod] != "replaced" {
		t.Errorf("the replaced call's variables %v", second.Variables)
	}
}

// The caller hangs up right after the 202: the callee hears music on hold
// while the target rings, then the target. A transfer the target turns
// down after the caller left ends the callee too.
func TestReferFromCallerLeavesAtOnce(t *testing.T) {
	for _, answer := range []bool{true, false} {
		t.Run(map[bool]string{true: "target answers", false: "target busy"}[answer], func(t *testing.T) {
			inst := bridgeServer(t, nil)
			plan := siptest.AnswerPlan{ToneHz: toneTarget, RingFor: 2500 * time.Millisecond, RingEvery: 500 * time.Millisecond}
			if !answer {
				plan = siptest.AnswerPlan{Reject: 486, RingFor: 2500 * time.Millisecond, RingEvery: 500 * time.Millisecond}
			}
			c := registeredPhone(t, inst, "1004", plan)
			a, bc := referBridge(t, inst)
			if code, err := a.Refer(bctx(t), target(inst, "1004"), siptest.ReferOptions{}); err != nil || code != 202 {
				t.Fatalf("REFER answered %d, %v; want 202", code, err)
			}
			mark := bc.HeardLen()
			if err := a.Hangup(bctx(t)); err != nil {
				t.Fatal(err)
			}
			if !answer {
				waitDone(t, bc)
				if !heardMusicOnHold(bc.Heard()[mark:]) {
					t.Error("the callee heard no music on hold while the target rang")
				}
				rec := callRecord(t, inst, a.CallID())
				if rec.Variables[flow.VarTransferResult] != "busy" {
					t.Errorf("caller's variables %v; want transfer.result busy", rec.Variables)
				}
				return
			}
			cc := answeredCall(t, c)
			if !heardMusicOnHold(bc.Heard()[mark:]) {
				t.Error("the callee heard no music on hold while the target rang")
			}
			hears(t, "the transfer target", cc, toneCallee)
			hears(t, "the callee", bc, toneTarget)
			if err := bc.Hangup(bctx(t)); err != nil {
				t.Fatal(err)
			}
			waitDone(t, cc)
			rec := callRecord(t, inst, a.CallID())
			if rec.Variables[flow.VarTransferMethod] != "refer" || rec.HangupBy != store.HangupByRemote {
				t.Errorf("caller's record: variables %v, hung up by %q", rec.Variables, rec.HangupBy)
			}
		})
	}
}

// A call from a carrier is transferred to an outside number by the
// transfer action with method refer: a carrier that takes the REFER and
// reports 200 ends our part in the call; one that refuses it (603) gets
// the call bridged back out through the trunk instead.
func TestTransferByReferToCarrier(t *testing.T) {
	const allowRefer = "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY"
	for _, tc := range []struct {
		name   string
		plan   siptest.ReferPlan
		asked  string // the transfer action's method
		allow  string // the carrier's Allow, "" for none
		method string // how the transfer was done
	}{
		{"carrier transfers", siptest.ReferPlan{FinalCode: 200, FinalDelay: 300 * time.Millisecond}, "refer", "", "refer"},
		{"carrier refuses", siptest.ReferPlan{Reject: 603}, "refer", "", "bridge"},
		// With method auto a carrier is asked only when its Allow lists REFER.
		{"auto, carrier allows REFER", siptest.ReferPlan{FinalCode: 200, FinalDelay: 300 * time.Millisecond}, "auto", allowRefer, "refer"},
		{"auto, carrier does not list REFER", siptest.ReferPlan{FinalCode: 200}, "auto", "INVITE, ACK, CANCEL, BYE", "bridge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := bridgeServer(t, mustFlow(t, `{"id":"xfer","actions":[{"type":"answer"},
			  {"type":"transfer","option":{"destination":{"type":"number","target":"+14155550123"},"method":"`+tc.asked+`"}}]}`))
			carrier := referCarrier(t, inst)
			carrier.OnRefer(func(*sip.Request) siptest.ReferPlan { return tc.plan })
			var opts siptest.DialOptions
			if tc.allow != "" {
				opts.Headers = []sip.Header{sip.NewHeader("Allow", tc.allow)}
			}
			call, err := carrier.Dial(bctx(t), target(inst, "echo"), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(call.Close)
			call.Play(media.Tone(toneCaller, 20*time.Second, 0.5))
			if tc.asked == "auto" && tc.method == "bridge" {
				// Not asked at all: the call goes out through the trunk.
				far := answeredCall(t, carrier)
				hears(t, "the transfer target", far, toneCaller)
				if n := len(carrier.ReferTargets()); n != 0 {
					t.Fatalf("the carrier got %d REFERs without listing REFER in Allow", n)
				}
				if err := call.Hangup(bctx(t)); err != nil {
					t.Fatal(err)
				}
				rec := callRecord(t, inst, call.CallID())
				if rec.Variables[flow.VarTransferResult] != "answered" {
					t.Errorf("caller's variables %v; want transfer answered", rec.Variables)
				}
				return
			}
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
