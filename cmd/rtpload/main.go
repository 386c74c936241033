// Command rtpload measures the media engine under load: N echo streams in
// one process (the "server"), fed over loopback by N caller streams in
// another, for a while. It reports the server's CPU, heap per stream, the
// p99 of how late its packets left against their 20 ms schedule, packets
// lost either way, and whether the callers heard their audio come back.
//
//	go run ./cmd/rtpload -streams 1000 -duration 30s
//
// The parent starts itself again with -role echo as the server, so the
// server's CPU and memory are its own. Everything is on 127.0.0.1.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/voxbridge/voxbridge/media"
)

// report is what the echo server measured, sent to the parent as JSON.
type report struct {
	Streams          int     `json:"streams"`
	WindowS          float64 `json:"window_s"`
	CPUCores         float64 `json:"cpu_cores"`          // CPU seconds per second over the window
	HeapPerStreamKB  float64 `json:"heap_per_stream_kb"` // live heap after GC, per stream
	StackPerStreamKB float64 `json:"stack_per_stream_kb"`
	Goroutines       int     `json:"goroutines"`
	SendLateP50MS    float64 `json:"send_late_p50_ms"`
	SendLateP99MS    float64 `json:"send_late_p99_ms"`
	SendLateMaxMS    float64 `json:"send_late_max_ms"`
	PacketsIn        uint64  `json:"packets_in"`
	PacketsOut       uint64  `json:"packets_out"`
	Lost             uint64  `json:"lost"`
	Late             uint64  `json:"late"`
	FramesDropped    uint64  `json:"frames_dropped"`
	ConcealedMS      float64 `json:"concealed_ms"`
}

func main() {
	role := flag.String("role", "caller", "caller (starts the echo server and measures), echo (the server, started by the caller), "+
		"or timer (how late one plain Go timer wakes on a 20 ms schedule: the floor for any pacer on this machine)")
	n := flag.Int("streams", 1000, "concurrent streams")
	duration := flag.Duration("duration", 30*time.Second, "how long to run")
	warmup := flag.Duration("warmup", 5*time.Second, "time before measuring")
	cpuProfile := flag.String("cpuprofile", "", "write the echo server's CPU profile (measured window) to this file")
	flag.Parse()
	log.SetFlags(0)
	if *role == "timer" {
		timerFloor(*duration)
		return
	}
	if *role == "echo" {
		if err := echoServer(*n, *duration, *warmup, *cpuProfile); err != nil {
			log.Fatal("rtpload echo: ", err)
		}
		return
	}
	if err := caller(*n, *duration, *warmup, *cpuProfile); err != nil {
		log.Fatal("rtpload: ", err)
	}
}

func listen(n int) ([]*net.UDPConn, []int, error) {
	conns := make([]*net.UDPConn, n)
	ports := make([]int, n)
	for i := range conns {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, nil, err
		}
		conns[i], ports[i] = c, c.LocalAddr().(*net.UDPAddr).Port
	}
	return conns, ports, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// echoServer binds n sockets, prints their ports, reads the callers' ports
