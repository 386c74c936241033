package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/sdp"
	"github.com/voxbridge/voxbridge/sip/siptest"
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
	phone := testPhone(t) // only for a socket on the phone's address
	conn, err := phone.ListenRTP()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := call.Reinvite(ctx, siptest.ReinviteOptions{Port: conn.LocalAddr().(*net.UDPAddr).Port})
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != 200 || r.Media.Codec != sdp.PCMU {
		t.Fatalf("re-INVITE: %d, codec %+v", r.Code, r.Media.Codec)
	}
	moved, err := media.NewStream(media.StreamConfig{Conn: conn, Remote: net.UDPAddrFromAddrPort(r.Media.RemoteAddr),
		Codec: media.PCMU, DTMFPayloadType: r.Media.DTMFPayloadType})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	t.Cleanup(func() { scancel(); moved.Close() })
	moved.Start(sctx)
	oldMark := call.HeardLen()
	moved.Enqueue(media.Tone(1000, 10*time.Second, 0.5))

	var heard []int16
	deadline := time.After(15 * time.Second)
	for len(heard) < 2*media.SampleRate {
		select {
		case f, ok := <-moved.Frames():
			if !ok {
				t.Fatal("moved stream ended")
			}
			heard = append(heard, f...)
		case <-deadline:
			t.Fatalf("new port heard %d samples", len(heard))
		}
	}
	win, level := strongest(heard, media.SampleRate/4, 1000)
	if level < 0.2 {
		t.Fatalf("no 1 kHz echo at the new port: level %.3f", level)
	}
	if f := media.DominantFrequency(win, 300, 3400, 10); f < 980 || f > 1020 {
		t.Fatalf("echo at the new port: %.0f Hz, want 1000", f)
	}
	// The old socket: after what was in flight, silence.
	settle := oldMark + media.SampleRate/2
	waitFor(t, "a second more at the old port", 15*time.Second, func() bool { return call.HeardLen() >= settle+media.SampleRate })
	if rms := media.RMS(call.Heard()[settle : settle+media.SampleRate]); rms > 30 {
		t.Errorf("old port still hears RMS %.0f after the move", rms)
	}
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
