package pcap

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Interoperability with Wireshark's tools: what we write, tshark reads
// (with valid checksums), and what dumpcap/tshark write, we read the same
// way tshark does.

const fixtures = "../../testdata/pcap"

// tshark runs tshark on path with -T fields and returns one row per frame.
// It skips the test when tshark is not installed.
func tshark(t *testing.T, path, filter string, fields ...string) [][]string {
	t.Helper()
	bin, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed")
	}
	args := []string{"-n", "-r", path, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-T", "fields", "-E", "separator=/t"}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	var rows [][]string
	for line := range strings.SplitSeq(strings.TrimRight(string(out), "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}

// epoch formats t as tshark's frame.time_epoch does.
func epoch(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }

var packetFields = []string{"frame.number", "frame.time_epoch", "ip.src", "ipv6.src", "udp.srcport",
	"ip.dst", "ipv6.dst", "udp.dstport", "udp.payload"}

// packetRow renders p like the tshark packetFields row of its frame.
func packetRow(p Packet) string {
	src, dst := []string{p.Src.Addr().String(), ""}, []string{p.Dst.Addr().String(), ""}
	if p.Src.Addr().Is6() {
		src[0], src[1] = "", p.Src.Addr().String()
		dst[0], dst[1] = "", p.Dst.Addr().String()
	}
	return strings.Join([]string{fmt.Sprint(p.Frame), epoch(p.Time), src[0], src[1], fmt.Sprint(p.Src.Port()),
		dst[0], dst[1], fmt.Sprint(p.Dst.Port()), hex.EncodeToString(p.Payload)}, "\t")
}

// compareWithTshark checks that our packets are exactly tshark's UDP
// frames: numbers, times to the nanosecond, addresses, ports and payloads.
func compareWithTshark(t *testing.T, path string, pkts []Packet) {
	t.Helper()
	rows := tshark(t, path, "udp", packetFields...)
	if len(rows) != len(pkts) {
		t.Fatalf("tshark sees %d UDP frames, we read %d", len(rows), len(pkts))
	}
	for i, row := range rows {
		if got, want := packetRow(pkts[i]), strings.Join(row, "\t"); got != want {
			t.Errorf("packet %d:\n ours   %s\n tshark %s", i, got, want)
		}
	}
}

func TestTsharkReadsWriterOutput(t *testing.T) {
	for _, link := range []LinkType{LinkTypeEthernet, LinkTypeRaw} {
		for _, nano := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/nano=%v", link, nano), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "out.pcap")
				opts := []WriterOption{WithLinkType(link)}
				if nano {
					opts = append(opts, WithNanoseconds())
				}
				w, err := CreateFile(path, opts...)
				if err != nil {
					t.Fatal(err)
				}
				traffic := testTraffic()
				for _, s := range traffic {
					// Ports no dissector claims, so tshark shows the bytes.
					src, dst := netipPort(s.src, 40000), netipPort(s.dst, 40001)
					if err := w.WriteUDP(s.t, src, dst, s.payload); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				rows := tshark(t, path, "", "frame.time_epoch", "ip.src", "ipv6.src", "udp.srcport", "udp.dstport",
					"udp.length", "ip.checksum.status", "udp.checksum.status", "udp.payload")
				if len(rows) != len(traffic) {
					t.Fatalf("tshark read %d frames, want %d", len(rows), len(traffic))
				}
				for i, row := range rows {
					s := traffic[i]
					wantTime := s.t
					if !nano {
						wantTime = wantTime.Truncate(time.Microsecond)
					}
					srcV4, srcV6, ipSum := s.src.Addr().Unmap().String(), "", "1" // 1: good
					if s.src.Addr().Unmap().Is6() {
						srcV4, srcV6, ipSum = "", s.src.Addr().String(), ""
					}
					want := []string{epoch(wantTime), srcV4, srcV6, "40000", "40001", fmt.Sprint(8 + len(s.payload)),
						ipSum, "1", hex.EncodeToString(s.payload)}
					if strings.Join(row, "|") != strings.Join(want, "|") {
						t.Errorf("frame %d:\n tshark %.200s\n want   %.200s", i+1, strings.Join(row, "|"), strings.Join(want, "|"))
					}
				}
			})
		}
	}
}

func netipPort(a netip.AddrPort, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr(), port)
}

// The pcapng that tshark converts our file into reads back the same.
func TestReadTsharkPcapng(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.pcap"), filepath.Join(dir, "out.pcapng")
	w, err := CreateFile(in, WithNanoseconds())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range testTraffic() {
		if err := w.WriteUDP(s.t, s.src, s.dst, s.payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command("tshark", "-r", in, "-F", "pcapng", "-w", out).CombinedOutput(); err != nil {
		t.Fatalf("tshark -F pcapng: %v\n%s", err, msg)
	}
	want, err := ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(out)
	if err != nil || len(got) != len(want) {
		t.Fatalf("read %d packets from tshark's pcapng, %v; want %d", len(got), err, len(want))
	}
	for i := range got {
		if packetRow(got[i]) != packetRow(want[i]) {
			t.Errorf("packet %d:\n pcapng %.200s\n pcap   %.200s", i, packetRow(got[i]), packetRow(want[i]))
		}
	}
}

// The captures in testdata/pcap are real loopback traffic recorded by
// dumpcap (see gen.sh): per interface, five IPv4 and five IPv6 datagrams
// from port 40000 to 40001 and one TCP connection of eight segments.
func TestDumpcapFixtures(t *testing.T) {
	for _, tc := range []struct {
		file       string
		interfaces int
	}{
		{"lo-ethernet-usec.pcap", 1},
		{"any-sll-nsec.pcap", 1},
		{"lo-any.pcapng", 2}, // lo (Ethernet) and any (Linux cooked v2)
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(fixtures, tc.file)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			var pkts []Packet
			for {
				p, err := r.Next()
				if err != nil {
					if err != io.EOF {
						t.Fatal(err)
					}
					break
				}
				pkts = append(pkts, p)
			}
			st := r.Stats()
			n := tc.interfaces
			if st.Frames != 18*n || st.UDP != 10*n || st.NotUDP != 8*n || st.Skipped() != 8*n {
				t.Errorf("stats %+v, want %d frames: %d UDP and %d TCP", st, 18*n, 10*n, 8*n)
			}
			seen := map[string]int{}
			for _, p := range pkts {
				host := p.Src.Addr().String()
				if p.Src.Port() != 40000 || p.Dst.Port() != 40001 || p.Dst.Addr() != p.Src.Addr() ||
					!strings.HasPrefix(string(p.Payload), "voxbridge "+host+" ") {
					t.Errorf("frame %d: %v -> %v %q", p.Frame, p.Src, p.Dst, p.Payload)
				}
				if p.Time.Year() < 2020 {
					t.Errorf("frame %d: time %v", p.Frame, p.Time)
				}
				seen[string(p.Payload)]++
			}
			for _, host := range []string{"127.0.0.1", "::1"} {
				for i := range 5 {
					if k := fmt.Sprintf("voxbridge %s %d", host, i); seen[k] != n {
						t.Errorf("%q seen %d times, want %d", k, seen[k], n)
					}
				}
			}
			compareWithTshark(t, path, pkts)
		})
	}
}
