package main

import (
	"bytes"
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
)

const capturesDir = "../../testdata/captures"

func replayJSON(t *testing.T, args ...string) []replayStream {
	t.Helper()
	var out bytes.Buffer
	if err := runReplay(append([]string{"--json"}, args...), &out); err != nil {
		t.Fatalf("replay %v: %v", args, err)
	}
	var got struct {
		Streams []replayStream `json:"streams"`
	}
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("replay output: %v", err)
	}
	return got.Streams
}

// TestCapturesAreGenerated: each file is what the generator makes from the
// profile the README describes, so the truths below are the files' truths.
func TestCapturesAreGenerated(t *testing.T) {
	for _, c := range rtptest.Captures() {
		var want bytes.Buffer
		if err := c.Write(&want); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(capturesDir, c.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s differs from the generator's output: run go run ./testdata/captures/gen", c.Name)
		}
	}
}

// TestReplayCaptures replays every capture in testdata and checks the
// numbers against what the generator put in it.
func TestReplayCaptures(t *testing.T) {
	for _, c := range rtptest.Captures() {
		t.Run(c.Name, func(t *testing.T) {
			got := replayJSON(t, filepath.Join(capturesDir, c.Name))
			traces := c.Traces()
			if len(got) != len(traces) {
				t.Fatalf("%d streams, want %d (SIP and RTCP must be skipped): %+v", len(got), len(traces), got)
			}
			for i, tr := range traces {
				s, p := got[i], c.Streams[i].Profile
				t.Logf("%+v", s)
				wantSSRC := p.SSRC
				if p.SSRCChangeAt > 0 {
					wantSSRC ^= 0x5a5a5a5a // the generator's second source
				}
				if s.SSRC != wantSSRC || s.Codec != "PCMU" || s.PayloadType != 0 {
					t.Errorf("ssrc %#x codec %s pt %d", s.SSRC, s.Codec, s.PayloadType)
				}
				if s.Packets != uint64(len(tr.Packets)) || s.Lost != uint64(tr.Lost) || s.Duplicates != uint64(tr.Duplicates) || s.DTMF != tr.Digits {
					t.Errorf("packets %d lost %d duplicates %d dtmf %q; want %d, %d, %d, %q",
						s.Packets, s.Lost, s.Duplicates, s.DTMF, len(tr.Packets), tr.Lost, tr.Duplicates, tr.Digits)
				}
				if math.Abs(s.DurationMS-float64(p.Duration.Milliseconds())) > 40 {
					t.Errorf("duration %v ms, want about %d", s.DurationMS, p.Duration.Milliseconds())
				}
				if p.Jitter == 0 && (s.Late != 0 || s.Reordered != 0 || s.JitterMS != 0 || s.DelayMSMean != 20) {
					t.Errorf("constant delay, yet late %d reordered %d jitter %v delay %v", s.Late, s.Reordered, s.JitterMS, s.DelayMSMean)
				}
				// Lost packets, and only they, are concealed: 20 ms each.
				if s.Late == 0 && s.ConcealedMS != float64(20*tr.Lost) {
					t.Errorf("concealed %v ms, want %d", s.ConcealedMS, 20*tr.Lost)
				}
			}
		})
	}
}

