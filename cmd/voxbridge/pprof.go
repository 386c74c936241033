package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
)

// envPprof names a loopback address where serve exposes Go's profiler
// (/debug/pprof/), for measuring a running server under load; unset, no
// listener is opened. It is never on the API's port: profiles need no key
// there, so only a loopback address is accepted.
const envPprof = "VOXBRIDGE_PPROF_ADDR"

// startPprof serves the profiler on addr until the process exits.
func startPprof(addr string, log *slog.Logger) {
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Warn(envPprof+" must be a loopback host:port; profiler off", "addr", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("profiler off", "addr", addr, "err", err)
		return
	}
	log.Info("profiler listening", "addr", l.Addr().String())
	go func() { _ = http.Serve(l, mux) }() // lives as long as the process
}
