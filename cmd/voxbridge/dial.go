package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
)

// scheduledDigit is one --digits entry: a key pressed at a time after answer.
type scheduledDigit struct {
	digit rune
	at    time.Duration
}

// parseDigits reads "1@3s,#@5s".
func parseDigits(s string) ([]scheduledDigit, error) {
	var out []scheduledDigit
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		d, at, ok := strings.Cut(strings.TrimSpace(part), "@")
		if !ok || len(d) != 1 || !strings.ContainsAny(d, "0123456789*#ABCDabcd") {
			return nil, fmt.Errorf("digits: %q is not DIGIT@TIME (e.g. 1@3s)", part)
		}
		t, err := time.ParseDuration(at)
		if err != nil || t < 0 {
			return nil, fmt.Errorf("digits: %q: bad time %q", part, at)
		}
		out = append(out, scheduledDigit{digit: rune(strings.ToUpper(d)[0]), at: t})
	}
	return out, nil
}

// parseInterspersed lets flags follow the positional argument, as in
// "voxbridge dial sip:echo@host --duration 5s".
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseArgs parses flags anywhere among the arguments and allows at most
// max positional ones, naming the command (the flag set's name) otherwise.
func parseArgs(fs *flag.FlagSet, args []string, max int) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) > max {
		return nil, fmt.Errorf("%s: unexpected argument %q", fs.Name(), pos[max])
	}
	return pos, nil
}

// parseOne parses fs and wants exactly one positional argument (an id, a
// name); anything else is the usage error.
func parseOne(fs *flag.FlagSet, args []string, usage error) (string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usage
	}
	return pos[0], nil
}

// parseNumber parses fs for an "add" command whose --number may also be
// given as its one positional argument; one of the two is required.
func parseNumber(fs *flag.FlagSet, args []string, number *string) error {
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if len(pos) == 1 && *number == "" {
		*number = pos[0]
	} else if len(pos) == 1 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), pos[0])
	}
	if *number == "" {
		return fmt.Errorf("%s: --number is required", fs.Name())
	}
	return nil
}

func runDial(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dial", flag.ContinueOnError)
	play := fs.String("play", "", "WAV file to send once answered (8 kHz mono 16-bit, others are converted)")
	record := fs.String("record", "", "write what the phone hears to this WAV file")
	digitSpec := fs.String("digits", "", `RFC 4733 digits to send, as DIGIT@TIME after answer: "1@3s,#@5s"`)
	duration := fs.Duration("duration", 30*time.Second, "hang up after this long (0 waits for the other side)")
	localIP := fs.String("local-ip", "", "address to call from (default: loopback for a loopback target, else detected)")
	jsonOut := fs.Bool("json", false, "print the summary as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: voxbridge dial [flags] <sip-uri>")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("dial: exactly one SIP URI is required")
	}
	uri := pos[0]
	if !strings.HasPrefix(uri, "sip:") {
		uri = "sip:" + uri
	}
	var target sip.Uri
	if err := sip.ParseUri(uri, &target); err != nil {
		return fmt.Errorf("dial: bad SIP URI %q: %w", pos[0], err)
	}
	digits, err := parseDigits(*digitSpec)
	if err != nil {
		return err
	}
	var audio []int16
	if *play != "" {
		if audio, err = media.ReadWAVFile(*play); err != nil {
			return fmt.Errorf("dial: --play %s: %w", *play, err)
		}
	}
	ip := *localIP
	if ip == "" {
		ip = detectIP().String()
		if t := net.ParseIP(target.Host); t != nil && t.IsLoopback() {
			ip = "127.0.0.1"
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	phone, err := siptest.NewPhone(ip, nil)
	if err != nil {
		return err
	}
	defer phone.Close()
	fmt.Fprintf(out, "calling %s from %s\n", uri, phone.Addr())
	call, err := phone.Dial(ctx, uri, siptest.DialOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "answered after %.1f ms\n", float64(call.Answered.Microseconds())/1000)
	if len(audio) > 0 {
		call.Play(audio)
	}
	for _, d := range digits {
		t := time.AfterFunc(d.at, func() {
			if _, err := call.SendDTMF(d.digit, 160*time.Millisecond); err != nil {
				fmt.Fprintf(os.Stderr, "dtmf %c: %v\n", d.digit, err)
			}
		})
		defer t.Stop()
	}
	var limit <-chan time.Time
	if *duration > 0 {
		t := time.NewTimer(*duration)
		defer t.Stop()
		limit = t.C
	}
	select {
	case <-call.Done():
	case <-limit:
	case <-ctx.Done():
	}
	hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := call.Hangup(hctx); err != nil {
		fmt.Fprintln(os.Stderr, "hangup:", err)
	}
	sum := call.Summary()
	if *record != "" {
		if err := media.WriteWAVFile(*record, call.Heard()); err != nil {
			return fmt.Errorf("dial: --record: %w", err)
		}
	}
	if *jsonOut {
		return json.NewEncoder(out).Encode(sum)
	}
	who := "we hung up"
	if sum.RemoteBye {
		who = "the other side hung up"
	}
	fmt.Fprintf(out, "call ended: %s\n  answer time   %.1f ms\n  packets       in %d, out %d, lost %d\n  heard         %.1f s\n  digits sent   %q\n  digits heard  %q\n",
		who, sum.AnswerMS, sum.PacketsIn, sum.PacketsOut, sum.PacketsLost, float64(sum.HeardMS)/1000, sum.DigitsSent, sum.DigitsHeard)
	return nil
}