// TestReplayJitterOracle: on the jittery capture, at most 1 % late and a
// mean added delay within 20 ms of the best fixed delay for that late rate.
func TestReplayJitterOracle(t *testing.T) {
	path := filepath.Join(capturesDir, "jitter.pcap")
	s := replayJSON(t, path)[0]
	flows, err := findRTP(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	lateRate := float64(s.Late) / float64(s.Packets)
	_, wait := rtptest.FixedDelayOracle(flows[0].arrivals, lateRate)
	t.Logf("late %.2f%%, mean added delay %.1f ms, oracle %.1f ms, %d reordered", 100*lateRate, s.DelayMSMean, wait.Seconds()*1000, s.Reordered)
	if lateRate > 0.01 || s.Reordered < 100 {
		t.Errorf("late rate %.3f, reordered %d", lateRate, s.Reordered)
	}
	if math.Abs(s.DelayMSMean-wait.Seconds()*1000) > 20 {
		t.Errorf("mean added delay %.1f ms, oracle %.1f ms: more than 20 ms apart", s.DelayMSMean, wait.Seconds()*1000)
	}
}

func TestReplayPcapng(t *testing.T) {
	ng := replayJSON(t, filepath.Join(capturesDir, "dtmf.pcapng"))
	classic := replayJSON(t, filepath.Join(capturesDir, "dtmf.pcap"))
	if len(ng) != 1 || ng[0] != classic[0] || ng[0].DTMF != "12#" {
		t.Errorf("pcapng %+v, pcap %+v", ng, classic)
	}
}

// writeCapture writes a capture of the given streams to a temp file.
func writeCapture(t *testing.T, c rtptest.Capture) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), c.Name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.Write(f); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReplayPortAndHeuristics: --port picks one call out of two, and a
// UDP flow that is RTP but not G.711 (video on PT 96) is not a stream.
func TestReplayPortAndHeuristics(t *testing.T) {
	ap := netip.MustParseAddrPort
	video := func(n int) int16 { return 0 }
	c := rtptest.Capture{Name: "two.pcap", SIP: true, Streams: []rtptest.CaptureStream{
		{Src: ap("127.0.0.1:40000"), Dst: ap("127.0.0.1:10000"), Profile: rtptest.Profile{Seed: 1, Duration: time.Second, SSRC: 0xA}},
		{Src: ap("127.0.0.1:40002"), Dst: ap("127.0.0.1:10002"), Profile: rtptest.Profile{Seed: 2, Duration: time.Second, SSRC: 0xB, Codec: media.PCMA}},
		{Src: ap("127.0.0.1:40004"), Dst: ap("127.0.0.1:10004"), Profile: rtptest.Profile{Seed: 3, Duration: time.Second, SSRC: 0xC,
			Codec: media.Codec{Name: "PCMU", PayloadType: 96}, Audio: video}},
	}}
	path := writeCapture(t, c)
	all := replayJSON(t, path)
	if len(all) != 2 || all[0].SSRC != 0xA || all[1].SSRC != 0xB || all[1].Codec != "PCMA" || all[1].PayloadType != 8 {
		t.Errorf("streams %+v", all)
	}
	one := replayJSON(t, "--port", "10002", path)
	if len(one) != 1 || one[0].SSRC != 0xB || one[0].Packets != 50 {
		t.Errorf("--port 10002: %+v", one)
	}
	var out bytes.Buffer
	if err := runReplay([]string{path, "--port", "5060"}, &out); err == nil || !strings.Contains(err.Error(), "no RTP streams") {
		t.Errorf("--port 5060 (SIP only): %v", err)
	}
}

// TestReplayWAV: --wav writes each stream's decoded audio, one file per
// stream when there are several.
func TestReplayWAV(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := runReplay([]string{filepath.Join(capturesDir, "clean.pcap"), "--wav", filepath.Join(dir, "call.wav")}, &out); err != nil {
		t.Fatal(err)
	}
	for ssrc, hz := range map[string]float64{"0c0ffee0": 1000, "5e4e4000": 440} {
		path := filepath.Join(dir, "call-"+ssrc+".wav")
		pcm, err := media.ReadWAVFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if d := len(pcm) / media.SampleRate; d < 4 || d > 5 {
			t.Errorf("%s: %d s of audio", path, d)
		}
		if f := media.DominantFrequency(pcm[4000:28000], 300, 3400, 10); math.Abs(f-hz) > 10 {
			t.Errorf("%s: dominant %v Hz, want %v", path, f, hz)
		}
		if !strings.Contains(out.String(), path) {
			t.Errorf("output does not name %s:\n%s", path, out.String())
		}
	}
}

// TestReplayRealtime runs the same stream on the wall clock: the counts
// that do not depend on timing match simulated time.
func TestReplayRealtime(t *testing.T) {
	c := rtptest.Capture{Name: "short.pcap", Streams: []rtptest.CaptureStream{{
		Src: netip.MustParseAddrPort("127.0.0.1:40000"), Dst: netip.MustParseAddrPort("127.0.0.1:10000"),
		Profile: rtptest.Profile{Seed: 5, Duration: 1500 * time.Millisecond, Loss: 0.05, BaseDelay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond,
			Digits: []rtptest.Digit{{At: 500 * time.Millisecond, Digit: '7', Duration: 100 * time.Millisecond}}},
	}}}
	path := writeCapture(t, c)
	sim := replayJSON(t, path)
	start := time.Now()
	real := replayJSON(t, "--realtime", path)
	if el := time.Since(start); el < 1400*time.Millisecond {
		t.Errorf("realtime replay took %v for 1.5 s of capture", el)
	}
	if len(real) != 1 || real[0].Packets != sim[0].Packets || real[0].Lost != sim[0].Lost || real[0].DTMF != "7" || real[0].SSRC != sim[0].SSRC {
		t.Errorf("realtime %+v, simulated %+v", real, sim)
	}
}

func TestReplayErrors(t *testing.T) {
	dir := t.TempDir()
	notPcap := filepath.Join(dir, "x.pcap")
	os.WriteFile(notPcap, []byte("this is not a capture at all"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "exactly one capture"},
		{[]string{"a.pcap", "b.pcap"}, "exactly one capture"},
		{[]string{filepath.Join(dir, "missing.pcap")}, "no such file"},
		{[]string{notPcap}, "not a pcap"},
		{[]string{"--port", "70000", notPcap}, "out of range"},
		{[]string{"--min-delay", "300ms", notPcap}, "delay bounds"},
		{[]string{"--bogus", notPcap}, "flag provided but not defined"},
	} {
		var out bytes.Buffer
		err := runReplay(c.args, &out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("replay %v: %v, want %q", c.args, err, c.want)
		}
	}
}
