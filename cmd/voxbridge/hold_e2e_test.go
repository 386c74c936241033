package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// echoCall dials the default flow's echo test and waits until the phone's
// continuous 1 kHz tone comes back.
func echoCall(t *testing.T, inst *instance) *siptest.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := testPhone(t).Dial(ctx, target(inst, "echo"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Close)
	greeting, err := flow.Prompt("greeting")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the greeting", 30*time.Second, func() bool { return call.HeardLen() >= len(greeting)+media.SampleRate/2 })
	call.Play(media.Tone(1000, 40*time.Second, 0.5)) // the whole test long
	echoAfter(t, call, call.HeardLen(), "before hold")
	return call
}

// echoAfter waits for the 1 kHz echo in what the phone hears after mark.
func echoAfter(t *testing.T, call *siptest.Call, mark int, when string) {
	t.Helper()
	level := 0.0
	var win []int16
	waitFor(t, "the 1 kHz echo "+when, 15*time.Second, func() bool {
		heard := call.Heard()[mark:]
		if len(heard) < media.SampleRate/2 {
			return false
		}
		win, level = strongest(heard, media.SampleRate/4, 1000)
		return level >= 0.2
	})
	if f := media.DominantFrequency(win, 300, 3400, 10); f < 980 || f > 1020 {
		t.Fatalf("echo %s: dominant frequency %.0f Hz, want 1000", when, f)
	}
}

// The phone holds the echo call (sendonly): nothing reaches it while held,
// though it keeps talking; on resume its tone is echoed again. The record
// keeps the hold.
func TestHoldResumeEchoEndToEnd(t *testing.T) {
	inst, _ := testServer(t, nil)
	call := echoCall(t, inst)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := call.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	// Packets already on the way and the jitter buffer's tail play out
	// first; then a full second must be silent.
	settle := call.HeardLen() + media.SampleRate/2
	waitFor(t, "a second of held audio", 15*time.Second, func() bool { return call.HeardLen() >= settle+media.SampleRate })
	held := call.Heard()[settle : settle+media.SampleRate]
	if rms := media.RMS(held); rms > 30 {
		t.Fatalf("phone hears RMS %.0f while holding; want silence", rms)
	}

	if err := call.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	echoAfter(t, call, call.HeardLen(), "after resume")

	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := callRecord(t, inst, call.CallID())
	if rec.Variables[flow.VarRemoteHold] != "false" || rec.Variables[flow.VarHoldCount] != "1" {
		t.Errorf("record variables: remote_hold %q, hold_count %q; want false and 1",
			rec.Variables[flow.VarRemoteHold], rec.Variables[flow.VarHoldCount])
	}
}

// The phone moves its media to a new port by re-INVITE: the echo follows
// it there, and the old port hears nothing more.
func TestReinviteMovesMediaEndToEnd(t *testing.T) {
	inst, _ := testServer(t, nil)
	call := echoCall(t, inst)
	oldMark := call.HeardLen()
	moved := moveMedia(t, testPhone(t), call) // a phone only for a socket on its address
	moved.Enqueue(media.Tone(1000, 10*time.Second, 0.5))
	heardOnTone(t, moved, "the echo at the new port", 1000)
	oldPortSilent(t, call, oldMark)
}

// moveMedia has call re-INVITE to a new RTP socket of phone and returns a
// stream running there, toward the server's media.
func moveMedia(t *testing.T, phone *siptest.Phone, call *siptest.Call) *media.Stream {
	t.Helper()
	return moveMediaTo(t, phone, call, sdp.PCMU)
}

// moveMediaTo is moveMedia offering only codec.
func moveMediaTo(t *testing.T, phone *siptest.Phone, call *siptest.Call, codec sdp.Codec) *media.Stream {
	t.Helper()
	conn, err := phone.ListenRTP()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := call.Reinvite(ctx, siptest.ReinviteOptions{Port: conn.LocalAddr().(*net.UDPAddr).Port, Codecs: []sdp.Codec{codec}})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	mc, merr := media.CodecByName(r.Media.Codec.Name, r.Media.Codec.PayloadType)
	if r.Code != 200 || r.Media.Codec != codec || merr != nil {
		conn.Close()
		t.Fatalf("re-INVITE: %d, codec %+v", r.Code, r.Media.Codec)
	}
	moved, err := media.NewStream(media.StreamConfig{Conn: conn, Remote: net.UDPAddrFromAddrPort(r.Media.RemoteAddr),
		Codec: mc, DTMFPayloadType: r.Media.DTMFPayloadType})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	t.Cleanup(func() { scancel(); moved.Close() })
	moved.Start(sctx)
	return moved
}

