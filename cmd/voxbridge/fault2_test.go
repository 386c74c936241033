package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// deadTrunk is a carrier that never answers: it reads every datagram and
// either says nothing at all or, with trying, sends 100 Trying to each
// INVITE and then nothing (no 180, no final answer, not even a 200 to
// CANCEL).
type deadTrunk struct {
	conn *net.UDPConn
	mu   sync.Mutex
	seen map[string]int // method → requests received, retransmissions included
}

func startDeadTrunk(t *testing.T, trying bool) *deadTrunk {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d := &deadTrunk{conn: c, seen: map[string]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return // closed by the cleanup
			}
			msg, err := sip.ParseMessage(buf[:n])
			if err != nil {
				continue
			}
			req, ok := msg.(*sip.Request)
			if !ok {
				continue
			}
			d.mu.Lock()
			d.seen[string(req.Method)]++
			d.mu.Unlock()
			if trying && req.Method == sip.INVITE {
				res := sip.NewResponseFromRequest(req, 100, "Trying", nil)
				c.WriteToUDP([]byte(res.String()), from)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return d
}

func (d *deadTrunk) port() int { return d.conn.LocalAddr().(*net.UDPAddr).Port }

func (d *deadTrunk) count(method string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen[method]
}

func addTrunk(t *testing.T, inst *instance, name string, port, priority int) {
	t.Helper()
	tr := store.Trunk{Name: name, Enabled: true, Host: "127.0.0.1", Port: port, Priority: priority,
		Transport: store.TransportUDP, Format: store.NumberE164}
	if err := inst.db.CreateTrunk(context.Background(), &tr); err != nil {
		t.Fatal(err)
	}
}

// noDialGoroutines fails t if, within a generous wait, goroutines of an
// outbound attempt or a call are still running once every call ended.
func noDialGoroutines(t *testing.T) {
	t.Helper()
	noGoroutines(t, "dial/call", 15*time.Second, "",
		"voxbridge/sip.(*Server).attempt", "voxbridge/sip.(*Server).Dial", "voxbridge/flow.(*Call)", "voxbridge/flow.(*Controller).originate")
}

const beepThenHangup = `"actions":[{"type":"beep","option":{"frequency_hz":1000,"duration_ms":800}},{"type":"hangup"}]`

// A first trunk that swallows INVITEs (no response at all): the attempt
// gives up after the response timeout and fails over to the next trunk,
// which answers; the call then runs normally.
func TestTrunkSilentFailsOver(t *testing.T) {
	inst, _ := testServer(t, nil)
	dead := startDeadTrunk(t, false)
	addTrunk(t, inst, "dead", dead.port(), 1)
	live := testPhone(t)
	live.AutoAnswer(0)
	addTrunk(t, inst, "live", live.Addr().(*net.UDPAddr).Port, 2)

	start := time.Now()
	call := postCall(t, inst, `{"to":"+14155550100","ring_timeout_s":30,`+beepThenHangup+`}`)
	callee := answeredCall(t, live)
	setup := time.Since(start)
	rec := finalCall(t, inst, call.ID)
	if dead.count("INVITE") < 1 || len(live.Invites()) != 1 {
		t.Fatalf("INVITEs: %d at the dead trunk, %d at the live one", dead.count("INVITE"), len(live.Invites()))
	}
	// The response timeout (8 s) and no more than a few seconds on top.
	if setup < 7*time.Second || setup > 25*time.Second {
		t.Errorf("answered through the second trunk after %v, want the response timeout (8 s) and a little", setup)
	}
	if rec.HangupReason != store.ReasonNormal || rec.TMProgressing == nil {
		t.Errorf("record: reason %q answered %v; want normal, answered", rec.HangupReason, rec.TMProgressing)
	}
	waitDone(t, callee)
	if _, l := strongest(callee.Heard(), media.SampleRate/4, 1000); l < 0.2 {
		t.Errorf("the callee did not hear the flow's beep (level %.3f)", l)
	}
	noDialGoroutines(t)
}

// A lone trunk that swallows INVITEs: the call ends failed (408) in
// bounded time, with no CANCEL (nothing to cancel before a provisional
// response, RFC 3261 §9.1).
func TestTrunkSilentFails(t *testing.T) {
	inst, _ := testServer(t, nil)
	dead := startDeadTrunk(t, false)
	addTrunk(t, inst, "dead", dead.port(), 1)
	start := time.Now()
	call := postCall(t, inst, `{"to":"+14155550100","ring_timeout_s":30,`+beepThenHangup+`}`)
	rec := finalCall(t, inst, call.ID)
	took := time.Since(start)
	if rec.HangupReason != store.ReasonFailed || rec.SIPCode != 408 || rec.TMProgressing != nil {
		t.Errorf("record: reason %q code %d answered %v; want failed 408, never answered", rec.HangupReason, rec.SIPCode, rec.TMProgressing)
	}
	if took > 25*time.Second {
		t.Errorf("the attempt took %v", took)
	}
	if n := dead.count("CANCEL"); n != 0 {
		t.Errorf("%d CANCELs sent before any response", n)
	}
	noDialGoroutines(t)
}

// A trunk that sends 100 Trying and then nothing, not even a 200 to our
// CANCEL: the ring timeout cancels the attempt, and the call ends with
// noanswer soon after, without waiting for the transaction's 32 s.
func TestTrunkTryingThenNothing(t *testing.T) {
	inst, _ := testServer(t, nil)
	dead := startDeadTrunk(t, true)
	addTrunk(t, inst, "mute", dead.port(), 1)
	start := time.Now()
	call := postCall(t, inst, `{"to":"+14155550100","ring_timeout_s":2,`+beepThenHangup+`}`)
	rec := finalCall(t, inst, call.ID)
	took := time.Since(start)
	if rec.HangupReason != store.ReasonNoAnswer || rec.TMProgressing != nil {
		t.Errorf("record: reason %q answered %v; want noanswer, never answered", rec.HangupReason, rec.TMProgressing)
	}
	if took < 2*time.Second || took > 20*time.Second {
		t.Errorf("ended after %v; want the 2 s ring timeout and a bounded wait for the CANCEL", took)
	}
	if dead.count("CANCEL") < 1 {
		t.Errorf("no CANCEL reached the trunk after its 100 Trying")
	}
	noDialGoroutines(t)
}

// mountSmallDisk mounts a tmpfs of size bytes at a new directory, so writes
// past it fail with ENOSPC as on a real full disk. It needs root (CAP_SYS_ADMIN).
func mountSmallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// The disk fills while a call is being recorded: the call goes on (the
// echo keeps coming back), the call record carries a warning, the
// recording row is marked failed with the error, and the file holds a
// playable WAV of the audio written before the disk filled, as long as the
// row says.
func TestDiskFullWhileRecording(t *testing.T) {
	disk := mountSmallDisk(t, "96k") // 3 s of stereo 8 kHz 16-bit audio
	echo := mustFlow(t, `{"id":"echo","actions":[{"type":"answer"},{"type":"echo","option":{"duration_ms":60000,"end_on_dtmf":false}}]}`)
	inst, _ := testServerWith(t, instanceOptions{flow: echo}, func(c *serveConfig) {
		c.RecordDir = disk
		c.RecordAll = "true"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := testPhone(t).Dial(ctx, "sip:echo@"+inst.SIPUDP.String(), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Close)
	call.Play(media.Tone(1000, 7*time.Second, 0.4))
	// Well past the 3 s the disk holds; the echo must still be heard in
	// the last second.
	waitFor(t, "7 s of the call", 20*time.Second, func() bool { return call.HeardLen() >= 6*media.SampleRate })
	heard := call.Heard()
	if lvl := media.ToneLevel(heard[len(heard)-media.SampleRate:], 1000); lvl < 0.1 {
		t.Fatalf("no echo after the disk filled (level %.3f)", lvl)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := callRecord(t, inst, call.CallID())
	if rec.HangupReason != store.ReasonNormal {
		t.Errorf("call ended with %q", rec.HangupReason)
	}
	warned := false
	for _, w := range rec.Warnings {
		warned = warned || strings.Contains(w, "recording") && strings.Contains(w, "no space left")
	}
	if !warned {
		t.Errorf("no recording warning on the call record: %q", rec.Warnings)
	}
	var recs []store.Recording
	waitFor(t, "the recording row to be final", 10*time.Second, func() bool {
		var err error
		recs, err = inst.db.ListRecordings(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		return len(recs) == 1 && recs[0].Status != store.RecordingActive
	})
	r := recs[0]
	if r.Status != store.RecordingFailed || !strings.Contains(r.Error, "no space left") {
		t.Errorf("recording row: status %q error %q; want failed, no space left", r.Status, r.Error)
	}
	pcm, err := media.ReadWAVFile(r.Path)
	if err != nil {
		t.Fatalf("the partial recording does not read: %v", err)
	}
	got := time.Duration(len(pcm)) * time.Second / media.SampleRate
	if got < time.Second || got > 3*time.Second {
		t.Errorf("the file holds %v of audio; the disk had room for about 3 s", got)
	}
	if d := time.Duration(r.DurationMS) * time.Millisecond; d != got.Truncate(time.Millisecond) {
		t.Errorf("the row says %v, the file holds %v", d, got)
	}
	if _, lvl := strongest(pcm, media.SampleRate/4, 1000); lvl < 0.1 {
		t.Errorf("the caller's tone is not in the partial recording (level %.3f)", lvl)
	}
	// The full disk was the recording's, not the server's: a new call is
	// answered and echoed (its recording fails at once, with a warning).
	os.Remove(r.Path) // so the next recording has room for its header at least
	next, err := testPhone(t).Dial(ctx, "sip:echo@"+inst.SIPUDP.String(), siptest.DialOptions{})
	if err != nil {
		t.Fatalf("a call after the disk filled: %v", err)
	}
	if err := next.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	noDialGoroutines(t)
}
