package sip

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// ProtectConfig bounds what the SIP listeners accept from the network.
// Zero values take the defaults; a negative number turns that limit off.
type ProtectConfig struct {
	// MaxMessageSize caps one SIP message, headers and body; default
	// 64 KiB. (sipgo reads UDP datagrams into 32 KiB, so over UDP a larger
	// one arrives cut and is refused as malformed.)
	MaxMessageSize int
	// MaxHeaders caps the header fields of a message; default 128 (a
	// call's INVITE has about 20).
	MaxHeaders int
	// MaxLineLength caps one line of the header section; default 8 KiB.
	MaxLineLength int

	// SourceRate is the sustained messages per second one source IP may
	// send, with bursts up to SourceBurst; defaults 50/s and 200. A source
	// over it is banned for BanDuration (default 10 min): everything it
	// sends is dropped unanswered, and its TCP/TLS connections closed.
	SourceRate  float64
	SourceBurst int
	BanDuration time.Duration
	// TrustedSources are exempt from the per-source rate (never from the
	// call caps). nil means loopback (127.0.0.0/8 and ::1), as fail2ban
	// does, so local load tests and SIPp work; an empty non-nil slice
	// trusts nobody. Trunks' inbound addresses are always exempt.
	TrustedSources []netip.Prefix

	// MaxCallsPerSecond caps new inbound calls (INVITEs that passed
	// authentication) per second over the whole server, with bursts of
	// as many; default 300. MaxCalls caps concurrent inbound calls;
	// default 2000. MaxGoroutines refuses new calls while the process
	// runs more goroutines than this, a sign it is falling behind; default
	// 200 000. All three answer 503 with Retry-After, as does Backlogged.
	MaxCallsPerSecond float64
	MaxCalls          int
	MaxGoroutines     int
	// RetryAfter is the Retry-After of those 503s; default 5 s.
	RetryAfter time.Duration
	// Backlogged, when set, refuses new calls (503) while it says the
	// records of the calls already up are falling behind: their writes
	// must never be put at risk by more calls.
	Backlogged func() bool

	// SilentUnknown: requests other than REGISTER from sources that are
	// neither a trunk's address nor an address that authenticated (as an
	// extension or a trunk account) within KnownFor get no answer at all.
	// REGISTER is always answered (identically for unknown users), or
	// phones could never register. KnownFor defaults to 2 h, the longest
	// registration.
	SilentUnknown bool
	KnownFor      time.Duration

	// TCP and TLS: a connection must finish its TLS handshake and send a
	// first message within HandshakeTimeout (default 10 s) and is closed
	// after IdleTimeout without traffic either way (default 10 min; phones
	// on TCP keep alive with CRLF or re-REGISTER sooner). MaxConnsPerSource
	// caps open connections from one IP (default 32), MaxConns all of them
	// (default 10 000).
	HandshakeTimeout  time.Duration
	IdleTimeout       time.Duration
	MaxConnsPerSource int
	MaxConns          int
}

