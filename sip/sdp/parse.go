package sdp

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Limits on hostile input. Real offers are well under 4 KiB and 150 lines
// (WebRTC offers with many ICE candidates included), with a handful of m=
// sections; the caps leave generous room while keeping Parse linear and its
// allocations small.
const (
	maxBodySize = 64 << 10
	maxLines    = 1024
	maxMedia    = 32
	// maxFormats caps the tokens on one m= line. RTP payload types are 7
	// bits, so anything beyond 128 can only be repeats.
	maxFormats = 128
	// maxErrSnippet bounds how much of a hostile line goes into an error
	// (and from there into logs).
	maxErrSnippet = 40
)

// Parse parses an SDP body. It accepts \r\n or \n line endings, ignores blank
// lines, trailing blanks and line types it has no use for (b=, t=, i=, ...),
// and requires v=0 first, one o= and one s= before the first m=, at least one
// m= line, and a c= address (session- or media-level) for every audio stream
// with a non-zero port. All errors wrap ErrMalformed.
func Parse(b []byte) (*Session, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	if len(b) > maxBodySize {
		return nil, fmt.Errorf("%w: body is %d bytes, limit is %d", ErrMalformed, len(b), maxBodySize)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return nil, fmt.Errorf("%w: NUL byte in body", ErrMalformed)
	}
	p := parser{s: &Session{}}
	// One conversion for the whole body: field strings share its memory
	// instead of costing an allocation per line.
	body := string(b)
	for len(body) > 0 {
		var line string
		if i := strings.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, ""
		}
		p.lineNo++
		if p.lineNo > maxLines {
			return nil, fmt.Errorf("%w: more than %d lines", ErrMalformed, maxLines)
		}
		line = strings.TrimRight(strings.TrimSuffix(line, "\r"), " \t")
		if line == "" {
			continue
		}
		if err := p.parseLine(line); err != nil {
			return nil, err
		}
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	return p.s, nil
}

type parser struct {
	s      *Session
	lineNo int
	line   string // current line, for error messages

	sawV, sawO, sawS, sawSessConn bool

	m        *Media // current m= section, nil at session level
	mRTP     bool   // current section's proto is RTP-based
	mSawConn bool
	mFormats [128]bool // payload types on the current m= line
}

func (p *parser) errf(format string, args ...any) error {
	return fmt.Errorf("%w: line %d %s: %s", ErrMalformed, p.lineNo, snippet(p.line), fmt.Sprintf(format, args...))
}

// snippet quotes s for an error message, truncated so a hostile line cannot
// flood logs.
func snippet(s string) string {
	if len(s) > maxErrSnippet {
		return strconv.Quote(s[:maxErrSnippet]) + "..."
	}
	return strconv.Quote(s)
}

func (p *parser) parseLine(line string) error {
	p.line = line
	if len(line) < 2 || line[1] != '=' {
		return p.errf("expected <type>=<value>")
	}
	typ, val := line[0], line[2:]
	if strings.IndexByte(val, '\r') >= 0 {
		return p.errf("bare CR inside line")
	}
	if !p.sawV {
		if typ != 'v' {
			return p.errf("first line must be v=")
		}
		if val != "0" {
			return p.errf("unsupported SDP version")
		}
		p.sawV = true
		return nil
	}
	switch typ {
	case 'v':
		return p.errf("repeated v= line")
	case 'o':
		if p.sawO || p.m != nil {
			return p.errf("o= must appear once, before the first m=")
		}
		p.sawO = true
		return p.parseOrigin(val)
	case 's':
		if p.sawS || p.m != nil {
			return p.errf("s= must appear once, before the first m=")
		}
		p.sawS = true
		p.s.Name = val
		return nil
	case 'c':
		return p.parseConnection(val)
	case 'm':
		return p.parseMedia(val)
	case 'a':
		return p.parseAttribute(val)
	}
	if typ < 'a' || typ > 'z' {
		return p.errf("invalid line type")
	}
	// Other types (i, u, e, p, b, t, r, z, k, and unknown letters) carry
	// nothing we use; RFC 8866 §5 says to ignore unknown ones.
	return nil
}

