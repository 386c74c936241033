package pcap

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"time"
)

// Magic numbers as they read in little-endian order.
const (
	magicMicro        = 0xa1b2c3d4
	magicMicroSwapped = 0xd4c3b2a1
	magicNano         = 0xa1b23c4d
	magicNanoSwapped  = 0x4d3cb2a1
	magicModified     = 0xa1b2cd34 // Kuznetzov's patched libpcap, extra record fields
	magicModifiedSwap = 0x34cdb2a1

	blockSHB         = 0x0a0d0d0a // palindromic, so it reads the same in both orders
	blockIDB         = 0x00000001
	blockPacket      = 0x00000002 // obsolete Packet Block, still written by old tools
	blockSPB         = 0x00000003
	blockEPB         = 0x00000006
	byteOrderMagic   = 0x1a2b3c4d
	optEndOfOpt      = 0
	optIfTsresol     = 9
	optIfTsoffset    = 14
	maxInterfaces    = 1 << 16  // per section; each costs a few bytes of state
	maxSkippedBlock  = 64 << 20 // blocks we skip are discarded, not loaded, but a length this big is damage
	readerBufferSize = 64 << 10
)

// Reader reads UDP packets from a pcap or pcapng stream. It is not safe
// for concurrent use.
type Reader struct {
	br    *bufio.Reader
	ng    bool
	order binary.ByteOrder
	off   int64 // bytes consumed, for error messages

	// classic pcap
	link LinkType
	nano bool

	// pcapng: the interfaces of the current section
	ifaces []iface

	buf   []byte   // reused record buffer; Packets get copies
	hdr   [16]byte // record/block header scratch, here so it does not escape per call
	stats Stats
	err   error // sticky
}

type iface struct {
	link     LinkType
	snaplen  uint32
	perSec   uint64 // timestamp units per second (if_tsresol)
	offsetS  int64  // if_tsoffset, seconds
	resolErr error  // set when if_tsresol cannot be used
}

// NewReader reads the file header of a pcap or pcapng stream and returns
// a Reader positioned at the first record. It returns ErrNotCapture
// (wrapped) when the magic number is neither format's.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, readerBufferSize)}
	var m [4]byte
	if err := rd.readFull(m[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty input", ErrNotCapture)
		}
		return nil, fmt.Errorf("pcap: reading magic number: %w", err)
	}
	switch binary.LittleEndian.Uint32(m[:]) {
	case blockSHB:
		rd.ng = true
		var l [4]byte
		if err := rd.readFull(l[:]); err != nil {
			return nil, fmt.Errorf("pcapng: section header: %w", noEOF(err))
		}
		if err := rd.readSHB(l, 0); err != nil {
			return nil, err
		}
		return rd, nil
	case magicMicro:
		rd.order = binary.LittleEndian
	case magicMicroSwapped:
		rd.order = binary.BigEndian
	case magicNano:
		rd.order, rd.nano = binary.LittleEndian, true
	case magicNanoSwapped:
		rd.order, rd.nano = binary.BigEndian, true
	case magicModified, magicModifiedSwap:
		return nil, fmt.Errorf("%w: modified (Kuznetzov) pcap format is not supported; convert it with editcap", ErrNotCapture)
	default:
		return nil, fmt.Errorf("%w: magic number % x", ErrNotCapture, m)
	}
	var h [20]byte
	if err := rd.readFull(h[:]); err != nil {
		return nil, fmt.Errorf("pcap: reading file header: %w", noEOF(err))
	}
	if major := rd.order.Uint16(h[0:]); major != 2 {
		return nil, fmt.Errorf("%w: pcap version %d.%d, want 2.x", ErrCorrupt, major, rd.order.Uint16(h[2:]))
	}
	// The low 16 bits are the link type; the upper bits may describe an
	// FCS, which the IP and UDP lengths make irrelevant.
	rd.link = LinkType(rd.order.Uint32(h[16:]) & 0xffff)
	if !decodable(rd.link) {
		return nil, fmt.Errorf("pcap: link type %v is not supported", rd.link)
	}
	return rd, nil
}

