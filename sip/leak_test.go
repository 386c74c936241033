package sip

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media/rtptest"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// A server that registered phones, registered with a carrier and placed a
// call leaves no goroutine behind once it and its peers are closed.
func TestServerGoroutinesEnd(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		db, err := store.Open(t.TempDir() + "/v.db")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		addExtension(t, db, "1001", "alice", "alice-secret-1", false)
		carrier, err := siptest.NewPhone("127.0.0.1", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer carrier.Close()
		carrier.ServeRegistrar(siptest.RegistrarPlan{Username: "acct", Password: "trunk-secret-1"})
		carrier.AutoAnswer(440)
		tr := store.Trunk{Name: "carrier", Enabled: true, Host: "127.0.0.1", Port: carrier.Addr().(*net.UDPAddr).Port,
			Transport: store.TransportUDP, Username: "acct", Password: "trunk-secret-1", Register: true, Format: store.NumberE164}
		if err := db.CreateTrunk(context.Background(), &tr); err != nil {
			t.Fatal(err)
		}
		udp, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewServer(Config{UDP: udp, AdvertiseIP: net.IPv4(127, 0, 0, 1), Logger: testLogger(), Store: db,
			Trunks: TrunkConfig{CacheTTL: 100 * time.Millisecond}}, rejectBusy)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan struct{})
		go func() { s.Serve(ctx); close(served) }()
		defer func() { cancel(); <-served }()

		phone, err := siptest.NewPhone("127.0.0.1", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer phone.Close()
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer rcancel()
		if err := phone.Register(rctx, udp.LocalAddr().String(), "alice", "alice-secret-1"); err != nil {
			t.Fatal(err)
		}
		rtptest.Eventually(t, 5*time.Second, "the trunk registration", func() bool {
			st := s.TrunkRegistrations()
			return len(st) == 1 && st[0].Registered
		})
		m := newOurMedia(t)
		leg, err := s.Dial(rctx, trunkDial(m, "+14155550100", tr))
		if err != nil {
			t.Fatal(err)
		}
		if err := leg.Hangup(rctx); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left over %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An answered INVITE's transaction lingers 32 s after the call (RFC 6026);
// the call's leg, and whatever the call hangs on it (media buffers, flow
// state), must not linger with it: at 100 calls a second that was 3 200
// dead calls in memory.
func TestEndedLegIsFreedBeforeItsTransaction(t *testing.T) {
	udp, _ := net.ListenPacket("udp", "127.0.0.1:0")
	freed := make(chan struct{})
	handler := func(leg *Leg) {
		runtime.AddCleanup(leg, func(ch chan struct{}) { close(ch) }, freed)
		answerEcho(leg)
	}
	var s *Server
	serveWith(t, Config{UDP: udp}, handler, &s)
	c, err := newPhone(t).Dial(ctxT(t, 10*time.Second), "sip:echo@"+udp.LocalAddr().String(), siptest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return len(s.LiveLegs()) == 0 })
	deadline := time.Now().Add(10 * time.Second) // well inside the transaction's 32 s
	for {
		runtime.GC()
		select {
		case <-freed:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the ended leg is still referenced 10 s after its BYE")
		}
	}
}
