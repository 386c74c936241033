package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

func readAll(t *testing.T, b []byte) ([]Packet, Stats, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	var pkts []Packet
	for {
		p, err := r.Next()
		if err == io.EOF {
			return pkts, r.Stats(), nil
		}
		if err != nil {
			return pkts, r.Stats(), err
		}
		pkts = append(pkts, p)
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func wantPacket(t *testing.T, p Packet, src, dst, payload string) {
	t.Helper()
	if p.Src != ap(src) || p.Dst != ap(dst) || string(p.Payload) != payload {
		t.Errorf("frame %d: got %v -> %v %q, want %s -> %s %q", p.Frame, p.Src, p.Dst, p.Payload, src, dst, payload)
	}
}

func TestClassicByteOrdersAndResolutions(t *testing.T) {
	for _, tc := range []struct {
		order byteOrder
		nano  bool
		frac  uint32
		want  time.Time
	}{
		{binary.LittleEndian, false, 123456, time.Unix(1700000000, 123456000)},
		{binary.BigEndian, false, 123456, time.Unix(1700000000, 123456000)},
		{binary.LittleEndian, true, 123456789, time.Unix(1700000000, 123456789)},
		{binary.BigEndian, true, 123456789, time.Unix(1700000000, 123456789)},
	} {
		t.Run(fmt.Sprintf("%v/nano=%v", tc.order, tc.nano), func(t *testing.T) {
			f := newClassic(tc.order, tc.nano, LinkTypeRaw).
				add(1700000000, tc.frac, udp4("10.0.0.1", "10.0.0.2", 5060, 5080, []byte("INVITE")), 0).
				add(1700000001, 0, udp6("2001:db8::1", "2001:db8::2", 4000, 4002, []byte("rtp")), 0)
			pkts, st, err := readAll(t, f.buf)
			if err != nil || len(pkts) != 2 {
				t.Fatalf("got %d packets, %v; want 2", len(pkts), err)
			}
			wantPacket(t, pkts[0], "10.0.0.1:5060", "10.0.0.2:5080", "INVITE")
			wantPacket(t, pkts[1], "[2001:db8::1]:4000", "[2001:db8::2]:4002", "rtp")
			if !pkts[0].Time.Equal(tc.want) || !pkts[1].Time.Equal(time.Unix(1700000001, 0)) {
				t.Errorf("times %v, %v; want %v, %v", pkts[0].Time, pkts[1].Time, tc.want, time.Unix(1700000001, 0))
			}
			if pkts[0].Frame != 1 || pkts[1].Frame != 2 || st.Frames != 2 || st.UDP != 2 || st.Skipped() != 0 {
				t.Errorf("frames %d, %d, stats %+v", pkts[0].Frame, pkts[1].Frame, st)
			}
		})
	}
}

func TestPcapngInterfacesAndResolutions(t *testing.T) {
	for _, order := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			f := &ngFile{}
			f.shb(order).
				idb(LinkTypeEthernet, 0, -1, 0).                    // 0: µs by default
				block(0x00000bad, []byte("custom block, skipped")). // unknown: skipped
				idb(LinkTypeRaw, 65535, 9, 0).                      // 1: ns
				idb(LinkTypeLinuxSLL2, 65535, 0x80|20, 1000).       // 2: 2^-20 s, +1000 s
				block(5, make([]byte, 16)).                         // interface statistics: skipped
				epb(0, 1700000000_250000, ethernet(etherTypeIPv4, nil, udp4("192.0.2.1", "192.0.2.2", 1000, 2000, []byte("eth µs")))).
				epb(1, 1700000000_000000123, udp6("::1", "::2", 1001, 2001, []byte("raw ns"))).
				epb(2, 1700000000<<20|1<<19, append(sll2(etherTypeIPv4), udp4("192.0.2.3", "192.0.2.4", 1002, 2002, []byte("sll2 2^-20"))...)).
				spb(ethernet(etherTypeIPv4, nil, udp4("192.0.2.5", "192.0.2.6", 1003, 2003, []byte("simple")))).
				oldPacket(1, 1700000002_000000000, udp4("192.0.2.7", "192.0.2.8", 1004, 2004, []byte("obsolete block")))
			pkts, st, err := readAll(t, f.buf)
			if err != nil || len(pkts) != 5 {
				t.Fatalf("got %d packets, %v; want 5", len(pkts), err)
			}
			wantPacket(t, pkts[0], "192.0.2.1:1000", "192.0.2.2:2000", "eth µs")
			wantPacket(t, pkts[1], "[::1]:1001", "[::2]:2001", "raw ns")
			wantPacket(t, pkts[2], "192.0.2.3:1002", "192.0.2.4:2002", "sll2 2^-20")
			wantPacket(t, pkts[3], "192.0.2.5:1003", "192.0.2.6:2003", "simple")
			wantPacket(t, pkts[4], "192.0.2.7:1004", "192.0.2.8:2004", "obsolete block")
			wantTimes := []time.Time{
				time.Unix(1700000000, 250000000),
				time.Unix(1700000000, 123),
				time.Unix(1700001000, 500000000),
				{},
				time.Unix(1700000002, 0),
			}
			for i, p := range pkts {
				if !p.Time.Equal(wantTimes[i]) || p.Frame != i+1 {
					t.Errorf("packet %d: time %v frame %d, want %v frame %d", i, p.Time, p.Frame, wantTimes[i], i+1)
				}
			}
			if st.Frames != 5 || st.UDP != 5 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// A second section may change byte order and starts with no interfaces.
func TestPcapngSections(t *testing.T) {
	f := &ngFile{}
	f.shb(binary.LittleEndian).idb(LinkTypeRaw, 0, -1, 0).idb(LinkTypeRaw, 0, -1, 0).
		epb(1, 1, udp4("10.0.0.1", "10.0.0.2", 1, 2, []byte("first"))).
		shb(binary.BigEndian).idb(LinkTypeEthernet, 0, 9, 0).
		epb(0, 5, ethernet(etherTypeIPv4, nil, udp4("10.0.0.3", "10.0.0.4", 3, 4, []byte("second"))))
	pkts, _, err := readAll(t, f.buf)
	if err != nil || len(pkts) != 2 {
		t.Fatalf("got %d packets, %v; want 2", len(pkts), err)
	}
	wantPacket(t, pkts[0], "10.0.0.1:1", "10.0.0.2:2", "first")
	wantPacket(t, pkts[1], "10.0.0.3:3", "10.0.0.4:4", "second")
	if !pkts[1].Time.Equal(time.Unix(0, 5)) {
		t.Errorf("second section time %v, want 5 ns after the epoch", pkts[1].Time)
	}

	// Interface 1 belonged to the first section only.
	f.epb(1, 1, udp4("10.0.0.1", "10.0.0.2", 1, 2, []byte("orphan")))
	pkts, _, err = readAll(t, f.buf)
	if len(pkts) != 2 || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "interface 1") {
		t.Errorf("packet on an interface of the previous section: %d packets, %v", len(pkts), err)
	}
}

func sll(etherType uint16) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint16(b[0:], 4)   // sent by us
	binary.BigEndian.PutUint16(b[2:], 772) // ARPHRD_LOOPBACK
	binary.BigEndian.PutUint16(b[4:], 6)
	binary.BigEndian.PutUint16(b[14:], etherType)
	return b
}

func sll2(etherType uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], etherType)
	binary.BigEndian.PutUint32(b[4:], 1)   // ifindex
	binary.BigEndian.PutUint16(b[8:], 772) // ARPHRD_LOOPBACK
	b[10], b[11] = 4, 6
	return b
}