// from stdin, then echoes every stream (Frames back into Enqueue, as the
// echo flow does) and reports on stdout.
func echoServer(n int, duration, warmup time.Duration, profile string) error {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	conns, ports, err := listen(n)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(ports); err != nil {
		return err
	}
	var peers []int
	if err := json.NewDecoder(bufio.NewReader(os.Stdin)).Decode(&peers); err != nil || len(peers) != n {
		return fmt.Errorf("reading caller ports: %v (%d ports)", err, len(peers))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := make([]*media.Stream, n)
	var wg sync.WaitGroup
	for i := range streams {
		s, err := media.NewStream(media.StreamConfig{Conn: conns[i], Codec: media.PCMU,
			Remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: peers[i]}})
		if err != nil {
			return err
		}
		s.Start(ctx)
		streams[i] = s
		wg.Go(func() {
			for f := range s.Frames() {
				s.Enqueue(f)
			}
		})
	}
	time.Sleep(warmup)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	cpu0, t0 := cpuTime(), time.Now()
	var base []media.Stats
	for _, s := range streams {
		base = append(base, s.Stats())
	}
	time.Sleep(duration - warmup)
	cpu, window := cpuTime()-cpu0, time.Since(t0)
	pprof.StopCPUProfile()

	rep := report{
		Streams:          n,
		WindowS:          window.Seconds(),
		CPUCores:         cpu.Seconds() / window.Seconds(),
		HeapPerStreamKB:  float64(after.HeapInuse-before.HeapInuse) / float64(n) / 1024,
		StackPerStreamKB: float64(after.StackInuse-before.StackInuse) / float64(n) / 1024,
		Goroutines:       runtime.NumGoroutine(),
	}
	var late media.LatenessHistogram
	for i, s := range streams {
		st, b := s.Stats(), base[i]
		// Lateness over the measured window only: subtract the warm-up.
		h := st.SendLate
		for j := range h.Buckets {
			h.Buckets[j] -= b.SendLate.Buckets[j]
		}
		h.Count -= b.SendLate.Count
		late.Merge(h)
		rep.PacketsIn += st.PacketsIn
		rep.PacketsOut += st.PacketsOut
		rep.Lost += st.Receive.Lost
		rep.Late += st.Receive.Late
		rep.FramesDropped += st.FramesDropped
		rep.ConcealedMS += st.Receive.ConcealedMS
	}
	rep.SendLateP50MS = float64(late.Quantile(0.5)) / 1e6
	rep.SendLateP99MS = float64(late.Quantile(0.99)) / 1e6
	rep.SendLateMaxMS = float64(late.Max) / 1e6 // over the whole run, warm-up included
	cancel()
	for _, s := range streams {
		s.Close()
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// Caller-side sockets: each carries the traffic of many streams, so the
// load generator costs little next to the server it measures.
const callerSockets = 8

// caller starts the echo server and plays n phones at it from a few
// sockets: every 20 ms one PCMU packet of a 1 kHz tone per stream (its own
// SSRC and sequence), and it checks what comes back per stream: sequence
// gaps, and whether the echoed payload carries the tone.
func caller(n int, duration, warmup time.Duration, profile string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-role", "echo", "-streams", fmt.Sprint(n), "-duration", duration.String(), "-warmup", warmup.String(), "-cpuprofile", profile)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill() // only matters if we return early; Wait reaps it
	out := json.NewDecoder(stdout)
	var serverPorts []int
	if err := out.Decode(&serverPorts); err != nil {
		return fmt.Errorf("reading server ports: %w", err)
	}
	conns, ports, err := listen(callerSockets)
	if err != nil {
		return err
	}
	for _, c := range conns {
		c.SetReadBuffer(4 << 20) // 50k packets/s arrive on 8 sockets
		c.SetWriteBuffer(4 << 20)
	}
	peers := make([]int, n)
	for i := range peers {
		peers[i] = ports[i%callerSockets]
	}
	if err := json.NewEncoder(stdin).Encode(peers); err != nil {
		return err
	}
	byPort := map[int]int{}
	for i, p := range serverPorts {
		byPort[p] = i
	}

	// What comes back, per stream.
	type heard struct {
		mu           sync.Mutex
		init         bool
		maxSeq       uint16
		received     int
		lost         int
		loud, frames int
	}
	results := make([]heard, n)
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				k, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				i, ok := byPort[int(from.Port())]
				if !ok || k < 12+media.FrameSamples {
					continue
				}
				seq := uint16(buf[2])<<8 | uint16(buf[3])
				loud := media.RMS(media.PCMU.Decode(make([]int16, 0, media.FrameSamples), buf[12:k])) > 5000
				h := &results[i]
				h.mu.Lock()
				if d := seq - h.maxSeq; !h.init || (d > 0 && d < 3000) {
					if h.init {
						h.lost += int(d) - 1
					}
					h.init, h.maxSeq = true, seq
				}
				h.received++
				if time.Since(start) > warmup {
					h.frames++
					if loud {
						h.loud++
					}
				}
				h.mu.Unlock()
			}
		})
	}
	// The phones: stream i's packet k leaves at start + k*20ms + i*20ms/n,
	// like calls that started at random times. Senders wake once a
	// millisecond and send what is due, so the generator's own timers cost
	// little.
	tone := media.PCMU.Encode(nil, media.Tone(1000, time.Second, 0.5))
	const senders = 2
	var sent [senders]int
	for g := range senders {
		wg.Go(func() {
			pkt := make([]byte, 12+media.FrameSamples)
			next := make([]int, n) // next packet number per stream
			dsts := make([]*net.UDPAddr, n)
			for i := range dsts {
				dsts[i] = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: serverPorts[i]}
			}
			for slot := 1; ; slot++ {
				wake := start.Add(time.Duration(slot) * time.Millisecond)
				select {
				case <-time.After(time.Until(wake)):
				case <-stop:
					return
				}
				now := time.Since(start)
				for i := g; i < n; i += senders {
					phase := time.Duration(i) * media.FrameDuration / time.Duration(n)
					for k := next[i]; time.Duration(k)*media.FrameDuration+phase <= now; k = next[i] {
						next[i]++
						pkt[0], pkt[1] = 0x80, 0
						pkt[2], pkt[3] = byte(k>>8), byte(k)
						ts := uint32(k * media.FrameSamples)
						pkt[4], pkt[5], pkt[6], pkt[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
						pkt[8], pkt[9], pkt[10], pkt[11] = 0x10, 0, byte(i>>8), byte(i)
						off := (k % 50) * media.FrameSamples
						copy(pkt[12:], tone[off:off+media.FrameSamples])
						if _, err := conns[i%callerSockets].WriteToUDP(pkt, dsts[i]); err == nil {
							sent[g]++
						}
					}
				}
			}
		})
	}
	callerCPU0, callerT0 := cpuTime(), time.Now()
	var rep report
	if err := out.Decode(&rep); err != nil {
		return fmt.Errorf("reading the server's report: %w", err)
	}
	callerCores := (cpuTime() - callerCPU0).Seconds() / time.Since(callerT0).Seconds()
	close(stop)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("echo server: %w", err)
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	var lost, frames, loud int
	worst := 0.0
	for i := range results {
		h := &results[i]
		lost += h.lost
		frames += h.frames
		loud += h.loud
		if h.frames > 0 {
			worst = max(worst, 1-float64(h.loud)/float64(h.frames))
		}
	}

	fmt.Printf("rtpload: %d echo streams on loopback for %v (server measured over the last %.1f s), GOMAXPROCS %d, %d CPUs\n",
		n, duration, rep.WindowS, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Printf("server CPU          %.2f cores (%.0f %% of the machine)\n", rep.CPUCores, 100*rep.CPUCores/float64(runtime.NumCPU()))
	fmt.Printf("server heap/stream  %.1f KB (+ %.1f KB goroutine stacks; %d goroutines)\n", rep.HeapPerStreamKB, rep.StackPerStreamKB, rep.Goroutines)
	p99 := fmt.Sprintf("%.2f ms", rep.SendLateP99MS)
	if rep.SendLateP99MS >= 100 {
		p99 = "> 100 ms" // the histogram's last bucket is open-ended
	}
	fmt.Printf("send lateness       p50 %.2f ms, p99 %s, max %.2f ms (max includes the warm-up)\n", rep.SendLateP50MS, p99, rep.SendLateMaxMS)
	fmt.Printf("server received     %d packets: lost %d, late %d, concealed %.0f ms, frames dropped %d; sent %d\n",
		rep.PacketsIn, rep.Lost, rep.Late, rep.ConcealedMS, rep.FramesDropped, rep.PacketsOut)
	fmt.Printf("callers             sent %d, echo lost %d; the load generator itself used %.2f cores\n", sent[0]+sent[1], lost, callerCores)
	fmt.Printf("echo heard          %.2f %% of %d packets after warm-up carried the tone (worst stream %.2f %% without)\n",
		100*float64(loud)/float64(max(frames, 1)), frames, 100*worst)
	return nil
}

// timerFloor wakes one goroutine on a 20 ms absolute schedule with a plain
// timer and reports how late it woke.
func timerFloor(d time.Duration) {
	start := time.Now()
	t := time.NewTimer(time.Hour)
	n := int(d / media.FrameDuration)
	var late []time.Duration
	for k := 1; k <= n; k++ {
		due := start.Add(time.Duration(k) * media.FrameDuration)
		t.Reset(time.Until(due))
		<-t.C
		late = append(late, time.Since(due))
	}
	slices.Sort(late)
	fmt.Printf("plain Go timer, %d wake-ups on a 20 ms schedule: p50 %v, p99 %v, max %v late\n", n,
		late[n/2].Round(time.Microsecond), late[n*99/100].Round(time.Microsecond), late[n-1].Round(time.Microsecond))
}
