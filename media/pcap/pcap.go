// Package pcap reads and writes packet captures of UDP traffic, with the
// standard library only.
//
// The Reader understands classic pcap (either byte order, microsecond or
// nanosecond timestamps) and pcapng (sections of either byte order,
// several interfaces with their own link type and timestamp resolution),
// over Ethernet (with 802.1Q/802.1ad tags), Linux cooked capture v1 and v2,
// raw IP and BSD loopback. It returns the UDP datagrams it finds, over IPv4
// or IPv6, and counts every frame it skips and why. It is meant for files
// from anywhere, so every length it reads is bounded and checked: a hostile
// or damaged file gives an error, never a panic or a large allocation.
//
// The Writer produces classic pcap files that Wireshark, tshark, tcpdump and
// SIPp read, with synthesized IPv4/IPv6 and UDP headers; it is safe for
// concurrent use and flushes on its own, so a killed process leaves a
// readable file.
package pcap

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Packet is one UDP datagram from a capture.
type Packet struct {
	// Time is the capture time. It is the zero Time for pcapng simple
	// packet blocks, which carry none.
	Time time.Time
	// Src and Dst are the IP addresses and UDP ports. IPv4 addresses are
	// 4-byte addresses (Is4); IPv6 ones are kept as they were captured.
	Src, Dst netip.AddrPort
	// Payload is the UDP payload. It is owned by the Packet: the Reader
	// never reuses it.
	Payload []byte
	// Frame is the 1-based number of the record in the file, counting
	// every packet record (the same number tshark shows as frame.number).
	Frame int
}

// LinkType is a pcap/pcapng link-layer header type (LINKTYPE_* in the
// tcpdump.org registry).
type LinkType uint16

// The link types the Reader decodes. The Writer writes LinkTypeEthernet
// and LinkTypeRaw.
const (
	LinkTypeNull      LinkType = 0   // BSD loopback, host-order address family
	LinkTypeEthernet  LinkType = 1   // Ethernet II, with optional VLAN tags
	LinkTypeRaw       LinkType = 101 // raw IPv4 or IPv6, from the version nibble
	LinkTypeLoop      LinkType = 108 // OpenBSD loopback, network-order address family
	LinkTypeLinuxSLL  LinkType = 113 // Linux cooked capture v1
	LinkTypeIPv4      LinkType = 228 // raw IPv4
	LinkTypeIPv6      LinkType = 229 // raw IPv6
	LinkTypeLinuxSLL2 LinkType = 276 // Linux cooked capture v2
)

func (l LinkType) String() string {
	switch l {
	case LinkTypeNull:
		return "NULL"
	case LinkTypeEthernet:
		return "EN10MB"
	case LinkTypeRaw:
		return "RAW"
	case LinkTypeLoop:
		return "LOOP"
	case LinkTypeLinuxSLL:
		return "LINUX_SLL"
	case LinkTypeIPv4:
		return "IPV4"
	case LinkTypeIPv6:
		return "IPV6"
	case LinkTypeLinuxSLL2:
		return "LINUX_SLL2"
	}
	return fmt.Sprintf("LINKTYPE(%d)", uint16(l))
}

// MaxRecordSize bounds the captured length of one packet record and the
// size of any pcapng block the Reader loads into memory. Bigger records
// are reported as corrupt rather than allocated.
const MaxRecordSize = 256 << 10

var (
	// ErrNotCapture is returned by NewReader when the input starts with
	// neither a pcap nor a pcapng magic number.
	ErrNotCapture = errors.New("pcap: not a pcap or pcapng file")
	// ErrCorrupt is wrapped by errors about impossible lengths, unknown
	// interfaces and other structural damage in a capture.
	ErrCorrupt = errors.New("pcap: corrupt capture")
)

// Stats counts the records a Reader has read, by what became of them.
type Stats struct {
	Frames int // packet records read
	UDP    int // records returned as Packets

	// The rest are skipped; Reader.Skipped is their sum.
	NotIP       int // link-layer payload is not IPv4/IPv6 (ARP, LLDP, …)
	NotUDP      int // IP, but the transport is not UDP (TCP, ICMP, ESP, …)
	Fragments   int // IP fragments; the Reader does not reassemble them
	Truncated   int // cut short by the snapshot length
	Malformed   int // headers that contradict themselves
	UnknownLink int // recorded on an interface with a link type not decoded here
}

// Skipped returns how many records were not returned as Packets.
func (s Stats) Skipped() int {
	return s.NotIP + s.NotUDP + s.Fragments + s.Truncated + s.Malformed + s.UnknownLink
}