func null(order byteOrder, family uint32) []byte {
	return order.AppendUint32(nil, family)
}

func TestLinkLayers(t *testing.T) {
	v4 := udp4("198.51.100.1", "198.51.100.2", 16384, 16386, []byte("rtp over v4"))
	v6 := udp6("2001:db8::a", "2001:db8::b", 16384, 16386, []byte("rtp over v6"))
	padded := ethernet(etherTypeIPv4, nil, udp4("198.51.100.1", "198.51.100.2", 16384, 16386, []byte("x")))
	padded = append(padded, make([]byte, 60-len(padded))...)                          // minimum frame size
	padded = append(padded, 0xde, 0xad, 0xbe, 0xef)                                   // FCS
	withOpts := ipv4("198.51.100.1", "198.51.100.2", protoUDP, []byte{0x94, 4, 0, 0}, // router alert
		udp(16384, 16386, []byte("rtp over v4")))
	for _, tc := range []struct {
		name    string
		link    LinkType
		frame   []byte
		v6      bool
		payload string
	}{
		{"ethernet", LinkTypeEthernet, ethernet(etherTypeIPv4, nil, v4), false, ""},
		{"ethernet v6", LinkTypeEthernet, ethernet(etherTypeIPv6, nil, v6), true, ""},
		{"802.1Q", LinkTypeEthernet, ethernet(etherTypeIPv4, []uint16{etherTypeVLAN}, v4), false, ""},
		{"802.1ad QinQ", LinkTypeEthernet, ethernet(etherTypeIPv6, []uint16{etherTypeQinQ, etherTypeVLAN}, v6), true, ""},
		{"ethernet padding and FCS", LinkTypeEthernet, padded, false, "x"},
		{"IPv4 options", LinkTypeRaw, withOpts, false, ""},
		{"SLL", LinkTypeLinuxSLL, append(sll(etherTypeIPv4), v4...), false, ""},
		{"SLL v6", LinkTypeLinuxSLL, append(sll(etherTypeIPv6), v6...), true, ""},
		{"SLL2", LinkTypeLinuxSLL2, append(sll2(etherTypeIPv4), v4...), false, ""},
		{"SLL2 v6", LinkTypeLinuxSLL2, append(sll2(etherTypeIPv6), v6...), true, ""},
		{"raw v4", LinkTypeRaw, v4, false, ""},
		{"raw v6", LinkTypeRaw, v6, true, ""},
		{"IPv4 link type", LinkTypeIPv4, v4, false, ""},
		{"IPv6 link type", LinkTypeIPv6, v6, true, ""},
		{"null little-endian AF_INET", LinkTypeNull, append(null(binary.LittleEndian, 2), v4...), false, ""},
		{"null big-endian AF_INET6 (Darwin)", LinkTypeNull, append(null(binary.BigEndian, 30), v6...), true, ""},
		{"null little-endian AF_INET6 (BSD)", LinkTypeNull, append(null(binary.LittleEndian, 24), v6...), true, ""},
		{"loop", LinkTypeLoop, append(null(binary.BigEndian, 2), v4...), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newClassic(binary.LittleEndian, false, tc.link).add(1, 0, tc.frame, 0)
			pkts, st, err := readAll(t, f.buf)
			if err != nil || len(pkts) != 1 {
				t.Fatalf("got %d packets, %v (stats %+v); want 1", len(pkts), err, st)
			}
			payload := tc.payload
			if payload == "" {
				payload = "rtp over v4"
				if tc.v6 {
					payload = "rtp over v6"
				}
			}
			if tc.v6 {
				wantPacket(t, pkts[0], "[2001:db8::a]:16384", "[2001:db8::b]:16386", payload)
			} else {
				wantPacket(t, pkts[0], "198.51.100.1:16384", "198.51.100.2:16386", payload)
			}
		})
	}
}