// Next returns the next UDP packet. It skips, and counts in Stats, frames
// that are not UDP over IPv4/IPv6. At the end of the input it returns
// io.EOF; a record cut off by the end of the input gives an error wrapping
// io.ErrUnexpectedEOF (after every complete packet before it). Errors are
// sticky: once Next fails, it keeps returning the same error.
func (r *Reader) Next() (Packet, error) {
	for r.err == nil {
		data, link, t, err := r.nextRecord()
		if err != nil {
			r.err = err
			break
		}
		r.stats.Frames++
		src, dst, payload, why := decodeFrame(link, data)
		if why != kept {
			r.count(why)
			continue
		}
		r.stats.UDP++
		return Packet{Time: t, Src: src, Dst: dst, Payload: bytes.Clone(payload), Frame: r.stats.Frames}, nil
	}
	return Packet{}, r.err
}

// Skipped returns how many records so far were not UDP packets (see Stats
// for why).
func (r *Reader) Skipped() int { return r.stats.Skipped() }

// Stats returns the counts of records read so far.
func (r *Reader) Stats() Stats { return r.stats }

// ReadFile reads every UDP packet of a pcap or pcapng file. On an error
// after the header (a truncated last record, say) it returns the packets
// read before it together with the error.
func ReadFile(path string) ([]Packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pcap: %w", err)
	}
	defer f.Close()
	r, err := NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var pkts []Packet
	for {
		p, err := r.Next()
		if err == io.EOF {
			return pkts, nil
		}
		if err != nil {
			return pkts, fmt.Errorf("%s: %w", path, err)
		}
		pkts = append(pkts, p)
	}
}

func (r *Reader) count(why skipReason) {
	switch why {
	case notIP:
		r.stats.NotIP++
	case notUDP:
		r.stats.NotUDP++
	case fragment:
		r.stats.Fragments++
	case truncated:
		r.stats.Truncated++
	case malformed:
		r.stats.Malformed++
	case unknownLink:
		r.stats.UnknownLink++
	}
}

// nextRecord returns the link-layer bytes of the next packet record. The
// slice is valid until the next call.
func (r *Reader) nextRecord() ([]byte, LinkType, time.Time, error) {
	if r.ng {
		return r.nextBlock()
	}
	start := r.off
	h := r.hdr[:16]
	if err := r.readFull(h); err != nil {
		if err == io.EOF {
			return nil, 0, time.Time{}, io.EOF
		}
		return nil, 0, time.Time{}, fmt.Errorf("pcap: record %d at offset %d: header: %w", r.stats.Frames+1, start, err)
	}
	sec, frac, n := r.order.Uint32(h[0:]), r.order.Uint32(h[4:]), r.order.Uint32(h[8:])
	if n > MaxRecordSize {
		return nil, 0, time.Time{}, fmt.Errorf("%w: record %d at offset %d: captured length %d exceeds the %d-byte limit", ErrCorrupt, r.stats.Frames+1, start, n, MaxRecordSize)
	}
	data, err := r.load(int(n))
	if err != nil {
		return nil, 0, time.Time{}, fmt.Errorf("pcap: record %d at offset %d: %d-byte packet: %w", r.stats.Frames+1, start, n, noEOF(err))
	}
	ns := int64(frac)
	if !r.nano {
		ns *= 1000
	}
	return data, r.link, time.Unix(int64(sec), ns), nil
}

// nextBlock reads pcapng blocks until one carries a packet.
func (r *Reader) nextBlock() ([]byte, LinkType, time.Time, error) {
	for {
		start := r.off
		h := r.hdr[:8]
		if err := r.readFull(h); err != nil {
			if err == io.EOF {
				return nil, 0, time.Time{}, io.EOF
			}
			return nil, 0, time.Time{}, fmt.Errorf("pcapng: block at offset %d: header: %w", start, err)
		}
		typ := r.order.Uint32(h[0:])
		if typ == blockSHB {
			if err := r.readSHB([4]byte(h[4:]), start); err != nil {
				return nil, 0, time.Time{}, err
			}
			continue
		}
		total := r.order.Uint32(h[4:])
		if total < 12 || total%4 != 0 {
			return nil, 0, time.Time{}, fmt.Errorf("%w: pcapng block type %#x at offset %d: length %d", ErrCorrupt, typ, start, total)
		}
		switch typ {
		case blockIDB, blockEPB, blockSPB, blockPacket:
		default:
			if total > maxSkippedBlock {
				return nil, 0, time.Time{}, fmt.Errorf("%w: pcapng block type %#x at offset %d: length %d exceeds the %d-byte limit", ErrCorrupt, typ, start, total, maxSkippedBlock)
			}
			if err := r.skip(int64(total) - 8); err != nil {
				return nil, 0, time.Time{}, fmt.Errorf("pcapng: block type %#x at offset %d: %w", typ, start, noEOF(err))
			}
			continue
		}
		if total > MaxRecordSize {
			return nil, 0, time.Time{}, fmt.Errorf("%w: pcapng block type %#x at offset %d: length %d exceeds the %d-byte limit", ErrCorrupt, typ, start, total, MaxRecordSize)
		}
		body, err := r.blockBody(total, typ, start)
		if err != nil {
			return nil, 0, time.Time{}, err
		}
		if typ == blockIDB {
			if err := r.addInterface(body, start); err != nil {
				return nil, 0, time.Time{}, err
			}
			continue
		}
		return r.packetBlock(typ, body, start)
	}
}

