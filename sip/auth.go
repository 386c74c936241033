package sip

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/store"
)

// Identity is who a request comes from, as far as the server established
// it. Both nil means anonymous.
type Identity struct {
	// Extension authenticated with digest credentials.
	Extension *store.Extension
	// Trunk recognised by the request's source address, or authenticated
	// with the trunk's inbound credentials.
	Trunk *store.Trunk
}

// Authenticated reports whether the request came from a known extension or
// trunk.
func (id Identity) Authenticated() bool { return id.Extension != nil || id.Trunk != nil }

// MayUseTrunks reports whether calls on behalf of id may go out through a
// trunk: a trunk's own calls, or an enabled extension allowed to call out.
func (id Identity) MayUseTrunks() bool {
	return id.Trunk != nil || (id.Extension != nil && id.Extension.Enabled && id.Extension.CallOut)
}

// authTimeout bounds the store lookups of one authentication.
const authTimeout = 3 * time.Second

// authorizeInvite decides who a new INVITE is from. It answers the request
// itself (407, 403, 400) unless it returns ok.
func (s *Server) authorizeInvite(req *sip.Request, tx sip.ServerTransaction) (Identity, bool) {
	if s.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
		t, err := s.trunkBySource(ctx, sourceIP(req))
		cancel()
		if err != nil {
			s.log.Error("sip trunk lookup", "err", err)
			s.respond(req, tx, 500, "Server Internal Error", sip.NewHeader("Retry-After", "5"))
			return Identity{}, false
		}
		if t != nil {
			return Identity{Trunk: t}, true
		}
		// A phone that sent credentials unasked gets them checked even
		// where anonymous calls are allowed, so it keeps its identity.
		if req.GetHeader("Proxy-Authorization") != nil || !s.anonymousAllowed(req) {
			return s.authenticate(req, tx, true)
		}
	}
	if s.anonymousAllowed(req) {
		return Identity{}, true
	}
	// Nobody can authenticate without a store.
	s.respond(req, tx, 403, "Forbidden")
	return Identity{}, false
}

func (s *Server) anonymousAllowed(req *sip.Request) bool {
	if !s.cfg.AllowAnonymous {
		return false
	}
	return s.cfg.AnonymousTo == nil || s.cfg.AnonymousTo(req.Recipient.User)
}