func TestSkippedFrames(t *testing.T) {
	ok := func(n int) []byte {
		return ethernet(etherTypeIPv4, nil, udp4("10.0.0.1", "10.0.0.2", 1000, 2000, fmt.Appendf(nil, "ok %d", n)))
	}
	frag := func(flags uint16) []byte {
		b := udp4("10.0.0.1", "10.0.0.2", 1000, 2000, []byte("fragment"))
		binary.BigEndian.PutUint16(b[6:], flags)
		return ethernet(etherTypeIPv4, nil, b)
	}
	v6frag := func(offsetFlags uint16, payload string) []byte {
		fh := []byte{protoUDP, 0, 0, 0, 0, 0, 0, 42}
		binary.BigEndian.PutUint16(fh[2:], offsetFlags)
		return ethernet(etherTypeIPv6, nil, ipv6("::1", "::2", 44, append(fh, udp(1000, 2000, []byte(payload))...)))
	}
	// hop-by-hop (8 bytes) then destination options (16 bytes) then UDP
	ext := append([]byte{60, 0, 1, 4, 0, 0, 0, 0}, append([]byte{protoUDP, 1, 1, 12}, make([]byte, 12)...)...)
	ext = append(ext, udp(1000, 2000, []byte("ok v6 ext"))...)
	shortUDP := udp4("10.0.0.1", "10.0.0.2", 1000, 2000, []byte("abc"))
	binary.BigEndian.PutUint16(shortUDP[24:], 7) // UDP length below its header
	longUDP := udp4("10.0.0.1", "10.0.0.2", 1000, 2000, []byte("abc"))
	binary.BigEndian.PutUint16(longUDP[24:], 100) // UDP length beyond the IP packet
	// UDP length past the IP packet into the Ethernet padding after it
	intoPadding := ethernet(etherTypeIPv4, nil, udp4("10.0.0.1", "10.0.0.2", 1000, 2000, []byte("abc")))
	binary.BigEndian.PutUint16(intoPadding[14+24:], 20)
	intoPadding = append(intoPadding, make([]byte, 60-len(intoPadding))...)
	zeroUDP := udp4("10.0.0.1", "10.0.0.2", 1000, 2000, []byte("abc"))
	binary.BigEndian.PutUint16(zeroUDP[24:], 0) // only IPv6 jumbograms may say 0
	badIHL := udp4("10.0.0.1", "10.0.0.2", 1000, 2000, []byte("abc"))
	badIHL[0] = 0x44
	bigUDP := udp4("10.0.0.1", "10.0.0.2", 1000, 2000, bytes.Repeat([]byte("a"), 200))

	f := newClassic(binary.LittleEndian, false, LinkTypeEthernet).
		add(1, 0, ok(1), 0).
		add(1, 0, ethernet(0x0806, nil, make([]byte, 28)), 0).                                              // ARP: NotIP
		add(1, 0, ethernet(etherTypeIPv4, nil, ipv4("10.0.0.1", "10.0.0.2", 6, nil, make([]byte, 20))), 0). // TCP
		add(1, 0, ethernet(etherTypeIPv6, nil, ipv6("::1", "::2", 58, make([]byte, 8))), 0).                // ICMPv6
		add(1, 0, ethernet(etherTypeIPv6, nil, ipv6("::1", "::2", 50, make([]byte, 16))), 0).               // ESP
		add(1, 0, frag(0x2000), 0).                                                                         // first fragment (MF)
		add(1, 0, frag(0x0010), 0).                                                                         // a later fragment
		add(1, 0, v6frag(0x0008|1, "v6 fragment"), 0).                                                      // IPv6 non-first fragment
		add(1, 0, v6frag(0, "ok v6 atomic"), 0).                                                            // atomic fragment: a whole datagram
		add(1, 0, ethernet(etherTypeIPv6, nil, ipv6("::1", "::2", 0, ext)), 0).
		add(1, 0, ethernet(etherTypeIPv4, nil, shortUDP), 0).
		add(1, 0, ethernet(etherTypeIPv4, nil, longUDP), 0).
		add(1, 0, ethernet(etherTypeIPv4, nil, badIHL), 0).
		add(1, 0, intoPadding, 0).
		add(1, 0, ethernet(etherTypeIPv4, nil, zeroUDP), 0).
		add(1, 0, ethernet(etherTypeIPv4, nil, bigUDP)[:14+20+8+50], 14+20+8+200). // snaplen cut
		add(1, 0, []byte{1, 2, 3}, 0).                                             // runt
		add(1, 0, ok(2), 0)
	pkts, st, err := readAll(t, f.buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pkts {
		got = append(got, string(p.Payload))
	}
	if want := "ok 1|ok v6 atomic|ok v6 ext|ok 2"; strings.Join(got, "|") != want {
		t.Errorf("payloads %q, want %q", strings.Join(got, "|"), want)
	}
	want := Stats{Frames: 18, UDP: 4, NotIP: 1, NotUDP: 3, Fragments: 3, Truncated: 1, Malformed: 6}
	if st != want {
		t.Errorf("stats\n got %+v\nwant %+v", st, want)
	}
	if st.Skipped() != 14 {
		t.Errorf("Skipped() = %d, want 14", st.Skipped())
	}
	if pkts[3].Frame != 18 {
		t.Errorf("last packet is frame %d, want 18", pkts[3].Frame)
	}
}

func TestUnknownLinkInPcapngIsSkipped(t *testing.T) {
	f := &ngFile{}
	f.shb(binary.LittleEndian).idb(LinkTypeRaw, 0, -1, 0).idb(147, 0, -1, 0). // USER0
											epb(1, 0, []byte("whatever")).
											epb(0, 0, udp4("10.0.0.1", "10.0.0.2", 1, 2, []byte("kept")))
	pkts, st, err := readAll(t, f.buf)
	if err != nil || len(pkts) != 1 || st.UnknownLink != 1 || st.Frames != 2 {
		t.Errorf("got %d packets, %v, stats %+v", len(pkts), err, st)
	}
	if _, err := NewReader(bytes.NewReader(newClassic(binary.LittleEndian, false, 147).buf)); err == nil || !strings.Contains(err.Error(), "link type") {
		t.Errorf("classic pcap with link type 147: %v, want an unsupported link type error", err)
	}
}

// Cutting a file anywhere gives the complete records before the cut and an
// io.ErrUnexpectedEOF, or a clean io.EOF when the cut falls between records.
func TestTruncatedFiles(t *testing.T) {
	classic := newClassic(binary.BigEndian, true, LinkTypeRaw)
	ng := (&ngFile{}).shb(binary.LittleEndian).idb(LinkTypeRaw, 0, 9, 0)
	var classicEnds, ngEnds []int // file size after each packet record
	for i := range 4 {
		p := udp4("10.0.0.1", "10.0.0.2", 1000, 2000, fmt.Appendf(nil, "packet %d", i))
		classic.add(uint32(i), 0, p, 0)
		classicEnds = append(classicEnds, len(classic.buf))
		ng.epb(0, uint64(i), p)
		ngEnds = append(ngEnds, len(ng.buf))
		ng.block(5, make([]byte, 8)) // a statistics block between packets
	}
	for _, tc := range []struct {
		name   string
		file   []byte
		header int
		ends   []int
	}{
		{"pcap", classic.buf, 24, classicEnds},
		{"pcapng", ng.buf, ngEnds[0] - 0, ngEnds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for cut := 0; cut < len(tc.file); cut++ {
				r, err := NewReader(bytes.NewReader(tc.file[:cut]))
				if cut < 24 && tc.name == "pcap" || cut < 28 && tc.name == "pcapng" {
					if err == nil {
						t.Fatalf("cut at %d: NewReader accepted a partial file header", cut)
					}
					continue
				}
				if err != nil {
					// pcapng: a cut inside the first section header.
					if !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("cut at %d: NewReader: %v, want io.ErrUnexpectedEOF", cut, err)
					}
					continue
				}
				complete := 0
				for _, e := range tc.ends {
					if e <= cut {
						complete++
					}
				}
				var n int
				for {
					p, err := r.Next()
					if err == nil {
						if want := fmt.Sprintf("packet %d", n); string(p.Payload) != want {
							t.Fatalf("cut at %d: packet %d is %q", cut, n, p.Payload)
						}
						n++
						continue
					}
					if n != complete {
						t.Fatalf("cut at %d: %d packets before %v, want %d", cut, n, err, complete)
					}
					atBoundary := err == io.EOF
					if !atBoundary && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("cut at %d: %v, want io.EOF or io.ErrUnexpectedEOF", cut, err)
					}
					if _, again := r.Next(); again != err {
						t.Fatalf("cut at %d: error not sticky: %v then %v", cut, err, again)
					}
					break
				}
			}
		})
	}
}

