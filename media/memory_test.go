package media_test

import (
	"context"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/voxbridge/voxbridge/media"
)

// BenchmarkStreamMemory holds streams set up as the server sets up an
// answered call (RTP and RTCP sockets, a consumer echoing Frames into
// Enqueue as the echo flow does), fed a 20 ms tone by one peer socket, and
// reports what each costs after GC: live heap, goroutine stacks and
// goroutines (the echo consumer included). b.N is not used: one run of a
// few seconds is the measurement.
func BenchmarkStreamMemory(b *testing.B) {
	const n = 200
	const run = 3 * time.Second
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	peer, peerRTCP := listen(), listen()
	defer peer.Close()
	defer peerRTCP.Close()

	var echoed atomic.Uint64
	var wg sync.WaitGroup
	for _, c := range []*net.UDPConn{peer, peerRTCP} {
		wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				var p rtp.Packet
				if c == peer && p.Unmarshal(buf[:n]) == nil && media.RMS(media.PCMU.Decode(nil, p.Payload)) > 1000 {
					echoed.Add(1)
				}
			}
		})
	}

	settle := func() runtime.MemStats {
		var ms runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms
	}
	before := settle()
	g0 := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	streams := make([]*media.Stream, n)
	for i := range streams {
		s, err := media.NewStream(media.StreamConfig{
			Conn: listen(), RTCPConn: listen(),
			Remote: peer.LocalAddr().(*net.UDPAddr), RemoteRTCP: peerRTCP.LocalAddr().(*net.UDPAddr),
			Codec: media.PCMU, DTMFPayloadType: 101,
		})
		if err != nil {
			b.Fatal(err)
		}
		s.Start(ctx)
		wg.Go(func() {
			for f := range s.Frames() {
				s.Enqueue(f)
			}
		})
		streams[i] = s
	}

	// The peer: one tone packet per stream every 20 ms.
	tone := media.PCMU.Encode(nil, media.Tone(1000, media.FrameDuration, 0.5))
	stop := make(chan struct{})
	wg.Go(func() {
		tick := time.NewTicker(media.FrameDuration)
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for i, s := range streams {
				p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(k),
					Timestamp: uint32(k * media.FrameSamples), SSRC: uint32(i + 1), Marker: k == 0}, Payload: tone}
				buf, _ := p.Marshal()
				peer.WriteToUDPAddrPort(buf, s.LocalAddr().AddrPort())
			}
		}
	})
	time.Sleep(run)
	after := settle()
	goroutines := runtime.NumGoroutine() - g0

	close(stop)
	for _, s := range streams {
		if st := s.Stats(); st.PacketsIn == 0 || st.PacketsOut == 0 {
			b.Errorf("a stream received %d and sent %d packets: not a working call", st.PacketsIn, st.PacketsOut)
			break
		}
	}
	cancel() // all at once: a Close waits up to a frame for the clock
	for _, s := range streams {
		<-s.Done()
	}
	peer.Close()
	peerRTCP.Close()
	wg.Wait()
	// Two thirds of the run's echo must carry the tone back (the rest is
	// start-up and a loaded machine's slack).
	if want := uint64(n) * uint64(run/media.FrameDuration) * 2 / 3; echoed.Load() < want {
		b.Errorf("peer heard the tone in %d echoed packets, want at least %d", echoed.Load(), want)
	}
	b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/n, "heap-B/stream")
	b.ReportMetric((float64(after.StackInuse)-float64(before.StackInuse))/n, "stack-B/stream")
	b.ReportMetric(float64(goroutines)/n, "goroutines/stream")
}