func (p *ProtectConfig) setDefaults() {
	p.MaxMessageSize = cmp.Or(p.MaxMessageSize, 64<<10)
	p.MaxHeaders = cmp.Or(p.MaxHeaders, 128)
	p.MaxLineLength = cmp.Or(p.MaxLineLength, 8<<10)
	p.SourceRate = cmp.Or(p.SourceRate, 50)
	p.SourceBurst = max(cmp.Or(p.SourceBurst, 200), 1)
	p.BanDuration = cmp.Or(p.BanDuration, 10*time.Minute)
	if p.TrustedSources == nil {
		p.TrustedSources = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	p.MaxCallsPerSecond = cmp.Or(p.MaxCallsPerSecond, 300)
	p.MaxCalls = cmp.Or(p.MaxCalls, 2000)
	p.MaxGoroutines = cmp.Or(p.MaxGoroutines, 200_000)
	p.RetryAfter = cmp.Or(p.RetryAfter, 5*time.Second)
	p.KnownFor = cmp.Or(p.KnownFor, 2*time.Hour)
	p.HandshakeTimeout = cmp.Or(p.HandshakeTimeout, 10*time.Second)
	p.IdleTimeout = cmp.Or(p.IdleTimeout, 10*time.Minute)
	p.MaxConnsPerSource = cmp.Or(p.MaxConnsPerSource, 32)
	p.MaxConns = cmp.Or(p.MaxConns, 10_000)
}

// maxUDPPayload is the largest UDP payload over IPv4 (65535 less the IP
// and UDP headers).
const maxUDPPayload = 65507

func init() {
	// sipgo refuses to write any UDP message over 1300 bytes (UDPMTUSize
	// less 200), for RFC 3261 §18.1.1, which wants such requests sent over
	// TCP; sipgo does not switch, it fails. Responses have no such rule
	// (§18.2.2 sends them as the Via says), and one echoing a large
	// request's headers, e.g. RFC 4475 longreq's, was silently lost. So
	// UDP carries whatever fits a datagram, as IP fragments if need be;
	// MaxMessageSize still bounds what we accept.
	sip.UDPMTUSize = maxUDPPayload + 200
}

// Refusal reasons, as counted and logged.
const (
	RefusedBanned        = "banned"           // dropped: the source is banned
	RefusedRate          = "rate"             // dropped: the source went over its rate (and is now banned)
	RefusedTooLarge      = "too_large"        // 400 (UDP) or connection closed (TCP)
	RefusedHeaders       = "too_many_headers" // 400
	RefusedLineLength    = "line_too_long"    // 400
	RefusedMalformed     = "malformed"        // 400: the parser refused it
	RefusedInvalid       = "invalid"          // 400/505/416/420: parsed but not valid SIP
	RefusedSilentUnknown = "silent_unknown"   // dropped: --sip-silent-unknown
	RefusedCPS           = "calls_per_second" // 503
	RefusedMaxCalls      = "max_calls"        // 503
	RefusedOverload      = "overload"         // 503
	RefusedBacklog       = "store_backlog"    // 503: the record writes are behind
	RefusedConnLimit     = "conn_limit"       // TCP/TLS connection closed at accept
	RefusedAcceptError   = "accept_error"     // accept failed (e.g. EMFILE); the loop waits and goes on
)

var refusalReasons = []string{RefusedBanned, RefusedRate, RefusedTooLarge, RefusedHeaders, RefusedLineLength,
	RefusedMalformed, RefusedInvalid, RefusedSilentUnknown, RefusedCPS, RefusedMaxCalls, RefusedOverload,
	RefusedBacklog, RefusedConnLimit, RefusedAcceptError}

// supportedExtensions are the option tags a Require header may name
// (RFC 3261 §8.2.2.3); any other gets 420 Bad Extension.
var supportedExtensions = map[string]bool{"timer": true, "replaces": true, "norefersub": true}

// protector guards the listeners: per-source rate and bans, message caps
// and validation, silent-unknown, call caps, and counting of it all.
type protector struct {
	cfg ProtectConfig
	log *slog.Logger
	now func() time.Time
	// isTrunk reports whether ip is a trunk's inbound address.
	isTrunk func(netip.Addr) bool
	// inDialog reports whether a Call-ID belongs to a live call, e.g. a
	// carrier's BYE to a call we placed (SilentUnknown lets it through).
	inDialog func(callID string) bool
	// udpReply sends a raw answer from the UDP listener.
	udpReply func(b []byte, to net.Addr)
	udpLocal string // the UDP listener's address, to tell its datagrams from client sockets'

	refused map[string]*atomic.Uint64

	mu      sync.Mutex
	sources map[netip.Addr]*sourceState
	known   map[netip.Addr]time.Time // expiry; for SilentUnknown
	cps     tokenBucket

	logMu      sync.Mutex
	logBucket  tokenBucket
	suppressed int

	conns connRegistry
}

type sourceState struct {
	bucket      tokenBucket
	bannedUntil time.Time
}

// maxTrackedSources bounds the per-source table under a spoofed flood.
const maxTrackedSources = 100_000

func newProtector(cfg ProtectConfig, log *slog.Logger) *protector {
	p := &protector{cfg: cfg, log: log, now: time.Now, refused: map[string]*atomic.Uint64{},
		sources: map[netip.Addr]*sourceState{}, known: map[netip.Addr]time.Time{}}
	for _, r := range refusalReasons {
		p.refused[r] = new(atomic.Uint64)
	}
	if cfg.MaxCallsPerSecond > 0 {
		p.cps = newTokenBucket(cfg.MaxCallsPerSecond, max(cfg.MaxCallsPerSecond, 1), time.Now())
	}
	// At most one log line a second about bad input, after a burst of 10.
	p.logBucket = newTokenBucket(1, 10, time.Now())
	p.conns.init()
	return p
}

// tokenBucket is a rate limiter: tokens refill at rate per second up to
// burst; each event takes one.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newTokenBucket(rate, burst float64, now time.Time) tokenBucket {
	return tokenBucket{rate: rate, burst: burst, tokens: burst, last: now}
}

