package sip

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// testServer is a Server on loopback UDP (and TCP on the same port) with a
// real store in a temp file.
type testServer struct {
	*Server
	addr *net.UDPAddr
	db   *store.DB
}

func (ts *testServer) hostport() string { return ts.addr.String() }

// newStore opens a fresh database file for a test.
func newStore(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "voxbridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// startStoreServer runs a server with db until the test ends. cfg's
// listeners, address and store are filled in.
func startStoreServer(t testing.TB, db *store.DB, cfg Config, handler CallHandler) *testServer {
	t.Helper()
	// TCP on the UDP port, as serve does; that port may be taken for TCP.
	var udp net.PacketConn
	var tcp net.Listener
	for try := 0; tcp == nil; try++ {
		var err error
		if udp, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if tcp, err = net.Listen("tcp", udp.LocalAddr().String()); err != nil {
			udp.Close()
			if try == 10 {
				t.Fatal(err)
			}
		}
	}
	cfg.UDP, cfg.TCP = udp, tcp
	cfg.AdvertiseIP = net.IPv4(127, 0, 0, 1)
	cfg.Store = db
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if handler == nil {
		handler = rejectBusy
	}
	s, err := NewServer(cfg, handler)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	s.waitListening()
	return &testServer{Server: s, addr: udp.LocalAddr().(*net.UDPAddr), db: db}
}

func testLogger() *slog.Logger {
	if os.Getenv("VOXBRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// addExtension stores an enabled extension with a password for the
// default realm.
func addExtension(t *testing.T, db *store.DB, number, username, password string, callOut bool) *store.Extension {
	t.Helper()
	e := &store.Extension{Number: number, Username: username, Enabled: true, CallOut: callOut}
	if err := e.SetPassword(DefaultRealm, password); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateExtension(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return e
}

func newPhone(t *testing.T) *siptest.Phone {
	t.Helper()
	p, err := siptest.NewPhone("127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
