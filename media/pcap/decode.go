package pcap

import (
	"encoding/binary"
	"net/netip"
)

// skipReason says why decodeFrame did not return a datagram.
type skipReason uint8

const (
	kept skipReason = iota
	notIP
	notUDP
	fragment
	truncated
	malformed
	unknownLink
)

const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100 // 802.1Q
	etherTypeQinQ  = 0x88a8 // 802.1ad
	etherTypeQinQ9 = 0x9100 // pre-standard double tagging
	protoUDP       = 17
)

func decodable(l LinkType) bool {
	switch l {
	case LinkTypeNull, LinkTypeEthernet, LinkTypeRaw, LinkTypeLoop, LinkTypeLinuxSLL,
		LinkTypeIPv4, LinkTypeIPv6, LinkTypeLinuxSLL2:
		return true
	}
	return false
}

// decodeFrame finds the UDP datagram in one link-layer frame. The payload
// aliases b.
func decodeFrame(link LinkType, b []byte) (src, dst netip.AddrPort, payload []byte, why skipReason) {
	be := binary.BigEndian
	var etherType uint16
	switch link {
	case LinkTypeEthernet:
		if len(b) < 14 {
			return src, dst, nil, malformed
		}
		etherType, b = be.Uint16(b[12:]), b[14:]
	case LinkTypeLinuxSLL:
		if len(b) < 16 {
			return src, dst, nil, malformed
		}
		etherType, b = be.Uint16(b[14:]), b[16:]
	case LinkTypeLinuxSLL2:
		if len(b) < 20 {
			return src, dst, nil, malformed
		}
		etherType, b = be.Uint16(b[0:]), b[20:]
	case LinkTypeRaw:
		return decodeIP(b)
	case LinkTypeIPv4:
		return decodeIPv4(b)
	case LinkTypeIPv6:
		return decodeIPv6(b)
	case LinkTypeNull, LinkTypeLoop:
		if len(b) < 4 {
			return src, dst, nil, malformed
		}
		// The address family is in the capturing host's byte order for
		// NULL; its values are small, so the order shows.
		family := be.Uint32(b)
		if link == LinkTypeNull && family&0xffff == 0 {
			family = binary.LittleEndian.Uint32(b)
		}
		b = b[4:]
		switch family {
		case 2: // AF_INET everywhere
			return decodeIPv4(b)
		case 10, 24, 28, 30: // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, Darwin
			return decodeIPv6(b)
		}
		return src, dst, nil, notIP
	default:
		return src, dst, nil, unknownLink
	}
	// Any number of VLAN tags; each shortens b, so the loop ends.
	for etherType == etherTypeVLAN || etherType == etherTypeQinQ || etherType == etherTypeQinQ9 {
		if len(b) < 4 {
			return src, dst, nil, malformed
		}
		etherType, b = be.Uint16(b[2:]), b[4:]
	}
	switch etherType {
	case etherTypeIPv4:
		return decodeIPv4(b)
	case etherTypeIPv6:
		return decodeIPv6(b)
	}
	return src, dst, nil, notIP
}

// decodeIP picks IPv4 or IPv6 by the version nibble.
func decodeIP(b []byte) (src, dst netip.AddrPort, payload []byte, why skipReason) {
	if len(b) == 0 {
		return src, dst, nil, malformed
	}
	switch b[0] >> 4 {
	case 4:
		return decodeIPv4(b)
	case 6:
		return decodeIPv6(b)
	}
	return src, dst, nil, notIP
}

func decodeIPv4(b []byte) (src, dst netip.AddrPort, payload []byte, why skipReason) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return src, dst, nil, malformed
	}
	hlen := int(b[0]&0x0f) * 4
	if hlen < 20 {
		return src, dst, nil, malformed
	}
	if len(b) < hlen {
		return src, dst, nil, truncated
	}
	// Any fragment, the first included: its UDP payload is incomplete.
	if flags := binary.BigEndian.Uint16(b[6:]); flags&0x1fff != 0 || flags&0x2000 != 0 {
		return src, dst, nil, fragment
	}
	if b[9] != protoUDP {
		return src, dst, nil, notUDP
	}
	total := int(binary.BigEndian.Uint16(b[2:]))
	if total == 0 {
		// Segmentation offload: the kernel fills it in after capture.
		total = len(b)
	}
	if total < hlen {
		return src, dst, nil, malformed
	}
	cut := total > len(b)
	if !cut {
		b = b[:total] // drop link-layer padding and FCS
	}
	srcIP := netip.AddrFrom4([4]byte(b[12:16]))
	dstIP := netip.AddrFrom4([4]byte(b[16:20]))
	return decodeUDP(srcIP, dstIP, b[hlen:], cut)
}

func decodeIPv6(b []byte) (src, dst netip.AddrPort, payload []byte, why skipReason) {
	if len(b) < 40 || b[0]>>4 != 6 {
		return src, dst, nil, malformed
	}
	srcIP := netip.AddrFrom16([16]byte(b[8:24]))
	dstIP := netip.AddrFrom16([16]byte(b[24:40]))
	next := b[6]
	end := 40 + int(binary.BigEndian.Uint16(b[4:]))
	if end == 40 {
		end = len(b) // jumbogram or segmentation offload
	}
	cut := end > len(b)
	if !cut {
		b = b[:end]
	}
	p := b[40:]
	// Each extension header shortens p by at least 8 bytes, so the walk ends.
	for next != protoUDP {
		var hlen int
		switch next {
		case 0, 43, 60, 135, 139, 140: // hop-by-hop, routing, destination, mobility, HIP, shim6
			if len(p) < 2 {
				return src, dst, nil, shortReason(cut)
			}
			hlen = (int(p[1]) + 1) * 8
		case 44: // fragment
			if len(p) < 8 {
				return src, dst, nil, shortReason(cut)
			}
			if off := binary.BigEndian.Uint16(p[2:]); off&0xfff8 != 0 || off&1 != 0 {
				return src, dst, nil, fragment
			}
			hlen = 8 // an atomic fragment: the whole datagram follows
		case 51: // authentication header
			if len(p) < 2 {
				return src, dst, nil, shortReason(cut)
			}
			hlen = (int(p[1]) + 2) * 4
		default: // TCP, ICMPv6, ESP, no next header, …
			return src, dst, nil, notUDP
		}
		if len(p) < hlen {
			return src, dst, nil, shortReason(cut)
		}
		next, p = p[0], p[hlen:]
	}
	return decodeUDP(srcIP, dstIP, p, cut)
}

// decodeUDP takes the UDP header and payload; cut says the IP layer
// claims more bytes than were captured.
func decodeUDP(srcIP, dstIP netip.Addr, p []byte, cut bool) (src, dst netip.AddrPort, payload []byte, why skipReason) {
	if len(p) < 8 {
		return src, dst, nil, shortReason(cut)
	}
	n := int(binary.BigEndian.Uint16(p[4:]))
	if n == 0 && srcIP.Is6() {
		n = len(p) // a jumbogram (RFC 2675)
	}
	if n < 8 {
		return src, dst, nil, malformed
	}
	if n > len(p) {
		return src, dst, nil, shortReason(cut)
	}
	src = netip.AddrPortFrom(srcIP, binary.BigEndian.Uint16(p[0:]))
	dst = netip.AddrPortFrom(dstIP, binary.BigEndian.Uint16(p[2:]))
	return src, dst, p[8:n], kept
}

// shortReason names a header that runs past the data: the snapshot length
// if the IP length says more was sent, else a bad length field.
func shortReason(cut bool) skipReason {
	if cut {
		return truncated
	}
	return malformed
}
