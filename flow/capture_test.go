package flow

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media/pcap"
)

func sipMsg(start, callID string) []byte {
	return fmt.Appendf(nil, "%s\r\nVia: SIP/2.0/UDP 127.0.0.1:5062\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n\r\n", start, callID)
}

// TestCaptureRoutesByCallID: SIP seen before the capture opens (the INVITE)
// lands in it, SIP of other calls does not, media goes through the tap,
// the pending buffer stays bounded under unrelated traffic, and nothing is
// written after close.
func TestCaptureRoutesByCallID(t *testing.T) {
	dir := t.TempDir()
	cs, err := newCaptures(filepath.Join(dir, "new"), netip.MustParseAddr("127.0.0.1"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ct := &Controller{capture: cs}
	phone, srv := netip.MustParseAddrPort("127.0.0.1:5062"), netip.MustParseAddrPort("0.0.0.0:5060")
	now := time.Now()

	ct.CaptureSIP(now, phone, srv, sipMsg("INVITE sip:echo@x SIP/2.0", "ours"))
	ct.CaptureSIP(now, srv, phone, sipMsg("SIP/2.0 100 Trying", "ours"))
	// Unrelated traffic, far more Call-IDs than are kept pending.
	for i := range 3 * maxPendingCallIDs {
		ct.CaptureSIP(now, phone, srv, sipMsg("OPTIONS sip:x SIP/2.0", fmt.Sprintf("other-%d", i)))
	}
	cs.mu.Lock()
	pendingIDs, orderLen := len(cs.pending), len(cs.pendingOrder)
	_, oursPending := cs.pending["ours"]
	cs.mu.Unlock()
	if pendingIDs != maxPendingCallIDs || orderLen != maxPendingCallIDs {
		t.Fatalf("%d Call-IDs pending (%d in order), want the bound %d", pendingIDs, orderLen, maxPendingCallIDs)
	}
	if oursPending {
		t.Error("the oldest pending Call-ID was not the one forgotten")
	}
	for range 3 * maxPendingPerCall {
		ct.CaptureSIP(now, phone, srv, sipMsg("OPTIONS sip:x SIP/2.0", "chatty"))
	}
	cs.mu.Lock()
	chatty := len(cs.pending["chatty"])
	cs.mu.Unlock()
	if chatty != maxPendingPerCall {
		t.Errorf("%d datagrams pending for one Call-ID, want the bound %d", chatty, maxPendingPerCall)
	}
	// The INVITE of a call that starts right away is still pending.
	ct.CaptureSIP(now, phone, srv, sipMsg("INVITE sip:echo@x SIP/2.0", "late"))

	cc, err := cs.open("rec-1", "late", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ct.CaptureSIP(now, srv, phone, sipMsg("SIP/2.0 200 OK", "late"))
	ct.CaptureSIP(now, phone, srv, sipMsg("OPTIONS sip:x SIP/2.0", "not-ours"))
	tap := cc.tap(netip.MustParseAddr("127.0.0.1"))
	rtpLocal, rtpPeer := netip.MustParseAddrPort("0.0.0.0:20000"), netip.MustParseAddrPort("127.0.0.1:40000")
	for i := range 10 {
		tap(now, rtpPeer, rtpLocal, []byte{0x80, 0, 0, byte(i), 0, 0, 0, 0, 1, 2, 3, 4})
	}
	ct.CaptureSIP(now, phone, srv, sipMsg("BYE sip:x SIP/2.0", "late"))
	cc.close()
	cc.close() // harmless
	ct.CaptureSIP(now, phone, srv, sipMsg("SIP/2.0 200 OK", "late"))
	tap(now, rtpPeer, rtpLocal, []byte{0x80, 0, 0, 99})

	pkts, err := pcap.ReadFile(filepath.Join(dir, "new", "rec-1.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	rtpFrom := map[netip.AddrPort]int{}
	for _, p := range pkts {
		if s, _, ok := bytes.Cut(p.Payload, []byte("\r\n")); ok {
			got = append(got, string(s))
			if p.Src.Addr().IsUnspecified() || p.Dst.Addr().IsUnspecified() {
				t.Errorf("SIP %q written with address %v -> %v", s, p.Src, p.Dst)
			}
			continue
		}
		rtpFrom[p.Src]++
		if p.Dst != netip.MustParseAddrPort("127.0.0.1:20000") {
			t.Errorf("RTP to %v, want the all-interfaces bind shown as 127.0.0.1:20000", p.Dst)
		}
	}
	want := []string{"INVITE sip:echo@x SIP/2.0", "SIP/2.0 200 OK", "BYE sip:x SIP/2.0"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("SIP in capture %q, want %q", got, want)
	}
	if rtpFrom[rtpPeer] != 10 || len(rtpFrom) != 1 {
		t.Errorf("RTP in capture by source %v, want 10 from %v", rtpFrom, rtpPeer)
	}
	cs.mu.Lock()
	live := len(cs.live)
	cs.mu.Unlock()
	if live != 0 {
		t.Errorf("%d captures still live after close", live)
	}
}

// TestCaptureWriteErrorDisablesOnce: a capture whose file fails stops
// writing and says so in one log line, however many packets follow.
func TestCaptureWriteErrorDisablesOnce(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	cs, err := newCaptures(t.TempDir(), netip.Addr{}, log)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cs.open("rec-2", "c2", log)
	if err != nil {
		t.Fatal(err)
	}
	cc.w.Close() // every write now fails, as on a full or vanished disk
	tap := cc.tap(netip.Addr{})
	src, dst := netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")
	for range 100 {
		tap(time.Now(), src, dst, []byte("x"))
	}
	cc.close()
	if n := strings.Count(logBuf.String(), "capture disabled"); n != 1 {
		t.Errorf("%d 'capture disabled' lines, want 1:\n%s", n, logBuf.String())
	}
}

func TestCaptureRefusesBadNames(t *testing.T) {
	cs, err := newCaptures(t.TempDir(), netip.Addr{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "..", "../x", `a\b`} {
		if _, err := cs.open(id, "c", slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("open(%q) made a file", id)
		}
	}
	if _, err := newCaptures(filepath.Join(os.DevNull, "x"), netip.Addr{}, nil); err == nil {
		t.Error("a capture dir under a file was accepted")
	}
}
