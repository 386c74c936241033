package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/pcap"
)

// replayStream is one object of `replay --json`: exactly the fields the
// issue names, in its order.
type replayStream struct {
	SSRC        uint32  `json:"ssrc"`
	PayloadType uint8   `json:"payload_type"`
	Codec       string  `json:"codec"`
	Packets     uint64  `json:"packets"`
	Lost        uint64  `json:"lost"`
	Late        uint64  `json:"late"`
	Duplicates  uint64  `json:"duplicates"`
	Reordered   uint64  `json:"reordered"`
	ConcealedMS float64 `json:"concealed_ms"`
	JitterMS    float64 `json:"jitter_ms"`
	DelayMSMean float64 `json:"delay_ms_mean"`
	DelayMSP95  float64 `json:"delay_ms_p95"`
	DurationMS  float64 `json:"duration_ms"`
	DTMF        string  `json:"dtmf"`
}

// rtpFlow is the RTP found on one UDP 5-tuple direction of a capture.
type rtpFlow struct {
	src, dst netip.AddrPort
	arrivals []media.Arrival
	dtmfPT   uint8
	audio    int // packets with payload type 0 or 8
}

const replayUsage = `usage: voxbridge replay [flags] capture.pcap|capture.pcapng
       voxbridge replay --agent agent.json [--fakes [script.json]] [flags] capture.pcap

Finds the RTP streams in a capture (UDP on any port; SIP, RTCP and other
traffic are skipped), runs each through the jitter buffer, decoder and DTMF
detection a live call uses, and reports what a caller would have got.
By default time is simulated from the capture timestamps, so the numbers
are the same on any machine; --realtime replays on the wall clock instead.

With --agent, the caller's stream (--stream, default the first listed) is
played on the wall clock into a conversation with that agent, and the
transcript and each agent turn's latency (endpoint, stt, llm, tts,
voice-to-voice, p50/p95) are printed. The agent's own providers answer
(keys from the environment) unless --fakes is given: then scripted fakes
of the same providers run on loopback, at fixed latencies, so a change to
the agent's turn-taking can be checked against real recordings for free.

`

