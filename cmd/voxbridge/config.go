package main

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/voxbridge/voxbridge/sip"
	"gopkg.in/yaml.v3"
)

// serveConfig is everything `serve` can be told. Precedence: flags, then
// environment, then the YAML file, then the defaults below.
type serveConfig struct {
	SIPAddr  string `yaml:"sip_addr"`
	HTTPAddr string `yaml:"http_addr"`
	RTPPorts string `yaml:"rtp_ports"`
	DB       string `yaml:"db"`
	PublicIP string `yaml:"public_ip"`
	LogLevel string `yaml:"log_level"`

	// MediaPublicIP is put in SDP instead of PublicIP, for media behind
	// another NAT or on another interface than signalling.
	MediaPublicIP string `yaml:"media_public_ip"`

	// FlowsDir holds flow files loaded at start and on SIGHUP.
	FlowsDir string `yaml:"flows_dir"`
	// DefaultFlow names the flow inbound calls run ("" = built-in echo test).
	DefaultFlow string `yaml:"default_flow"`
	// RecordAll records every answered call as a stereo WAV in RecordDir.
	RecordAll string `yaml:"record_all"`
	RecordDir string `yaml:"record_dir"`
	// CaptureDir, when set, gets each call's SIP and RTP as <call id>.pcap.
	CaptureDir string `yaml:"capture_dir"`
	// AgentsDir holds agent definitions (JSON/YAML) loaded at start.
	AgentsDir string `yaml:"agents_dir"`
	// SIPDigest lists the digest algorithms challenged, in order.
	SIPDigest string `yaml:"sip_digest"`
	// SIPRealm is the digest realm; extension passwords are hashed for it.
	SIPRealm string `yaml:"sip_realm"`
	// SIPAnonymous lists the dialed users callers without an account may
	// reach ("*": any; ""): none. They never reach a trunk.
	SIPAnonymous string `yaml:"sip_anonymous"`
	// SIP over TLS (listens only with a certificate and key) and the
	// protections of the SIP port; see protectConfig and README
	// "Exposing the SIP port".
	SIPTLSAddr           string `yaml:"sip_tls_addr"`
	SIPTLSCert           string `yaml:"sip_tls_cert"`
	SIPTLSKey            string `yaml:"sip_tls_key"`
	SIPSilentUnknown     string `yaml:"sip_silent_unknown"`
	SIPMaxMessage        string `yaml:"sip_max_message"`
	SIPMaxHeaders        string `yaml:"sip_max_headers"`
	SIPMaxLine           string `yaml:"sip_max_line"`
	SIPSourceRate        string `yaml:"sip_source_rate"`
	SIPSourceBurst       string `yaml:"sip_source_burst"`
	SIPBan               string `yaml:"sip_ban"`
	SIPTrusted           string `yaml:"sip_trusted"`
	SIPMaxCPS            string `yaml:"sip_max_cps"`
	SIPMaxCalls          string `yaml:"sip_max_calls"`
	SIPMaxGoroutines     string `yaml:"sip_max_goroutines"`
	SIPRetryAfter        string `yaml:"sip_retry_after"`
	SIPTCPHandshake      string `yaml:"sip_tcp_handshake"`
	SIPTCPIdle           string `yaml:"sip_tcp_idle"`
	SIPMaxConnsPerSource string `yaml:"sip_max_conns_per_source"`
	SIPMaxConns          string `yaml:"sip_max_conns"`
	SIPKeepalive         string `yaml:"sip_keepalive"`
	// HTTPTLSCert and HTTPTLSKey, together, serve the HTTP API over TLS.
	HTTPTLSCert string `yaml:"http_tls_cert"`
	HTTPTLSKey  string `yaml:"http_tls_key"`
}

func defaultServeConfig() serveConfig {
	return serveConfig{
		SIPAddr:      "0.0.0.0:5060",
		HTTPAddr:     "127.0.0.1:8080",
		RTPPorts:     "10000-20000",
		DB:           "./voxbridge.db",
		LogLevel:     "info",
		SIPDigest:    "SHA-256,MD5",
		SIPRealm:     "voxbridge",
		SIPAnonymous: "echo",
		RecordAll:    "false",
		RecordDir:    "./recordings",
	}
}

