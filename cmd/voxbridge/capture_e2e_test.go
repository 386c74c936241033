package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/pcap"
	"github.com/voxbridge/voxbridge/sip/siptest"
)

// TestCaptureDirEndToEnd: a call to `serve --capture-dir DIR` leaves
// DIR/<call id>.pcap holding the call's SIP (INVITE, its 200 OK, the BYE)
// and RTP both ways, and `voxbridge replay` on that file finds both
// streams and the digit the caller pressed.
func TestCaptureDirEndToEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "captures") // serve creates it
	cfg := defaultServeConfig()
	cfg.SIPAnonymous = "*"
	cfg.SIPAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.DB = filepath.Join(t.TempDir(), "voxbridge.db")
	args := []string{"--capture-dir", dir}
	loaded, err := loadServeConfig(args, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.CaptureDir = loaded.CaptureDir
	inst, err := startInstance(cfg, testLogger(t), instanceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)

	call := dialTest(t, inst) // the default flow answers any user

	// Some greeting, a tone to echo, then '1' ends the echo and the server
	// hangs up.
	waitFor(t, "some greeting", 30*time.Second, func() bool { return call.HeardLen() >= media.SampleRate })
	<-call.Play(media.Tone(1000, time.Second, 0.5))
	if _, err := call.SendDTMF('1', 160*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitDone(t, call)
	rec := callRecord(t, inst, call.CallID()) // final: the capture is closed by then
	if rec.DTMF != "1" {
		t.Fatalf("call record dtmf %q, want 1", rec.DTMF)
	}

	path := filepath.Join(dir, rec.ID+".pcap")
	pkts, err := pcap.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the capture: %v", err)
	}

	// SIP: find the call's messages by Call-ID and what they are.
	var invite, inviteOK, bye, byeOK int
	phoneRTPPort := -1
	mLine := regexp.MustCompile(`(?m)^m=audio (\d+) `)
	for _, p := range pkts {
		msg := string(p.Payload)
		if !strings.Contains(msg, "SIP/2.0") {
			continue
		}
		if !strings.Contains(msg, call.CallID()) {
			t.Errorf("SIP of another call in the capture: %.80q", msg)
			continue
		}
		cseq := regexp.MustCompile(`(?mi)^CSeq:\s*\d+\s+(\w+)`).FindStringSubmatch(msg)
		switch {
		case strings.HasPrefix(msg, "INVITE "):
			invite++
			if m := mLine.FindStringSubmatch(msg); m != nil {
				phoneRTPPort, _ = strconv.Atoi(m[1])
			}
		case strings.HasPrefix(msg, "BYE "):
			bye++
		case strings.HasPrefix(msg, "SIP/2.0 200") && cseq != nil && cseq[1] == "INVITE":
			inviteOK++
		case strings.HasPrefix(msg, "SIP/2.0 200") && cseq != nil && cseq[1] == "BYE":
			byeOK++
		}
	}
	if invite < 1 || inviteOK < 1 || bye < 1 || byeOK < 1 {
		t.Errorf("SIP in capture: %d INVITE, %d 200 to INVITE, %d BYE, %d 200 to BYE; want each", invite, inviteOK, bye, byeOK)
	}
	if phoneRTPPort <= 0 {
		t.Fatal("no INVITE with an SDP offer in the capture")
	}

	// RTP both ways, told apart by the phone's media port from its offer.
	var fromPhone, toPhone int
	var callerSSRC uint32
	for _, p := range pkts {
		var r rtp.Packet
		if len(p.Payload) < 12 || p.Payload[0]>>6 != 2 || r.Unmarshal(p.Payload) != nil || r.PayloadType >= 72 && r.PayloadType <= 76 {
			continue // not RTP (SIP, or RTCP's packet types 200-204)
		}
		switch {
		case int(p.Src.Port()) == phoneRTPPort:
			fromPhone++
			callerSSRC = r.SSRC
		case int(p.Dst.Port()) == phoneRTPPort:
			toPhone++
		}
	}
	if fromPhone < 100 || toPhone < 100 {
		t.Fatalf("RTP in capture: %d packets from the phone, %d to it; want > 100 each", fromPhone, toPhone)
	}

	// replay reads the file as a test case.
	streams := replayJSON(t, path)
	if len(streams) != 2 {
		t.Fatalf("replay found %d streams, want 2: %+v", len(streams), streams)
	}
	var sawCaller bool
	for _, s := range streams {
		if s.Packets <= 100 {
			t.Errorf("stream %#08x: %d packets, want > 100", s.SSRC, s.Packets)
		}
		if s.SSRC == callerSSRC {
			sawCaller = true
			if s.DTMF != "1" {
				t.Errorf("caller's stream dtmf %q, want \"1\"", s.DTMF)
			}
		} else if s.DTMF != "" {
			t.Errorf("server's stream %#08x has dtmf %q, want none", s.SSRC, s.DTMF)
		}
	}
	if !sawCaller {
		t.Errorf("replay has no stream with the caller's SSRC %#08x: %+v", callerSSRC, streams)
	}
	t.Logf("capture %s: %d packets; replay: %+v", filepath.Base(path), len(pkts), streams)
}

