package sip

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media/rtptest"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// registeringCarrier starts a carrier registrar and stores a trunk that
// registers with it.
func registeringCarrier(t *testing.T, db *store.DB, plan siptest.RegistrarPlan) (*siptest.Phone, store.Trunk) {
	t.Helper()
	p := newPhone(t)
	p.ServeRegistrar(plan)
	tr := store.Trunk{Name: "carrier", Enabled: true, Host: "127.0.0.1", Port: p.Addr().(*net.UDPAddr).Port,
		Transport: store.TransportUDP, Username: "acct", Password: "trunk-secret-1", Register: true, RegisterExpires: 60}
	if err := db.CreateTrunk(context.Background(), &tr); err != nil {
		t.Fatal(err)
	}
	return p, tr
}

func authorized(rs []siptest.RegisterRecord) []siptest.RegisterRecord {
	var out []siptest.RegisterRecord
	for _, r := range rs {
		if r.Authorized {
			out = append(out, r)
		}
	}
	return out
}

func TestTrunkRegistrationRefreshesAndUnregisters(t *testing.T) {
	db := newStore(t)
	carrier, _ := registeringCarrier(t, db, siptest.RegistrarPlan{Username: "acct", Password: "trunk-secret-1", Expires: 2})
	ts := startStoreServer(t, db, Config{Trunks: TrunkConfig{CacheTTL: 100 * time.Millisecond}}, nil)

	// Granted 2 s, so refreshed every 1.5 s: three registrations in ~3 s.
	rtptest.Eventually(t, 10*time.Second, "three registrations", func() bool { return len(authorized(carrier.Registers())) >= 3 })
	regs := authorized(carrier.Registers())
	for i, r := range regs {
		if r.CallID != regs[0].CallID || r.Code != 200 || r.Expires != 60 {
			t.Errorf("REGISTER %d: %+v", i, r)
		}
		if i > 0 && r.CSeq <= regs[i-1].CSeq {
			t.Errorf("CSeq %d after %d", r.CSeq, regs[i-1].CSeq)
		}
		if want := fmt.Sprintf("sip:acct@127.0.0.1:%d", ts.addr.Port); r.Contact != want {
			t.Errorf("contact %s, want %s", r.Contact, want)
		}
	}
	// Each refresh is challenged, so no REGISTER is accepted without digest.
	if all := carrier.Registers(); len(all) < 2*len(regs)-1 {
		t.Errorf("%d REGISTERs for %d registrations: some were not challenged", len(all), len(regs))
	}
	st := ts.TrunkRegistrations()
	if len(st) != 1 || st[0].Trunk != "carrier" || !st[0].Registered || st[0].LastCode != 200 || time.Until(st[0].ExpiresAt) > 2*time.Second {
		t.Fatalf("status %+v", st)
	}

	ts.Close()
	last := carrier.Registers()[len(carrier.Registers())-1]
	if last.Expires != 0 || !last.Authorized || last.Code != 200 {
		t.Fatalf("last REGISTER on close %+v, want an authorized unregister", last)
	}
}

func TestTrunkRegistrationHonoursRetryAfter(t *testing.T) {
	db := newStore(t)
	carrier, _ := registeringCarrier(t, db, siptest.RegistrarPlan{
		Username: "acct", Password: "trunk-secret-1",
		Reply: func(n int) (int, int) {
			if n == 1 {
				return 503, 1
			}
			return 200, 0
		},
	})
	// Without Retry-After the next try would be 30 s away.
	ts := startStoreServer(t, db, Config{Trunks: TrunkConfig{CacheTTL: 100 * time.Millisecond, RegisterRetryMin: 30 * time.Second}}, nil)
	rtptest.Eventually(t, 15*time.Second, "a registration after the 503", func() bool {
		rs := authorized(carrier.Registers())
		return len(rs) >= 2 && rs[1].Code == 200
	})
	rs := authorized(carrier.Registers())
	if rs[0].Code != 503 {
		t.Fatalf("first answer %d", rs[0].Code)
	}
	if gap := rs[1].At.Sub(rs[0].At); gap < 900*time.Millisecond {
		t.Fatalf("retried after %v, before Retry-After's 1 s", gap)
	}
	// The carrier logs its 200 before our side has read it.
	rtptest.Eventually(t, 15*time.Second, "the status to say registered", func() bool {
		st := ts.TrunkRegistrations()
		return len(st) == 1 && st[0].Registered
	})
}

func TestTrunkRegistrationBacksOff(t *testing.T) {
	db := newStore(t)
	carrier, _ := registeringCarrier(t, db, siptest.RegistrarPlan{
		Username: "acct", Password: "trunk-secret-1",
		Reply: func(n int) (int, int) {
			if n <= 3 {
				return 500, 0
			}
			return 200, 0
		},
	})
	ts := startStoreServer(t, db, Config{Trunks: TrunkConfig{CacheTTL: 100 * time.Millisecond,
		RegisterRetryMin: 300 * time.Millisecond, RegisterRetryMax: 5 * time.Second}}, nil)
	rtptest.Eventually(t, 15*time.Second, "the registration after three failures", func() bool {
		rs := authorized(carrier.Registers())
		return len(rs) >= 4 && rs[3].Code == 200
	})
	rs := authorized(carrier.Registers())
	// Each wait at least doubles: 300 ms, 600 ms, 1.2 s.
	for i, min := range []time.Duration{280 * time.Millisecond, 580 * time.Millisecond, 1180 * time.Millisecond} {
		if gap := rs[i+1].At.Sub(rs[i].At); gap < min {
			t.Errorf("wait %d was %v, want at least %v", i+1, gap, min)
		}
	}
	// The carrier has sent its 200; the server records it just after.
	rtptest.Eventually(t, 10*time.Second, "the registered status", func() bool {
		st := ts.TrunkRegistrations()
		return len(st) == 1 && st[0].Registered && st[0].LastError == ""
	})
}

func TestTrunkRegistrationFollowsTrunkTable(t *testing.T) {
	db := newStore(t)
	carrier, tr := registeringCarrier(t, db, siptest.RegistrarPlan{Username: "acct", Password: "trunk-secret-1"})
	ts := startStoreServer(t, db, Config{Trunks: TrunkConfig{CacheTTL: 100 * time.Millisecond}}, nil)
	rtptest.Eventually(t, 5*time.Second, "the registration", func() bool { return len(authorized(carrier.Registers())) >= 1 })
	// Turning registration off in the table unregisters within the cache
	// lifetime.
	tr.Register = false
	if err := db.UpdateTrunk(context.Background(), &tr); err != nil {
		t.Fatal(err)
	}
	rtptest.Eventually(t, 5*time.Second, "the unregister", func() bool {
		rs := carrier.Registers()
		return rs[len(rs)-1].Expires == 0 && rs[len(rs)-1].Code == 200
	})
	rtptest.Eventually(t, 5*time.Second, "the status to go", func() bool { return len(ts.TrunkRegistrations()) == 0 })
}