// setting ties one field to its flag and environment variable.
type setting struct {
	flag, env, usage string
	field            func(*serveConfig) *string
}

var settings = []setting{
	{"sip-addr", "VOXBRIDGE_SIP_ADDR", "SIP listen address, UDP and TCP", func(c *serveConfig) *string { return &c.SIPAddr }},
	{"http-addr", "VOXBRIDGE_HTTP_ADDR", "HTTP API listen address", func(c *serveConfig) *string { return &c.HTTPAddr }},
	{"rtp-ports", "VOXBRIDGE_RTP_PORTS", "RTP port range", func(c *serveConfig) *string { return &c.RTPPorts }},
	{"db", "VOXBRIDGE_DB", "SQLite database file", func(c *serveConfig) *string { return &c.DB }},
	{"public-ip", "VOXBRIDGE_PUBLIC_IP", "address advertised in SIP and SDP (default: detected)", func(c *serveConfig) *string { return &c.PublicIP }},
	{"media-public-ip", "VOXBRIDGE_MEDIA_PUBLIC_IP", "address advertised in SDP (default: public-ip)", func(c *serveConfig) *string { return &c.MediaPublicIP }},
	{"log-level", "VOXBRIDGE_LOG_LEVEL", "debug, info, warn or error", func(c *serveConfig) *string { return &c.LogLevel }},
	{"flows-dir", "VOXBRIDGE_FLOWS_DIR", "directory of flow files (JSON/YAML), loaded at start and on SIGHUP", func(c *serveConfig) *string { return &c.FlowsDir }},
	{"default-flow", "VOXBRIDGE_DEFAULT_FLOW", "id of the flow inbound calls run (default: the built-in echo test)", func(c *serveConfig) *string { return &c.DefaultFlow }},
	{"record-all", "VOXBRIDGE_RECORD_ALL", "record every answered call (true/false): stereo WAV, caller left, far side right", func(c *serveConfig) *string { return &c.RecordAll }},
	{"record-dir", "VOXBRIDGE_RECORD_DIR", "directory of call recordings", func(c *serveConfig) *string { return &c.RecordDir }},
	{"capture-dir", "VOXBRIDGE_CAPTURE_DIR", "directory for a pcap of each call's SIP (UDP) and RTP, named <call id>.pcap, for `voxbridge replay` (default: none)", func(c *serveConfig) *string { return &c.CaptureDir }},
	{"agents-dir", "VOXBRIDGE_AGENTS_DIR", "directory of agent definitions (JSON/YAML) loaded at start", func(c *serveConfig) *string { return &c.AgentsDir }},
	{"sip-digest", "VOXBRIDGE_SIP_DIGEST", "digest algorithms to challenge with, in order (SHA-256,MD5; put MD5 first for clients that answer only the first, such as SIPp 3.6 and baresip 1.0)", func(c *serveConfig) *string { return &c.SIPDigest }},
	{"sip-realm", "VOXBRIDGE_SIP_REALM", "digest realm (extension passwords are hashed for it)", func(c *serveConfig) *string { return &c.SIPRealm }},
	{"sip-anonymous", "VOXBRIDGE_SIP_ANONYMOUS", `dialed users callers without an account may reach, comma-separated ("*": any, "": none); never a trunk`, func(c *serveConfig) *string { return &c.SIPAnonymous }},
	{"sip-tls-cert", "VOXBRIDGE_SIP_TLS_CERT", "PEM certificate (chain) for SIP over TLS; with --sip-tls-key listens on --sip-tls-addr", func(c *serveConfig) *string { return &c.SIPTLSCert }},
	{"sip-tls-key", "VOXBRIDGE_SIP_TLS_KEY", "PEM private key of --sip-tls-cert", func(c *serveConfig) *string { return &c.SIPTLSKey }},
	{"sip-tls-addr", "VOXBRIDGE_SIP_TLS_ADDR", "SIP over TLS listen address (default: the host of --sip-addr, port 5061)", func(c *serveConfig) *string { return &c.SIPTLSAddr }},
	{"sip-silent-unknown", "VOXBRIDGE_SIP_SILENT_UNKNOWN", "answer nothing but REGISTER to sources that are not a trunk and have not authenticated (true/false)", func(c *serveConfig) *string { return &c.SIPSilentUnknown }},
	{"sip-max-message", "VOXBRIDGE_SIP_MAX_MESSAGE", "largest SIP message in bytes (default 65536)", func(c *serveConfig) *string { return &c.SIPMaxMessage }},
	{"sip-max-headers", "VOXBRIDGE_SIP_MAX_HEADERS", "most header fields in a SIP message (default 128)", func(c *serveConfig) *string { return &c.SIPMaxHeaders }},
	{"sip-max-line", "VOXBRIDGE_SIP_MAX_LINE", "longest SIP header line in bytes (default 8192)", func(c *serveConfig) *string { return &c.SIPMaxLine }},
	{"sip-source-rate", "VOXBRIDGE_SIP_SOURCE_RATE", "SIP messages per second one source IP may send (default 50; 0: no limit); over it the source is banned", func(c *serveConfig) *string { return &c.SIPSourceRate }},
	{"sip-source-burst", "VOXBRIDGE_SIP_SOURCE_BURST", "burst above --sip-source-rate (default 200)", func(c *serveConfig) *string { return &c.SIPSourceBurst }},
	{"sip-ban", "VOXBRIDGE_SIP_BAN", "how long a source over its rate is ignored (default 10m)", func(c *serveConfig) *string { return &c.SIPBan }},
	{"sip-trusted", "VOXBRIDGE_SIP_TRUSTED", "addresses/CIDRs exempt from the per-source rate, comma-separated (default 127.0.0.0/8,::1; \"none\": nobody); trunks always are", func(c *serveConfig) *string { return &c.SIPTrusted }},
	{"sip-max-cps", "VOXBRIDGE_SIP_MAX_CPS", "new inbound calls per second (default 300; 0: no limit); more get 503", func(c *serveConfig) *string { return &c.SIPMaxCPS }},
	{"sip-max-calls", "VOXBRIDGE_SIP_MAX_CALLS", "concurrent inbound calls (default 2000; 0: no limit); more get 503", func(c *serveConfig) *string { return &c.SIPMaxCalls }},
	{"sip-max-goroutines", "VOXBRIDGE_SIP_MAX_GOROUTINES", "new calls get 503 while the process runs more goroutines (default 200000; 0: no limit)", func(c *serveConfig) *string { return &c.SIPMaxGoroutines }},
	{"sip-retry-after", "VOXBRIDGE_SIP_RETRY_AFTER", "Retry-After of those 503s (default 5s)", func(c *serveConfig) *string { return &c.SIPRetryAfter }},
	{"sip-tcp-handshake", "VOXBRIDGE_SIP_TCP_HANDSHAKE", "time for a TCP/TLS connection's TLS handshake and first message (default 10s)", func(c *serveConfig) *string { return &c.SIPTCPHandshake }},
	{"sip-tcp-idle", "VOXBRIDGE_SIP_TCP_IDLE", "a TCP/TLS connection without traffic this long is closed (default 10m)", func(c *serveConfig) *string { return &c.SIPTCPIdle }},
	{"sip-max-conns-per-source", "VOXBRIDGE_SIP_MAX_CONNS_PER_SOURCE", "open TCP/TLS connections from one IP (default 32; 0: no limit)", func(c *serveConfig) *string { return &c.SIPMaxConnsPerSource }},
	{"sip-max-conns", "VOXBRIDGE_SIP_MAX_CONNS", "open TCP/TLS connections in all (default 10000; 0: no limit)", func(c *serveConfig) *string { return &c.SIPMaxConns }},
	{"sip-keepalive", "VOXBRIDGE_SIP_KEEPALIVE", "how often registered phones get a NAT keepalive (CRLF CRLF to where they registered from; default 25s; 0: none)", func(c *serveConfig) *string { return &c.SIPKeepalive }},
	{"http-tls-cert", "VOXBRIDGE_HTTP_TLS_CERT", "PEM certificate (chain) for the HTTP API; with --http-tls-key serves HTTPS", func(c *serveConfig) *string { return &c.HTTPTLSCert }},
	{"http-tls-key", "VOXBRIDGE_HTTP_TLS_KEY", "PEM private key of --http-tls-cert", func(c *serveConfig) *string { return &c.HTTPTLSKey }},
}