// A bridged call's capture holds its B leg too: 1001 calls 1002, and the
// file has the SIP of both dialogs (INVITE, 200, BYE each) and four RTP
// streams, which replay reads.
func TestCaptureBridgedCall(t *testing.T) {
	dir := t.TempDir()
	inst := bridgeServerWith(t, nil, func(c *serveConfig) { c.CaptureDir = dir })
	b := registeredPhone(t, inst, "1002", siptest.AnswerPlan{ToneHz: toneCallee})
	a, err := dialAs(t, inst, "1001", "1002")
	if err != nil {
		t.Fatal(err)
	}
	bc := answeredCall(t, b)
	a.Play(media.Tone(toneCaller, 10*time.Second, 0.5))
	hears(t, "the caller", a, toneCallee)
	hears(t, "the callee", bc, toneCaller)
	mark := bc.HeardLen()
	waitFor(t, "three more seconds of the call", 20*time.Second, func() bool { return bc.HeardLen() >= mark+3*media.SampleRate })
	if err := a.Hangup(bctx(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, bc)
	rec := callRecord(t, inst, a.CallID())
	finalChained(t, inst, rec.ID, 1)
	path := filepath.Join(dir, rec.ID+".pcap")
	pkts, err := pcap.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the capture: %v", err)
	}
	seen := map[string]bool{}
	for _, p := range pkts {
		msg := string(p.Payload)
		if !strings.Contains(msg, "SIP/2.0") {
			continue
		}
		for who, id := range map[string]string{"a": a.CallID(), "b": bc.CallID()} {
			if !strings.Contains(msg, id) {
				continue
			}
			cseq := regexp.MustCompile(`(?mi)^CSeq:\s*\d+\s+(\w+)`).FindStringSubmatch(msg)
			switch {
			case strings.HasPrefix(msg, "INVITE "), strings.HasPrefix(msg, "BYE "):
				seen[who+":"+strings.Fields(msg)[0]] = true
			case strings.HasPrefix(msg, "SIP/2.0 200") && cseq != nil:
				seen[who+":200 "+cseq[1]] = true
			}
		}
	}
	for _, want := range []string{"a:INVITE", "a:200 INVITE", "a:BYE", "b:INVITE", "b:200 INVITE", "b:BYE"} {
		if !seen[want] {
			t.Errorf("no %s in the capture (saw %v)", want, seen)
		}
	}
	streams := replayJSON(t, path)
	busy := 0
	for _, s := range streams {
		if s.Packets > 100 {
			busy++
		}
	}
	if busy != 4 {
		t.Errorf("replay found %d streams of over 100 packets, want 4 (each leg, each way): %+v", busy, streams)
	}
}
