package main

import (
	"context"
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

// serverProcess starts voxbridge serve as a real process.
func serverProcess(t *testing.T, db string, sipPort, httpPort int, flowsDir string) *exec.Cmd {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--sip-addr", fmt.Sprintf("127.0.0.1:%d", sipPort),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "--db", db,
		"--rtp-ports", "32000-33999", "--flows-dir", flowsDir, "--default-flow", "echo", "--log-level", "warn")
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

// kill -9 during 50 live calls: after a restart every unfinished call is
// closed with reason server_restart, the finished ones are untouched, and
// the database passes its integrity check.
func TestKillDuringLiveCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server as a process")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "voxbridge.db")
	sipPort, httpPort := freePort(t), freePort(t)
	srv := serverProcess(t, db, sipPort, httpPort, "../../testdata/flows")

	phone := testPhone(t)
	target := fmt.Sprintf("sip:echo@127.0.0.1:%d", sipPort)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Two calls that end normally before the crash.
	for range 2 {
		c, err := phone.Dial(ctx, target, siptest.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const live = 50
	calls := make([]*siptest.Call, live)
	var wg sync.WaitGroup
	errs := make(chan error, live)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := phone.Dial(ctx, target, siptest.DialOptions{})
			if err != nil {
				errs <- err
				return
			}
			calls[i] = c
			c.Play(media.Tone(1000, 30*time.Second, 0.3))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("dial: %v", err)
	}
	// Wait until the echo flows are really running (audio coming back).
	waitFor(t, "echoed audio on every call", 20*time.Second, func() bool {
		for _, c := range calls {
			if c.HeardLen() < media.SampleRate/2 {
				return false
			}
		}
		return true
	})

	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.Wait()
	for _, c := range calls {
		c.Close()
	}

	// Restart on the same database.
	serverProcess(t, db, sipPort, httpPort, "../../testdata/flows")
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
	restart, normal := 0, 0
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
	}
	if restart != live || normal != 2 {
		t.Fatalf("after restart: %d closed as server_restart (want %d), %d normal (want 2), of %d", restart, live, normal, len(all))
	}
}
