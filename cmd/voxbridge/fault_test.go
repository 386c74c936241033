package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent/agenttest"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// freePort finds a free loopback port for a server started as a process.
func freePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := net.Listen("tcp", c.LocalAddr().String())
	if err != nil {
		return freePort(t) // the TCP side of that port is taken; try another
	}
	l.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// buildBinary builds voxbridge once per test binary run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "voxbridge-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "voxbridge")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// serverProcess starts voxbridge serve as a real process; extra are more
// flags.
func serverProcess(t *testing.T, db string, sipPort, httpPort int, flowsDir string, extra ...string) *exec.Cmd {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--sip-addr", fmt.Sprintf("127.0.0.1:%d", sipPort),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "--db", db,
		"--rtp-ports", "32000-33999", "--flows-dir", flowsDir, "--default-flow", "echo", "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPort))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not become healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill -9 during 50 live calls (40 echo calls and 10 with an agent on fake
// providers, all recorded): after a restart every unfinished call is
// closed with reason server_restart, the finished ones are untouched, every
// transcript turn stored before the kill is still there, every recording
// is a playable WAV of what was said before the kill (its row marked
// failed: server_restart), and the database passes its integrity check.
func TestKillDuringLiveCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server as a process")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "voxbridge.db")
	sipPort, httpPort := freePort(t), freePort(t)

	fp, def, err := startFakes(loadAgentDefinition(), fakeScript{})
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	agentsDir, recDir := filepath.Join(dir, "agents"), filepath.Join(dir, "recordings")
	defJSON, _ := json.Marshal(def)
	if err := os.MkdirAll(agentsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(agentsDir, "load.json"), defJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	const agentNumber = "+15550001000"
	func() {
		st, err := store.Open(db)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.PutNumber(context.Background(), &store.Number{Number: agentNumber, Kind: store.NumberToAgent, Target: "load"}); err != nil {
			t.Fatal(err)
		}
	}()
	flags := []string{"--agents-dir", agentsDir, "--record-all", "true", "--record-dir", recDir, "--sip-anonymous", "echo," + agentNumber}
	srv := serverProcess(t, db, sipPort, httpPort, "../../testdata/flows", flags...)

	phone := testPhone(t)
	echoTarget := fmt.Sprintf("sip:echo@127.0.0.1:%d", sipPort)
	agentTarget := fmt.Sprintf("sip:%s@127.0.0.1:%d", agentNumber, sipPort)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// Two calls that end normally before the crash.
	finished := map[string]bool{}
	for range 2 {
		c, err := phone.Dial(ctx, echoTarget, siptest.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.Play(media.Tone(1000, time.Second, 0.3))
		waitFor(t, "echo before the hangup", 10*time.Second, func() bool { return c.HeardLen() >= media.SampleRate/2 })
		if err := c.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		finished[c.CallID()] = true
	}
	const live, agents = 50, 10
	calls := make([]*siptest.Call, live)
	isAgent := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, live)
	speech := agenttest.Speech(1200 * time.Millisecond)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := echoTarget
			if i < agents {
				target = agentTarget
			}
			c, err := phone.Dial(ctx, target, siptest.DialOptions{})
			if err != nil {
				errs <- err
				return
			}
			calls[i] = c
			if i < agents {
				mu.Lock()
				isAgent[c.CallID()] = true
				mu.Unlock()
				return
			}
			c.Play(media.Tone(1000, 60*time.Second, 0.3))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("dial: %v", err)
	}
	// Each agent caller speaks (after the greeting) until its turns are
	// stored; the echo calls until their audio comes back.
	for _, c := range calls[:agents] {
		go func() {
			for range 4 {
				select {
				case <-time.After(2500 * time.Millisecond):
				case <-c.Done():
					return
				}
				select {
				case <-c.Play(speech):
				case <-c.Done():
					return
				}
			}
		}()
	}
	waitFor(t, "echoed audio on every echo call", 30*time.Second, func() bool {
		for _, c := range calls[agents:] {
			if c.HeardLen() < media.SampleRate {
				return false
			}
		}
		return true
	})
	before := map[string][]store.TranscriptTurn{} // call id → turns stored before the kill
	waitFor(t, "a caller turn and an answer stored on every agent call", 60*time.Second, func() bool {
		time.Sleep(500 * time.Millisecond)
		turns, n := storedTurns(t, db, isAgent)
		if n < agents {
			return false
		}
		for _, ts := range turns {
			user, assistant := 0, 0
			for _, tr := range ts {
				switch tr.Role {
				case "user":
					user++
				case "assistant":
					assistant++
				}
			}
			if user < 1 || assistant < 2 { // greeting and an answer
				return false
			}
		}
		before = turns
		return true
	})
	// The turns read above were committed; the kill may land after more.

	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.Wait()
	for _, c := range calls {
		c.Close()
	}

	// Restart on the same database.
	serverProcess(t, db, sipPort, httpPort, "../../testdata/flows", flags...)
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	all, _, err := st.ListCalls(ctx, store.ListOptions{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	restart, normal, turnsKept, recsRead := 0, 0, 0, 0
	for _, c := range all {
		if c.Status != store.StatusHangup {
			t.Fatalf("call %s still %s after restart", c.ID, c.Status)
		}
		switch c.HangupReason {
		case store.ReasonServerRestart:
			restart++
		case store.ReasonNormal:
			normal++
		}
		if finished[c.SIPCallID] != (c.HangupReason == store.ReasonNormal) {
			t.Errorf("call %s (finished before the kill: %v) ended %q", c.ID, finished[c.SIPCallID], c.HangupReason)
		}

		// Every turn stored before the kill, unchanged.
		if want := before[c.ID]; len(want) > 0 {
			got, err := st.ListTranscript(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			turnsKept += min(len(got), len(want))
			if len(got) < len(want) {
				t.Errorf("call %s: %d transcript turns after the restart, %d before the kill", c.ID, len(got), len(want))
			}
			for i := range min(len(got), len(want)) {
				if got[i].Role != want[i].Role || got[i].Text != want[i].Text {
					t.Errorf("call %s turn %d: %s %q, was %s %q", c.ID, i, got[i].Role, got[i].Text, want[i].Role, want[i].Text)
				}
			}
		} else if isAgent[c.SIPCallID] {
			t.Errorf("agent call %s had no turns before the kill", c.ID)
		}

		// Its recording: playable, with what was said in it.
		recs, err := st.ListRecordings(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 {
			t.Errorf("call %s: %d recordings", c.ID, len(recs))
			continue
		}
		r := recs[0]
		wantStatus := store.RecordingFailed
		if finished[c.SIPCallID] {
			wantStatus = store.RecordingCompleted
		}
		if r.Status != wantStatus || (wantStatus == store.RecordingFailed && r.Error != string(store.ReasonServerRestart)) {
			t.Errorf("call %s recording: status %q error %q, want %s", c.ID, r.Status, r.Error, wantStatus)
		}
		pcm, err := media.ReadWAVFile(r.Path)
		if err != nil {
			t.Errorf("call %s: recording %s does not read: %v", c.ID, r.Path, err)
			continue
		}
		if len(pcm) < media.SampleRate/2 {
			t.Errorf("call %s: recording holds %d samples", c.ID, len(pcm))
			continue
		}
		recsRead++
		if !isAgent[c.SIPCallID] {
			if _, lvl := strongest(pcm, media.SampleRate/4, 1000); lvl < 0.1 {
				t.Errorf("call %s: the caller's tone is not in its recording (level %.3f)", c.ID, lvl)
			}
		} else if media.RMS(pcm) < 100 {
			t.Errorf("call %s: the agent call's recording is silent (RMS %.0f)", c.ID, media.RMS(pcm))
		}
	}
	if restart != live || normal != 2 {
		t.Fatalf("after restart: %d closed as server_restart (want %d), %d normal (want 2), of %d", restart, live, normal, len(all))
	}
	t.Logf("after kill -9 and restart: %d calls closed as server_restart, %d transcript turns of %d agent calls kept, %d recordings playable",
		restart, turnsKept, len(before), recsRead)
}

// storedTurns reads, from the database a running server writes, the
// transcript of every call whose SIP Call-ID is in sipIDs, keyed by call
// id, and how many of those calls it found.
func storedTurns(t *testing.T, db string, sipIDs map[string]bool) (map[string][]store.TranscriptTurn, int) {
	t.Helper()
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	calls, _, err := st.ListCalls(ctx, store.ListOptions{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]store.TranscriptTurn{}
	for _, c := range calls {
		if !sipIDs[c.SIPCallID] {
			continue
		}
		turns, err := st.ListTranscript(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		out[c.ID] = turns
	}
	return out, len(out)
}