func (p *parser) parseOrigin(val string) error {
	f, ok := fields(val, 6)
	if !ok || len(f) != 6 {
		return p.errf("o= needs <username> <sess-id> <sess-version> <nettype> <addrtype> <address>")
	}
	id, ok := parseUint(f[1], 1<<64-1)
	if !ok {
		return p.errf("o= session id is not a decimal number")
	}
	ver, ok := parseUint(f[2], 1<<64-1)
	if !ok {
		return p.errf("o= session version is not a decimal number")
	}
	p.s.Origin = Origin{Username: f[0], SessionID: id, Version: ver, NetType: f[3], AddrType: f[4], Address: f[5]}
	return nil
}

func (p *parser) parseConnection(val string) error {
	f, ok := fields(val, 3)
	if !ok || len(f) != 3 {
		return p.errf("c= needs <nettype> <addrtype> <address>")
	}
	addr, err := connAddress(f[0], f[1], f[2])
	if err != nil {
		return p.errf("%v", err)
	}
	if p.m == nil {
		if p.sawSessConn {
			return p.errf("repeated session-level c= line")
		}
		p.sawSessConn = true
		p.s.Connection = addr
		return nil
	}
	// Several media-level c= lines only make sense for layered multicast,
	// which a voice server never receives; refuse the ambiguity.
	if p.mSawConn {
		return p.errf("repeated c= line in media section")
	}
	p.mSawConn = true
	p.m.Connection = addr
	return nil
}

// connAddress validates the network part of a c= (or a=rtcp) line and
// returns the address without any multicast /ttl or /count suffix. Hostnames
// are valid SDP and are kept; Negotiate refuses them since it does no DNS.
func connAddress(netType, addrType, address string) (string, error) {
	if netType != "IN" {
		return "", fmt.Errorf("unsupported network type %s", snippet(netType))
	}
	if addrType != "IP4" && addrType != "IP6" {
		return "", fmt.Errorf("unsupported address type %s", snippet(addrType))
	}
	host, _, _ := strings.Cut(address, "/")
	if host == "" {
		return "", fmt.Errorf("empty address")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("address %s has an IPv6 zone", snippet(host))
		}
		if (addrType == "IP4") != ip.Is4() {
			return "", fmt.Errorf("address %s does not match address type %s", snippet(host), addrType)
		}
		return host, nil
	}
	if !isHostname(host) {
		return "", fmt.Errorf("address %s is neither an IP address nor a hostname", snippet(host))
	}
	return host, nil
}