func runReplay(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { fmt.Fprint(fs.Output(), replayUsage); fs.PrintDefaults() }
	port := fs.Int("port", 0, "only UDP datagrams from or to this port")
	asJSON := fs.Bool("json", false, `print {"streams":[...]} as JSON`)
	wavPath := fs.String("wav", "", "write each stream's decoded audio to this WAV file (several streams: NAME-<ssrc>.wav)")
	realtime := fs.Bool("realtime", false, "replay on the wall clock instead of simulated time (takes as long as the capture)")
	minDelay := fs.Duration("min-delay", media.DefaultMinDelay, "jitter buffer minimum delay")
	maxDelay := fs.Duration("max-delay", media.DefaultMaxDelay, "jitter buffer maximum delay")
	agentPath := fs.String("agent", "", "agent definition (JSON or YAML): play the caller's stream into a conversation with it")
	var fakes fakesFlag
	fs.Var(&fakes, "fakes", "with --agent: scripted fake providers on loopback instead of the agent's own; --fakes=script.json|yaml sets utterances, replies and latencies")
	stream := fs.Int("stream", 1, "with --agent: which RTP stream is the caller's, numbered as plain replay lists them")
	tail := fs.Duration("tail", 15*time.Second, "with --agent: how long the agent may go on after the captured audio ends")
	maxP95 := fs.Duration("max-p95", 0, "with --agent: exit with an error when the voice-to-voice p95 is over this (0: never)")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the usage was printed: asking for it is not a failure
	}
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("replay: want exactly one capture file")
	}
	if *port < 0 || *port > 65535 {
		return fmt.Errorf("replay: --port %d out of range", *port)
	}
	if *minDelay <= 0 || *maxDelay < *minDelay {
		return fmt.Errorf("replay: bad delay bounds %v-%v", *minDelay, *maxDelay)
	}
	if *agentPath != "" {
		if *realtime {
			return errors.New("replay: --agent always plays on the wall clock; drop --realtime")
		}
		if *tail < 0 || *maxP95 < 0 {
			return errors.New("replay: --tail and --max-p95 must not be negative")
		}
		return runReplayAgent(replayAgentConfig{
			Capture: pos[0], Port: uint16(*port), Stream: *stream, AgentPath: *agentPath,
			Fakes: fakes.on, FakesPath: fakes.path, Tail: *tail, MaxP95: *maxP95, WAV: *wavPath,
			MinDelay: *minDelay, MaxDelay: *maxDelay,
			Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		}, *asJSON, out)
	}
	if fakes.on || *stream != 1 || *maxP95 != 0 {
		return errors.New("replay: --fakes, --stream and --max-p95 go with --agent")
	}
	flows, err := findRTP(pos[0], uint16(*port))
	if err != nil {
		return err
	}
	if len(flows) == 0 {
		return fmt.Errorf("replay: no RTP streams in %s", pos[0])
	}

	results := make([]replayStream, len(flows))
	audio := make([][]int16, len(flows))
	var wg sync.WaitGroup
	for i, f := range flows {
		r := media.NewReceiver(media.ReceiverConfig{DTMFPayloadType: f.dtmfPT, MinDelay: *minDelay, MaxDelay: *maxDelay})
		keep := func(_ time.Time, pcm []int16) {
			if *wavPath != "" {
				audio[i] = append(audio[i], pcm...)
			}
		}
		if *realtime {
			// Streams of a call overlap in time: replay them together.
			wg.Go(func() { playRealtime(r, f.arrivals, keep); results[i] = toReplayStream(r.Stats()) })
			continue
		}
		media.PlaySimulated(r, f.arrivals, keep)
		results[i] = toReplayStream(r.Stats())
	}
	wg.Wait()

	var wavs []string
	if *wavPath != "" {
		for i := range flows {
			path := *wavPath
			if len(flows) > 1 {
				ext := filepath.Ext(path)
				path = fmt.Sprintf("%s-%08x%s", strings.TrimSuffix(path, ext), results[i].SSRC, cmp.Or(ext, ".wav"))
			}
			if err := media.WriteWAVFile(path, audio[i]); err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			wavs = append(wavs, path)
		}
	}

	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Streams []replayStream `json:"streams"`
		}{results})
	}
	for i, s := range results {
		f := flows[i]
		fmt.Fprintf(out, "%v -> %v  ssrc %#08x  %s (pt %d)  %.1f s\n", f.src, f.dst, s.SSRC, s.Codec, s.PayloadType, s.DurationMS/1000)
		fmt.Fprintf(out, "  packets %d  lost %d  late %d  duplicates %d  reordered %d  concealed %.0f ms\n",
			s.Packets, s.Lost, s.Late, s.Duplicates, s.Reordered, s.ConcealedMS)
		fmt.Fprintf(out, "  jitter %.2f ms  added delay mean %.1f ms, p95 %.1f ms", s.JitterMS, s.DelayMSMean, s.DelayMSP95)
		if s.DTMF != "" {
			fmt.Fprintf(out, "  dtmf %q", s.DTMF)
		}
		fmt.Fprintln(out)
		if i < len(wavs) {
			fmt.Fprintf(out, "  audio: %s\n", wavs[i])
		}
	}
	return nil
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

func toReplayStream(st media.ReceiveStats) replayStream {
	return replayStream{
		SSRC:        st.SSRC,
		PayloadType: st.PayloadType,
		Codec:       st.Codec.Name,
		Packets:     st.Packets,
		Lost:        st.Lost,
		Late:        st.Late,
		Duplicates:  st.Duplicates,
		Reordered:   st.Reordered,
		ConcealedMS: round2(st.ConcealedMS),
		JitterMS:    round2(st.JitterMS),
		DelayMSMean: round2(st.DelayMSMean),
		DelayMSP95:  round2(st.DelayMSP95),
		DurationMS:  round2(st.DurationMS),
		DTMF:        st.DTMF,
	}
}