func (b *tokenBucket) take(now time.Time) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// refuse counts a refusal and logs it, rate-limited, with the message
// truncated.
func (p *protector) refuse(reason string, src net.Addr, msg []byte, detail string) {
	n := p.refused[reason].Add(1)
	p.logMu.Lock()
	ok := p.logBucket.take(p.now())
	suppressed := p.suppressed
	if ok {
		p.suppressed = 0
	} else {
		p.suppressed++
	}
	p.logMu.Unlock()
	if !ok {
		return
	}
	args := []any{"reason", reason, "count", n, "source", addrString(src)}
	if detail != "" {
		args = append(args, "detail", truncate(detail, 200))
	}
	if msg != nil {
		args = append(args, "message", strconv.Quote(truncate(string(msg), 200)))
	}
	if suppressed > 0 {
		args = append(args, "suppressed_before", suppressed)
	}
	p.log.Info("sip refused", args...)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Refusals returns how many messages, calls and connections were refused,
// by reason (the Refused* constants).
func (s *Server) Refusals() map[string]uint64 {
	out := make(map[string]uint64, len(s.protect.refused))
	for r, c := range s.protect.refused {
		out[r] = c.Load()
	}
	return out
}

// Collector exports the refusal counts as voxbridge_sip_refused_total by
// reason, for a Prometheus registry.
func (s *Server) Collector() prometheus.Collector { return refusalCollector{s.protect} }

var refusalDesc = prometheus.NewDesc("voxbridge_sip_refused_total",
	"SIP messages, calls and connections refused by the protections, by reason.", []string{"reason"}, nil)

type refusalCollector struct{ p *protector }

func (c refusalCollector) Describe(ch chan<- *prometheus.Desc) { ch <- refusalDesc }
func (c refusalCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range refusalReasons {
		ch <- prometheus.MustNewConstMetric(refusalDesc, prometheus.CounterValue, float64(c.p.refused[r].Load()), r)
	}
}

func addrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return v.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(addrString(a)); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (p *protector) trusted(ip netip.Addr) bool {
	for _, pr := range p.cfg.TrustedSources {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

// banned reports whether ip is banned now.
func (p *protector) banned(ip netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.sources[ip]
	return ok && p.now().Before(st.bannedUntil)
}

// admitSource takes one message from ip against its rate. It reports
// false, banning ip, when the source is over its rate, and false when
// it is banned already; reason says which.
func (p *protector) admitSource(ip netip.Addr) (ok bool, reason string) {
	now := p.now()
	p.mu.Lock()
	st, found := p.sources[ip]
	if found && now.Before(st.bannedUntil) {
		p.mu.Unlock()
		return false, RefusedBanned
	}
	if p.cfg.SourceRate < 0 || p.trusted(ip) {
		p.mu.Unlock()
		return true, ""
	}
	if !found {
		if len(p.sources) >= maxTrackedSources {
			p.pruneLocked(now)
		}
		if len(p.sources) >= maxTrackedSources {
			// Spoofed floods from more addresses than we track: refuse
			// newcomers rather than grow without bound.
			p.mu.Unlock()
			return false, RefusedRate
		}
		st = &sourceState{bucket: newTokenBucket(p.cfg.SourceRate, float64(p.cfg.SourceBurst), now)}
		p.sources[ip] = st
	}
	if st.bucket.take(now) {
		p.mu.Unlock()
		return true, ""
	}
	p.mu.Unlock()
	// Trunks are looked up outside the lock: it may query the store.
	if p.isTrunk != nil && p.isTrunk(ip) {
		return true, ""
	}
	if p.cfg.BanDuration > 0 {
		p.mu.Lock()
		st.bannedUntil = now.Add(p.cfg.BanDuration)
		p.mu.Unlock()
		p.log.Warn("sip source banned for its request rate", "source", ip.String(), "for", p.cfg.BanDuration.String())
	}
	return false, RefusedRate
}

// pruneLocked forgets sources that are not banned and whose bucket is
// full again: they are as good as new.
func (p *protector) pruneLocked(now time.Time) {
	for ip, st := range p.sources {
		if !now.Before(st.bannedUntil) && now.Sub(st.bucket.last).Seconds()*p.cfg.SourceRate >= float64(p.cfg.SourceBurst) {
			delete(p.sources, ip)
		}
	}
	for ip, until := range p.known {
		if !now.Before(until) {
			delete(p.known, ip)
		}
	}
}

func (p *protector) purge() {
	p.mu.Lock()
	p.pruneLocked(p.now())
	p.mu.Unlock()
}

// markKnown records that ip authenticated, for SilentUnknown.
func (p *protector) markKnown(ip netip.Addr) {
	if !p.cfg.SilentUnknown || !ip.IsValid() {
		return
	}
	p.mu.Lock()
	if len(p.known) < maxTrackedSources {
		p.known[ip] = p.now().Add(p.cfg.KnownFor)
	}
	p.mu.Unlock()
}

func (p *protector) isKnown(ip netip.Addr) bool {
	p.mu.Lock()
	until, ok := p.known[ip]
	p.mu.Unlock()
	if ok && p.now().Before(until) {
		return true
	}
	return p.isTrunk != nil && p.isTrunk(ip)
}

// admitCall decides whether a new inbound call may start: the overload,
// concurrent-call and calls-per-second caps. A refusal is a 503 reason.
func (p *protector) admitCall(live int) (ok bool, reason string) {
	if p.cfg.MaxGoroutines > 0 && runtime.NumGoroutine() > p.cfg.MaxGoroutines {
		return false, RefusedOverload
	}
	if p.cfg.Backlogged != nil && p.cfg.Backlogged() {
		return false, RefusedBacklog
	}
	if p.cfg.MaxCalls > 0 && live >= p.cfg.MaxCalls {
		return false, RefusedMaxCalls
	}
	if p.cfg.MaxCallsPerSecond > 0 {
		p.mu.Lock()
		ok := p.cps.take(p.now())
		p.mu.Unlock()
		if !ok {
			return false, RefusedCPS
		}
	}
	return true, ""
}

// retryAfter is the Retry-After header of the caps' 503s.
func (p *protector) retryAfter() sip.Header {
	return sip.NewHeader("Retry-After", strconv.Itoa(max(int(p.cfg.RetryAfter/time.Second), 1)))
}

// filter is sipgo's transport read filter: every datagram and every read
// of a stream passes here before sipgo parses it. What it returns is what
// sipgo parses; nil drops the input.
func (p *protector) filter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	if !strings.EqualFold(props.Transport, "udp") {
		return p.filterStream(props, data)
	}
	if len(bytes.Trim(data, "\r\n\x00")) == 0 {
		return data, nil // keep-alive: sipgo ignores it
	}
	var reply func([]byte)
	if props.LocalAddr != nil && props.LocalAddr.String() == p.udpLocal && p.udpReply != nil {
		reply = func(b []byte) { p.udpReply(b, props.RemoteAddr) }
	}
	if !p.check(props.RemoteAddr, data, reply) {
		return nil, nil
	}
	return fixAddrHeaders(data), nil
}

// errConnRefused closes a stream connection from the read filter.
var errConnRefused = errors.New("sip: connection refused by protection")

// filterStream frames a TCP/TLS connection's bytes into messages, checks
// each, and hands sipgo the accepted ones. Connections we dialed
// (trunks) are not ours to police and pass through.
func (p *protector) filterStream(props sip.TransportReadProps, data []byte) ([]byte, error) {
	gc := p.conns.get(props.RemoteAddr)
	if gc == nil {
		return data, nil
	}
	if gc.framer.idle() && len(bytes.Trim(data, "\r\n")) == 0 {
		return data, nil // RFC 5626 keep-alive: sipgo answers a double CRLF
	}
	msgs, err := gc.framer.feed(data, p.cfg.MaxMessageSize)
	if err != nil {
		p.refuse(RefusedTooLarge, props.RemoteAddr, nil, err.Error())
		return nil, errConnRefused
	}
	var out []byte
	for _, m := range msgs {
		if ok, reason := p.admitSource(addrOf(props.RemoteAddr)); !ok {
			p.refuse(reason, props.RemoteAddr, nil, "connection closed")
			return nil, errConnRefused
		}
		if p.checkAdmitted(props.RemoteAddr, m, func(b []byte) { _, _ = gc.Write(b) }) {
			gc.established.Store(true)
			out = append(out, fixAddrHeaders(m)...)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// check runs every protection on one whole message from src and reports
// whether it may go on to sipgo. reply, when set, sends an answer back.
func (p *protector) check(src net.Addr, msg []byte, reply func([]byte)) bool {
	if ok, reason := p.admitSource(addrOf(src)); !ok {
		p.refuse(reason, src, nil, "")
		return false
	}
	return p.checkAdmitted(src, msg, reply)
}

func (p *protector) checkAdmitted(src net.Addr, msg []byte, reply func([]byte)) bool {
	method, isRequest := startLineMethod(msg)
	// Responses pass: they belong to our own transactions (sipgo drops
	// strays). So do requests in a live call, whoever sends them.
	if p.cfg.SilentUnknown && isRequest && method != "REGISTER" && !p.isKnown(addrOf(src)) &&
		(p.inDialog == nil || !p.inDialog(MessageCallID(msg))) {
		p.refuse(RefusedSilentUnknown, src, nil, method)
		return false
	}
	// Never answer an ACK or a response, whatever is wrong with it.
	answer := func(code int, reason string) {
		if reply == nil || !isRequest || method == "ACK" {
			return
		}
		if b := rawResponse(msg, code, reason); b != nil {
			reply(b)
		}
	}
	if reason, detail := p.checkCaps(msg); reason != "" {
		p.refuse(reason, src, msg, detail)
		code, text := 400, "Bad Request"
		if reason == RefusedTooLarge {
			code, text = 513, "Message Too Large"
		}
		answer(code, text)
		return false
	}
	parsed, err := sip.NewParser().ParseSIP(msg)
	if err != nil {
		p.refuse(RefusedMalformed, src, msg, err.Error())
		if isRequest && !knownScheme(requestURIScheme(msg)) && requestURIScheme(msg) != "" {
			answer(416, "Unsupported URI Scheme")
		} else {
			answer(400, "Bad Request")
		}
		return false
	}
	req, ok := parsed.(*sip.Request)
	if !ok {
		return true
	}
	if code, reason, extra := validateRequest(req, msg); code != 0 {
		p.refuse(RefusedInvalid, src, msg, reason)
		if reply != nil && req.Method != sip.ACK {
			res := sip.NewResponseFromRequest(req, code, reason, nil)
			res.SipVersion = "SIP/2.0" // what we speak, whatever the request said
			for _, h := range extra {
				res.AppendHeader(h)
			}
			reply([]byte(res.String()))
		}
		return false
	}
	return true
}

// checkCaps checks the size, header count and line lengths of a raw
// message; a non-empty reason is a refusal.
func (p *protector) checkCaps(msg []byte) (reason, detail string) {
	if p.cfg.MaxMessageSize > 0 && len(msg) > p.cfg.MaxMessageSize {
		return RefusedTooLarge, fmt.Sprintf("%d bytes > %d", len(msg), p.cfg.MaxMessageSize)
	}
	headers := 0
	rest := msg
	first := true
	for len(rest) > 0 {
		line, after, found := bytes.Cut(rest, []byte{'\n'})
		rest = after
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if p.cfg.MaxLineLength > 0 && len(line) > p.cfg.MaxLineLength {
			return RefusedLineLength, fmt.Sprintf("a line of %d bytes > %d", len(line), p.cfg.MaxLineLength)
		}
		if len(line) == 0 || !found {
			break // end of the header section
		}
		if !first && line[0] != ' ' && line[0] != '\t' {
			headers++
		}
		first = false
	}
	if p.cfg.MaxHeaders > 0 && headers > p.cfg.MaxHeaders {
		return RefusedHeaders, fmt.Sprintf("%d header fields > %d", headers, p.cfg.MaxHeaders)
	}
	return "", ""
}

// startLineMethod reads the method of a request's start line; isRequest
// is false for a response or something that is not SIP.
func startLineMethod(msg []byte) (method string, isRequest bool) {
	line, _, _ := bytes.Cut(msg, []byte{'\n'})
	if bytes.HasPrefix(line, []byte("SIP/")) {
		return "", false
	}
	m, _, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(m) == 0 {
		return "", false
	}
	return strings.ToUpper(string(m)), true
}

// requestURIScheme is the scheme of a raw request's Request-URI, "" if
// it has none.
func requestURIScheme(msg []byte) string {
	line, _, _ := bytes.Cut(msg, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return ""
	}
	scheme, _, ok := strings.Cut(f[1], ":")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "<>@ ") {
		return ""
	}
	return strings.ToLower(scheme)
}

func knownScheme(s string) bool { return s == "sip" || s == "sips" || s == "tel" }

// singleHeaders may appear once only (RFC 3261 §7.3.1; multi01, mcl01).
var singleHeaders = map[string]string{
	"call-id": "call-id", "i": "call-id", "cseq": "cseq", "from": "from", "f": "from", "to": "to", "t": "to",
	"max-forwards": "max-forwards", "content-length": "content-length", "l": "content-length",
	"content-type": "content-type", "c": "content-type",
}

// validateRequest finds what sipgo's parser accepts but RFC 3261 and RFC
// 4475 do not: a non-zero code is the answer (400 unless the RFC names
// another), extra its extra headers.
func validateRequest(req *sip.Request, raw []byte) (code int, reason string, extra []sip.Header) {
	if req.SipVersion != "SIP/2.0" {
		return 505, "Version Not Supported", nil
	}
	if !knownScheme(strings.ToLower(req.Recipient.Scheme)) {
		return 416, "Unsupported URI Scheme", nil
	}
	if req.Recipient.Headers != nil && req.Recipient.Headers.Length() > 0 {
		return 400, "Bad Request-URI", nil // escruri: headers belong in Contact or Refer-To
	}
	via := req.Via()
	if via == nil || req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil {
		return 400, "Missing Mandatory Header", nil
	}
	// sipgo upper-cases the method of the start line but not CSeq's.
	if !strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)) {
		return 400, "CSeq Method Mismatch", nil
	}
	if b, ok := via.Params.Get("branch"); ok && b == sip.RFC3261BranchMagicCookie {
		return 400, "Bad Via Branch", nil // badbranch: the cookie and no identifier
	}
	// Count the single-valued header fields in the raw message: sipgo
	// keeps only the first of some.
	seen := map[string]int{}
	forEachRawHeader(raw, func(name, _, _ []byte) bool {
		if canon, ok := singleHeaders[strings.ToLower(string(name))]; ok {
			seen[canon]++
		}
		return true
	})
	for name, n := range seen {
		if n > 1 {
			return 400, "Duplicate " + name, nil
		}
	}
	if h := req.GetHeader("Date"); h != nil && !strings.HasSuffix(strings.TrimSpace(h.Value()), " GMT") {
		return 400, "Bad Date", nil // baddate: RFC 3261 §20.17 allows GMT only
	}
	// A URI with "?" must be in <> (RFC 3261 §20): regbadct. sipgo
	// renders header values with <> added, so look at the raw lines.
	bad := ""
	forEachRawHeader(raw, func(rawName, value, _ []byte) bool {
		switch name := strings.ToLower(string(rawName)); name {
		case "from", "f", "to", "t", "contact", "m":
			if !bytes.Contains(value, []byte("<")) && bytes.Contains(value, []byte("?")) {
				bad = name
			}
		}
		return true
	})
	if bad != "" {
		return 400, "Bad " + bad + " URI", nil
	}
	if req.Method == sip.REGISTER {
		if s := strings.ToLower(req.To().Address.Scheme); s != "sip" && s != "sips" {
			return 400, "Bad To", nil // unksm2: an address of record is a SIP URI
		}
	}
	if req.Method == sip.INVITE {
		if h := req.GetHeader("Accept"); h != nil && !acceptsSDP(h.Value()) {
			return 400, "Accept Without application/sdp", nil // sdp01
		}
	}
	var unsupported []string
	for _, h := range req.GetHeaders("Require") {
		for _, tag := range strings.Split(h.Value(), ",") {
			if tag = strings.ToLower(strings.TrimSpace(tag)); tag != "" && !supportedExtensions[tag] {
				unsupported = append(unsupported, tag)
			}
		}
	}
	if len(unsupported) > 0 && req.Method != sip.ACK && req.Method != sip.CANCEL {
		return 420, "Bad Extension", []sip.Header{sip.NewHeader("Unsupported", strings.Join(unsupported, ", "))}
	}
	return 0, "", nil
}

func acceptsSDP(accept string) bool {
	for _, t := range strings.Split(accept, ",") {
		t = strings.ToLower(strings.TrimSpace(strings.SplitN(t, ";", 2)[0]))
		if t == "application/sdp" || t == "application/*" || t == "*/*" || t == "" {
			return true
		}
	}
	return false
}

// rawResponse builds a stateless answer to a request sipgo could not
// parse, echoing its Via, From, To, Call-ID and CSeq lines as they are.
// It returns nil when the input has none of them: that is not SIP and
// gets no answer.
func rawResponse(msg []byte, code int, reason string) []byte {
	var echo [][]byte
	forEachRawHeader(msg, func(name, _, line []byte) bool {
		switch strings.ToLower(string(name)) {
		case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq":
			echo = append(echo, line)
		}
		return true
	})
	if len(echo) == 0 {
		return nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, l := range echo {
		b.Write(l)
		b.WriteString("\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}

// fixAddrHeaders repairs what RFC 3261 and RFC 2543 allow in a valid
// request but sipgo cannot take. sipgo keeps the blanks of "; tag = x"
// (RFC 3261 allows LWS around ";" and "=") in the parameter name, and both
// its transaction layer (for requests without an RFC 3261 branch) and its
// dialogs refuse a From without a tag, which RFC 2543 requests lack and
// RFC 3261 §12.1.1 says to take as an empty tag. So in From and To the
// blanks around the parameters' separators are dropped and a tagless From
// gets ";tag" (an empty tag, echoed so in our responses). An RFC 2543
// INVITE (no RFC 3261 branch) without Contact gets its From URI as
// Contact: RFC 2543 sent requests back to From then. Other bytes are kept;
// msg itself is returned when nothing needs fixing.
func fixAddrHeaders(msg []byte) []byte {
	method, isRequest := startLineMethod(msg)
	if !isRequest {
		return msg
	}
	type field struct {
		start, end, next int // name to value end (folds included), then past its line break
		name             string
	}
	var fields []field
	i := bytes.IndexByte(msg, '\n') + 1
	if i == 0 {
		return msg
	}
	headEnd := len(msg) // the blank line ending the header section
	for i < len(msg) {
		next := lineEnd(msg, i)
		line := bytes.TrimRight(msg[i:next], "\r\n")
		switch {
		case len(line) == 0:
			headEnd = i
		case (line[0] == ' ' || line[0] == '\t') && len(fields) > 0:
			f := &fields[len(fields)-1]
			f.end, f.next = i+len(line), next // a fold continues the field
		default:
			n, _, _ := bytes.Cut(line, []byte{':'})
			fields = append(fields, field{i, i + len(line), next, strings.ToLower(string(bytes.TrimSpace(n)))})
		}
		if headEnd < len(msg) {
			break
		}
		i = next
	}
	var out []byte // nil until something changes
	edit := func(at int) {
		if out == nil {
			out = append(make([]byte, 0, len(msg)+64), msg[:at]...)
		}
	}
	var fromURI, topVia string
	hasContact := false
	for _, f := range fields {
		switch f.name {
		case "from", "f", "to", "t":
			_, value, _ := bytes.Cut(msg[f.start:f.end], []byte{':'})
			fixed, changed := fixAddrValue(string(value), f.name == "from" || f.name == "f")
			if f.name == "from" || f.name == "f" {
				fromURI = addrURI(fixed)
			}
			if changed {
				edit(f.start)
				raw, _, _ := bytes.Cut(msg[f.start:f.end], []byte{':'})
				out = append(append(append(out, bytes.TrimSpace(raw)...), ": "...), fixed...)
				out = append(out, msg[f.end:f.next]...)
				continue
			}
		case "via", "v":
			if topVia == "" {
				topVia, _, _ = strings.Cut(string(msg[f.start:f.end]), ",")
			}
		case "contact", "m":
			hasContact = true
		}
		if out != nil {
			out = append(out, msg[f.start:f.next]...)
		}
	}
	if method == "INVITE" && !hasContact && fromURI != "" && !strings.Contains(topVia, sip.RFC3261BranchMagicCookie) {
		edit(headEnd)
		out = append(append(append(out, "Contact: <"...), fromURI...), '>')
		out = append(out, msg[headEnd:lineEnd(msg, headEnd)]...) // the blank line's break style
	}
	if out == nil {
		return msg
	}
	return append(out, msg[headEnd:]...)
}

// lineEnd is the index just past the line break at or after i.
func lineEnd(msg []byte, i int) int {
	if j := bytes.IndexByte(msg[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(msg)
}

// addrURI is the URI of a From/To value fixed by fixAddrValue: inside
// <>, else up to its parameters.
func addrURI(v string) string {
	if lt := strings.LastIndexByte(v, '<'); lt >= 0 {
		if gt := strings.IndexByte(v[lt:], '>'); gt > 0 {
			return v[lt+1 : lt+gt]
		}
		return ""
	}
	uri, _, _ := strings.Cut(v, ";")
	return strings.TrimSpace(uri)
}

// fixAddrValue drops the blanks around ";" and "=" in the parameters of
// a From or To value (after its <URI>, or its first ";" without one),
// joining folded lines, and adds an empty tag to a From without one. It
// reports whether the value changed.
// unfold turns a header's folded lines into one (a Replacer is safe for
// concurrent use, and building one per header cost an allocation each).
var unfold = strings.NewReplacer("\r\n", " ", "\n", " ")

func fixAddrValue(value string, isFrom bool) (string, bool) {
	v := strings.TrimSpace(unfold.Replace(value))
	paramsAt := -1
	inQuote := false
	for i := 0; i < len(v) && paramsAt < 0; i++ {
		switch c := v[i]; {
		case inQuote && c == '\\':
			i++ // an escaped character in a quoted display name
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '<':
			gt := strings.IndexByte(v[i:], '>')
			if gt < 0 {
				return value, false // not ours to repair: the parser judged it
			}
			paramsAt = i + gt + 1
		case !inQuote && c == ';':
			paramsAt = i
		}
	}
	if paramsAt < 0 {
		paramsAt = len(v)
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(v[:paramsAt], " \t"))
	params := v[paramsAt:]
	hasTag := false
	inQuote = false
	for i := 0; i < len(params); i++ {
		c := params[i]
		switch {
		case inQuote:
			if c == '\\' && i+1 < len(params) {
				b.WriteByte(c)
				i++
				c = params[i]
			} else if c == '"' {
				inQuote = false
			}
		case c == '"':
			inQuote = true
		case c == ' ' || c == '\t':
			continue // only LWS around separators is legal here
		case c == ';':
			rest := strings.TrimLeft(params[i+1:], " \t")
			if n := len("tag"); len(rest) >= n && strings.EqualFold(rest[:n], "tag") &&
				(len(rest) == n || strings.ContainsRune(" \t=;", rune(rest[n]))) {
				hasTag = true
			}
		}
		b.WriteByte(c)
	}
	if isFrom && !hasTag {
		b.WriteString(";tag")
	}
	fixed := b.String()
	return fixed, fixed != strings.TrimSpace(value)
}

// streamFramer cuts a TCP/TLS byte stream into whole SIP messages by
// their Content-Length (RFC 3261 §18.3), so each can be checked.
type streamFramer struct{ buf []byte }

func (f *streamFramer) idle() bool { return len(f.buf) == 0 }

var errFraming = errors.New("sip stream: cannot frame message")

// feed adds data and returns the messages now complete. An error means
// the stream cannot be framed (too large, bad Content-Length): the
// connection must close.
func (f *streamFramer) feed(data []byte, maxSize int) ([][]byte, error) {
	f.buf = append(f.buf, data...)
	var out [][]byte
	for {
		// CRLFs between messages are keep-alives (RFC 5626 §3.5.1).
		f.buf = bytes.TrimLeft(f.buf, "\r\n")
		if len(f.buf) == 0 {
			f.buf = nil
			return out, nil
		}
		end, sepLen := bytes.Index(f.buf, []byte("\r\n\r\n")), 4
		if lf := bytes.Index(f.buf, []byte("\n\n")); lf >= 0 && (end < 0 || lf < end) {
			end, sepLen = lf, 2
		}
		if end < 0 {
			if maxSize > 0 && len(f.buf) > maxSize {
				return out, fmt.Errorf("%w: no end of headers in %d bytes", errFraming, len(f.buf))
			}
			return out, nil
		}
		cl := 0
		var clErr error
		forEachRawHeader(f.buf[:end], func(name, value, _ []byte) bool {
			if bytes.EqualFold(name, []byte("content-length")) || bytes.EqualFold(name, []byte("l")) {
				n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
				if err != nil || n < 0 {
					clErr = fmt.Errorf("%w: Content-Length %q", errFraming, truncate(string(value), 20))
				}
				cl = n
			}
			return true
		})
		if clErr != nil {
			return out, clErr
		}
		total := end + sepLen + cl
		if maxSize > 0 && total > maxSize {
			return out, fmt.Errorf("%w: %d bytes > %d", errFraming, total, maxSize)
		}
		if len(f.buf) < total {
			return out, nil
		}
		out = append(out, slices.Clone(f.buf[:total]))
		f.buf = f.buf[total:]
	}
}

// protectTx reports the final answer a request got, e.g. a REGISTER's 200.
type protectTx struct {
	sip.ServerTransaction
	onRespond func(*sip.Response)
}

func (t protectTx) Respond(res *sip.Response) error {
	t.onRespond(res)
	return t.ServerTransaction.Respond(res)
}

// knownAfterSuccess wraps a handler so a source whose request got a 2xx
// (e.g. an authenticated REGISTER) becomes known for SilentUnknown.
func (s *Server) knownAfterSuccess(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	if !s.protect.cfg.SilentUnknown {
		return h
	}
	return func(req *sip.Request, tx sip.ServerTransaction) {
		h(req, protectTx{ServerTransaction: tx, onRespond: func(res *sip.Response) {
			if res.IsSuccess() {
				s.markKnownSource(req)
			}
		}})
	}
}

// knowRegisteredSources makes the sources of the stored, unexpired
// registrations known for SilentUnknown before the first request is read:
// after a restart, a registered phone's calls are not dropped until it
// registers again.
func (s *Server) knowRegisteredSources(ctx context.Context) {
	if !s.protect.cfg.SilentUnknown || s.store == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rs, err := s.store.ListAllRegistrations(sctx)
	if err != nil {
		s.log.Warn("silent-unknown: stored registrations not read; their phones are known again when they register", "err", err)
		return
	}
	for _, r := range rs {
		if ap, err := netip.ParseAddrPort(r.SourceAddr); err == nil {
			s.protect.markKnown(ap.Addr().Unmap())
		}
	}
}

func (s *Server) markKnownSource(req *sip.Request) {
	if ap, err := netip.ParseAddrPort(req.Source()); err == nil {
		s.protect.markKnown(ap.Addr().Unmap())
	}
}

// admitInvite applies the call caps to a new, authorized INVITE and
// answers it with 503 itself unless it returns true.
func (s *Server) admitInvite(req *sip.Request, tx sip.ServerTransaction) bool {
	ok, reason := s.protect.admitCall(int(s.liveLegs.Load()))
	if ok {
		return true
	}
	s.protect.refuse(reason, sourceAddr(req), nil, callID(req))
	s.respond(req, tx, 503, "Service Unavailable", s.protect.retryAfter())
	return false
}

func sourceAddr(req *sip.Request) net.Addr {
	if ap, err := netip.ParseAddrPort(req.Source()); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return nil
}

// hasCall reports whether callID is the Call-ID of a live leg, either way.
func (s *Server) hasCall(callID string) bool {
	if callID == "" {
		return false
	}
	found := false
	s.legs.Range(func(_, v any) bool { found = v.(*Leg).CallID == callID; return !found })
	if !found {
		s.outLegs.Range(func(_, v any) bool { found = v.(*OutLeg).CallID == callID; return !found })
	}
	return found
}

// isTrunkSource reports whether ip is an enabled trunk's inbound address
// (from the trunk cache, so at most one store query per TTL).
func (s *Server) isTrunkSource(ip netip.Addr) bool {
	if s.store == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	t, err := s.trunkBySource(ctx, ip.String())
	return err == nil && t != nil
}
