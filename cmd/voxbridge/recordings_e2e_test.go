package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/pcap"
)

// TestRecordingAndCaptureOverAPI: a call to a server that records every
// call and captures its packets can be fetched afterwards through the API
// and the CLI: the WAV has the caller's tone on the left channel, the pcap
// has the call's SIP and RTP.
func TestRecordingAndCaptureOverAPI(t *testing.T) {
	captures := filepath.Join(t.TempDir(), "captures")
	inst, _ := testServerWith(t, instanceOptions{}, func(cfg *serveConfig) {
		cfg.RecordAll, cfg.RecordDir = "true", filepath.Join(t.TempDir(), "rec")
		cfg.CaptureDir = captures
	})
	call := dialTest(t, inst)
	waitFor(t, "some greeting", 30*time.Second, func() bool { return call.HeardLen() >= media.SampleRate })
	<-call.Play(media.Tone(1000, time.Second, 0.5))
	if _, err := call.SendDTMF('1', 160*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitDone(t, call)
	rec := callRecord(t, inst, call.CallID())

	// The recording is final a moment after the call record: poll gently
	// (the API limits a key to 20 requests/s).
	var status int
	var wav []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, wav = apiDo(t, inst, "GET", "/v1/calls/"+rec.ID+"/recording", nil)
		if status != http.StatusConflict || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if status != http.StatusOK {
		t.Fatalf("GET recording: %d %.200s", status, wav)
	}
	mono, err := media.ReadWAV(bytes.NewReader(wav))
	if err != nil {
		t.Fatalf("the downloaded recording does not decode: %v", err)
	}
	if len(mono) < 3*media.SampleRate {
		t.Fatalf("recording of %d samples for a call of several seconds", len(mono))
	}
	file := filepath.Join(t.TempDir(), "call.wav")
	if err := os.WriteFile(file, wav, 0o600); err != nil {
		t.Fatal(err)
	}
	left, right := readStereo(t, file)
	window, leftLevel := strongest(left, media.SampleRate/2, 1000)
	if leftLevel < 0.2 {
		t.Fatalf("the caller's 1 kHz tone is not on the left channel (level %.3f)", leftLevel)
	}
	if f := media.DominantFrequency(window, 300, 3400, 10); f < 950 || f > 1050 {
		t.Fatalf("the left channel's loudest tone is at %.0f Hz, want 1000", f)
	}
	t.Logf("recording: %d bytes, %.1f s; left 1 kHz level %.3f at %.0f Hz; right RMS %.0f",
		len(wav), float64(len(left))/media.SampleRate, leftLevel, media.DominantFrequency(window, 300, 3400, 10), media.RMS(right))
	if media.RMS(right) < 100 {
		t.Fatalf("the right channel (the greeting) is silent: RMS %.0f", media.RMS(right))
	}

	// The call resource lists it; its download path serves the same bytes.
	var detail struct {
		Recordings []struct {
			ID           string `json:"id"`
			DownloadPath string `json:"download_path"`
			SizeBytes    int64  `json:"size_bytes"`
			Channels     int    `json:"channels"`
		} `json:"recordings"`
	}
	if code := getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls/"+rec.ID, &detail); code != 200 || len(detail.Recordings) != 1 {
		t.Fatalf("call resource: %d, recordings %+v", code, detail.Recordings)
	}
	r0 := detail.Recordings[0]
	if r0.Channels != 2 || r0.SizeBytes != int64(len(wav)) {
		t.Fatalf("listed recording %+v, downloaded %d bytes", r0, len(wav))
	}
	if code, b := apiDo(t, inst, "GET", r0.DownloadPath, nil); code != 200 || !bytes.Equal(b, wav) {
		t.Fatalf("download path %s: %d, %d bytes", r0.DownloadPath, code, len(b))
	}

	// The capture: SIP of this call and RTP both ways.
	code, pc := apiDo(t, inst, "GET", "/v1/calls/"+rec.ID+"/capture", nil)
	if code != 200 {
		t.Fatalf("GET capture: %d %.200s", code, pc)
	}
	rd, err := pcap.NewReader(bytes.NewReader(pc))
	if err != nil {
		t.Fatalf("the downloaded capture does not parse: %v", err)
	}
	sip := 0
	rtpFlows := map[string]int{} // "src>dst" → RTP packets
	for {
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("capture packet: %v", err)
		}
		if bytes.Contains(p.Payload, []byte("SIP/2.0")) {
			if !bytes.Contains(p.Payload, []byte(call.CallID())) {
				t.Fatalf("SIP of another call in the capture: %.80q", p.Payload)
			}
			sip++
			continue
		}
		var h rtp.Header
		if _, err := h.Unmarshal(p.Payload); err != nil || h.Version != 2 || h.PayloadType >= 64 {
			continue // RTCP (payload types 200-204 read as 72-76) or anything else
		}
		rtpFlows[p.Src.String()+">"+p.Dst.String()]++
	}
	both := 0
	for _, n := range rtpFlows {
		if n >= 100 { // 2 s at 50 packets/s
			both++
		}
	}
	t.Logf("capture: %d bytes, %d SIP packets, RTP flows %v", len(pc), sip, rtpFlows)
	if sip < 3 || both < 2 {
		t.Fatalf("capture holds %d SIP packets and RTP flows %v; want the call's SIP and RTP both ways", sip, rtpFlows)
	}

	// The CLI downloads the same files.
	c := newCLI(t)
	c.env[envAPIURL], c.env[envAPIKey] = "http://"+inst.HTTP.String(), testAPIKey
	out := filepath.Join(t.TempDir(), "cli.wav")
	if msg := c.must("", runCalls, "recording", rec.ID, "-o", out); !strings.Contains(msg, out) {
		t.Fatalf("calls recording: %s", msg)
	}
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, wav) {
		t.Fatalf("calls recording wrote %d bytes (%v), the API served %d", len(b), err, len(wav))
	}
	outPcap := filepath.Join(t.TempDir(), "cli.pcap")
	c.must("", runCalls, "capture", rec.ID, "-o", outPcap)
	if b, err := os.ReadFile(outPcap); err != nil || !bytes.Equal(b, pc) {
		t.Fatalf("calls capture wrote %d bytes (%v), the API served %d", len(b), err, len(pc))
	}
	// An unknown call is the API's 404, and no file is left behind.
	missing := filepath.Join(t.TempDir(), "none.wav")
	if _, err := c.run("", runCalls, "recording", "no-such-call", "-o", missing); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown call: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed download left %s: %v", missing, err)
	}
}
