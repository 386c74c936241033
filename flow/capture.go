package flow

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/pcap"
	"github.com/voxbridge/voxbridge/sip"
)

// Bounds of the capture machinery: nothing in it grows with traffic.
const (
	// SIP seen before its call's capture opens (the INVITE, 100, 180) waits
	// in a small per-Call-ID buffer; the oldest Call-IDs are forgotten
	// first, so REGISTER and OPTIONS traffic cannot grow it.
	maxPendingCallIDs  = 64
	maxPendingPerCall  = 16
	captureQueueLength = 1024 // datagrams waiting for a call's writer; more are dropped and counted
	captureBufSize     = 2048 // pooled copy size; RTP always fits, bigger SIP is copied exactly
)

// captures writes each answered call's SIP (UDP) and RTP/RTCP to
// DIR/<call record id>.pcap, so a production call can be replayed as a test
// case (`voxbridge replay`).
type captures struct {
	dir     string
	mediaIP netip.Addr // stands in for an all-interfaces bind address in the files
	log     *slog.Logger

	mu           sync.Mutex
	live         map[string]*callCapture // SIP Call-ID → open capture
	pending      map[string][]capturedPacket
	pendingOrder []string // pending's keys, oldest first
}

type capturedPacket struct {
	at       time.Time
	src, dst netip.AddrPort
	b        []byte
	pooled   *[]byte // returned to bufPool once written
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, captureBufSize); return &b }}

// copyPacket copies b, from the pool when it fits.
func copyPacket(at time.Time, src, dst netip.AddrPort, b []byte) capturedPacket {
	p := capturedPacket{at: at, src: src, dst: dst}
	if len(b) <= captureBufSize {
		p.pooled = bufPool.Get().(*[]byte)
		p.b = append((*p.pooled)[:0], b...)
	} else {
		p.b = append([]byte(nil), b...)
	}
	return p
}

func (p capturedPacket) release() {
	if p.pooled != nil {
		bufPool.Put(p.pooled)
	}
}

// newCaptures prepares dir; "" turns capturing off (nil).
func newCaptures(dir string, mediaIP netip.Addr, log *slog.Logger) (*captures, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("flow: capture dir: %w", err)
	}
	return &captures{dir: dir, mediaIP: mediaIP, log: log,
		live: map[string]*callCapture{}, pending: map[string][]capturedPacket{}}, nil
}

// CaptureSIP is a sip.CaptureFunc: with Config.CaptureDir set, each SIP
// datagram goes to the capture of the call whose Call-ID it carries, or
// waits (bounded) for that call's capture to open.
func (ct *Controller) CaptureSIP(at time.Time, src, dst netip.AddrPort, msg []byte) {
	cs := ct.capture
	if cs == nil {
		return
	}
	id := sip.MessageCallID(msg)
	if id == "" {
		return
	}
	src, dst = cs.fixLocal(src, dst)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cc := cs.live[id]; cc != nil {
		cc.add(at, src, dst, msg)
		return
	}
	q, ok := cs.pending[id]
	if !ok {
		if len(cs.pendingOrder) >= maxPendingCallIDs {
			oldest := cs.pendingOrder[0]
			cs.pendingOrder = cs.pendingOrder[1:]
			for _, p := range cs.pending[oldest] {
				p.release()
			}
			delete(cs.pending, oldest)
		}
		cs.pendingOrder = append(cs.pendingOrder, id)
	}
	if len(q) >= maxPendingPerCall {
		q[0].release()
		q = append(q[:0], q[1:]...) // keep the newest; the INVITE of a long exchange may go
	}
	cs.pending[id] = append(q, copyPacket(at, src, dst, msg))
}

// fixLocal replaces an all-interfaces address (how a 0.0.0.0 listener
// reports itself) with the media IP, so the file shows real endpoints.
func (cs *captures) fixLocal(src, dst netip.AddrPort) (netip.AddrPort, netip.AddrPort) {
	fix := func(a, other netip.AddrPort) netip.AddrPort {
		if a.Addr().IsUnspecified() && cs.mediaIP.IsValid() && cs.mediaIP.Unmap().Is4() == other.Addr().Unmap().Is4() {
			return netip.AddrPortFrom(cs.mediaIP, a.Port())
		}
		return a
	}
	return fix(src, dst), fix(dst, src)
}

