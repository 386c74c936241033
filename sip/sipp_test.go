package sip

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

// freeUDPPort finds a loopback UDP port nobody uses right now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// SIPp as the carrier (testdata/sipp/uas_carrier_40x.xml): our Dial answers
// its challenge with the trunk's credentials. For 401 SIPp verifies the
// digest itself; for 407 it checks the Proxy-Authorization's fields.
func TestDialSIPpCarrier(t *testing.T) {
	sipp, err := exec.LookPath("sipp")
	if err != nil {
		t.Skip("sipp not installed (Debian package sip-tester)")
	}
	for _, tc := range []struct {
		scenario  string
		transport store.TrunkTransport
	}{
		{"uas_carrier_401.xml", store.TransportUDP},
		{"uas_carrier_407.xml", store.TransportUDP},
		{"uas_carrier_407.xml", store.TransportTCP},
	} {
		t.Run(tc.scenario+"/"+string(tc.transport), func(t *testing.T) {
			port := freeUDPPort(t)
			sippTransport := map[store.TrunkTransport]string{store.TransportUDP: "u1", store.TransportTCP: "t1"}[tc.transport]
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, sipp, "-sf", "../testdata/sipp/"+tc.scenario, "-t", sippTransport,
				"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-m", "1", "-nostdin",
				"-key", "trunk_user", "acct", "-key", "trunk_pass", "trunk-secret-1",
				"-timeout", "20s", "-timeout_error")
			out := &lockedBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()

			db := newStore(t)
			ts := startStoreServer(t, db, Config{}, nil)
			tr := store.Trunk{Name: "sipp", Enabled: true, Host: "127.0.0.1", Port: port, Transport: tc.transport,
				Username: "acct", Password: "trunk-secret-1", Format: store.NumberE164}
			if err := db.CreateTrunk(context.Background(), &tr); err != nil {
				t.Fatal(err)
			}
			m := newOurMedia(t)
			r := trunkDial(m, "+14155550100", tr)
			r.ResponseTimeout = 2 * time.Second
			// Dial calls OnProgress on its own goroutine, and returns after.
			var early []int
			r.OnProgress = func(p Progress) {
				if p.EarlyMedia != nil && p.EarlyMedia.RemoteAddr.Port() != 0 {
					early = append(early, p.Code)
				}
			}
			var leg *OutLeg
			// SIPp needs a moment to bind; a dial that meets no listener
			// gets no response (UDP) or no connection (TCP) and is simply
			// tried again.
			for try := 0; ; try++ {
				leg, err = ts.Dial(ctx, r)
				var de *DialError
				if err == nil || try == 10 || !errors.As(err, &de) || (de.Code != 408 && de.Code != 0) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("dial SIPp: %v\n%s", err, out.String())
			}
			if leg.Media().RemoteAddr.Port() == 0 {
				t.Errorf("no media address in SIPp's answer: %+v", leg.Media())
			}
			// The 407 carrier sends 183 Session Progress with an SDP answer.
			if want := tc.scenario == "uas_carrier_407.xml"; want != (len(early) == 1 && early[0] == 183) {
				t.Errorf("early media seen in %v provisional responses; want a 183 with SDP: %v", early, want)
			}
			if err := leg.Hangup(ctx); err != nil {
				t.Fatalf("BYE: %v", err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("sipp failed: %v\n%s", err, out.String())
				}
			case <-ctx.Done():
				t.Fatalf("sipp did not finish\n%s", out.String())
			}
		})
	}
}

// lockedBuffer collects a child process's output safely.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
