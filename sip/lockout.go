package sip

import (
	"sync"
	"time"
)

// lockout counts failed authentications per source IP and locks a source
// out for a while once it has failed too often: a password guesser gets a
// few tries, then only 403s, whatever it sends.
type lockout struct {
	maxFailures int
	window      time.Duration
	duration    time.Duration
	now         func() time.Time

	mu      sync.Mutex
	sources map[string]*failures
	limit   int
}

type failures struct {
	count       int
	first       time.Time // start of the current counting window
	lockedUntil time.Time
}

func newLockout(maxFailures int, window, duration time.Duration) *lockout {
	return &lockout{maxFailures: maxFailures, window: window, duration: duration, now: time.Now,
		sources: map[string]*failures{}, limit: 100_000}
}

// locked reports whether ip is locked out now.
func (l *lockout) locked(ip string) bool {
	if l.maxFailures <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.sources[ip]
	return ok && l.now().Before(f.lockedUntil)
}

// fail counts a failure from ip and reports whether it is now locked out.
func (l *lockout) fail(ip string) bool {
	if l.maxFailures <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f, ok := l.sources[ip]
	if !ok {
		if len(l.sources) >= l.limit {
			l.purgeLocked(now)
		}
		// Under a flood from more sources than the limit, count only the
		// ones already tracked rather than grow without bound.
		if len(l.sources) >= l.limit {
			return false
		}
		f = &failures{first: now}
		l.sources[ip] = f
	}
	if now.Sub(f.first) > l.window {
		f.count, f.first = 0, now
	}
	f.count++
	if f.count >= l.maxFailures {
		f.lockedUntil = now.Add(l.duration)
		f.count, f.first = 0, now
		return true
	}
	return false
}

// succeed forgets the failures of ip, unless it is locked out: a lock runs
// its course.
func (l *lockout) succeed(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.sources[ip]; ok && !l.now().Before(f.lockedUntil) {
		delete(l.sources, ip)
	}
}

func (l *lockout) purge() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.purgeLocked(l.now())
}

func (l *lockout) purgeLocked(now time.Time) {
	for ip, f := range l.sources {
		if !now.Before(f.lockedUntil) && now.Sub(f.first) > l.window {
			delete(l.sources, ip)
		}
	}
}