// open starts the capture of call recordID, whose SIP Call-ID is sipCallID,
// with the SIP seen so far.
func (cs *captures) open(recordID, sipCallID string, log *slog.Logger) (*callCapture, error) {
	if recordID == "" || strings.ContainsAny(recordID, `/\`) || recordID == "." || recordID == ".." {
		return nil, fmt.Errorf("capture: call id %q is not a file name", recordID)
	}
	path := filepath.Join(cs.dir, recordID+".pcap")
	w, err := pcap.CreateFile(path, pcap.WithNanoseconds())
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	cc := &callCapture{cs: cs, path: path, log: log, w: w,
		q: make(chan capturedPacket, captureQueueLength), done: make(chan struct{})}
	go cc.writeLoop()
	cs.follow(cc, sipCallID)
	return cc, nil
}

// follow adds the SIP of Call-ID sipCallID (the call's own dialog, or a
// leg it placed) to cc, with what was seen of it so far.
func (cs *captures) follow(cc *callCapture, sipCallID string) {
	if sipCallID == "" {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, p := range cs.pending[sipCallID] {
		cc.enqueue(p)
	}
	delete(cs.pending, sipCallID)
	for i, id := range cs.pendingOrder {
		if id == sipCallID {
			cs.pendingOrder = append(cs.pendingOrder[:i], cs.pendingOrder[i+1:]...)
			break
		}
	}
	cs.live[sipCallID] = cc
	cc.sipCallIDs = append(cc.sipCallIDs, sipCallID)
}

// callCapture is one call's pcap. Taps copy each datagram into a bounded
// queue and never wait; one goroutine writes the queue to the file.
type callCapture struct {
	cs         *captures
	sipCallIDs []string // followed (cs.mu)
	path       string
	log        *slog.Logger
	w          *pcap.Writer
	q          chan capturedPacket
	done       chan struct{}
	dropped    atomic.Uint64

	mu     sync.Mutex // orders enqueues against close(q)
	closed bool
}

// add copies a datagram into the queue.
func (cc *callCapture) add(at time.Time, src, dst netip.AddrPort, b []byte) {
	cc.enqueue(copyPacket(at, src, dst, b))
}

func (cc *callCapture) enqueue(p capturedPacket) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		p.release()
		return
	}
	select {
	case cc.q <- p:
	default:
		p.release()
		cc.dropped.Add(1)
	}
}

// tap is the call's media.Tap; local stands in for an all-interfaces
// bind address.
func (cc *callCapture) tap(local netip.Addr) media.Tap {
	fix := func(a netip.AddrPort) netip.AddrPort {
		if a.Addr().IsUnspecified() && local.IsValid() {
			return netip.AddrPortFrom(local, a.Port())
		}
		return a
	}
	return func(at time.Time, src, dst netip.AddrPort, b []byte) {
		cc.add(at, fix(src), fix(dst), b)
	}
}

func (cc *callCapture) writeLoop() {
	defer close(cc.done)
	failed := false
	for p := range cc.q {
		if !failed {
			if err := cc.w.WriteUDP(p.at, p.src, p.dst, p.b); err != nil {
				// One line, then the rest of this call's capture is discarded.
				failed = true
				cc.log.Error("capture disabled for this call", "path", cc.path, "err", err)
			}
		}
		p.release()
	}
}

// close stops taking datagrams, writes what is queued and closes the file.
func (cc *callCapture) close() {
	cc.cs.mu.Lock()
	for _, id := range cc.sipCallIDs {
		if cc.cs.live[id] == cc {
			delete(cc.cs.live, id)
		}
	}
	cc.cs.mu.Unlock()
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	cc.closed = true
	close(cc.q)
	cc.mu.Unlock()
	<-cc.done
	if err := cc.w.Close(); err != nil {
		cc.log.Error("capture close", "path", cc.path, "err", err)
	}
	if n := cc.dropped.Load(); n > 0 {
		cc.log.Warn("capture dropped datagrams: the disk was slower than the call", "path", cc.path, "dropped", n)
	}
	cc.log.Info("capture written", "path", cc.path)
}

// startCapture opens the call's capture when capturing is on and returns
// the Tap for its media stream (nil when off or failed: the call goes on).
func (c *Call) startCapture(remoteMedia netip.Addr) media.Tap {
	cs := c.ct.capture
	if cs == nil || c.capture != nil {
		return nil
	}
	cc, err := cs.open(c.rec.ID, c.leg.CallID, c.log)
	if err != nil {
		c.log.Error("capture not started", "err", err)
		return nil
	}
	c.capture = cc
	return cc.tap(c.ct.mediaIPFor(remoteMedia))
}

// captureLeg adds b, a leg the call placed, to the call's capture: its SIP
// (by its own Call-ID) and its media. Runner goroutine only.
func (c *Call) captureLeg(b *bLeg) {
	cc := c.capture
	if cc == nil || b.stream == nil {
		return
	}
	cc.cs.follow(cc, b.out.CallID)
	b.stream.SetTap(cc.tap(c.ct.mediaIPFor(b.out.Media().RemoteAddr.Addr())))
}

// finishCapture closes the call's capture; the stream must be closed.
func (c *Call) finishCapture() {
	if c.capture != nil {
		c.capture.close()
	}
}
