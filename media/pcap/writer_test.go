package pcap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

type sent struct {
	t        time.Time
	src, dst netip.AddrPort
	payload  []byte
}

// testTraffic mixes IPv4 and IPv6 and payload sizes from empty to the
// largest each family allows.
func testTraffic() []sent {
	base := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	var out []sent
	sizes := []int{0, 1, 160, 172, 1400, 65507}
	for i, n := range sizes {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(i + j*7)
		}
		out = append(out, sent{base.Add(time.Duration(i) * 20 * time.Millisecond), ap("127.0.0.1:5060"), ap("127.0.0.1:16384"), p})
	}
	out = append(out, sent{base.Add(time.Second), ap("[::1]:10000"), ap("[2001:db8::99]:20000"), []byte("v6")})
	out = append(out, sent{base.Add(2 * time.Second), ap("[::1]:10000"), ap("[::1]:20000"), make([]byte, 65527)})
	// IPv4-mapped addresses are written (and read back) as IPv4.
	out = append(out, sent{base.Add(3 * time.Second), ap("[::ffff:10.1.2.3]:1"), ap("10.1.2.4:2"), []byte("mapped")})
	return out
}

func TestWriterRoundTrip(t *testing.T) {
	for _, link := range []LinkType{LinkTypeEthernet, LinkTypeRaw} {
		for _, nano := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/nano=%v", link, nano), func(t *testing.T) {
				var buf bytes.Buffer
				opts := []WriterOption{WithLinkType(link)}
				if nano {
					opts = append(opts, WithNanoseconds())
				}
				w, err := NewWriter(&buf, opts...)
				if err != nil {
					t.Fatal(err)
				}
				traffic := testTraffic()
				for _, s := range traffic {
					if err := w.WriteUDP(s.t, s.src, s.dst, s.payload); err != nil {
						t.Fatalf("WriteUDP %d bytes: %v", len(s.payload), err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				pkts, st, err := readAll(t, buf.Bytes())
				if err != nil || len(pkts) != len(traffic) || st.Skipped() != 0 {
					t.Fatalf("read %d packets, %v, stats %+v; want %d", len(pkts), err, st, len(traffic))
				}
				for i, p := range pkts {
					s := traffic[i]
					want := s.t
					if !nano {
						want = want.Truncate(time.Microsecond)
					}
					wantSrc := netip.AddrPortFrom(s.src.Addr().Unmap(), s.src.Port())
					if !p.Time.Equal(want) || p.Src != wantSrc || p.Dst != s.dst || !bytes.Equal(p.Payload, s.payload) || p.Frame != i+1 {
						t.Errorf("packet %d: %v %v -> %v %d bytes frame %d; want %v %v -> %v %d bytes",
							i, p.Time, p.Src, p.Dst, len(p.Payload), p.Frame, want, wantSrc, s.dst, len(s.payload))
					}
				}
			})
		}
	}
}