// heardOnTone reads st for two seconds of audio and checks hz is in it.
func heardOnTone(t *testing.T, st *media.Stream, what string, hz float64) {
	t.Helper()
	var heard []int16
	deadline := time.After(15 * time.Second)
	for len(heard) < 2*media.SampleRate {
		select {
		case f, ok := <-st.Frames():
			if !ok {
				t.Fatalf("%s: the stream ended", what)
			}
			heard = append(heard, f...)
		case <-deadline:
			t.Fatalf("%s: %d samples heard", what, len(heard))
		}
	}
	win, level := strongest(heard, media.SampleRate/4, hz)
	if level < 0.2 {
		t.Fatalf("%s: no %.0f Hz (level %.3f)", what, hz, level)
	}
	if f := media.DominantFrequency(win, 300, 3400, 10); f < hz-20 || f > hz+20 {
		t.Fatalf("%s: dominant frequency %.0f Hz, want %.0f", what, f, hz)
	}
}

// oldPortSilent checks that, after what was in flight at mark, call's own
// socket hears a second of silence.
func oldPortSilent(t *testing.T, call *siptest.Call, mark int) {
	t.Helper()
	settle := mark + media.SampleRate/2
	waitFor(t, "a second more at the old port", 15*time.Second, func() bool { return call.HeardLen() >= settle+media.SampleRate })
	if rms := media.RMS(call.Heard()[settle : settle+media.SampleRate]); rms > 30 {
		t.Errorf("old port still hears RMS %.0f after the move", rms)
	}
}

// Mid-bridge, the callee moves its media to a new port by re-INVITE: the
// caller's audio follows it there, the caller hears what the callee sends
// from there, and the callee's old port hears nothing more.
func TestBridgedCalleeMovesMedia(t *testing.T) {
	const movedHz = 1800
	inst := bridgeServer(t, nil)
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee})
	a, err := dialAs(t, inst, "1001", "1002")
	if err != nil {
		t.Fatal(err)
	}
	bc := answeredCall(t, b)
	a.Play(media.Tone(toneCaller, 40*time.Second, 0.5))
	hears(t, "the caller", a, toneCallee)
	hears(t, "the callee", bc, toneCaller)

	mark, aMark := bc.HeardLen(), a.HeardLen()
	moved := moveMedia(t, b, bc)
	moved.Enqueue(media.Tone(movedHz, 20*time.Second, 0.5))
	heardOnTone(t, moved, "the caller at the callee's new port", toneCaller)
	heardAfter(t, a, "the callee's new port at the caller", aMark, echoOf(movedHz))
	oldPortSilent(t, bc, mark)
}

// hold over the API tells the phone: a re-INVITE offering sendonly, while
// the phone hears music; unhold offers sendrecv and the echo is back. The
// record counts the hold and has no warning.
func TestAPIHoldReinvitesThePhone(t *testing.T) {
	inst, _ := testServerWith(t, instanceOptions{flow: mustFlow(t, longEcho)}, nil)
	phone := testPhone(t)
	call := dialPhone(t, phone, inst)
	id := answeredCallID(t, inst)
	call.Play(media.Tone(1000, 100*time.Second, 0.3))
	pos := heardAfter(t, call, "the echo of its tone", 0, echoOf(1000))

	callAct(t, inst, id, "hold", nil, http.StatusAccepted)
	if dir := reinviteDirection(t, phone, 1); dir != sdp.SendOnly {
		t.Fatalf("hold offered %q, want sendonly", dir)
	}
	pos = heardAfter(t, call, "music on hold", pos, musicNot(1000))
	callAct(t, inst, id, "unhold", nil, http.StatusAccepted)
	if dir := reinviteDirection(t, phone, 2); dir != sdp.SendRecv {
		t.Fatalf("unhold offered %q, want sendrecv", dir)
	}
	heardAfter(t, call, "the echo after unhold", pos, echoOf(1000))
	rec := callRecord2(t, inst, id)
	if rec.Variables[flow.VarHoldCount] != "1" || len(rec.Warnings) != 0 {
		t.Fatalf("record: hold count %q, warnings %q", rec.Variables[flow.VarHoldCount], rec.Warnings)
	}
}