// loadServeConfig resolves the configuration from args, the environment
// (getenv) and the optional YAML file.
func loadServeConfig(args []string, getenv func(string) string) (serveConfig, error) {
	cfg := defaultServeConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	flagVals := make(map[string]*string, len(settings))
	for _, s := range settings {
		flagVals[s.flag] = fs.String(s.flag, *s.field(&cfg), s.usage+" (env "+s.env+")")
	}
	configPath := fs.String("config", getenv("VOXBRIDGE_CONFIG"), "YAML configuration file (env VOXBRIDGE_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if *configPath != "" {
		b, err := os.ReadFile(*configPath)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("config %s: %w", *configPath, err)
		}
	}
	for _, s := range settings {
		if v := getenv(s.env); v != "" {
			*s.field(&cfg) = v
		}
	}
	fs.Visit(func(f *flag.Flag) {
		if v, ok := flagVals[f.Name]; ok {
			for _, s := range settings {
				if s.flag == f.Name {
					*s.field(&cfg) = *v
				}
			}
		}
	})
	return cfg, cfg.validate()
}

func (c serveConfig) validate() error {
	for name, addr := range map[string]string{"sip-addr": c.SIPAddr, "http-addr": c.HTTPAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if c.PublicIP != "" && net.ParseIP(c.PublicIP) == nil {
		return fmt.Errorf("public-ip: %q is not an IP address", c.PublicIP)
	}
	if c.MediaPublicIP != "" && net.ParseIP(c.MediaPublicIP) == nil {
		return fmt.Errorf("media-public-ip: %q is not an IP address", c.MediaPublicIP)
	}
	if c.DB == "" {
		return errors.New("db: empty path")
	}
	if _, err := strconv.ParseBool(c.RecordAll); err != nil {
		return fmt.Errorf("record-all: %q is not true or false", c.RecordAll)
	}
	for _, a := range strings.Split(c.SIPDigest, ",") {
		if a = strings.TrimSpace(a); a != "MD5" && a != "SHA-256" {
			return fmt.Errorf("sip-digest: %q is not MD5 or SHA-256", a)
		}
	}
	if _, err := c.protectConfig(); err != nil {
		return err
	}
	if _, err := c.sipKeepalive(); err != nil {
		return err
	}
	return nil
}

// sipKeepalive turns --sip-keepalive into the registrar's keepalive
// period: 0 turns keepalives off (negative for the sip package), empty
// keeps its default.
func (c serveConfig) sipKeepalive() (time.Duration, error) {
	v := strings.TrimSpace(c.SIPKeepalive)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || (d > 0 && d < time.Second) {
		return 0, fmt.Errorf("sip-keepalive: %q is not 0 or a duration of at least 1s (e.g. 25s)", c.SIPKeepalive)
	}
	if d == 0 {
		return -1, nil
	}
	return d, nil
}

// advertiseIP picks the address peers should reach us at: the configured
// public IP, else the SIP bind address when it is specific, else the first
// non-loopback interface address, else loopback.
func advertiseIP(c serveConfig) net.IP {
	if c.PublicIP != "" {
		return net.ParseIP(c.PublicIP)
	}
	host, _, _ := net.SplitHostPort(c.SIPAddr)
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return ip
	}
	return detectIP()
}