func TestWriterRejects(t *testing.T) {
	var buf bytes.Buffer
	if _, err := NewWriter(&buf, WithLinkType(LinkTypeLinuxSLL)); err == nil {
		t.Error("NewWriter accepted a link type it cannot write")
	}
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	v4, v6 := ap("127.0.0.1:1"), ap("[::1]:2")
	for _, tc := range []struct {
		name    string
		t       time.Time
		src     netip.AddrPort
		dst     netip.AddrPort
		n       int
		contain string
	}{
		{"mixed families", now, v4, v6, 1, "mixes"},
		{"zero address", now, netip.AddrPort{}, v4, 1, "invalid address"},
		{"IPv4 payload too big", now, v4, v4, 65508, "exceeds"},
		{"IPv6 payload too big", now, v6, v6, 65528, "exceeds"},
		{"zero time", time.Time{}, v4, v4, 1, "timestamp range"},
		{"after 2106", time.Unix(1<<32, 0), v4, v4, 1, "timestamp range"},
	} {
		if err := w.WriteUDP(tc.t, tc.src, tc.dst, make([]byte, tc.n)); err == nil || !strings.Contains(err.Error(), tc.contain) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.contain)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteUDP(now, v4, v4, nil); !errors.Is(err, ErrWriterClosed) {
		t.Errorf("write after Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Nothing but the file header was written.
	if pkts, _, err := readAll(t, buf.Bytes()); len(pkts) != 0 || err != nil || buf.Len() != 24 {
		t.Errorf("after rejected writes: %d packets, %v, %d bytes", len(pkts), err, buf.Len())
	}
}

// Several goroutines write one call's SIP and RTP at once; every packet
// arrives whole, and each goroutine's packets keep their order.
func TestWriterConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "call.pcap")
	w, err := CreateFile(path, WithFlushInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 400
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			src := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(20000+g))
			for i := range each {
				payload := fmt.Appendf(nil, "writer %d packet %d %s", g, i, strings.Repeat("x", i%200))
				if err := w.WriteUDP(time.Now(), src, ap("127.0.0.1:5060"), payload); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pkts, err := ReadFile(path)
	if err != nil || len(pkts) != writers*each {
		t.Fatalf("read %d packets, %v; want %d", len(pkts), err, writers*each)
	}
	next := make([]int, writers)
	for _, p := range pkts {
		g := int(p.Src.Port()) - 20000
		want := fmt.Sprintf("writer %d packet %d %s", g, next[g], strings.Repeat("x", next[g]%200))
		if string(p.Payload) != want {
			t.Fatalf("frame %d: %q, want %q", p.Frame, p.Payload, want)
		}
		next[g]++
	}
}

// A writer that is never closed (its process killed) still leaves the
// packets written more than a flush interval ago in the file.
func TestWriterFlushesWithoutClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live.pcap")
	w, err := CreateFile(path, WithFlushInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 3 {
		if err := w.WriteUDP(time.Now(), ap("127.0.0.1:1"), ap("127.0.0.1:2"), fmt.Appendf(nil, "live %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pkts, err := ReadFile(path)
		if err == nil && len(pkts) == 3 && string(pkts[2].Payload) == "live 2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file still holds %d packets (%v) 10 s after writing 3", len(pkts), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Writes keep working after a timed flush re-arms the timer.
	if err := w.WriteUDP(time.Now(), ap("127.0.0.1:1"), ap("127.0.0.1:2"), []byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if pkts, err := ReadFile(path); err != nil || len(pkts) != 4 {
		t.Errorf("after Close: %d packets, %v; want 4", len(pkts), err)
	}
}

// With no flush interval every WriteUDP reaches the file before it returns.
func TestWriterFlushEveryPacket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sync.pcap")
	w, err := CreateFile(path, WithFlushInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 3 {
		if err := w.WriteUDP(time.Now(), ap("[::1]:1"), ap("[::1]:2"), []byte("sync")); err != nil {
			t.Fatal(err)
		}
		if pkts, err := ReadFile(path); err != nil || len(pkts) != i+1 {
			t.Fatalf("after %d writes the file has %d packets (%v)", i+1, len(pkts), err)
		}
	}
}

type failingWriter struct{ n int }

func (f *failingWriter) Write(b []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("disk full")
	}
	f.n--
	return len(b), nil
}

func TestWriterReportsWriteErrors(t *testing.T) {
	w, err := NewWriter(&failingWriter{n: 1}, WithFlushInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	err = w.WriteUDP(time.Now(), ap("127.0.0.1:1"), ap("127.0.0.1:2"), []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("WriteUDP on a failing writer: %v", err)
	}
	if err2 := w.WriteUDP(time.Now(), ap("127.0.0.1:1"), ap("127.0.0.1:2"), []byte("x")); err2 == nil {
		t.Error("second write after a failure succeeded")
	}
	if _, err := NewWriter(&failingWriter{}); err == nil {
		t.Error("NewWriter on a failing writer succeeded")
	}
}

func BenchmarkWriteUDP(b *testing.B) {
	w, err := NewWriter(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	payload := make([]byte, 172) // a 20 ms G.711 RTP packet
	src, dst := ap("127.0.0.1:16384"), ap("127.0.0.1:16386")
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if err := w.WriteUDP(now, src, dst, payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReader(b *testing.B) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf)
	payload := make([]byte, 172)
	for range 1000 {
		w.WriteUDP(time.Now(), ap("127.0.0.1:16384"), ap("127.0.0.1:16386"), payload)
	}
	w.Close()
	b.ReportAllocs()
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(buf.Bytes()))
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
}

func TestCreateFileErrors(t *testing.T) {
	if _, err := CreateFile(filepath.Join(t.TempDir(), "missing", "dir", "x.pcap")); err == nil {
		t.Error("CreateFile in a missing directory succeeded")
	}
	path := filepath.Join(t.TempDir(), "bad.pcap")
	if _, err := CreateFile(path, WithLinkType(LinkTypeNull)); err == nil {
		t.Error("CreateFile accepted an unwritable link type")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("failed CreateFile left %s behind: %v", path, err)
	}
}

// Close may meet a timed flush that is already running; it waits for it,
// and every packet written before Close is in the output.
func TestWriterCloseRacesTimedFlush(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := range 200 {
		// A plain buffer: a timer callback writing after Close returned
		// would race with the read below.
		var buf bytes.Buffer
		w, err := NewWriter(&buf, WithFlushInterval(time.Duration(i%5)*time.Microsecond+time.Nanosecond))
		if err != nil {
			t.Fatal(err)
		}
		for j := range i % 4 {
			if err := w.WriteUDP(time.Unix(int64(j), 0), ap("127.0.0.1:1"), ap("127.0.0.1:2"), []byte("p")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(j) * time.Microsecond)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if pkts, _, err := readAll(t, buf.Bytes()); err != nil || len(pkts) != i%4 {
			t.Fatalf("round %d: %d packets, %v; want %d", i, len(pkts), err, i%4)
		}
	}
	// No writer leaves a goroutine behind (a flusher that Close does not
	// stop and wait for would show here).
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines before, %d after closing every writer", before, after)
	}
}
