package sip

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
	"github.com/voxbridge/voxbridge/store"
)

// TrunkRegistration is the state of our registration with one carrier.
type TrunkRegistration struct {
	Trunk       string    `json:"trunk"` // name
	Registered  bool      `json:"registered"`
	ExpiresAt   time.Time `json:"expires_at"` // of the current registration
	Attempts    int       `json:"attempts"`   // REGISTER transactions so far, challenges included
	LastCode    int       `json:"last_code"`  // last final response, 0 if none
	LastError   string    `json:"last_error"`
	NextAttempt time.Time `json:"next_attempt"`
}

// trunkRegistrations tracks one goroutine per trunk that registers.
type trunkRegistrations struct {
	mu      sync.Mutex
	running map[string]*trunkRegJob // trunk id → job
	status  map[string]*TrunkRegistration
}

type trunkRegJob struct {
	version time.Time // the trunk's tm_update when started
	stop    chan struct{}
	done    chan struct{}
}

func (r *trunkRegistrations) init() {
	r.running = map[string]*trunkRegJob{}
	r.status = map[string]*TrunkRegistration{}
}

// TrunkRegistrations reports the registrations to carriers, by trunk name.
func (s *Server) TrunkRegistrations() []TrunkRegistration {
	s.trunkRegs.mu.Lock()
	defer s.trunkRegs.mu.Unlock()
	out := make([]TrunkRegistration, 0, len(s.trunkRegs.status))
	for _, st := range s.trunkRegs.status {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Trunk < out[j].Trunk })
	return out
}

func (s *Server) setRegStatus(id string, f func(*TrunkRegistration)) {
	s.trunkRegs.mu.Lock()
	defer s.trunkRegs.mu.Unlock()
	if st, ok := s.trunkRegs.status[id]; ok {
		f(st)
	}
}

// trunkRegistrationLoop keeps one registration job per enabled trunk that
// asks for it, in step with the trunk table, until the server closes.
func (s *Server) trunkRegistrationLoop() {
	defer s.bg.Done()
	t := time.NewTicker(max(s.cfg.Trunks.CacheTTL, time.Second))
	defer t.Stop()
	for {
		s.syncTrunkRegistrations()
		select {
		case <-s.stop:
			s.trunkRegs.mu.Lock()
			jobs := make([]*trunkRegJob, 0, len(s.trunkRegs.running))
			for _, j := range s.trunkRegs.running {
				close(j.stop)
				jobs = append(jobs, j)
			}
			s.trunkRegs.mu.Unlock()
			for _, j := range jobs {
				<-j.done
			}
			return
		case <-t.C:
		}
	}
}

func (s *Server) syncTrunkRegistrations() {
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	ts, err := s.trunks.get(ctx, s.store)
	if err != nil {
		s.log.Warn("sip trunk registrations: load trunks", "err", err)
		return
	}
	want := map[string]store.Trunk{}
	for _, ct := range ts {
		if ct.Register && ct.Host != "" && ct.Username != "" && ct.Password != "" {
			want[ct.ID] = ct.Trunk
		}
	}
	r := &s.trunkRegs
	var stopped []*trunkRegJob
	r.mu.Lock()
	for id, j := range r.running {
		if t, ok := want[id]; !ok || !t.TMUpdate.Equal(j.version) {
			close(j.stop)
			stopped = append(stopped, j)
			delete(r.running, id)
			delete(r.status, id)
		}
	}
	for id, t := range want {
		if _, ok := r.running[id]; ok {
			continue
		}
		j := &trunkRegJob{version: t.TMUpdate, stop: make(chan struct{}), done: make(chan struct{})}
		r.running[id] = j
		r.status[id] = &TrunkRegistration{Trunk: t.Name}
		go s.runTrunkRegistration(t, j)
	}
	r.mu.Unlock()
	for _, j := range stopped {
		<-j.done
	}
}

// runTrunkRegistration registers with one carrier, refreshes before expiry,
// retries failures (Retry-After, else exponential backoff) and unregisters
// when stopped.
func (s *Server) runTrunkRegistration(t store.Trunk, j *trunkRegJob) {
	defer close(j.done)
	reg := &carrierRegistration{
		srv:     s,
		trunk:   t,
		callID:  uuid.NewString(),
		fromTag: sip.GenerateTagN(16),
		cseq:    1,
		expires: t.RegisterExpires,
	}
	if reg.expires <= 0 {
		reg.expires = int(s.cfg.Trunks.DefaultRegisterExpires / time.Second)
	}
	backoff := s.cfg.Trunks.RegisterRetryMin
	registered := false
	for {
		granted, code, retryAfter, err := reg.register(j.stop, reg.expires)
		var wait time.Duration
		now := time.Now()
		if err == nil {
			registered = true
			backoff = s.cfg.Trunks.RegisterRetryMin
			wait = max(granted*3/4, time.Second)
			s.setRegStatus(t.ID, func(st *TrunkRegistration) {
				st.Registered, st.ExpiresAt, st.LastCode, st.LastError = true, now.Add(granted), code, ""
			})
		} else {
			wait = backoff
			if retryAfter > 0 {
				wait = retryAfter
			}
			backoff = min(backoff*2, s.cfg.Trunks.RegisterRetryMax)
			s.log.Warn("sip trunk registration failed", "trunk", t.Name, "code", code, "err", err, "retry_in", wait.String())
			s.setRegStatus(t.ID, func(st *TrunkRegistration) {
				st.LastCode, st.LastError = code, err.Error()
				if now.After(st.ExpiresAt) {
					st.Registered = false
				}
			})
		}
		s.setRegStatus(t.ID, func(st *TrunkRegistration) {
			st.Attempts, st.NextAttempt = reg.attempts, now.Add(wait)
		})
		timer := time.NewTimer(wait)
		select {
		case <-j.stop:
			timer.Stop()
			if registered {
				// Best effort, briefly: the carrier expires us anyway.
				quick := make(chan struct{})
				time.AfterFunc(3*time.Second, func() { close(quick) })
				if _, _, _, err := reg.register(quick, 0); err != nil {
					s.log.Info("sip trunk unregister", "trunk", t.Name, "err", err)
				}
			}
			return
		case <-timer.C:
		}
	}
}