// detectIP returns the first non-loopback IPv4 interface address, or
// loopback when there is none.
func detectIP() net.IP {
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
				return n.IP
			}
		}
	}
	return net.IPv4(127, 0, 0, 1)
}

// anonymousTo turns --sip-anonymous into the sip server's policy.
func (c serveConfig) anonymousTo() (allow bool, to func(string) bool) {
	list := strings.TrimSpace(c.SIPAnonymous)
	switch list {
	case "":
		return false, nil
	case "*":
		return true, nil
	}
	users := map[string]bool{}
	for _, u := range strings.Split(list, ",") {
		users[strings.TrimSpace(u)] = true
	}
	return true, func(u string) bool { return users[u] }
}

func (c serveConfig) digestAlgorithms() []string {
	var out []string
	for _, a := range strings.Split(c.SIPDigest, ",") {
		out = append(out, strings.TrimSpace(a))
	}
	return out
}

// protectConfig turns the --sip-* limits into the sip server's
// protections. On the command line 0 turns a limit off (the sip package
// takes a negative number for that).
func (c serveConfig) protectConfig() (sip.ProtectConfig, error) {
	var p sip.ProtectConfig
	var err error
	// Empty leaves the sip package's default.
	num := func(name, v string, dst *int) {
		if err != nil || v == "" {
			return
		}
		n, e := strconv.Atoi(strings.TrimSpace(v))
		if e != nil || n < 0 {
			err = fmt.Errorf("%s: %q is not a whole number >= 0", name, v)
			return
		}
		*dst = cmp.Or(n, -1)
	}
	dur := func(name, v string, dst *time.Duration) {
		if err != nil || v == "" {
			return
		}
		d, e := time.ParseDuration(strings.TrimSpace(v))
		if e != nil || d <= 0 {
			err = fmt.Errorf("%s: %q is not a positive duration (e.g. 10s, 5m)", name, v)
			return
		}
		*dst = d
	}
	rate := func(name, v string, dst *float64) {
		if err != nil || v == "" {
			return
		}
		f, e := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if e != nil || f < 0 {
			err = fmt.Errorf("%s: %q is not a number >= 0", name, v)
			return
		}
		*dst = cmp.Or(f, -1)
	}
	num("sip-max-message", c.SIPMaxMessage, &p.MaxMessageSize)
	num("sip-max-headers", c.SIPMaxHeaders, &p.MaxHeaders)
	num("sip-max-line", c.SIPMaxLine, &p.MaxLineLength)
	rate("sip-source-rate", c.SIPSourceRate, &p.SourceRate)
	num("sip-source-burst", c.SIPSourceBurst, &p.SourceBurst)
	dur("sip-ban", c.SIPBan, &p.BanDuration)
	rate("sip-max-cps", c.SIPMaxCPS, &p.MaxCallsPerSecond)
	num("sip-max-calls", c.SIPMaxCalls, &p.MaxCalls)
	num("sip-max-goroutines", c.SIPMaxGoroutines, &p.MaxGoroutines)
	dur("sip-retry-after", c.SIPRetryAfter, &p.RetryAfter)
	dur("sip-tcp-handshake", c.SIPTCPHandshake, &p.HandshakeTimeout)
	dur("sip-tcp-idle", c.SIPTCPIdle, &p.IdleTimeout)
	num("sip-max-conns-per-source", c.SIPMaxConnsPerSource, &p.MaxConnsPerSource)
	num("sip-max-conns", c.SIPMaxConns, &p.MaxConns)
	if err != nil {
		return p, err
	}
	if c.SIPSilentUnknown != "" {
		silent, e := strconv.ParseBool(c.SIPSilentUnknown)
		if e != nil {
			return p, fmt.Errorf("sip-silent-unknown: %q is not true or false", c.SIPSilentUnknown)
		}
		p.SilentUnknown = silent
	}
	switch list := strings.TrimSpace(c.SIPTrusted); list {
	case "": // nil: the sip package's default, loopback
	case "none":
		p.TrustedSources = []netip.Prefix{}
	default:
		p.TrustedSources = []netip.Prefix{}
		for _, t := range strings.Split(list, ",") {
			if t = strings.TrimSpace(t); t == "" {
				continue
			}
			pr, e := netip.ParsePrefix(t)
			if e != nil {
				a, e2 := netip.ParseAddr(t)
				if e2 != nil {
					return p, fmt.Errorf("sip-trusted: %q is not an address or CIDR", t)
				}
				pr = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			p.TrustedSources = append(p.TrustedSources, pr)
		}
	}
	if (c.SIPTLSCert == "") != (c.SIPTLSKey == "") {
		return p, errors.New("sip-tls-cert and sip-tls-key go together")
	}
	if _, err := c.sipTLSAddr(); err != nil {
		return p, err
	}
	return p, nil
}

// sipTLSAddr is where SIP over TLS listens: --sip-tls-addr, else the host
// of --sip-addr on port 5061.
func (c serveConfig) sipTLSAddr() (string, error) {
	if c.SIPTLSAddr != "" {
		if _, _, err := net.SplitHostPort(c.SIPTLSAddr); err != nil {
			return "", fmt.Errorf("sip-tls-addr: %w", err)
		}
		return c.SIPTLSAddr, nil
	}
	host, _, _ := net.SplitHostPort(c.SIPAddr)
	return net.JoinHostPort(host, "5061"), nil
}
