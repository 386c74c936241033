package main

import (
	"bytes"
	"context"
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/pcap"
)

var updateAgentCapture = flag.Bool("update-agent-capture", false, "regenerate testdata/captures/agent_booking.pcap with espeak-ng")

// The golden call: what the caller says in agent_booking.pcap, and when.
var agentCaptureSpeech = []struct {
	at   time.Duration
	text string
}{
	{2500 * time.Millisecond, "I would like to book a table for two."},
	{8500 * time.Millisecond, "At eight tonight please."},
}

const (
	agentCapture       = capturesDir + "/agent_booking.pcap"
	agentCaptureLength = 12 * time.Second
)

// writeAgentCapture makes the golden call: espeak-ng's voice on a quiet
// line (low noise), PCMU in 20 ms packets from the caller's 40000 to the
// server's 10000, as tcpdump would have caught it.
func writeAgentCapture(t *testing.T, path string) {
	espeak, err := exec.LookPath("espeak-ng")
	if err != nil {
		t.Fatal("regenerating the capture needs espeak-ng")
	}
	rng := rand.New(rand.NewPCG(5, 5))
	pcm := make([]int16, int(agentCaptureLength*media.SampleRate/time.Second))
	for i := range pcm {
		pcm[i] = int16(rng.IntN(41) - 20) // about -60 dBFS of line noise
	}
	for _, s := range agentCaptureSpeech {
		wav, err := exec.Command(espeak, "--stdout", "-s", "160", s.text).Output()
		if err != nil {
			t.Fatal(err)
		}
		voice, err := media.ReadWAV(bytes.NewReader(wav))
		if err != nil {
			t.Fatal(err)
		}
		at := int(s.at * media.SampleRate / time.Second)
		for i, v := range voice {
			if at+i < len(pcm) {
				pcm[at+i] = max(-32768, min(32767, pcm[at+i]+v))
			}
		}
	}
	var buf bytes.Buffer
	w, err := pcap.NewWriter(&buf, pcap.WithNanoseconds())
	if err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:10000")
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for n := 0; (n+1)*media.FrameSamples <= len(pcm); n++ {
		pkt := rtp.Packet{
			Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(1000 + n),
				Timestamp: uint32(n * media.FrameSamples), SSRC: 0xb00c1260, Marker: n == 0},
			Payload: media.PCMU.Encode(nil, pcm[n*media.FrameSamples:(n+1)*media.FrameSamples]),
		}
		b, err := pkt.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		// 30 ms on the path, as in the other captures.
		if err := w.WriteUDP(t0.Add(time.Duration(n)*media.FrameDuration+30*time.Millisecond), src, dst, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

const replayTestAgent = `{
  "id": "booking", "name": "Booking",
  "system_prompt": "You take table bookings.",
  "starting_message": "Hello.",
  "stt": {"provider": "deepgram", "api_key_env": "VOXBRIDGE_TEST_UNSET_KEY"},
  "llm": {"provider": "openai", "model": "gpt-4o-mini"},
  "tts": {"provider": "elevenlabs"}
}`

const replayTestScript = `{
  "utterances": ["I would like to book a table for two.", "At eight tonight please."],
  "replies": [{"text": "Sure. What time?"}, {"text": "Booked for eight."}]
}`

// A captured call replays into an agent with the fake providers: the agent
// hears each of the caller's two sentences (the fake STT transcribes by
// the audio's energy, so the turns are where espeak-ng spoke), answers
// each, and every caller turn has a latency row that adds up the fakes'
// fixed latencies. The keys in the definition are not needed with fakes.
func TestReplayAgentGoldenCall(t *testing.T) {
	if *updateAgentCapture {
		writeAgentCapture(t, agentCapture)
	}
	if st, err := os.Stat(agentCapture); err != nil || st.Size() > 200<<10 {
		t.Fatalf("golden capture: %v (size must stay under 200 KB)", err)
	}
	dir := t.TempDir()
	agentPath := filepath.Join(dir, "booking.json")
	scriptPath := filepath.Join(dir, "script.json")
	os.WriteFile(agentPath, []byte(replayTestAgent), 0o644)
	os.WriteFile(scriptPath, []byte(replayTestScript), 0o644)
	wav := filepath.Join(dir, "replay.wav")

	rep, err := replayAgent(context.Background(), replayAgentConfig{
		Capture: agentCapture, Stream: 1, AgentPath: agentPath, Fakes: true, FakesPath: scriptPath,
		Tail: 15 * time.Second, WAV: wav, MinDelay: media.DefaultMinDelay, MaxDelay: media.DefaultMaxDelay,
		Log: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	var user, said []string
	for _, tt := range rep.Transcript {
		if tt.Role == agent.RoleUser {
			user = append(user, tt.Text)
		} else {
			said = append(said, tt.Text)
		}
	}
	want := []string{agentCaptureSpeech[0].text, agentCaptureSpeech[1].text}
	if strings.Join(user, "|") != strings.Join(want, "|") || rep.CallerTurns != 2 {
		t.Fatalf("the agent heard %q (%d caller turns), want %q", user, rep.CallerTurns, want)
	}
	if got := strings.Join(said, "|"); got != "Hello.|Sure. What time?|Booked for eight." {
		t.Fatalf("the agent said %q", said)
	}
	if len(rep.Latency) != rep.CallerTurns {
		t.Fatalf("%d latency rows for %d caller turns: %+v", len(rep.Latency), rep.CallerTurns, rep.Latency)
	}
	for _, l := range rep.Latency {
		// Each provider waits its fixed latency, so a row adds up to at
		// least their sum; the upper bound only catches a stuck turn.
		if l.STTDelay < 200*time.Millisecond || l.LLMDelay < 300*time.Millisecond || l.TTSDelay < 150*time.Millisecond ||
			l.EndpointDelay <= 0 || l.VoiceToVoice < 650*time.Millisecond || l.VoiceToVoice > 6*time.Second {
			t.Fatalf("latency row does not add up: %+v", l)
		}
	}
	if rep.Summary.Turns != 2 || rep.Summary.VoiceToVoiceP95 < rep.Summary.VoiceToVoiceP50 {
		t.Fatalf("summary %+v", rep.Summary)
	}
	if rep.Reason != reasonEndOfCapture {
		t.Fatalf("reason %q, want %q", rep.Reason, reasonEndOfCapture)
	}

	// The printed table: one row per agent turn, then the percentiles.
	var out bytes.Buffer
	printReplayAgent(&out, rep, wav)
	text := out.String()
	for _, s := range []string{"caller  I would like to book a table for two.", "agent   Booked for eight.",
		"endpoint     stt     llm     tts  voice-to-voice", "p95", "ended: end_of_capture"} {
		if !strings.Contains(text, s) {
			t.Fatalf("output lacks %q:\n%s", s, text)
		}
	}
	if rows := strings.Count(text, "\n     "); rows < 2 {
		t.Fatalf("latency table has %d rows:\n%s", rows, text)
	}

	// The recording: the caller on the left, the agent's voice (the fake's
	// 440 Hz) on the right.
	left, right := readStereo(t, wav)
	const window = media.SampleRate / 5
	_, agentLevel := strongest(right, window, 440)
	_, callerLevel := strongest(left, window, 440)
	if media.RMS(left) < 100 || agentLevel < 0.15 || callerLevel > agentLevel/2 {
		t.Fatalf("recording: caller RMS %.0f, agent's 440 Hz at best %.2f, caller's %.2f", media.RMS(left), agentLevel, callerLevel)
	}
	t.Log(text)
}

// Bad input to replay --agent is a clear error, before any audio plays.
func TestReplayAgentErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "a.json")
	os.WriteFile(good, []byte(replayTestAgent), 0o644)
	rt := filepath.Join(dir, "rt.json")
	os.WriteFile(rt, []byte(`{"id":"rt","name":"RT","system_prompt":"-","realtime":{"provider":"openai-realtime","api_key":"k"}}`), 0o644)
	typo := filepath.Join(dir, "typo.json")
	os.WriteFile(typo, []byte(`{"utterances":["x"],"replys":[]}`), 0o644)
	badTool := filepath.Join(dir, "tool.json")
	os.WriteFile(badTool, []byte(`{"replies":[{"text":"x","tool_calls":[{"name":"end_call","arguments":"{"}]}]}`), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--agent", good, "--fakes", "--stream", "2", agentCapture}, "has 1 RTP stream"},
		{[]string{"--agent", good, "--fakes", "--stream", "0", agentCapture}, "numbered from 1"},
		{[]string{"--agent", filepath.Join(dir, "missing.json"), "--fakes", agentCapture}, "no such file"},
		{[]string{"--agent", good, agentCapture}, "VOXBRIDGE_TEST_UNSET_KEY"}, // real providers: the key is not in the environment
		{[]string{"--agent", rt, "--fakes", agentCapture}, "realtime"},
		{[]string{"--agent", good, "--fakes=" + typo, agentCapture}, "replys"},
		{[]string{"--agent", good, "--fakes=" + badTool, agentCapture}, "JSON arguments"},
		{[]string{"--agent", good, "--fakes", "--realtime", agentCapture}, "wall clock"},
		{[]string{"--fakes", agentCapture}, "go with --agent"},
		{[]string{"--agent", good, "--fakes", filepath.Join(dir, "none.pcap")}, "no such file"},
	} {
		err := runReplay(tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("replay %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