// carrierRegistration is one trunk's registration dialog-to-be: a fixed
// Call-ID and From tag with increasing CSeq, as RFC 3261 §10.2.4 asks for
// refreshes.
type carrierRegistration struct {
	srv      *Server
	trunk    store.Trunk
	callID   string
	fromTag  string
	cseq     uint32
	expires  int
	attempts int
}

// register sends one REGISTER asking for expires seconds (0 removes our
// binding), answering challenges. It returns the expiry granted.
func (c *carrierRegistration) register(stop <-chan struct{}, expires int) (granted time.Duration, code int, retryAfter time.Duration, err error) {
	t := &c.trunk
	host := t.Host
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	tp := strings.ToUpper(string(t.Transport))
	ruri := sip.Uri{Scheme: "sip", Host: host, Port: t.OutboundPort()}
	contact := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: t.Username,
		Host: c.srv.cfg.AdvertiseIP.String(), Port: c.srv.port}}
	if tp != "UDP" {
		ruri.UriParams = sip.HeaderParams{{K: "transport", V: strings.ToLower(tp)}}
		contact.Address.UriParams = sip.HeaderParams{{K: "transport", V: strings.ToLower(tp)}}
	}
	req := sip.NewRequest(sip.REGISTER, ruri)
	aor := sip.Uri{Scheme: "sip", User: t.Username, Host: host}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", c.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	callID := sip.CallIDHeader(c.callID)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: c.cseq, MethodName: sip.REGISTER})
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	req.AppendHeader(contact)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	req.AppendHeader(sip.NewHeader("User-Agent", c.srv.cfg.UserAgent))
	req.SetBody(nil)
	c.srv.route(req, net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(t.OutboundPort())), tp)

	answered := map[string]bool{}
	rounds := 0
	for {
		c.attempts++
		res, err := c.transact(stop, req)
		c.cseq = req.CSeq().SeqNo + 1
		if err != nil {
			return 0, 0, 0, err
		}
		switch {
		case res.IsSuccess():
			return grantedExpiry(res, contact, expires), res.StatusCode, 0, nil
		case res.StatusCode == 401 || res.StatusCode == 407:
			next, aerr := withCredentials(req, res, t.Username, t.Password, answered, &rounds)
			if aerr != nil {
				return 0, res.StatusCode, retryAfterOf(res), fmt.Errorf("%d %s: %w", res.StatusCode, res.Reason, aerr)
			}
			req = next
		case res.StatusCode == 423:
			// Interval Too Brief: ask for what the carrier wants, once.
			if v, err := strconv.Atoi(headerValue(res, "Min-Expires")); err == nil && v > expires && expires != 0 {
				c.expires, expires = v, v
				next := req.Clone()
				next.RemoveHeader("Via")
				next.RemoveHeader("Expires")
				next.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(v)))
				next.CSeq().SeqNo++
				req = next
				continue
			}
			return 0, res.StatusCode, 0, fmt.Errorf("%d %s", res.StatusCode, res.Reason)
		default:
			return 0, res.StatusCode, retryAfterOf(res), fmt.Errorf("%d %s", res.StatusCode, res.Reason)
		}
	}
}

// transact sends req and waits for its final response.
func (c *carrierRegistration) transact(stop <-chan struct{}, req *sip.Request) (*sip.Response, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	tx, err := c.srv.sendRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	return finalResponse(ctx, tx)
}

// grantedExpiry reads how long the registrar keeps our binding: the
// expires of our Contact in the 200, else its Expires, else what we asked.
func grantedExpiry(res *sip.Response, ours *sip.ContactHeader, asked int) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok || ch.Address.User != ours.Address.User || ch.Address.Port != ours.Address.Port ||
			!strings.EqualFold(ch.Address.Host, ours.Address.Host) {
			continue
		}
		if v, ok := ch.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	if n, err := strconv.Atoi(headerValue(res, "Expires")); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	return time.Duration(asked) * time.Second
}

// retryAfterOf reads Retry-After (RFC 3261 §20.33: seconds, then an
// optional comment and parameters); 0 if absent or unreadable.
func retryAfterOf(res *sip.Response) time.Duration {
	v := headerValue(res, "Retry-After")
	if i := strings.IndexAny(v, " ;("); i >= 0 {
		v = v[:i]
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(min(n, 86400)) * time.Second
}

func headerValue(res *sip.Response, name string) string {
	if h := res.GetHeader(name); h != nil {
		return strings.TrimSpace(h.Value())
	}
	return ""
}
