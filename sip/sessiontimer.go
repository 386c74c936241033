package sip

import (
	"cmp"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// SessionTimerConfig tunes session timers (RFC 4028). Zero values take
// the defaults.
type SessionTimerConfig struct {
	// MinSE is the shortest Session-Expires we accept; shorter asks get
	// 422 with Min-SE. Default (and RFC minimum for the wire) 90 s; tests
	// go lower.
	MinSE time.Duration
	// Expires is the interval we ask for when the caller supports timers
	// but names none; default 30 min.
	Expires time.Duration
}

func (c *SessionTimerConfig) setDefaults() {
	c.MinSE = cmp.Or(c.MinSE, 90*time.Second)
	c.Expires = max(cmp.Or(c.Expires, 30*time.Minute), c.MinSE)
}

// CauseSessionExpired ends a dialog whose session refreshes stopped.
const CauseSessionExpired EndCause = "session_expired"

// timerAsk is what a request says about session timers.
type timerAsk struct {
	expires   time.Duration // Session-Expires, 0 if absent
	refresher string        // "uac", "uas" or ""
	minSE     time.Duration // Min-SE, 0 if absent
	supported bool          // Supported: timer
	bad       bool          // a Session-Expires we cannot read
}

// headerReader is a request or a response.
type headerReader interface {
	GetHeader(name string) sip.Header
	GetHeaders(name string) []sip.Header
}

func readTimerAsk(m headerReader) timerAsk {
	var a timerAsk
	h := m.GetHeader("Session-Expires")
	if h == nil {
		h = m.GetHeader("x") // compact form
	}
	if h != nil {
		parts := strings.Split(h.Value(), ";")
		n, err := strconv.ParseUint(strings.TrimSpace(parts[0]), 10, 32)
		if err != nil || n == 0 {
			a.bad = true
		} else {
			a.expires = time.Duration(n) * time.Second
		}
		for _, p := range parts[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(strings.TrimSpace(k), "refresher") {
				v = strings.ToLower(strings.TrimSpace(v))
				if v == "uac" || v == "uas" {
					a.refresher = v
				}
			}
		}
	}
	if h := m.GetHeader("Min-SE"); h != nil {
		v, _, _ := strings.Cut(h.Value(), ";")
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
			a.minSE = time.Duration(n) * time.Second
		}
	}
	a.supported = hasOptionTag(m, "Supported", "k", "timer")
	return a
}

// hasOptionTag reports whether a Supported/Require-like header (long or
// compact name) lists tag.
func hasOptionTag(m headerReader, name, compact, tag string) bool {
	for _, n := range []string{name, compact} {
		for _, h := range m.GetHeaders(n) {
			for _, t := range strings.Split(h.Value(), ",") {
				if strings.EqualFold(strings.TrimSpace(t), tag) {
					return true
				}
			}
		}
	}
	return false
}

// timerDeal is a negotiated session timer: every interval the refresher
// sends a re-INVITE or UPDATE; weRefresh says whether that is us.
type timerDeal struct {
	interval  time.Duration // 0: no session timer
	weRefresh bool
	// remoteIsUAC: the request's sender is the refresher (refresher=uac)
	// and supports timers, so the 2xx carries Require: timer.
	requireTimer bool
	refresher    string // as written in our 2xx: "uac" or "uas"
}

// tooBrief returns the Min-SE to answer 422 with when a request asks for a
// shorter session than cfg allows, else 0.
func (c SessionTimerConfig) tooBrief(a timerAsk) time.Duration {
	if a.expires > 0 && a.expires < c.MinSE {
		return c.MinSE
	}
	return 0
}

// answerTimer decides the session timer for a request we answer with 2xx
// (RFC 4028 §9): the interval the request asks (raised to our Min-SE), or
// ours when it supports timers but named none; the refresher it named, else
// the requester when it supports timers (less work for us), else us.
func (c SessionTimerConfig) answerTimer(a timerAsk) timerDeal {
	interval := a.expires
	if interval == 0 {
		if !a.supported {
			return timerDeal{}
		}
		interval = c.Expires
	}
	interval = max(interval, c.MinSE, a.minSE)
	refresher := a.refresher
	if refresher == "" || (refresher == "uac" && !a.supported) {
		refresher = "uas"
		if a.supported {
			refresher = "uac"
		}
	}
	return timerDeal{
		interval:     interval,
		weRefresh:    refresher == "uas",
		requireTimer: refresher == "uac",
		refresher:    refresher,
	}
}

// headers are what our 2xx says about the deal.
func (d timerDeal) headers() []sip.Header {
	if d.interval == 0 {
		return nil
	}
	hs := []sip.Header{
		sip.NewHeader("Session-Expires", strconv.Itoa(int(d.interval/time.Second))+";refresher="+d.refresher),
		sip.NewHeader("Supported", "timer"),
	}
	if d.requireTimer {
		hs = append(hs, sip.NewHeader("Require", "timer"))
	}
	return hs
}

// expiry is how long without a refresh before the session is over: the
// interval minus a third of it, at most 32 s (RFC 4028 §10).
func (d timerDeal) expiry() time.Duration {
	return d.interval - min(32*time.Second, d.interval/3)
}

// sessionTimer runs a dialog's session timer: it refreshes when we are
// the refresher and ends the dialog when refreshes stop. It lives until
// done closes.
type sessionTimer struct {
	reset chan timerDeal // a refresh happened (possibly renegotiating)
}

func newSessionTimer() *sessionTimer { return &sessionTimer{reset: make(chan timerDeal, 1)} }

// refreshed restarts the timer with deal, without blocking.
func (t *sessionTimer) refreshed(d timerDeal) {
	select {
	case <-t.reset:
	default:
	}
	t.reset <- d
}

// run drives the timer. refresh sends our refresh and reports whether the
// dialog still stands; expire ends the dialog.
func (t *sessionTimer) run(d timerDeal, done, stop <-chan struct{}, refresh func() bool, expire func()) {
	for {
		if d.interval == 0 {
			select {
			case d = <-t.reset:
				continue
			case <-done:
				return
			case <-stop:
				return
			}
		}
		wait := d.expiry()
		if d.weRefresh {
			wait = d.interval / 2
		}
		timer := time.NewTimer(wait)
		select {
		case d = <-t.reset:
			timer.Stop()
			continue
		case <-done:
			timer.Stop()
			return
		case <-stop:
			timer.Stop()
			return
		case <-timer.C:
		}
		if !d.weRefresh {
			expire()
			return
		}
		if !refresh() {
			expire()
			return
		}
		// A successful refresh of ours restarts the count via refreshed.
	}
}