func TestHostileInput(t *testing.T) {
	le := binary.LittleEndian
	hugeRecord := newClassic(le, false, LinkTypeRaw).buf
	hugeRecord = le.AppendUint32(hugeRecord, 0)
	hugeRecord = le.AppendUint32(hugeRecord, 0)
	hugeRecord = le.AppendUint32(hugeRecord, 0xfffffff0)
	hugeRecord = le.AppendUint32(hugeRecord, 0xfffffff0)

	ngHead := func() *ngFile { return (&ngFile{}).shb(le).idb(LinkTypeRaw, 0, -1, 0) }
	rawBlock := func(f *ngFile, typ, total uint32, body []byte) []byte {
		b := le.AppendUint32(f.buf, typ)
		b = le.AppendUint32(b, total)
		return append(b, body...)
	}
	hugeEPB := rawBlock(ngHead(), 6, 0x7ffffffc, make([]byte, 64))
	hugeSkipped := rawBlock(ngHead(), 0x40000000, 0xfffffffc, make([]byte, 64))
	oddLength := rawBlock(ngHead(), 6, 33, make([]byte, 64))
	tiny := rawBlock(ngHead(), 6, 8, make([]byte, 64))
	badTrailer := ngHead().epb(0, 0, udp4("10.0.0.1", "10.0.0.2", 1, 2, nil)).buf
	badTrailer[len(badTrailer)-1] ^= 0xff
	capTooLong := ngHead().buf
	{
		f := &ngFile{order: le}
		body := le.AppendUint32(nil, 0)
		body = le.AppendUint64(body, 0)
		body = le.AppendUint32(body, 1000) // captured length beyond the block
		body = le.AppendUint32(body, 1000)
		capTooLong = append(capTooLong, f.block(6, append(body, make([]byte, 8)...)).buf...)
	}
	noIDB := (&ngFile{}).shb(le).epb(0, 0, udp4("10.0.0.1", "10.0.0.2", 1, 2, nil)).buf
	spbNoIDB := (&ngFile{}).shb(le).spb(udp4("10.0.0.1", "10.0.0.2", 1, 2, nil)).buf
	badResol := (&ngFile{}).shb(le).idb(LinkTypeRaw, 0, 20, 0).epb(0, 0, udp4("10.0.0.1", "10.0.0.2", 1, 2, nil)).buf
	badBOM := (&ngFile{}).shb(le).buf
	badBOM[8] = 0
	version2 := (&ngFile{}).shb(le).buf
	version2[12] = 2
	pcapVersion := newClassic(le, false, LinkTypeRaw).buf
	pcapVersion[4] = 3
	optionOverrun := (&ngFile{}).shb(le).buf
	{
		f := &ngFile{order: le}
		body := []byte{101, 0, 0, 0, 0, 0, 0, 0}
		body = le.AppendUint16(body, 9)
		body = le.AppendUint16(body, 200) // option longer than the block
		optionOverrun = append(optionOverrun, f.block(1, append(body, 1, 0, 0, 0)).buf...)
	}

	for _, tc := range []struct {
		name    string
		in      []byte
		want    error  // errors.Is target, from NewReader or Next
		contain string // in the message
	}{
		{"empty", nil, ErrNotCapture, "empty"},
		{"text", []byte("this is not a capture file at all"), ErrNotCapture, "magic"},
		{"wav", []byte("RIFF\x24\x00\x00\x00WAVEfmt "), ErrNotCapture, "magic"},
		{"modified pcap", []byte{0x34, 0xcd, 0xb2, 0xa1, 2, 0, 4, 0}, ErrNotCapture, "modified"},
		{"pcap version 3", pcapVersion, ErrCorrupt, "version"},
		{"pcap 4 GB record", hugeRecord, ErrCorrupt, "exceeds"},
		{"pcapng 2 GB packet block", hugeEPB, ErrCorrupt, "exceeds"},
		{"pcapng 4 GB unknown block", hugeSkipped, ErrCorrupt, "exceeds"},
		{"pcapng length not a multiple of 4", oddLength, ErrCorrupt, "length 33"},
		{"pcapng length below 12", tiny, ErrCorrupt, "length 8"},
		{"pcapng trailing length differs", badTrailer, ErrCorrupt, "trailing length"},
		{"pcapng captured length beyond block", capTooLong, ErrCorrupt, "captured length 1000"},
		{"pcapng packet without interface", noIDB, ErrCorrupt, "interface 0 is not described"},
		{"pcapng simple packet without interface", spbNoIDB, ErrCorrupt, "before any interface"},
		{"pcapng if_tsresol 10^-20", badResol, ErrCorrupt, "if_tsresol"},
		{"pcapng byte-order magic", badBOM, ErrCorrupt, "byte-order magic"},
		{"pcapng version 2", version2, ErrCorrupt, "version 2"},
		{"pcapng option overrun", optionOverrun, ErrCorrupt, "overruns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.in))
			for err == nil {
				_, err = r.Next()
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.contain) {
				t.Errorf("got %v, want %v containing %q", err, tc.want, tc.contain)
			}
		})
	}
}

// The reader never allocates a buffer from a length field: a 4 GB claim
// costs what the few bytes that are there cost.
func TestHostileLengthsDoNotAllocate(t *testing.T) {
	le := binary.LittleEndian
	f := (&ngFile{}).shb(le).idb(LinkTypeRaw, 0, -1, 0)
	in := le.AppendUint32(f.buf, 0x40000000) // an unknown block to be skipped
	in = le.AppendUint32(in, 0x03fffffc)
	in = append(in, make([]byte, 100)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := NewReader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
	runtime.ReadMemStats(&after)
	if per := after.TotalAlloc - before.TotalAlloc; per > 4*readerBufferSize {
		t.Errorf("reading a 64 MB block claim allocated %d bytes, want the read buffer and little else", per)
	}
}
