package sip

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Stream listeners (TCP and TLS). sipgo's accept loop returns on the
// first Accept error, opens connections without limit and keeps idle ones
// forever, so both listeners are wrapped: the wrapper retries Accept
// after running out of file descriptors, caps connections per source and
// in all, and its connections time out.

// NewTLSListener makes the TLS listener for Config.TLS from a TCP
// listener and a certificate and key in PEM files.
func NewTLSListener(tcp net.Listener, certFile, keyFile string) (net.Listener, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(tcp, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// connRegistry maps the remote address of each accepted connection to
// it, so the read filter (which sees addresses only) finds its framer and
// its writer.
type connRegistry struct {
	mu       sync.Mutex
	byAddr   map[string]*guardedConn
	bySource map[netip.Addr]int
}

func (r *connRegistry) init() {
	r.byAddr = map[string]*guardedConn{}
	r.bySource = map[netip.Addr]int{}
}

func (r *connRegistry) get(a net.Addr) *guardedConn {
	if a == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byAddr[a.String()]
}

// add registers c unless its source or the total is at the cap.
func (r *connRegistry) add(c *guardedConn, perSource, total int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if (perSource > 0 && r.bySource[c.source] >= perSource) || (total > 0 && len(r.byAddr) >= total) {
		return false
	}
	r.byAddr[c.key] = c
	r.bySource[c.source]++
	return true
}

func (r *connRegistry) remove(c *guardedConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byAddr[c.key] != c {
		return
	}
	delete(r.byAddr, c.key)
	if r.bySource[c.source]--; r.bySource[c.source] <= 0 {
		delete(r.bySource, c.source)
	}
}

// guardListener is a TCP or TLS listener under the protector.
type guardListener struct {
	net.Listener
	p         *protector
	done      chan struct{}
	closeOnce sync.Once
}

func (p *protector) guard(l net.Listener) net.Listener {
	if l == nil {
		return nil
	}
	return &guardListener{Listener: l, p: p, done: make(chan struct{})}
}

func (l *guardListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Accept returns the next connection that passes the bans and caps. It
// waits and tries again when accepting fails for want of resources
// (EMFILE and the like), as net/http does, instead of ending sipgo's
// accept loop.
func (l *guardListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || !temporaryAcceptError(err) {
				return nil, err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.p.refuse(RefusedAcceptError, nil, nil, err.Error())
			select {
			case <-l.done:
				return nil, net.ErrClosed
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		src := addrOf(c.RemoteAddr())
		if l.p.banned(src) {
			l.p.refuse(RefusedBanned, c.RemoteAddr(), nil, "connection")
			c.Close()
			continue
		}
		gc := &guardedConn{Conn: c, p: l.p, key: c.RemoteAddr().String(), source: src, accepted: time.Now()}
		if !l.p.conns.add(gc, l.p.cfg.MaxConnsPerSource, l.p.cfg.MaxConns) {
			l.p.refuse(RefusedConnLimit, c.RemoteAddr(), nil, "")
			c.Close()
			continue
		}
		// Until the first message, a peer that does not read our TLS
		// handshake cannot hold a write either.
		_ = c.SetWriteDeadline(gc.accepted.Add(l.p.cfg.HandshakeTimeout))
		return gc, nil
	}
}

// temporaryAcceptError reports errors after which accepting can go on:
// out of file descriptors or memory, or a connection reset before it
// was accepted.
func temporaryAcceptError(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// guardedConn is an accepted connection with the handshake and idle
// timeouts and its stream framer.
type guardedConn struct {
	net.Conn
	p           *protector
	key         string
	source      netip.Addr
	accepted    time.Time
	established atomic.Bool // a first message got through
	framer      streamFramer
	closeOnce   sync.Once
}

// Read waits at most until the handshake deadline (TLS handshake plus
// the first message) and afterwards at most the idle timeout.
func (c *guardedConn) Read(b []byte) (int, error) {
	if c.established.Load() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.p.cfg.IdleTimeout))
	} else {
		_ = c.Conn.SetReadDeadline(c.accepted.Add(c.p.cfg.HandshakeTimeout))
	}
	return c.Conn.Read(b)
}

// Write gives up on a peer that does not read, and counts as activity.
func (c *guardedConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.p.cfg.HandshakeTimeout))
	n, err := c.Conn.Write(b)
	if err == nil && c.established.Load() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.p.cfg.IdleTimeout))
	}
	return n, err
}

func (c *guardedConn) Close() error {
	c.closeOnce.Do(func() { c.p.conns.remove(c) })
	return c.Conn.Close()
}