// A phone that refuses the hold re-INVITE is held all the same: it hears
// the music, and the record has a warning; unhold then sends nothing more.
func TestAPIHoldRefusedKeepsMusic(t *testing.T) {
	inst, _ := testServerWith(t, instanceOptions{flow: mustFlow(t, longEcho)}, nil)
	phone := testPhone(t)
	phone.OnReinvite(func(*sip.Request) siptest.ReinvitePlan { return siptest.ReinvitePlan{Reject: 488} })
	call := dialPhone(t, phone, inst)
	id := answeredCallID(t, inst)
	call.Play(media.Tone(1000, 100*time.Second, 0.3))
	pos := heardAfter(t, call, "the echo of its tone", 0, echoOf(1000))

	callAct(t, inst, id, "hold", nil, http.StatusAccepted)
	reinviteDirection(t, phone, 1)
	pos = heardAfter(t, call, "music on hold though the phone refused", pos, musicNot(1000))
	var rec store.Call
	waitFor(t, "the warning on the record", 10*time.Second, func() bool {
		time.Sleep(150 * time.Millisecond)
		rec = callRecord2(t, inst, id)
		return len(rec.Warnings) > 0
	})
	if !strings.Contains(rec.Warnings[0], "api hold") || !strings.Contains(rec.Warnings[0], "488") {
		t.Fatalf("warnings: %q", rec.Warnings)
	}
	callAct(t, inst, id, "unhold", nil, http.StatusAccepted)
	heardAfter(t, call, "the echo after unhold", pos, echoOf(1000))
	if n := len(phone.Reinvites()); n != 1 {
		t.Fatalf("%d re-INVITEs, want only the refused hold", n)
	}
}

// dialPhone calls the flow from phone and ends the call with the test.
func dialPhone(t *testing.T, phone *siptest.Phone, inst *instance) *siptest.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := phone.Dial(ctx, target(inst, "flow"), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Close)
	return call
}

// reinviteDirection waits for the phone's nth re-INVITE and returns the
// direction its offer asks for.
func reinviteDirection(t *testing.T, phone *siptest.Phone, n int) sdp.Direction {
	t.Helper()
	waitFor(t, fmt.Sprintf("re-INVITE %d at the phone", n), 15*time.Second, func() bool { return len(phone.Reinvites()) >= n })
	sess, err := sdp.Parse(phone.Reinvites()[n-1].Body())
	if err != nil {
		t.Fatalf("re-INVITE %d: %v", n, err)
	}
	m, err := sdp.Negotiate(sess, []sdp.Codec{sdp.PCMU, sdp.PCMA})
	if err != nil {
		t.Fatalf("re-INVITE %d: %v", n, err)
	}
	return m.RemoteDirection
}

func TestMediaPublicIPConfig(t *testing.T) {
	none := func(string) string { return "" }
	if _, err := loadServeConfig([]string{"--media-public-ip", "not-an-ip"}, none); err == nil {
		t.Error("--media-public-ip accepted not-an-ip")
	}
	env := func(k string) string {
		if k == "VOXBRIDGE_MEDIA_PUBLIC_IP" {
			return "203.0.113.7"
		}
		return ""
	}
	c, err := loadServeConfig(nil, env)
	if err != nil || c.MediaPublicIP != "203.0.113.7" {
		t.Errorf("from the environment: %q, %v", c.MediaPublicIP, err)
	}
}

// --sip-keepalive: a duration, 0 for none (negative for the sip package),
// empty for the sip package's default; nonsense is refused.
func TestSIPKeepaliveConfig(t *testing.T) {
	for _, tc := range []struct {
		flag string
		want time.Duration
		bad  bool
	}{{"", 0, false}, {"0", -1, false}, {"15s", 15 * time.Second, false},
		{"-5s", 0, true}, {"10ms", 0, true}, {"often", 0, true}} {
		var args []string
		if tc.flag != "" {
			args = []string{"--sip-keepalive", tc.flag}
		}
		c, err := loadServeConfig(args, func(string) string { return "" })
		if tc.bad {
			if err == nil {
				t.Errorf("--sip-keepalive %q accepted", tc.flag)
			}
			continue
		}
		if err != nil {
			t.Errorf("--sip-keepalive %q: %v", tc.flag, err)
			continue
		}
		if got, _ := c.sipKeepalive(); got != tc.want {
			t.Errorf("--sip-keepalive %q: %v, want %v", tc.flag, got, tc.want)
		}
	}
}
