package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzReader feeds arbitrary bytes to the Reader: it must never panic or
// loop, every error after the header must be classified (end, truncation
// or corruption), the counts must add up, and whatever it returns the
// Writer must write and the Reader read back the same.
func FuzzReader(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		var pkts []Packet
		for {
			p, err := r.Next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("unclassified error: %v", err)
				}
				break
			}
			if len(p.Payload) > MaxRecordSize || !p.Src.IsValid() || !p.Dst.IsValid() || p.Frame != r.Stats().Frames {
				t.Fatalf("bad packet: %d bytes, %v -> %v, frame %d of %d", len(p.Payload), p.Src, p.Dst, p.Frame, r.Stats().Frames)
			}
			pkts = append(pkts, p)
		}
		if st := r.Stats(); st.Frames != st.UDP+st.Skipped() || st.UDP != len(pkts) {
			t.Fatalf("stats do not add up: %+v with %d packets", st, len(pkts))
		}

		var buf bytes.Buffer
		w, err := NewWriter(&buf, WithNanoseconds())
		if err != nil {
			t.Fatal(err)
		}
		var written []Packet
		for _, p := range pkts {
			if p.Time.Unix() < 0 || p.Time.Unix() > 1<<32-1 || len(p.Payload) > 65507 {
				continue // outside what classic pcap or IPv4 can carry
			}
			if err := w.WritePacket(p); err != nil {
				t.Fatalf("writing %v -> %v, %d bytes: %v", p.Src, p.Dst, len(p.Payload), err)
			}
			written = append(written, p)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		back, err := NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range written {
			got, err := back.Next()
			if err != nil {
				t.Fatalf("re-reading packet %d: %v", i, err)
			}
			if want.Src.Addr().Unmap().Is4() && want.Dst.Addr().Unmap().Is4() {
				want.Src = netip.AddrPortFrom(want.Src.Addr().Unmap(), want.Src.Port())
				want.Dst = netip.AddrPortFrom(want.Dst.Addr().Unmap(), want.Dst.Port())
			}
			if !got.Time.Equal(want.Time) || got.Src != want.Src || got.Dst != want.Dst || !bytes.Equal(got.Payload, want.Payload) {
				t.Fatalf("packet %d changed in a round trip: %v %v -> %v %x, was %v %v -> %v %x",
					i, got.Time, got.Src, got.Dst, got.Payload, want.Time, want.Src, want.Dst, want.Payload)
			}
		}
	})
}

func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, opts := range [][]WriterOption{
		{WithLinkType(LinkTypeEthernet)},
		{WithLinkType(LinkTypeRaw), WithNanoseconds()},
	} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, opts...)
		if err != nil {
			f.Fatal(err)
		}
		for _, s := range testTraffic()[:3] {
			w.WriteUDP(s.t, s.src, s.dst, s.payload)
		}
		w.WriteUDP(time.Unix(1700000000, 0), ap("[::1]:1"), ap("[::2]:2"), []byte("v6"))
		w.Close()
		seeds = append(seeds, buf.Bytes())
	}
	v4 := udp4("10.0.0.1", "10.0.0.2", 1000, 2000, []byte("seed"))
	v6 := udp6("::1", "::2", 1000, 2000, []byte("seed"))
	seeds = append(seeds,
		newClassic(binary.BigEndian, false, LinkTypeLinuxSLL).add(1, 2, append(sll(etherTypeIPv4), v4...), 0).buf,
		newClassic(binary.LittleEndian, true, LinkTypeEthernet).add(1, 2, ethernet(etherTypeIPv6, []uint16{etherTypeVLAN}, v6), 0).buf,
		newClassic(binary.LittleEndian, false, LinkTypeNull).add(1, 2, append(null(binary.LittleEndian, 2), v4...), 0).buf,
	)
	for _, order := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
		ng := (&ngFile{}).shb(order).
			idb(LinkTypeEthernet, 0, 9, 0).idb(LinkTypeLinuxSLL2, 128, 0x80|10, 7).
			epb(0, 1<<40, ethernet(etherTypeIPv4, nil, v4)).
			block(5, make([]byte, 8)).
			epb(1, 1<<30, append(sll2(etherTypeIPv6), v6...)).
			spb(ethernet(etherTypeIPv4, nil, v4)).
			oldPacket(1, 5, append(sll2(etherTypeIPv4), v4...))
		seeds = append(seeds, ng.buf)
	}
	files, _ := filepath.Glob(filepath.Join(fixtures, "*.pcap*"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}
