package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"sync"
	"time"
)

// DefaultFlushInterval is how long a written packet may wait in the
// Writer's buffer before it reaches the underlying writer.
const DefaultFlushInterval = 200 * time.Millisecond

// ErrWriterClosed is returned by writes to a closed Writer.
var ErrWriterClosed = errors.New("pcap: writer closed")

// Writer writes UDP datagrams to a classic pcap stream, synthesizing the
// link-layer, IP and UDP headers. It is safe for concurrent use. Buffered
// packets are flushed at most a flush interval after they were written
// (DefaultFlushInterval unless WithFlushInterval says otherwise), so a
// process that is killed leaves a file that ends, at worst, in one
// partial record, which readers report and stop at.
type Writer struct {
	mu       sync.Mutex
	bw       *bufio.Writer
	file     io.Closer // closed by Close when the Writer created it
	link     LinkType
	nano     bool
	interval time.Duration
	timer    *time.Timer
	armed    bool           // timer scheduled and its callback not yet done
	pending  sync.WaitGroup // one per armed timer, so Close can wait for it
	ipID     uint16
	closed   bool
	err      error // sticky write error
	hdr      [16 + 14 + 40 + 8]byte
}

// A WriterOption configures a Writer.
type WriterOption func(*writerConfig)

type writerConfig struct {
	link     LinkType
	nano     bool
	interval time.Duration
}

// WithLinkType chooses the link layer: LinkTypeEthernet (the default, with
// made-up locally administered MAC addresses) or LinkTypeRaw (IP headers
// only). Other values make NewWriter fail.
func WithLinkType(l LinkType) WriterOption { return func(c *writerConfig) { c.link = l } }

// WithNanoseconds writes nanosecond timestamps (the pcap magic a1b23c4d)
// instead of microsecond ones. Wireshark, tshark, tcpdump and libpcap since
// 1.5 read both.
func WithNanoseconds() WriterOption { return func(c *writerConfig) { c.nano = true } }

// WithFlushInterval sets how long written packets may stay buffered. Zero
// flushes after every packet.
func WithFlushInterval(d time.Duration) WriterOption {
	return func(c *writerConfig) { c.interval = max(d, 0) }
}

// NewWriter writes a pcap file header to w and returns a Writer for the
// packets that follow. Close flushes the Writer but does not close w.
func NewWriter(w io.Writer, opts ...WriterOption) (*Writer, error) {
	c := writerConfig{link: LinkTypeEthernet, interval: DefaultFlushInterval}
	for _, o := range opts {
		o(&c)
	}
	if c.link != LinkTypeEthernet && c.link != LinkTypeRaw {
		return nil, fmt.Errorf("pcap: writing link type %v is not supported (use EN10MB or RAW)", c.link)
	}
	pw := &Writer{bw: bufio.NewWriterSize(w, 64<<10), link: c.link, nano: c.nano, interval: c.interval}
	var h [24]byte
	magic := uint32(magicMicro)
	if c.nano {
		magic = magicNano
	}
	le := binary.LittleEndian
	le.PutUint32(h[0:], magic)
	le.PutUint16(h[4:], 2)
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], MaxRecordSize) // snaplen
	le.PutUint32(h[20:], uint32(c.link))
	pw.bw.Write(h[:])
	// The header goes out now, so even a capture with no packets is a
	// valid file.
	if err := pw.bw.Flush(); err != nil {
		return nil, fmt.Errorf("pcap: writing file header: %w", err)
	}
	return pw, nil
}

// CreateFile creates (or truncates) the file at path and returns a Writer
// on it. Close closes the file.
func CreateFile(path string, opts ...WriterOption) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("pcap: %w", err)
	}
	w, err := NewWriter(f, opts...)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	w.file = f
	return w, nil
}

