// Command diago-echo is a benchmark peer for voxbridge, not part of it: the
// smallest echo server diago (github.com/emiago/diago, the VoIP framework by
// sipgo's author) makes, so bench/compare.sh can run the same SIPp load
// against both and put their CPU and memory side by side.
//
// It answers every INVITE (100 Trying, 200 OK with an SDP answer: PCMU,
// PCMA, telephone-event, diago's defaults) and copies the caller's RTP
// payloads back to it with diago's own DialogMedia.Echo, the same call its
// examples use (examples/dtls/dtls_server). When the caller sends BYE the
// media closes, Echo returns and diago ends the dialog.
//
//	go run . -addr 127.0.0.1:5090 -rtp-ports 40000-49999
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/emiago/diago"
	"github.com/emiago/diago/media"
	"github.com/emiago/sipgo"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5090", "SIP listen address (host:port)")
	transport := flag.String("transport", "udp", "SIP transport: udp or tcp")
	rtpPorts := flag.String("rtp-ports", "", "RTP port range start-end (default: ephemeral ports)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fatal("bad -log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	host, portStr, err := net.SplitHostPort(*addr)
	if err != nil {
		fatal("bad -addr: %v", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		fatal("bad -addr port: %v", err)
	}
	if *rtpPorts != "" {
		// diago's RTP range is a package-level setting of its media package
		// (MediaConfig has it only as a TODO); it allocates even ports from it.
		lo, hi, ok := strings.Cut(*rtpPorts, "-")
		start, err1 := strconv.Atoi(lo)
		end, err2 := strconv.Atoi(hi)
		if !ok || err1 != nil || err2 != nil || start <= 0 || end <= start {
			fatal("bad -rtp-ports %q: want start-end", *rtpPorts)
		}
		media.RTPPortStart, media.RTPPortEnd = start, end
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ua, err := sipgo.NewUA()
	if err != nil {
		fatal("user agent: %v", err)
	}
	defer ua.Close()

	dg := diago.NewDiago(ua,
		diago.WithLogger(log),
		diago.WithTransport(diago.Transport{Transport: *transport, BindHost: host, BindPort: port}),
	)
	log.Warn("diago echo listening", "addr", *addr, "transport", *transport, "rtp_ports", *rtpPorts)
	err = dg.Serve(ctx, func(d *diago.DialogServerSession) {
		if err := d.Trying(); err != nil {
			log.Warn("100 Trying", "err", err)
		}
		// Answer negotiates the codec from the offer and opens the RTP socket.
		med, err := d.Answer(diago.AnswerOptions{})
		if err != nil {
			log.Warn("answer", "err", err)
			return
		}
		defer med.Close()
		// Echo blocks until the media ends (BYE from either side).
		if err := med.Echo(); err != nil {
			log.Debug("echo ended", "err", err)
		}
	})
	if err != nil && ctx.Err() == nil {
		fatal("serve: %v", err)
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "diago-echo: "+format+"\n", args...)
	os.Exit(1)
}
