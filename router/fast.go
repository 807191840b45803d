package router

import (
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tenhq/ten/router/fleet"
	"github.com/tenhq/ten/router/upstream"
)

// This file is what the fast path (router/fastpath) uses of the router: it
// serves a request itself only while the instance is awake and nothing
// stands in its way, and hands everything else to Router.ServeHTTP.

// LingerTime bounds how long a refused client's connection is read and
// dropped before it closes (lingering close, on both paths).
const LingerTime = 5 * time.Second

// Lookup resolves a Host header value to its Route; nil when the fast path
// cannot serve it (another host, an unknown or unroutable instance).
func (r *Router) Lookup(host []byte) *Route { return r.lookup(host) }

// Logger is the router's logger.
func (r *Router) Logger() *slog.Logger { return r.log }

// MaxBody is the bound on a request body (Options.MaxBodyBytes; 0: none).
func (r *Router) MaxBody() int64 { return r.maxBody }

// BodyTooLarge is the 413's message for a body of n bytes (n < 0: a body
// that grew past MaxBody).
func (r *Router) BodyTooLarge(n int64) string { return r.bodyTooLarge(n) }

// FleetPeer reports whether the client at ip is another node of the fleet
// (Options.FleetPeer), whose X-Forwarded-* headers are kept.
func (r *Router) FleetPeer(ip string) bool { return r.fleetPeer != nil && r.fleetPeer(ip) }

// TrustedProxy reports whether the client at ip is a proxy in front of ten
// whose X-Forwarded-* headers are kept (Options.TrustedProxy).
func (r *Router) TrustedProxy(ip string) bool { return r.trustedProxy != nil && r.trustedProxy(ip) }

// ClientProxies reports, by IP, the peers that carry other clients'
// requests and name them in X-Forwarded-For: the trusted proxies in front
// of ten (Options.TrustedProxy) and, in a fleet, the other nodes' routers
// (Options.FleetPeer). The per-client bounds (settings.max_conns_per_address,
// spawn_rate_per_client) count each of those clients instead of the peer,
// which would otherwise shut all of them out for one. nil when there are
// none.
func (r *Router) ClientProxies() func(ip string) bool { return r.clientProxy }

// clientProxies is ClientProxies of a router trusting trusted and peer
// (either nil: none).
func clientProxies(trusted, peer func(ip string) bool) func(ip string) bool {
	switch {
	case peer == nil:
		return trusted
	case trusted == nil:
		return peer
	}
	return func(ip string) bool { return trusted(ip) || peer(ip) }
}

// TrustsForwarded reports whether req's X-Forwarded-* headers name its
// client: it came from a trusted proxy (Options.TrustedProxy), or from
// another node's router with the fleet's token (Options.FleetPeer,
// Options.FleetAuth).
func (r *Router) TrustsForwarded(req *http.Request) bool {
	return r.trustedAddr(req.RemoteAddr) || fleet.FromPeer(req, r.fleetPeer, r.fleetAuth)
}

// FleetAuthValid reports whether v is the fleet's peer token (the value of
// a fleet.AuthHeader line; always false without a fleet).
func (r *Router) FleetAuthValid(v []byte) bool { return r.fleetAuth.Valid(v) }

// trustedAddr is TrustedProxy for a request's RemoteAddr (HOST:PORT).
func (r *Router) trustedAddr(remote string) bool {
	if r.trustedProxy == nil {
		return false
	}
	ip, _, err := net.SplitHostPort(remote)
	return err == nil && r.trustedProxy(ip)
}

// Answered notes that rt's instance answered a request: it is awake, and a
// failed wake is over.
func (r *Router) Answered(rt *Route) {
	if !rt.awake.Load() {
		rt.setAwake()
	}
	if r.ctrl != nil && rt.wakeFailed.Load() {
		rt.wakeMu.Lock()
		rt.wakeFailed.Store(false)
		r.ctrl.Answered(rt.Instance)
		rt.wakeMu.Unlock()
	}
}

// AcquireAwake counts a request in flight if the instance runs and nothing
// stands between it and the request (a stop, a freeze, a failed mark or
// Refuse, its MaxInflight reached); otherwise (false) the fallback path handles the
// request (it waits, wakes, thaws or explains). Release ends what a true began.
func (rt *Route) AcquireAwake() bool {
	if !rt.awake.Load() || rt.frozen.Load() || rt.Refuse != "" {
		return false
	}
	rt.mu.Lock()
	ok := rt.stopping == nil && !rt.removed && rt.failed == "" && rt.awake.Load() && !rt.frozen.Load() && !rt.fullLocked()
	if ok {
		rt.inflight++
		rt.last.Store(time.Now().UnixNano())
	}
	rt.mu.Unlock()
	return ok
}

// Release ends a request in flight (AcquireAwake).
func (rt *Route) Release() { rt.release() }

// Pool holds the fast path's idle connections to the instance.
func (rt *Route) Pool() *upstream.Pool { return &rt.pool }

// Dial opens a new connection to the instance, waking a directly run app
// that does not listen (up to its startup_timeout).
func (rt *Route) Dial() (*upstream.Conn, error) { return rt.dial() }

// Observe records a request the fast path served (Options.Observer, or
// what an InstanceObserver resolved for the instance).
func (rt *Route) Observe(code int, d time.Duration) {
	if rt.observe != nil {
		rt.observe(code, d)
	}
}