// WriteUDP writes one UDP datagram from src to dst captured at time t.
// Both addresses must be of one family; when both are IPv4 or
// IPv4-mapped IPv6 (as a dual-stack socket reports IPv4 peers) the packet
// is written as IPv4. t must fall between 1970 and 2106, the range of a pcap
// timestamp.
func (w *Writer) WriteUDP(t time.Time, src, dst netip.AddrPort, payload []byte) error {
	srcIP, dstIP := src.Addr(), dst.Addr()
	if !srcIP.IsValid() || !dstIP.IsValid() {
		return fmt.Errorf("pcap: invalid address in %v -> %v", src, dst)
	}
	v4 := srcIP.Unmap().Is4() && dstIP.Unmap().Is4()
	if v4 {
		srcIP, dstIP = srcIP.Unmap(), dstIP.Unmap()
	} else if srcIP.Is4() || dstIP.Is4() {
		return fmt.Errorf("pcap: %v -> %v mixes IPv4 and IPv6", src, dst)
	}
	maxPayload := 0xffff - 8 // the IPv6 payload length counts the UDP header
	if v4 {
		maxPayload -= 20 // the IPv4 total length counts the IP header too
	}
	if len(payload) > maxPayload {
		return fmt.Errorf("pcap: %d-byte UDP payload exceeds the %d-byte maximum", len(payload), maxPayload)
	}
	sec := t.Unix()
	if sec < 0 || sec > math.MaxUint32 {
		return fmt.Errorf("pcap: time %v is outside the pcap timestamp range", t)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	h := w.hdr[:]
	le, be := binary.LittleEndian, binary.BigEndian
	frac := uint32(t.Nanosecond())
	if !w.nano {
		frac /= 1000
	}
	n := 16
	if w.link == LinkTypeEthernet {
		macFor(h[n:n+6], dstIP)
		macFor(h[n+6:n+12], srcIP)
		typ := uint16(etherTypeIPv6)
		if v4 {
			typ = etherTypeIPv4
		}
		be.PutUint16(h[n+12:], typ)
		n += 14
	}
	udpLen := 8 + len(payload)
	ip := h[n:]
	if v4 {
		w.ipID++
		ip = ip[:20]
		clear(ip)
		ip[0] = 0x45
		be.PutUint16(ip[2:], uint16(20+udpLen))
		be.PutUint16(ip[4:], w.ipID)
		be.PutUint16(ip[6:], 0x4000) // don't fragment
		ip[8] = 64                   // TTL
		ip[9] = protoUDP
		s, d := srcIP.As4(), dstIP.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		be.PutUint16(ip[10:], ^onesSum(0, ip))
	} else {
		ip = ip[:40]
		clear(ip)
		ip[0] = 0x60
		be.PutUint16(ip[4:], uint16(udpLen))
		ip[6] = protoUDP
		ip[7] = 64 // hop limit
		s, d := srcIP.As16(), dstIP.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	n += len(ip)
	udp := h[n : n+8]
	be.PutUint16(udp[0:], src.Port())
	be.PutUint16(udp[2:], dst.Port())
	be.PutUint16(udp[4:], uint16(udpLen))
	be.PutUint16(udp[6:], udpChecksum(ip, v4, udp, payload))
	n += 8

	le.PutUint32(h[0:], uint32(sec))
	le.PutUint32(h[4:], frac)
	le.PutUint32(h[8:], uint32(n-16+len(payload)))
	le.PutUint32(h[12:], uint32(n-16+len(payload)))
	w.bw.Write(h[:n])
	if _, err := w.bw.Write(payload); err != nil {
		w.err = fmt.Errorf("pcap: write: %w", err)
		return w.err
	}
	if w.interval == 0 {
		return w.flushLocked()
	}
	if !w.armed {
		w.armed = true
		w.pending.Add(1)
		if w.timer == nil {
			w.timer = time.AfterFunc(w.interval, w.timedFlush)
		} else {
			w.timer.Reset(w.interval)
		}
	}
	return nil
}

// WritePacket writes p as WriteUDP does; Packet.Frame is ignored.
func (w *Writer) WritePacket(p Packet) error {
	return w.WriteUDP(p.Time, p.Src, p.Dst, p.Payload)
}

// Flush writes buffered packets to the underlying writer now.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrWriterClosed
	}
	return w.flushLocked()
}

// Close flushes buffered packets, stops the flush timer and, for a Writer
// from CreateFile, closes the file. Later writes return ErrWriterClosed;
// a second Close returns nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	if w.armed && w.timer.Stop() {
		// The callback will never run, so nobody else will mark it done.
		w.armed = false
		w.pending.Done()
	}
	err := w.flushLocked()
	if w.file != nil {
		if cerr := w.file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("pcap: %w", cerr)
		}
	}
	w.mu.Unlock()
	// A callback that had already fired when Stop was called is waiting
	// for the lock or finishing; it sees closed and returns.
	w.pending.Wait()
	return err
}

func (w *Writer) timedFlush() {
	defer w.pending.Done()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	if !w.closed {
		w.flushLocked()
	}
}

func (w *Writer) flushLocked() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("pcap: write: %w", err)
	}
	return w.err
}

// macFor fills a locally administered unicast MAC from the low four bytes
// of ip, so Wireshark's Ethernet view tells the hosts apart.
func macFor(mac []byte, ip netip.Addr) {
	b := ip.As16() // IPv4 comes out mapped, its four bytes last
	mac[0], mac[1] = 0x02, 0x00
	copy(mac[2:], b[12:])
}

// onesSum adds b as big-endian 16-bit words to sum with end-around carry
// (RFC 1071).
func onesSum(sum uint32, b []byte) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// udpChecksum computes the UDP checksum over the pseudo-header, the UDP
// header (with a zero checksum field) and the payload.
func udpChecksum(ip []byte, v4 bool, udp, payload []byte) uint16 {
	var sum uint32
	if v4 {
		sum = uint32(onesSum(0, ip[12:20]))
	} else {
		sum = uint32(onesSum(0, ip[8:40]))
	}
	sum += protoUDP + uint32(len(udp)+len(payload))
	sum += uint32(binary.BigEndian.Uint16(udp[0:])) + uint32(binary.BigEndian.Uint16(udp[2:])) + uint32(binary.BigEndian.Uint16(udp[4:]))
	c := ^onesSum(sum, payload)
	if c == 0 {
		return 0xffff // zero means "no checksum"
	}
	return c
}