// findRTP reads a capture and groups the datagrams that look like RTP by
// direction (source and destination address and port). A direction counts
// as a G.711 stream when at least minAudioPackets of its packets are RTP
// version 2 with payload type 0 or 8. RTCP (types 200-204), SIP and STUN
// never pass the version and type checks. Its telephone-event payload type
// is the dynamic type (96-127) most often carried in 4-byte payloads.
func findRTP(path string, port uint16) ([]*rtpFlow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	rd, err := pcap.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("replay: %s: %w", path, err)
	}
	type key struct{ src, dst netip.AddrPort }
	byKey := map[key]*rtpFlow{}
	var order []*rtpFlow
	eventPTs := map[*rtpFlow]map[uint8]int{}
	for {
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A capture cut short (a killed tcpdump) still replays up to the cut.
			if errors.Is(err, io.ErrUnexpectedEOF) {
				fmt.Fprintf(os.Stderr, "voxbridge: replay: %v (using the packets before it)\n", err)
				break
			}
			return nil, fmt.Errorf("replay: %s: %w", path, err)
		}
		if port != 0 && p.Src.Port() != port && p.Dst.Port() != port {
			continue
		}
		b := p.Payload
		if len(b) < 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) || p.Time.IsZero() {
			continue
		}
		k := key{p.Src, p.Dst}
		fl := byKey[k]
		if fl == nil {
			fl = &rtpFlow{src: p.Src, dst: p.Dst}
			byKey[k] = fl
			order = append(order, fl)
			eventPTs[fl] = map[uint8]int{}
		}
		pt := b[1] & 0x7f
		switch {
		case pt == media.PCMU.PayloadType || pt == media.PCMA.PayloadType:
			fl.audio++
		case pt >= 96 && len(b) == 16: // a 12-byte header and a 4-byte event
			eventPTs[fl][pt]++
		}
		fl.arrivals = append(fl.arrivals, media.Arrival{At: p.Time, Data: p.Payload})
	}
	const minAudioPackets = 5
	var flows []*rtpFlow
	for _, fl := range order {
		if fl.audio < minAudioPackets {
			continue
		}
		best := 0
		for pt, n := range eventPTs[fl] {
			if n > best || (n == best && pt < fl.dtmfPT) {
				fl.dtmfPT, best = pt, n
			}
		}
		// Captures are usually in time order, but merged ones need not be.
		slices.SortStableFunc(fl.arrivals, func(a, b media.Arrival) int { return a.At.Compare(b.At) })
		flows = append(flows, fl)
	}
	return flows, nil
}

// playRealtime replays arrivals on the wall clock, exactly as a live
// stream: each packet is pushed when its capture offset comes round, and
// frames are pulled on an absolute 20 ms grid until the buffer drains.
func playRealtime(r *media.Receiver, arrivals []media.Arrival, frame func(time.Time, []int16)) {
	if len(arrivals) == 0 {
		return
	}
	start, t0 := time.Now(), arrivals[0].At
	lastOffset := arrivals[len(arrivals)-1].At.Sub(t0)
	end := lastOffset + media.DefaultMaxDelay + 10*media.FrameDuration
	i := 0
	for n := 0; ; n++ {
		pullAt := time.Duration(n) * media.FrameDuration
		if pullAt > end {
			return
		}
		for i < len(arrivals) && arrivals[i].At.Sub(t0) <= pullAt {
			time.Sleep(time.Until(start.Add(arrivals[i].At.Sub(t0))))
			r.Push(arrivals[i].Data, time.Now())
			i++
		}
		time.Sleep(time.Until(start.Add(pullAt)))
		frame(time.Now(), r.Pull(time.Now()))
		if i == len(arrivals) && pullAt > lastOffset && r.Stats().BufferedMS == 0 {
			return
		}
	}
}
