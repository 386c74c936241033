package pcap

import (
	"encoding/binary"
	"net/netip"
)

// Builders for hand-made frames and files, written from the format
// specifications independently of Writer, so reader tests do not trust the
// code they test.

// ipv4 returns an IPv4 header (with options if opts is non-empty) around
// payload, for transport proto.
func ipv4(src, dst string, proto byte, opts, payload []byte) []byte {
	hlen := 20 + len(opts)
	b := make([]byte, hlen, hlen+len(payload))
	b[0] = 0x40 | byte(hlen/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hlen+len(payload)))
	b[8], b[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], opts)
	return append(b, payload...)
}

// ipv6 returns an IPv6 header around payload; next is the first next-header
// value (the caller supplies any extension headers in payload).
func ipv6(src, dst string, next byte, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6], b[7] = next, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, payload...)
}

// udp returns a UDP header (checksum 0) and payload.
func udp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

func udp4(src, dst string, sport, dport uint16, payload []byte) []byte {
	return ipv4(src, dst, protoUDP, nil, udp(sport, dport, payload))
}

func udp6(src, dst string, sport, dport uint16, payload []byte) []byte {
	return ipv6(src, dst, protoUDP, udp(sport, dport, payload))
}

// ethernet prefixes an Ethernet header, with the VLAN tags given (each a
// TPID), for etherType.
func ethernet(etherType uint16, tpids []uint16, payload []byte) []byte {
	b := make([]byte, 12, 64)
	copy(b, []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1})
	for i, t := range tpids {
		b = binary.BigEndian.AppendUint16(b, t)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // TCI: the VLAN id
	}
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

// byteOrder is what binary.LittleEndian and binary.BigEndian both are.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// classicFile builds a classic pcap file.
type classicFile struct {
	order byteOrder
	nano  bool
	link  LinkType
	buf   []byte
}

func newClassic(order byteOrder, nano bool, link LinkType) *classicFile {
	c := &classicFile{order: order, nano: nano, link: link}
	magic := uint32(0xa1b2c3d4)
	if nano {
		magic = 0xa1b23c4d
	}
	c.buf = order.AppendUint32(c.buf, magic)
	c.buf = order.AppendUint16(c.buf, 2)
	c.buf = order.AppendUint16(c.buf, 4)
	c.buf = order.AppendUint32(c.buf, 0)     // thiszone
	c.buf = order.AppendUint32(c.buf, 0)     // sigfigs
	c.buf = order.AppendUint32(c.buf, 65535) // snaplen
	c.buf = order.AppendUint32(c.buf, uint32(link))
	return c
}

// add appends a record; orig is the original length (0: len(frame)).
func (c *classicFile) add(sec, frac uint32, frame []byte, orig int) *classicFile {
	if orig == 0 {
		orig = len(frame)
	}
	c.buf = c.order.AppendUint32(c.buf, sec)
	c.buf = c.order.AppendUint32(c.buf, frac)
	c.buf = c.order.AppendUint32(c.buf, uint32(len(frame)))
	c.buf = c.order.AppendUint32(c.buf, uint32(orig))
	c.buf = append(c.buf, frame...)
	return c
}

// ngFile builds a pcapng file block by block.
type ngFile struct {
	order byteOrder
	buf   []byte
}

func (f *ngFile) block(typ uint32, body []byte) *ngFile {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	total := uint32(12 + len(body))
	f.buf = f.order.AppendUint32(f.buf, typ)
	f.buf = f.order.AppendUint32(f.buf, total)
	f.buf = append(f.buf, body...)
	f.buf = f.order.AppendUint32(f.buf, total)
	return f
}

// shb starts a section in order (which then applies to later blocks).
func (f *ngFile) shb(order byteOrder) *ngFile {
	f.order = order
	var b []byte
	b = order.AppendUint32(b, 0x1a2b3c4d)
	b = order.AppendUint16(b, 1)
	b = order.AppendUint16(b, 0)
	b = order.AppendUint64(b, ^uint64(0))        // section length unknown
	b = f.option(b, 4, []byte("voxbridge test")) // shb_userappl
	b = f.option(b, 0, nil)
	return f.block(0x0a0d0d0a, b)
}

func (f *ngFile) option(b []byte, code uint16, v []byte) []byte {
	b = f.order.AppendUint16(b, code)
	b = f.order.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// idb describes an interface; tsresol < 0 leaves the default (µs);
// tsoffset 0 leaves it out.
func (f *ngFile) idb(link LinkType, snaplen uint32, tsresol int, tsoffset int64) *ngFile {
	var b []byte
	b = f.order.AppendUint16(b, uint16(link))
	b = f.order.AppendUint16(b, 0)
	b = f.order.AppendUint32(b, snaplen)
	b = f.option(b, 2, []byte("if0")) // if_name, to be skipped
	if tsresol >= 0 {
		b = f.option(b, 9, []byte{byte(tsresol)})
	}
	if tsoffset != 0 {
		b = f.option(b, 14, f.order.AppendUint64(nil, uint64(tsoffset)))
	}
	b = f.option(b, 0, nil)
	return f.block(1, b)
}

func (f *ngFile) epb(ifc uint32, ts uint64, frame []byte) *ngFile {
	var b []byte
	b = f.order.AppendUint32(b, ifc)
	b = f.order.AppendUint32(b, uint32(ts>>32))
	b = f.order.AppendUint32(b, uint32(ts))
	b = f.order.AppendUint32(b, uint32(len(frame)))
	b = f.order.AppendUint32(b, uint32(len(frame)))
	b = append(b, frame...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = f.option(b, 1, []byte("a comment")) // opt_comment
	return f.block(6, b)
}

func (f *ngFile) spb(frame []byte) *ngFile {
	b := f.order.AppendUint32(nil, uint32(len(frame)))
	return f.block(3, append(b, frame...))
}

// oldPacket writes the obsolete Packet Block (type 2).
func (f *ngFile) oldPacket(ifc uint16, ts uint64, frame []byte) *ngFile {
	var b []byte
	b = f.order.AppendUint16(b, ifc)
	b = f.order.AppendUint16(b, 0) // drops
	b = f.order.AppendUint32(b, uint32(ts>>32))
	b = f.order.AppendUint32(b, uint32(ts))
	b = f.order.AppendUint32(b, uint32(len(frame)))
	b = f.order.AppendUint32(b, uint32(len(frame)))
	return f.block(2, append(b, frame...))
}