func isHostname(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (p *parser) parseMedia(val string) error {
	if len(p.s.Media) == maxMedia {
		return p.errf("more than %d m= sections", maxMedia)
	}
	f, ok := fields(val, 3+maxFormats)
	if !ok {
		return p.errf("more than %d formats", maxFormats)
	}
	if len(f) < 4 {
		return p.errf("m= needs <media> <port> <proto> <fmt> ...")
	}
	portStr, count, hasCount := strings.Cut(f[1], "/")
	port, ok := parseUint(portStr, 65535)
	if !ok {
		return p.errf("m= port is not a number in 0-65535")
	}
	// The port count (RFC 8866 §5.14) only matters for layered multicast;
	// check it is well formed and otherwise ignore it.
	if hasCount {
		if n, ok := parseUint(count, 65535); !ok || n == 0 {
			return p.errf("m= port count is not a positive number")
		}
	}
	p.s.Media = append(p.s.Media, Media{Type: f[0], Port: int(port), Proto: f[2]})
	p.m = &p.s.Media[len(p.s.Media)-1]
	p.mRTP = isRTPProto(f[2])
	p.mSawConn = false
	p.mFormats = [128]bool{}
	if !p.mRTP {
		return nil
	}
	for _, tok := range f[3:] {
		pt, ok := parseUint(tok, 127)
		if !ok {
			return p.errf("RTP format %s is not a payload type in 0-127", snippet(tok))
		}
		if !p.mFormats[pt] {
			p.mFormats[pt] = true
			p.m.Formats = append(p.m.Formats, uint8(pt))
		}
	}
	return nil
}

// isRTPProto reports whether formats are RTP payload types: RTP/AVP,
// RTP/SAVPF, UDP/TLS/RTP/SAVPF, TCP/RTP/AVP, ...
func isRTPProto(proto string) bool {
	return strings.Contains(strings.ToUpper(proto), "RTP/")
}

func (p *parser) parseAttribute(val string) error {
	name, value, _ := strings.Cut(val, ":")
	var dir *Direction
	if p.m == nil {
		dir = &p.s.Direction
	} else {
		dir = &p.m.Direction
	}
	switch d := Direction(name); d {
	case SendRecv, SendOnly, RecvOnly, Inactive:
		// Two different directions at one level leave hold state ambiguous.
		if *dir != "" && *dir != d {
			return p.errf("conflicting direction attributes %s and %s", *dir, d)
		}
		*dir = d
		return nil
	}
	// The remaining attributes we use are media-level and only meaningful
	// for RTP; others (rtcp-fb, ssrc, ice-*, ...) are skipped unparsed.
	if p.m == nil || !p.mRTP {
		return nil
	}
	switch name {
	case "rtpmap":
		return p.parseRTPMap(value)
	case "fmtp":
		return p.parseFmtp(value)
	case "ptime":
		return p.parsePtime(value)
	case "rtcp":
		return p.parseRTCP(value)
	case "rtcp-mux":
		p.m.RTCPMux = true
	}
	return nil
}

// parseRTPMap parses "<pt> <name>/<clock>[/<channels>]". Only an
// unreadable payload type fails the body: any other fault marks the PT
// malformed (see Media.Malformed), since the line may describe a codec
// nobody will use (RFC 4475's esc01 has "a=rtpmap:31 LPC" on video).
func (p *parser) parseRTPMap(value string) error {
	ptStr, enc, _ := strings.Cut(value, " ")
	pt, ok := parseUint(ptStr, 127)
	if !ok {
		return p.errf("rtpmap payload type is not in 0-127")
	}
	// An rtpmap for a PT not on the m= line describes nothing (RFC 8866
	// §6.6); dropping it also bounds the map by the format list.
	if !p.mFormats[pt] || p.m.Malformed[uint8(pt)] != "" {
		return nil
	}
	enc = strings.TrimSpace(enc)
	name, rest, _ := strings.Cut(enc, "/")
	clockStr, chStr, hasCh := strings.Cut(rest, "/")
	if name == "" || strings.ContainsAny(name, " \t") {
		return p.malformed(uint8(pt), "rtpmap encoding name is missing or has blanks")
	}
	clock, ok := parseUint(clockStr, 1<<31-1)
	if !ok || clock == 0 {
		return p.malformed(uint8(pt), "rtpmap clock rate is not a positive number")
	}
	var ch uint64
	if hasCh {
		if ch, ok = parseUint(chStr, 255); !ok || ch == 0 {
			return p.malformed(uint8(pt), "rtpmap channels is not a number in 1-255")
		}
	}
	rm := RTPMap{Name: name, ClockRate: int(clock), Channels: int(ch)}
	if old, dup := p.m.RTPMaps[uint8(pt)]; dup {
		// A PT with two meanings would make codec choice a coin toss.
		if old != rm {
			return p.malformed(uint8(pt), fmt.Sprintf("conflicting rtpmap for payload type %d", pt))
		}
		return nil
	}
	if p.m.RTPMaps == nil {
		p.m.RTPMaps = make(map[uint8]RTPMap)
	}
	p.m.RTPMaps[uint8(pt)] = rm
	return nil
}

// parseFmtp parses "<pt> <params>"; params are kept verbatim.
func (p *parser) parseFmtp(value string) error {
	ptStr, params, _ := strings.Cut(value, " ")
	pt, ok := parseUint(ptStr, 127)
	if !ok {
		return p.errf("fmtp payload type is not in 0-127")
	}
	if !p.mFormats[pt] || p.m.Malformed[uint8(pt)] != "" {
		return nil
	}
	params = strings.TrimSpace(params)
	if old, dup := p.m.Fmtp[uint8(pt)]; dup {
		if old != params {
			return p.malformed(uint8(pt), fmt.Sprintf("conflicting fmtp for payload type %d", pt))
		}
		return nil
	}
	if p.m.Fmtp == nil {
		p.m.Fmtp = make(map[uint8]string)
	}
	p.m.Fmtp[uint8(pt)] = params
	return nil
}

// malformed marks pt of the current m= section as badly described and
// forgets what was read for it; the line itself is skipped.
func (p *parser) malformed(pt uint8, why string) error {
	if p.m.Malformed == nil {
		p.m.Malformed = make(map[uint8]string)
	}
	p.m.Malformed[pt] = fmt.Sprintf("line %d %s: %s", p.lineNo, snippet(p.line), why)
	delete(p.m.RTPMaps, pt)
	delete(p.m.Fmtp, pt)
	return nil
}

// parsePtime accepts whole milliseconds; a fractional part ("20.0", seen
// from some gateways) is dropped.
func (p *parser) parsePtime(value string) error {
	whole, frac, hasFrac := strings.Cut(value, ".")
	if hasFrac && !isDigits(frac) {
		return p.errf("ptime is not a number")
	}
	ms, ok := parseUint(whole, 1000)
	if !ok || ms == 0 {
		return p.errf("ptime is not a number in 1-1000")
	}
	p.m.Ptime = int(ms)
	return nil
}

// parseRTCP parses "<port> [<nettype> <addrtype> <address>]" (RFC 3605).
func (p *parser) parseRTCP(value string) error {
	f, ok := fields(value, 4)
	if !ok || (len(f) != 1 && len(f) != 4) {
		return p.errf("rtcp needs <port> [<nettype> <addrtype> <address>]")
	}
	port, ok := parseUint(f[0], 65535)
	if !ok || port == 0 {
		return p.errf("rtcp port is not a number in 1-65535")
	}
	p.m.RTCPPort = int(port)
	p.m.RTCPConnection = ""
	if len(f) == 4 {
		addr, err := connAddress(f[1], f[2], f[3])
		if err != nil {
			return p.errf("rtcp: %v", err)
		}
		p.m.RTCPConnection = addr
	}
	return nil
}

func (p *parser) finish() error {
	p.line = ""
	switch {
	case !p.sawV:
		return fmt.Errorf("%w: no v= line", ErrMalformed)
	case !p.sawO:
		return fmt.Errorf("%w: no o= line", ErrMalformed)
	case !p.sawS:
		return fmt.Errorf("%w: no s= line", ErrMalformed)
	case len(p.s.Media) == 0:
		return fmt.Errorf("%w: no m= line", ErrMalformed)
	}
	for i := range p.s.Media {
		m := &p.s.Media[i]
		if m.Port != 0 && isAudio(m) && m.Connection == "" && p.s.Connection == "" {
			return fmt.Errorf("%w: audio m= section %d has no c= address", ErrMalformed, i)
		}
	}
	return nil
}

// fields splits s on runs of blanks like strings.Fields, but gives up (ok
// false) past max fields so a hostile line cannot make it allocate much.
func fields(s string, max int) (f []string, ok bool) {
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return f, true
		}
		if len(f) == max {
			return nil, false
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		f = append(f, s[:end])
		s = s[end:]
	}
}

// parseUint accepts only ASCII digits, so "+1", " 1" or "0x1" are refused
// rather than quietly reinterpreted.
func parseUint(s string, max uint64) (uint64, bool) {
	if !isDigits(s) || len(s) > 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > max {
		return 0, false
	}
	return v, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isAudio(m *Media) bool { return strings.EqualFold(m.Type, "audio") }
