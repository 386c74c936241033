package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

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
	return nil
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