// blockBody loads a block's body and checks its trailing length copy.
func (r *Reader) blockBody(total, typ uint32, start int64) ([]byte, error) {
	b, err := r.load(int(total) - 8)
	if err != nil {
		return nil, fmt.Errorf("pcapng: block type %#x at offset %d: %d-byte body: %w", typ, start, total, noEOF(err))
	}
	body, trailer := b[:len(b)-4], r.order.Uint32(b[len(b)-4:])
	if trailer != total {
		return nil, fmt.Errorf("%w: pcapng block type %#x at offset %d: length %d, trailing length %d", ErrCorrupt, typ, start, total, trailer)
	}
	return body, nil
}

// readSHB reads the rest of a section header block whose type and total
// length (still undecoded: the byte order comes after it) are consumed. A
// new section forgets the interfaces of the previous one and may change
// the byte order.
func (r *Reader) readSHB(rawLen [4]byte, start int64) error {
	var bom [4]byte
	if err := r.readFull(bom[:]); err != nil {
		return fmt.Errorf("pcapng: section header at offset %d: %w", start, noEOF(err))
	}
	switch {
	case binary.LittleEndian.Uint32(bom[:]) == byteOrderMagic:
		r.order = binary.LittleEndian
	case binary.BigEndian.Uint32(bom[:]) == byteOrderMagic:
		r.order = binary.BigEndian
	default:
		return fmt.Errorf("%w: pcapng section header at offset %d: byte-order magic % x", ErrCorrupt, start, bom)
	}
	total := r.order.Uint32(rawLen[:])
	if total < 28 || total%4 != 0 || total > MaxRecordSize {
		return fmt.Errorf("%w: pcapng section header at offset %d: length %d", ErrCorrupt, start, total)
	}
	b, err := r.load(int(total) - 12)
	if err != nil {
		return fmt.Errorf("pcapng: section header at offset %d: %w", start, noEOF(err))
	}
	if major := r.order.Uint16(b[0:]); major != 1 {
		return fmt.Errorf("%w: pcapng version %d.%d, want 1.x", ErrCorrupt, major, r.order.Uint16(b[2:]))
	}
	if trailer := r.order.Uint32(b[len(b)-4:]); trailer != total {
		return fmt.Errorf("%w: pcapng section header at offset %d: length %d, trailing length %d", ErrCorrupt, start, total, trailer)
	}
	r.ifaces = r.ifaces[:0]
	return nil
}