// authenticate checks req's digest credentials (Proxy-Authorization when
// proxy, else Authorization) and answers the request itself unless it
// returns ok. Unknown users, disabled extensions, wrong passwords and
// locked-out sources all get the same 403, so the answers say nothing about
// which user names exist.
func (s *Server) authenticate(req *sip.Request, tx sip.ServerTransaction, proxy bool) (Identity, bool) {
	code, reason, challengeHdr, credHdr := 401, "Unauthorized", "WWW-Authenticate", "Authorization"
	if proxy {
		code, reason, challengeHdr, credHdr = 407, "Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization"
	}
	ip := sourceIP(req)
	if s.lock.locked(ip) {
		s.respond(req, tx, 403, "Forbidden")
		return Identity{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	var lookupErr error
	res, id := s.auth.check(req, credHdr, func(username string) (*credentials, bool) {
		c, err := s.credentialsFor(ctx, username)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			lookupErr = err
		}
		return c, c != nil
	})
	if lookupErr != nil {
		// A store failure is ours, not the caller's: no failure counted.
		s.log.Error("sip credentials lookup", "err", lookupErr)
		s.respond(req, tx, 500, "Server Internal Error", sip.NewHeader("Retry-After", "5"))
		return Identity{}, false
	}
	switch res {
	case authOK:
		s.lock.succeed(ip)
		return id, true
	case authMissing, authRenew, authStale:
		hdrs := []sip.Header{}
		for _, c := range s.auth.challenges(ip, res == authStale) {
			hdrs = append(hdrs, sip.NewHeader(challengeHdr, c))
		}
		s.respond(req, tx, code, reason, hdrs...)
	case authInvalid:
		s.lock.fail(ip)
		s.respond(req, tx, 400, "Bad Authorization Header")
	default:
		if s.lock.fail(ip) {
			s.log.Warn("sip source locked out after failed authentications", "source", ip,
				"for", s.cfg.Auth.LockoutDuration.String())
		}
		s.log.Info("sip authentication failed", "method", string(req.Method), "source", req.Source(), "call_id", callID(req))
		s.respond(req, tx, 403, "Forbidden")
	}
	return Identity{}, false
}

// credentialsFor finds what a digest user name stands for: an enabled
// extension, else an enabled trunk's inbound account.
func (s *Server) credentialsFor(ctx context.Context, username string) (*credentials, error) {
	e, err := s.store.ExtensionByUsername(ctx, username)
	switch {
	case err == nil && e.Enabled:
		if e.Realm != s.cfg.Realm {
			s.log.Warn("sip extension's password was set for another realm; set it again",
				"extension", e.Number, "realm", e.Realm, "server_realm", s.cfg.Realm)
		}
		return &credentials{realm: e.Realm, ha1MD5: e.HA1MD5, ha1SHA256: e.HA1SHA256, identity: Identity{Extension: e}}, nil
	case err == nil:
		return nil, nil // disabled: answered like an unknown user
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	ts, err := s.trunks.get(ctx, s.store)
	if err != nil {
		return nil, err
	}
	for i := range ts {
		t := &ts[i].Trunk
		if t.InboundUsername == username {
			tc := *t
			return &credentials{realm: t.InboundRealm, ha1MD5: t.InboundHA1MD5, ha1SHA256: t.InboundHA1SHA256,
				identity: Identity{Trunk: &tc}}, nil
		}
	}
	return nil, nil
}

// trunkBySource returns the enabled trunk whose inbound addresses contain
// ip, or nil. The first by priority wins when several do.
func (s *Server) trunkBySource(ctx context.Context, ip string) (*store.Trunk, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, nil
	}
	a = a.Unmap()
	ts, err := s.trunks.get(ctx, s.store)
	if err != nil {
		return nil, err
	}
	for i := range ts {
		for _, p := range ts[i].inbound {
			if p.Contains(a) {
				t := ts[i].Trunk
				return &t, nil
			}
		}
	}
	return nil, nil
}

// cachedTrunk is a trunk with its inbound addresses parsed once.
type cachedTrunk struct {
	store.Trunk
	inbound []netip.Prefix
}

// trunkCache keeps the enabled trunks for a short while: every INVITE looks
// them up, and a flood of INVITEs must not become a flood of queries.
type trunkCache struct {
	ttl    time.Duration
	mu     sync.Mutex
	loaded time.Time
	trunks []cachedTrunk
}

func (c *trunkCache) get(ctx context.Context, st Store) ([]cachedTrunk, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.trunks != nil && time.Since(c.loaded) < c.ttl {
		return c.trunks, nil
	}
	ts, err := st.EnabledTrunks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]cachedTrunk, 0, len(ts))
	for _, t := range ts {
		ct := cachedTrunk{Trunk: t}
		for _, s := range t.InboundAddrs {
			if p, err := netip.ParsePrefix(s); err == nil {
				ct.inbound = append(ct.inbound, p)
			} else if a, err := netip.ParseAddr(s); err == nil {
				ct.inbound = append(ct.inbound, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			}
		}
		out = append(out, ct)
	}
	c.trunks, c.loaded = out, time.Now()
	return out, nil
}

// invalidate makes the next get reload.
func (c *trunkCache) invalidate() {
	c.mu.Lock()
	c.trunks = nil
	c.mu.Unlock()
}

// ReloadTrunks makes the next call or registration check read the trunk
// table again, instead of waiting for the cache to expire.
func (s *Server) ReloadTrunks() { s.trunks.invalidate() }