func (r *Reader) addInterface(body []byte, start int64) error {
	if len(body) < 8 {
		return fmt.Errorf("%w: pcapng interface description at offset %d: %d-byte body", ErrCorrupt, start, len(body))
	}
	if len(r.ifaces) >= maxInterfaces {
		return fmt.Errorf("%w: pcapng section declares more than %d interfaces", ErrCorrupt, maxInterfaces)
	}
	ifc := iface{
		link:    LinkType(r.order.Uint16(body[0:])),
		snaplen: r.order.Uint32(body[4:]),
		perSec:  1_000_000,
	}
	err := walkOptions(r.order, body[8:], func(code uint16, v []byte) error {
		switch code {
		case optIfTsresol:
			if len(v) != 1 {
				return fmt.Errorf("if_tsresol of %d bytes", len(v))
			}
			ifc.perSec, ifc.resolErr = tsUnits(v[0])
		case optIfTsoffset:
			if len(v) != 8 {
				return fmt.Errorf("if_tsoffset of %d bytes", len(v))
			}
			ifc.offsetS = int64(r.order.Uint64(v))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: pcapng interface %d at offset %d: %v", ErrCorrupt, len(r.ifaces), start, err)
	}
	r.ifaces = append(r.ifaces, ifc)
	return nil
}

func (r *Reader) packetBlock(typ uint32, body []byte, start int64) ([]byte, LinkType, time.Time, error) {
	fail := func(format string, args ...any) ([]byte, LinkType, time.Time, error) {
		return nil, 0, time.Time{}, fmt.Errorf("%w: pcapng packet %d (block at offset %d): %s", ErrCorrupt, r.stats.Frames+1, start, fmt.Sprintf(format, args...))
	}
	if typ == blockSPB {
		if len(r.ifaces) == 0 {
			return fail("simple packet block before any interface description")
		}
		if len(body) < 4 {
			return fail("%d-byte simple packet block", len(body))
		}
		ifc := r.ifaces[0]
		n := min(uint64(r.order.Uint32(body[0:])), uint64(len(body)-4))
		if ifc.snaplen > 0 {
			n = min(n, uint64(ifc.snaplen))
		}
		return body[4 : 4+n], ifc.link, time.Time{}, nil
	}
	// Enhanced and obsolete packet blocks share their layout but for the
	// interface id (32 bits, or 16 bits and a drop count).
	if len(body) < 20 {
		return fail("%d-byte packet block", len(body))
	}
	id := r.order.Uint32(body[0:])
	if typ == blockPacket {
		id = uint32(r.order.Uint16(body[0:]))
	}
	if id >= uint32(len(r.ifaces)) {
		return fail("interface %d is not described (%d interfaces)", id, len(r.ifaces))
	}
	ifc := r.ifaces[id]
	if ifc.resolErr != nil {
		return fail("interface %d: %v", id, ifc.resolErr)
	}
	ts := uint64(r.order.Uint32(body[4:]))<<32 | uint64(r.order.Uint32(body[8:]))
	n := r.order.Uint32(body[12:])
	if uint64(n) > uint64(len(body)-20) {
		return fail("captured length %d exceeds the %d-byte block", n, len(body)-20)
	}
	return body[20 : 20+n], ifc.link, ifc.time(ts), nil
}

// tsUnits decodes if_tsresol: the high bit chooses a power of two, else
// a power of ten, of units per second.
func tsUnits(v byte) (uint64, error) {
	if v&0x80 != 0 {
		if e := v & 0x7f; e <= 63 {
			return 1 << e, nil
		}
		return 1_000_000, fmt.Errorf("if_tsresol 2^-%d is finer than 64 bits can count", v&0x7f)
	}
	if v > 19 {
		return 1_000_000, fmt.Errorf("if_tsresol 10^-%d is finer than 64 bits can count", v)
	}
	u := uint64(1)
	for range v {
		u *= 10
	}
	return u, nil
}

func (i iface) time(ts uint64) time.Time {
	sec, frac := ts/i.perSec, ts%i.perSec
	// frac < perSec, so the 128-bit quotient fits in 64 bits.
	hi, lo := bits.Mul64(frac, 1e9)
	ns, _ := bits.Div64(hi, lo, i.perSec)
	return time.Unix(int64(sec)+i.offsetS, int64(ns))
}

// walkOptions calls fn for each pcapng option in b up to opt_endofopt.
func walkOptions(order binary.ByteOrder, b []byte, fn func(code uint16, value []byte) error) error {
	for len(b) >= 4 {
		code, n := order.Uint16(b[0:]), int(order.Uint16(b[2:]))
		if code == optEndOfOpt {
			return nil
		}
		padded := (n + 3) &^ 3
		if padded > len(b)-4 {
			return fmt.Errorf("option %d of %d bytes overruns the block", code, n)
		}
		if err := fn(code, b[4:4+n]); err != nil {
			return err
		}
		b = b[4+padded:]
	}
	return nil
}

// load reads n bytes into the reused record buffer.
func (r *Reader) load(n int) ([]byte, error) {
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	return b, r.readFull(b)
}

// readFull is io.ReadFull that keeps the offset: io.EOF only when nothing
// was read, io.ErrUnexpectedEOF when part was.
func (r *Reader) readFull(b []byte) error {
	n, err := io.ReadFull(r.br, b)
	r.off += int64(n)
	return err
}

func (r *Reader) skip(n int64) error {
	m, err := io.CopyN(io.Discard, r.br, n)
	r.off += m
	return err
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF, for reads that the format
// says must succeed.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
