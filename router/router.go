// Package router is ten's HTTP data plane: it maps a request's Host to an
// instance ({id}.{service}.{domain}) or a weighted choice among a service's
// instances ({service}.{domain}), relays it to the instance's systemd-held
// unix socket (which wakes a sleeping instance by socket activation), counts
// activity per instance, and puts idle instances to sleep.
//
// Router.ServeHTTP is the full path, through net/http, for everything;
// the lean HTTP/1.1 loop that serves most requests without it is
// router/fastpath, which hands it the rest. Beside them: router/http1 (the
// fast path's strict HTTP/1.x parsers), router/upstream (connections to
// instances and their pool) and router/wakeq (the bounded queue of wakes).
package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tenhq/ten/internal/forwarded"
	"github.com/tenhq/ten/router/addrcap"
	"github.com/tenhq/ten/router/fleet"
	"github.com/tenhq/ten/router/http1"
	"github.com/tenhq/ten/router/upstream"
	"github.com/tenhq/ten/router/wakeq"
	"github.com/tenhq/ten/units"
)

// Controller is what the router needs from the rest of ten: putting an
// instance to sleep, and recording whether a wake got an answer.
type Controller interface {
	Sleep(ctx context.Context, inst units.Instance) error
	WakeFailed(inst units.Instance, reason string)
	Answered(inst units.Instance)
}

// Waker is what a Controller may also be: told that a request starts to
// wake a sleeping instance, before the router connects to it (an instance
// kept on standby is reported as sleeping until then).
type Waker interface {
	Waking(inst units.Instance)
}

// Observer is told about every proxied request and every wake, for metrics.
// Calls come from request goroutines and must not block.
type Observer interface {
	// ObserveRequest reports a finished request: the status code the client
	// got and the time from arrival to the end of the response.
	ObserveRequest(inst units.Instance, code int, d time.Duration)
	// ObserveWake reports one wake of a sleeping instance (counted once even
	// when many requests wait for it): the time until the first response
	// headers, and the error when it did not answer.
	ObserveWake(inst units.Instance, d time.Duration, err error)
}

// InstanceObserver is an Observer that resolves what it records for one
// instance (its metric series) once, when the instance is Put: the fast
// path then records each request with no label lookup, allocation or
// shared lock.
type InstanceObserver interface {
	Observer
	// RequestObserver returns the function ObserveRequest would be for inst.
	RequestObserver(inst units.Instance) func(code int, d time.Duration)
}

// Freezer freezes and thaws an instance's service (sleep = "freeze"): a
// frozen instance keeps running in the router's view (awake) but gets no
// CPU until thawed. why says what thaws it: "http", "l4", "stop", "probe".
type Freezer interface {
	Freeze(ctx context.Context, inst units.Instance) error
	Thaw(ctx context.Context, inst units.Instance, why string) error
}

// Backend describes one routable instance.
type Backend struct {
	Instance units.Instance
	// Socket is the systemd-held socket: the upstream of the instance, or,
	// for an app that runs directly (AppSocket or AppPort set), only where
	// a connection wakes it.
	Socket string
	// AppSocket and AppPort, when set, are a directly run app's own
	// SOCKET_PATH and PORT (on 127.0.0.1): the router connects there once
	// the app listens (units.AppListens: run directly, or behind the shim
	// of a service with L4 addresses, where a connection to Socket wakes
	// the shim, which relays it to the app once it listens).
	AppSocket string
	AppPort   int
	// AppNetns, when set, is where AppPort is: the network namespace of an
	// instance with network = "none", as a /proc/PID/ns/net path ("" while
	// its service runs no process).
	AppNetns func() string
	// AppOwner, when set, checks the cgroup of the socket that answers on
	// 127.0.0.1:AppPort before the router takes it for the app's
	// (upstream.AppDialer.SetOwner): while the app sleeps any process can
	// bind its PORT.
	AppOwner       func(peerCgroup uint64) error
	Weight         int
	IdleTimeout    time.Duration
	StartupTimeout time.Duration
	RequestTimeout time.Duration
	// Freeze makes the reaper freeze the instance after IdleTimeout instead
	// of stopping it (needs Options.Freezer); StopAfter > 0 then stops a
	// frozen instance once it has been silent that long.
	Freeze    bool
	StopAfter time.Duration
	// IdleInbound: only inbound activity keeps the instance awake
	// (idle_activity = "inbound"): its requests, its clients' connections,
	// not the connections it opens itself.
	IdleInbound bool
	// MaxInflight bounds the requests in flight at once (service's
	// max_inflight; 0: none): past it a request gets 503 with Retry-After.
	MaxInflight int
	// Refuse, when set, is why the router serves none of the instance's
	// requests (its service is no longer declared in the config, so ten
	// does not know how to reach or start its app): each answers 503 with
	// it at once, nothing touches the instance's sockets, and the instance
	// is out of its service's rotation.
	Refuse string
}

// Router routes requests by Host.
type Router struct {
	domain string
	admin  http.Handler
	ctrl   Controller
	log    *slog.Logger

	mu       sync.RWMutex
	backends map[units.Instance]*Route
	// fold finds a backend by its id in lower case (foldKey): a Host
	// names an id whatever its case.
	fold map[units.Instance]*Route
	// members are the backends of each service, by id.
	members map[string]map[string]*Route
	// declared are the services the config declares (SetServices).
	declared map[string]bool
	proxy    *httputil.ReverseProxy
	// fwd relays to other nodes of a fleet.
	fwd *fleet.Forwarder
	// table is what requests route by, rebuilt under mu on every change.
	table atomic.Pointer[table]
	// awake is what the reaper looks at.
	awake awakeSet
	// sleeps are the reaper's freezes and stops under way (each in its
	// own goroutine), at most MaxSleeps at once.
	sleeps sleepSlots

	// The hooks of Options, fixed at New.
	activity    func(units.Instance, bool) (time.Time, bool)
	connections func(units.Instance) int
	freezer     Freezer
	observer    Observer
	create      func(ctx context.Context, inst units.Instance, client string) error
	wakes       *wakeq.Queue
	wakeWait    time.Duration
	maxBody     int64
	fleetPeer   func(ip string) bool
	// fleetAuth: Options.FleetAuth.
	fleetAuth *fleet.PeerAuth
	// trustedProxy: Options.TrustedProxy.
	trustedProxy func(ip string) bool
	// clientProxy: trustedProxy or fleetPeer (ClientProxies).
	clientProxy func(ip string) bool
	// fleetService picks a {service}.DOMAIN request's instance across
	// the fleet (Options.FleetService).
	fleetService func(svc string) *Forward
	// peerMark: Options.PeerMark.
	peerMark int
}

// Options are the hooks a router is built with; each may be nil.
type Options struct {
	// Activity reports activity the router cannot see (eBPF counters of
	// L4 traffic); the reaper takes the later of both. inbound asks for
	// the instance's inbound activity only (Backend.IdleInbound): not its
	// own outbound connections.
	Activity func(inst units.Instance, inbound bool) (time.Time, bool)
	// Connections reports the open connections of an instance that the
	// router does not relay (L4 clients, counted by eBPF); the reaper
	// leaves an instance with open connections awake, as it does one with
	// a request in flight.
	Connections func(units.Instance) int
	// Freezer freezes and thaws instances whose Backend says Freeze;
	// without it they are stopped.
	Freezer Freezer
	// Observer gets request and wake measurements.
	Observer Observer
	// Create, when set, is asked to create an instance that a request for
	// {id}.{service}.{domain} names and that does not exist (tenement's
	// wake on request of a new id); client is the peer's IP address (an
	// IPv6 peer's /64, as addrcap.Name names it). It returns
	// once the instance is Put, or an error: a *Refused says what to
	// answer, a *Forward relays the request to another node of the fleet,
	// any other error answers 502.
	Create func(ctx context.Context, inst units.Instance, client string) error
	// Wakes, when set, bounds the wakes that run at once: a request for a
	// sleeping instance waits for its place before it connects (so its
	// startup_timeout counts from its own wake's start), and gets 503 with
	// Retry-After at once when the queue is full.
	Wakes *wakeq.Queue
	// WakeQueueTimeout bounds a wake's wait in Wakes before it starts
	// (settings.wake_queue_timeout; 0: DefaultWakeQueueTimeout). The wait
	// is not part of the instance's startup_timeout.
	WakeQueueTimeout time.Duration
	// MaxBodyBytes bounds a request body passed to an instance (0: no
	// bound; settings.max_body_mb): a larger Content-Length is answered
	// 413 before anything is forwarded, and a chunked body that grows past
	// it is cut: the instance's connection is closed mid-body, and the
	// client gets 413 unless the instance had answered already.
	MaxBodyBytes int64
	// FleetPeer, when set (fleet mode), reports whether a client address
	// is another node's router: the X-Forwarded-* headers of its requests
	// that carry the fleet's token (FleetAuth), which name the original
	// client, are kept instead of dropped.
	FleetPeer func(ip string) bool
	// FleetAuth is the fleet's peer token (fleet mode): this router shows
	// it on the requests it forwards, and a peer's forwarded request is
	// taken as such only with it. Without it (nil) no request is.
	FleetAuth *fleet.PeerAuth
	// TrustedProxy, when set (settings.trusted_proxies), reports whether a
	// client address is a proxy in front of ten (Caddy, a load balancer):
	// its X-Forwarded-For is kept and the proxy's address appended to it,
	// and its X-Forwarded-Host and X-Forwarded-Proto are kept, so that the
	// app sees the original client and scheme. Anyone else's are dropped.
	TrustedProxy func(ip string) bool
	// FleetService, when set (fleet mode), is asked first for a
	// {service}.DOMAIN request that no node forwarded: it picks among the
	// service's instances on every node by weight, and returns where to
	// forward the request (another node's instance), or nil to pick among
	// this node's instances as without a fleet.
	FleetService func(svc string) *Forward
	// PeerMark, when not 0, is the SO_MARK of the router's TCP connections
	// to directly run apps (requests, probes, readiness polls): the
	// activity accounting does not count them (acct.PeerMark), since the
	// router counts its own requests, and a health probe is not activity.
	PeerMark int
}

// DefaultWakeQueueTimeout is Options.WakeQueueTimeout's default.
const DefaultWakeQueueTimeout = 30 * time.Second

// Refused is Create's answer when it will not create an instance: the
// client gets Status with Msg.
type Refused struct {
	Status int
	Msg    string
}

func (e *Refused) Error() string { return e.Msg }

// New returns a router for domain; requests for other hosts (the bare
// domain, an IP, localhost) go to admin.
func New(domain string, admin http.Handler, ctrl Controller, log *slog.Logger, o Options) *Router {
	r := &Router{domain: strings.ToLower(domain), admin: admin, ctrl: ctrl, log: log, backends: map[units.Instance]*Route{},
		fold: map[units.Instance]*Route{}, members: map[string]map[string]*Route{},
		activity: o.Activity, connections: o.Connections, freezer: o.Freezer, observer: o.Observer, create: o.Create, wakes: o.Wakes,
		wakeWait: o.WakeQueueTimeout, maxBody: o.MaxBodyBytes, fleetPeer: o.FleetPeer, fleetAuth: o.FleetAuth, trustedProxy: o.TrustedProxy, fleetService: o.FleetService,
		peerMark: o.PeerMark}
	r.fwd = fleet.NewForwarder(log, r.trustedAddr, o.FleetAuth)
	r.clientProxy = clientProxies(o.TrustedProxy, o.FleetPeer)
	if r.wakeWait <= 0 {
		r.wakeWait = DefaultWakeQueueTimeout
	}
	r.table.Store(&table{})
	r.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Another node's router or a trusted proxy: its
			// X-Forwarded-* name the client, as the fast path passes them.
			fleet.SetXForwarded(pr, r.TrustsForwarded(pr.In))
			// The fleet's token is for routers; never an app's to see.
			pr.Out.Header.Del(fleet.AuthHeader)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = pr.In.Host
			pr.Out.Host = pr.In.Host
		},
		Transport:  roundTripper{},
		BufferPool: upstream.BufferPool{},
		// What the app has sent goes to the client at once, as on the
		// fast path: a body of known length streams too.
		FlushInterval: -1,
		ErrorHandler:  r.proxyError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return r
}

// Route is one routable instance as the router keeps it while it runs: its
// Backend, whether it is awake, frozen or stopping, its requests in flight
// and its connections. The fast path (router/fastpath) gets one from
// Lookup and uses the methods in fast.go.
type Route struct {
	Backend
	transport *http.Transport
	// dialUp connects to the instance: its systemd-held socket, or a
	// directly run app's own address (upstream.AppDialer).
	dialUp func(ctx context.Context, network, addr string) (net.Conn, error)
	// app is dialUp's dialer for a directly run app (nil otherwise).
	app *upstream.AppDialer
	// observe records a request of the fast path (Options.Observer, or
	// what an InstanceObserver resolved for the instance); nil without one.
	observe func(code int, d time.Duration)
	// pool holds the fast path's idle connections to the instance.
	pool  upstream.Pool
	awake atomic.Bool
	// reap is the router's awakeSet, which setAwake adds the route to.
	reap *awakeSet
	// awakeGen counts SetAwake calls, so the reaper can tell whether
	// systemd reported a state while it was stopping the service.
	awakeGen atomic.Uint64
	last     atomic.Int64 // unix nanos of the last activity
	weight   atomic.Int32
	// waker is held by the one request that measures a wake.
	waker atomic.Bool
	// wakeFailed is set while the Controller holds a failed wake for the
	// instance; the next answer, waking or not, clears it. wakeMu orders
	// setting and clearing with the Controller's calls.
	wakeFailed atomic.Bool
	wakeMu     sync.Mutex

	// frozen is set while the instance's service is frozen, frozenSince
	// (unix nanos) since when.
	frozen      atomic.Bool
	frozenSince atomic.Int64

	mu       sync.Mutex
	inflight int
	probing  int
	stopping chan struct{}
	// thawing is closed when the thaw in progress ends, with thawErr.
	thawing chan struct{}
	thawErr error
	removed bool
	failed  string
}

// Put adds or replaces an instance.
func (r *Router) Put(b Backend, awake bool) {
	nb := &Route{Backend: b}
	sock := b.Socket
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	if b.AppSocket != "" || b.AppPort > 0 {
		nb.app = upstream.NewAppDialer(sock, b.AppSocket, b.AppPort, b.AppNetns)
		if b.AppOwner != nil {
			nb.app.SetOwner(b.AppOwner)
		}
		nb.app.SetMark(r.peerMark)
		dial = nb.app.DialContext
	}
	nb.dialUp = dial
	nb.transport = &http.Transport{
		DialContext: dial,
		// Every request of this path (wakes, upgrades, streamed uploads,
		// probes) gets a new connection: http.Transport sends an idempotent
		// request again when a reused connection fails after it was
		// written, so a GET that crashes the app would reach it twice. The
		// fast path keeps its own pool and never resends what it wrote.
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	if io, ok := r.observer.(InstanceObserver); ok {
		nb.observe = io.RequestObserver(b.Instance)
	} else if o := r.observer; o != nil {
		nb.observe = func(code int, d time.Duration) { o.ObserveRequest(b.Instance, code, d) }
	}
	nb.reap = &r.awake
	if awake {
		nb.setAwake()
	}
	nb.last.Store(time.Now().UnixNano())
	nb.weight.Store(int32(b.Weight))
	r.mu.Lock()
	old := r.backends[b.Instance]
	r.backends[b.Instance] = nb
	m := r.members[b.Instance.Service]
	if m == nil {
		m = map[string]*Route{}
		r.members[b.Instance.Service] = m
	}
	m[b.Instance.ID] = nb
	r.fold[foldKey(b.Instance)] = nb
	r.apply(b.Instance)
	r.mu.Unlock()
	if old != nil {
		old.transport.CloseIdleConnections()
		old.pool.CloseIdle(true)
	}
}

// Remove forgets an instance.
func (r *Router) Remove(inst units.Instance) { r.remove(inst) }

// RemoveAndDrain is Remove, then waits until the requests that were in
// flight to inst have ended, grace has passed or ctx ends, and returns how
// many were still in flight. A stop a user asks for drains so (tenement's
// stop waits up to 5 s for open connections), so that answers being sent
// are not cut; none is added meanwhile, since a removed route takes no
// request.
func (r *Router) RemoveAndDrain(ctx context.Context, inst units.Instance, grace time.Duration) int {
	b := r.remove(inst)
	if b == nil {
		return 0
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b.mu.Lock()
		n := b.inflight
		b.mu.Unlock()
		if n == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return n
		case <-timer.C:
			return n
		case <-tick.C:
		}
	}
}

// remove is Remove; it returns the removed route (nil when inst had none).
func (r *Router) remove(inst units.Instance) *Route {
	r.mu.Lock()
	b := r.backends[inst]
	if b != nil {
		delete(r.backends, inst)
		if m := r.members[inst.Service]; m != nil {
			delete(m, inst.ID)
			if len(m) == 0 {
				delete(r.members, inst.Service)
			}
		}
		if r.fold[foldKey(inst)] == b {
			delete(r.fold, foldKey(inst))
		}
		r.apply(inst)
	}
	r.mu.Unlock()
	if b != nil {
		b.mu.Lock()
		b.removed = true
		b.mu.Unlock()
		b.transport.CloseIdleConnections()
		b.pool.CloseIdle(true)
	}
	return b
}

// AppDialer is the dialer of inst's directly run app (nil for another
// kind, or an unknown instance): ten's readiness watch polls through it, so
// that a wake polls the app once, not once for the router and once for
// the watch.
func (r *Router) AppDialer(inst units.Instance) *upstream.AppDialer {
	if b := r.get(inst); b != nil {
		return b.app
	}
	return nil
}

// SetAwake records whether the instance's service runs (from systemd).
func (r *Router) SetAwake(inst units.Instance, awake bool) {
	if b := r.get(inst); b != nil {
		if awake && !b.awake.Load() {
			b.last.Store(time.Now().UnixNano())
		}
		if !awake {
			b.closeIdle()
			b.frozen.Store(false) // a stopped service is not frozen
		}
		if awake {
			b.setAwake()
		} else {
			b.awake.Store(false)
		}
		b.awakeGen.Add(1)
	}
}

// SetWeight sets the routing weight (0 takes the instance out of the
// service-level rotation; its direct host still works).
func (r *Router) SetWeight(inst units.Instance, w int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.backends[inst]; b != nil {
		b.weight.Store(int32(w))
		r.apply(inst)
		return true
	}
	return false
}

// Swap moves from's share of the service's traffic to to, in one step under
// the router's lock, so no request sees both or neither in the rotation: to
// gets its own weight plus from's (at most 100), or 100 when neither had any
// (as tenement's route does), and from gets 0. Repeating a swap changes
// nothing more. It returns to's new weight.
func (r *Router) Swap(from, to units.Instance) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, b := r.backends[from], r.backends[to]
	if a == nil || b == nil {
		return 0, false
	}
	w := SwapWeight(int(a.weight.Load()), int(b.weight.Load()))
	b.weight.Store(int32(w))
	a.weight.Store(0)
	r.apply(from, to)
	return w, true
}

// SwapWeight is the weight an instance with weight to has after a route
// moves the traffic of one with weight from to it: the sum, at most 100, or
// 100 when both are 0, so that a route always leaves traffic on its target.
func SwapWeight(from, to int) int {
	w := from + to
	if w > 100 || w == 0 {
		w = 100
	}
	return w
}

// SetFailed marks the instance failed (reason != "") or clears the mark. A
// failed instance is out of the rotation and its direct host answers 503
// without connecting to its socket, so it is not woken.
func (r *Router) SetFailed(inst units.Instance, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.backends[inst]; b != nil {
		b.mu.Lock()
		b.failed = reason
		b.mu.Unlock()
		r.apply(inst)
	}
}

// SetServices tells the router which services the config declares, so that
// {service}.{domain} of a declared service without instances answers 503
// (nothing runs it) rather than 404 (no such service).
func (r *Router) SetServices(names []string) {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	r.mu.Lock()
	r.declared = m
	r.mu.Unlock()
}

func (b *Route) failedReason() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed
}

// ErrAsleep is returned by Probe when the instance does not run: probing it
// would wake it.
var ErrAsleep = errors.New("instance is asleep")

// ErrNoInstance is returned by Probe for an instance the router does not have.
var ErrNoInstance = errors.New("no such instance in the router")

// Probe sends GET path to the instance through its socket, with the Host
// {id}.{service}.{domain}, and returns the status code. Unless wake is set it
// refuses (ErrAsleep) when the service does not run or is being put to sleep,
// and while it runs the reaper leaves the instance alone. A probe is not
// activity: it does not keep an instance awake.
func (r *Router) Probe(ctx context.Context, inst units.Instance, path string, timeout time.Duration, wake bool) (int, error) {
	b := r.get(inst)
	if b == nil {
		return 0, ErrNoInstance
	}
	b.mu.Lock()
	if b.removed {
		b.mu.Unlock()
		return 0, ErrNoInstance
	}
	if !wake && (b.stopping != nil || !b.awake.Load() || b.frozen.Load()) {
		b.mu.Unlock()
		return 0, ErrAsleep
	}
	b.probing++
	b.mu.Unlock()
	if wake && b.frozen.Load() {
		if err := r.thaw(ctx, b, "probe"); err != nil {
			b.mu.Lock()
			b.probing--
			b.mu.Unlock()
			return 0, err
		}
	}
	defer func() {
		b.mu.Lock()
		b.probing--
		b.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host := inst.ID + "." + inst.Service + "." + r.domain
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+path, nil)
	if err != nil {
		return 0, err
	}
	req.Host = host
	req.Header.Set("User-Agent", "ten-health")
	resp, err := b.transport.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("no answer within %s", timeout)
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Stat is the router's view of one instance.
type Stat struct {
	Awake        bool
	Inflight     int
	Weight       int
	LastActivity time.Time
	// Frozen is set while the service is frozen, since FrozenSince.
	Frozen      bool
	FrozenSince time.Time
	// Address is 127.0.0.1:PORT of a directly run app that last answered
	// the router there, on the host's loopback; "" otherwise.
	Address string
}

// Stat returns the router's view of inst.
func (r *Router) Stat(inst units.Instance) (Stat, bool) {
	b := r.get(inst)
	if b == nil {
		return Stat{}, false
	}
	b.mu.Lock()
	n := b.inflight
	b.mu.Unlock()
	st := Stat{Awake: b.awake.Load(), Inflight: n, Weight: int(b.weight.Load()), LastActivity: r.lastActivity(b), Frozen: b.frozen.Load()}
	if st.Frozen {
		st.FrozenSince = time.Unix(0, b.frozenSince.Load())
	}
	if b.app != nil {
		st.Address = b.app.OnHostPort()
	}
	return st, true
}

// SetFrozen records that the instance's service is frozen since then (ten
// found it frozen at start), or not (zero since).
func (r *Router) SetFrozen(inst units.Instance, since time.Time) {
	if b := r.get(inst); b != nil {
		if !since.IsZero() {
			b.frozenSince.Store(since.UnixNano())
		}
		b.frozen.Store(!since.IsZero())
	}
}

// Thaw thaws a frozen instance (an L4 connection for it arrived, or it is
// about to be stopped or restarted); concurrent callers share one thaw. An
// instance that is not frozen is left alone.
func (r *Router) Thaw(ctx context.Context, inst units.Instance, why string) error {
	b := r.get(inst)
	if b == nil {
		return ErrNoInstance
	}
	return r.thaw(ctx, b, why)
}

// thaw thaws b once for every caller that finds it frozen meanwhile, and
// counts as activity, so that the reaper does not freeze it again at once.
func (r *Router) thaw(ctx context.Context, b *Route, why string) error {
	b.mu.Lock()
	if !b.frozen.Load() {
		b.mu.Unlock()
		return nil
	}
	if ch := b.thawing; ch != nil {
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.mu.Lock()
		err := b.thawErr
		b.mu.Unlock()
		return err
	}
	ch := make(chan struct{})
	b.thawing = ch
	b.mu.Unlock()
	var err error
	if r.freezer == nil {
		err = errors.New("no freezer")
	} else {
		// The thaw finishes even when the request that asked goes away:
		// others may wait for it.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = r.freezer.Thaw(tctx, b.Instance, why)
		cancel()
	}
	b.mu.Lock()
	if err == nil {
		b.frozen.Store(false)
		b.last.Store(time.Now().UnixNano())
	} else {
		r.log.Error("thaw failed", "instance", b.Instance.String(), "why", why, "err", err)
	}
	b.thawErr = err
	b.thawing = nil
	b.mu.Unlock()
	close(ch)
	return err
}

func (r *Router) get(inst units.Instance) *Route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.backends[inst]
}

// getFold finds the instance a Host names: DNS ignores case, so a host
// reaches an id with capitals too (ids differing only by case are refused
// where they are made).
func (r *Router) getFold(inst units.Instance) *Route {
	if b := r.get(inst); b != nil {
		return b
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.fold[foldKey(inst)]
}

// foldKey is the instance with its id in lower case: the key of Router.fold.
func foldKey(inst units.Instance) units.Instance {
	return units.Instance{Service: inst.Service, ID: asciiLower(inst.ID)}
}

func (r *Router) lastActivity(b *Route) time.Time {
	t := time.Unix(0, b.last.Load())
	if r.activity != nil {
		if t2, ok := r.activity(b.Instance, b.IdleInbound); ok && t2.After(t) {
			t = t2
		}
	}
	return t
}

// route resolves a host to a backend; handled is false for hosts that are
// not under the domain (they go to the admin handler).
func (r *Router) route(host string) (b *Route, handled bool, status int, msg string) {
	host, labels, ok := r.labels(host)
	if !ok {
		return nil, false, 0, ""
	}
	switch len(labels) {
	case 1:
		svc := labels[0]
		if sr := r.table.Load().service(host); sr != nil {
			if b := r.rotation(sr).pick(); b != nil {
				return b, true, 0, ""
			}
			return nil, true, http.StatusServiceUnavailable, fmt.Sprintf("service %s has no instance with weight > 0 that has not failed (see `ten ps`)\n", svc)
		}
		r.mu.RLock()
		declared := r.declared[svc]
		r.mu.RUnlock()
		if declared {
			return nil, true, http.StatusServiceUnavailable, fmt.Sprintf("service %s has no instances: start one with `ten spawn %s:ID`\n", svc, svc)
		}
		return nil, true, http.StatusNotFound, fmt.Sprintf("no service %s on this server (host %s)\n", printable(svc), printable(host))
	case 2:
		inst := units.Instance{Service: labels[1], ID: labels[0]}
		b := r.getFold(inst)
		if b == nil {
			return nil, true, http.StatusNotFound, fmt.Sprintf("no instance %s on this server (host %s)\n", printable(inst.String()), printable(host))
		}
		return b, true, 0, ""
	}
	return nil, true, http.StatusNotFound, fmt.Sprintf("host %s matches no instance: use {id}.{service}.%s or {service}.%s\n", printable(host), r.domain, r.domain)
}

// asciiLower lower-cases the ASCII letters of s and leaves every other byte
// as it is: DNS names compare case-insensitively in ASCII only, and unlike
// strings.ToLower it never turns a stray byte of a hostile Host into a
// three-byte U+FFFD, so the result is never longer than s. It allocates only
// when s has a capital.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// printable is s for an error message: valid UTF-8 stays, and each control
// character or byte that is not UTF-8 becomes '?', so a message that quotes
// a client's Host is never longer than the Host and never carries control
// bytes into a response or a log.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || unicode.IsControl(r) {
			b.WriteByte('?')
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// labels returns the host, lower-cased without port and final dot, and
// its labels below the domain; ok is false for hosts that are not under
// the domain.
func (r *Router) labels(host string) (string, []string, bool) {
	host = asciiLower(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if host == r.domain {
		return host, nil, false
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return host, nil, false
	}
	sub, ok := strings.CutSuffix(host, "."+r.domain)
	if !ok {
		return host, nil, false
	}
	return host, strings.Split(sub, "."), true
}

// createFor asks Options.Create for the instance a request names that does not
// exist; it returns the new backend, or the status and message to answer.
func (r *Router) createFor(req *http.Request) (*Route, int, string, *Forward) {
	_, labels, ok := r.labels(req.Host)
	if !ok || len(labels) != 2 {
		return nil, 0, "", nil
	}
	inst := units.Instance{Service: labels[1], ID: labels[0]}
	// The client, as the per-client creation rate counts it: an IPv6
	// client by its /64 (it can pick any address in it), as the
	// connection cap counts it; behind a trusted proxy or another
	// node's router (with the fleet's token), the client it names.
	var xff []string
	if r.TrustsForwarded(req) {
		xff = req.Header.Values("X-Forwarded-For")
	}
	client := forwarded.Client(req.RemoteAddr, xff, r.clientProxy)
	if ip, err := netip.ParseAddr(client); err == nil {
		client = addrcap.Name(addrcap.KeyOf(ip))
	}
	if err := r.create(req.Context(), inst, client); err != nil {
		var ref *Refused
		if errors.As(err, &ref) {
			return nil, ref.Status, ref.Msg + "\n", nil
		}
		var fwd *Forward
		if errors.As(err, &fwd) {
			return nil, 0, "", fwd
		}
		return nil, http.StatusBadGateway, fmt.Sprintf("create instance %s: %v\n", inst, err), nil
	}
	if b := r.get(inst); b != nil {
		return b, 0, "", nil
	}
	return nil, http.StatusBadGateway, fmt.Sprintf("instance %s was created but is gone again\n", inst), nil
}

type ctxKey struct{}

// ServeHTTP routes one request.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !http1.ValidHostPort(req.Host) {
		// net/http checks Host's characters, not its port; the fast path
		// refuses such a Host when it parses the head.
		http.Error(w, "invalid Host header: its port is not a TCP port (0-65535)", http.StatusBadRequest)
		return
	}
	if r.fleetService != nil && req.Header.Get(HopHeader) == "" {
		if _, labels, ok := r.labels(req.Host); ok && len(labels) == 1 {
			if f := r.fleetService(labels[0]); f != nil {
				r.fwd.Forward(w, req, f)
				return
			}
		}
	}
	b, handled, status, msg := r.route(req.Host)
	if !handled {
		r.admin.ServeHTTP(w, req)
		return
	}
	if b == nil && status == http.StatusNotFound && r.create != nil {
		nb, st, m, fwd := r.createFor(req)
		if fwd != nil {
			r.fwd.Forward(w, req, fwd)
			return
		}
		if nb != nil || st != 0 {
			b, status, msg = nb, st, m
		}
	}
	if b == nil {
		http.Error(w, strings.TrimSuffix(msg, "\n"), status)
		return
	}
	start := time.Now()
	if r.maxBody > 0 && req.ContentLength > r.maxBody {
		// Refused before anything reaches (or wakes) the instance.
		r.refuseBody(w, req, req.Body, req.ContentLength)
		r.observe(b.Instance, http.StatusRequestEntityTooLarge, start)
		return
	}
	if b.Refuse != "" {
		http.Error(w, b.Refuse, http.StatusServiceUnavailable)
		r.observe(b.Instance, http.StatusServiceUnavailable, start)
		return
	}
	if reason := b.failedReason(); reason != "" {
		http.Error(w, fmt.Sprintf("instance %s failed: %s; see `ten health %s`, then `ten restart %s`", b.Instance, reason, b.Instance, b.Instance), http.StatusServiceUnavailable)
		r.observe(b.Instance, http.StatusServiceUnavailable, start)
		return
	}
	if ok, full := b.acquire(); full {
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("instance %s has %d requests in flight, its max_inflight; retry later", b.Instance, b.MaxInflight), http.StatusServiceUnavailable)
		r.observe(b.Instance, http.StatusServiceUnavailable, start)
		return
	} else if !ok {
		http.Error(w, fmt.Sprintf("instance %s was removed", b.Instance), http.StatusNotFound)
		return
	}
	defer b.release()
	// A frozen instance is thawed while the request is already on its way:
	// the connection waits in the systemd-held socket's backlog until the
	// app runs again, so the kernel's thaw (hundreds of µs) overlaps the
	// dial and the request write instead of preceding them.
	var thawed chan error
	if b.frozen.Load() {
		thawed = make(chan error, 1)
		go func() { thawed <- r.thaw(context.WithoutCancel(req.Context()), b, "http") }()
	}
	// Let request and response bodies stream in both directions at once
	// (the Go server otherwise stops reading the body once it answers).
	_ = http.NewResponseController(w).EnableFullDuplex()
	waking := !b.awake.Load()
	st := &reqState{b: b, waking: waking, ctrl: r.ctrl, start: start, thawed: thawed}
	if waking && r.wakes != nil {
		// A wake waits in the queue at most wake_queue_timeout, so that a
		// request never hangs behind a storm of others' wakes; its
		// startup_timeout starts when it leaves the queue.
		tk, err := r.wakes.Acquire(req.Context(), b.Instance.String(), r.wakeWait)
		if err != nil {
			code := 499 // the client went away while queued
			if errors.Is(err, wakeq.ErrFull) || errors.Is(err, wakeq.ErrBacklog) || errors.Is(err, wakeq.ErrWaited) {
				code = http.StatusServiceUnavailable
				w.Header().Set("Retry-After", strconv.Itoa(r.wakes.RetryAfter()))
				http.Error(w, fmt.Sprintf("instance %s is asleep and too many instances are waking now (settings.max_concurrent_wakes, settings.wake_queue, settings.wake_queue_timeout); retry later", b.Instance), code)
			} else {
				w.WriteHeader(code)
			}
			r.observe(b.Instance, code, start)
			return
		}
		st.wake = tk
		defer tk.Done(false)
	}
	if waking {
		if wk, ok := r.ctrl.(Waker); ok {
			wk.Waking(b.Instance)
		}
	}
	if waking && r.observer != nil && b.waker.CompareAndSwap(false, true) {
		st.obs = r.observer
		defer b.waker.Store(false)
	}
	ctx := context.WithValue(req.Context(), ctxKey{}, st)
	if req.Body != nil && req.Body != http.NoBody {
		st.body = &clientBody{rc: req.Body}
		req.Body = st.body
	}
	if r.maxBody > 0 && req.Body != nil && req.Body != http.NoBody {
		// A body of unknown length (chunked, or HTTP/2 without
		// content-length) is cut where it passes the bound: the read fails
		// with *http.MaxBytesError, the upstream request fails with it
		// (roundtrip.go closes the instance's connection) and proxyError
		// answers 413 if nothing was answered yet.
		// The proxy closes the body it reads; the client's stays open so
		// that the 413 can read and drop the rest (refuseBody).
		clientBody := req.Body
		req.Body = http.MaxBytesReader(w, keepOpen{clientBody}, r.maxBody)
		st.clientBody = clientBody
	}
	if req.Body != nil && req.Body != http.NoBody {
		// With full duplex the transport may still be reading the body
		// when the response is done; the server must not start reading
		// the next request meanwhile (net/http panics on that).
		gb := &guardedBody{rc: req.Body}
		req.Body = gb
		defer gb.finish()
	}
	if r.observer == nil {
		r.proxy.ServeHTTP(w, req.WithContext(ctx))
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	r.proxy.ServeHTTP(sw, req.WithContext(ctx))
	r.observe(b.Instance, sw.code, start)
}

func (r *Router) observe(inst units.Instance, code int, start time.Time) {
	if r.observer == nil {
		return
	}
	if code == 0 {
		code = http.StatusOK
	}
	r.observer.ObserveRequest(inst, code, time.Since(start))
}

// statusWriter remembers the status code; Unwrap keeps flushing, hijacking
// (upgrades) and full duplex working through http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 || w.code < 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// guardedBody ends a request body's use by the proxy: finish waits for a
// read in progress, reads what is left (up to 256 KiB) and makes later
// reads return EOF.
type guardedBody struct {
	mu   sync.Mutex
	rc   io.ReadCloser
	done bool
}

func (g *guardedBody) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return 0, io.EOF
	}
	return g.rc.Read(p)
}

func (g *guardedBody) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rc.Close()
}

func (g *guardedBody) finish() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done = true
	// Read what the app left unread (as net/http does without full duplex)
	// while the handler still runs: reaching the body's end later, when
	// the server closes it, would start its background read after it
	// stopped it, and the next request's read panics.
	_, _ = io.CopyN(io.Discard, g.rc, 256<<10)
}

type reqState struct {
	b      *Route
	waking bool
	ctrl   Controller
	start  time.Time
	// obs is set on the one request that measures this wake.
	obs Observer
	// thawed, when set, delivers the result of thawing the frozen instance
	// this request is already on its way to.
	thawed <-chan error
	// wake is the request's place in the wake queue (Options.Wakes).
	wake *wakeq.Ticket
	// clientBody is the client's request body under the max_body_mb
	// reader, for refuseBody.
	clientBody io.ReadCloser
	// body is the client's request body as it came (nil without one).
	body *clientBody
}

// clientBody is a client's request body that remembers the first error
// reading it failed with (malformed chunked framing, a trailer too long, the
// client gone): the client's fault, which proxyError answers with 400
// instead of blaming the instance with a 502.
type clientBody struct {
	rc  io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *clientBody) Close() error { return b.rc.Close() }

// failed returns the error reading the body failed with, or nil.
func (b *clientBody) failed() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// thawError is a request's cause when thawing its frozen instance failed.
type thawError struct{ err error }

func (e *thawError) Error() string { return "thaw: " + e.err.Error() }
func (e *thawError) Unwrap() error { return e.err }

// acquire counts a request in flight; full reports that it was not,
// because MaxInflight are, and ok false without full that the instance
// was removed.
func (b *Route) acquire() (ok, full bool) {
	b.mu.Lock()
	for b.stopping != nil {
		ch := b.stopping
		b.mu.Unlock()
		<-ch
		b.mu.Lock()
	}
	full = b.fullLocked()
	ok = !b.removed && !full
	if ok {
		b.inflight++
	}
	b.last.Store(time.Now().UnixNano())
	b.mu.Unlock()
	return ok, full
}

// fullLocked reports whether MaxInflight requests are in flight (b.mu
// held).
func (b *Route) fullLocked() bool { return b.MaxInflight > 0 && b.inflight >= b.MaxInflight }

// release ends a request; the activity time is set under the lock, so the
// reaper never sees the request gone but its activity not yet recorded.
func (b *Route) release() {
	b.mu.Lock()
	b.inflight--
	b.last.Store(time.Now().UnixNano())
	b.mu.Unlock()
}

// errWakeTimeout and errRequestTimeout are the causes a request is cancelled with.
var (
	errWakeTimeout    = errors.New("wake timeout")
	errRequestTimeout = errors.New("request timeout")
)

type roundTripper struct{}

// RoundTrip sends the request to the instance, with a deadline on the
// response headers only: startup_timeout while the instance wakes,
// request_timeout when it is awake. Bodies then stream without a deadline.
func (roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	st := req.Context().Value(ctxKey{}).(*reqState)
	b := st.b
	timeout, cause := b.RequestTimeout, errRequestTimeout
	if st.waking {
		timeout, cause = b.StartupTimeout, errWakeTimeout
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	t := time.AfterFunc(timeout, func() { cancel(cause) })
	if st.thawed != nil {
		// The request waits in the backlog for the thaw; if the thaw fails
		// it would wait for nothing, so end it with the thaw's error.
		go func() {
			if err := <-st.thawed; err != nil {
				cancel(&thawError{err})
			}
		}()
	}
	var resp *http.Response
	var err error
	if st.waking || st.thawed != nil || req.Header.Get("Upgrade") != "" {
		resp, err = b.transport.RoundTrip(req.WithContext(ctx))
	} else {
		resp, err = b.pool.RoundTrip(req.WithContext(ctx), b.dial)
	}
	if err != nil {
		var te *thawError
		if errors.As(context.Cause(ctx), &te) {
			t.Stop()
			return nil, te
		}
	}
	if !t.Stop() {
		if resp != nil {
			resp.Body.Close()
		}
		cancel(cause)
		st.observeWake(cause)
		return nil, cause
	}
	if err != nil {
		cancel(err)
		st.observeWake(err)
		return nil, err
	}
	st.observeWake(nil)
	if st.wake != nil {
		st.wake.Done(true)
	}
	if !b.awake.Load() {
		b.setAwake()
	}
	// A failed wake is cleared by the next answer, also when systemd said
	// the service is active meanwhile, so that this request was not waking.
	if st.ctrl != nil && (st.waking || b.wakeFailed.Load()) {
		b.wakeMu.Lock()
		b.wakeFailed.Store(false)
		st.ctrl.Answered(b.Instance)
		b.wakeMu.Unlock()
	}
	if rwc, ok := resp.Body.(interface {
		Read([]byte) (int, error)
		Write([]byte) (int, error)
		Close() error
	}); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &cancelRWC{rwc: rwc, cancel: cancel}
	} else {
		resp.Body = &cancelBody{rc: resp.Body, cancel: cancel}
	}
	return resp, nil
}

func (st *reqState) observeWake(err error) {
	if st.obs != nil {
		st.obs.ObserveWake(st.b.Instance, time.Since(st.start), err)
		st.obs = nil
	}
}

func (r *Router) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	st, _ := req.Context().Value(ctxKey{}).(*reqState)
	inst := "?"
	if st != nil {
		inst = st.b.Instance.String()
	}
	var te *thawError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge) && st != nil:
		r.refuseBody(w, req, st.clientBody, -1)
	case st != nil && st.body.failed() != nil:
		// The client's body was malformed (or the client left): not the
		// instance's fault, and nothing to log about it.
		w.Header().Set("Connection", "close")
		http.Error(w, fmt.Sprintf("bad request body for instance %s: %v", inst, st.body.failed()), http.StatusBadRequest)
	case errors.As(err, &te):
		http.Error(w, fmt.Sprintf("instance %s is frozen and could not be thawed: %v", inst, te.err), http.StatusBadGateway)
	case errors.Is(err, errWakeTimeout):
		reason := fmt.Sprintf("did not answer within startup_timeout %s while waking", st.b.StartupTimeout)
		if st.b.app != nil {
			if why := st.b.app.Refused(); why != nil {
				reason += " (" + why.Error() + ")"
			}
		}
		r.log.Warn("wake timed out", "instance", inst, "timeout", st.b.StartupTimeout)
		if r.ctrl != nil {
			st.b.wakeMu.Lock()
			st.b.wakeFailed.Store(true)
			r.ctrl.WakeFailed(st.b.Instance, reason)
			st.b.wakeMu.Unlock()
		}
		http.Error(w, fmt.Sprintf("instance %s %s; see `ten ps` and `journalctl -u %s`", inst, reason, st.b.Instance.ServiceUnit()), http.StatusGatewayTimeout)
	case errors.Is(err, errRequestTimeout):
		http.Error(w, fmt.Sprintf("instance %s did not answer within request_timeout %s", inst, st.b.RequestTimeout), http.StatusGatewayTimeout)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody to answer.
		w.WriteHeader(499)
	default:
		r.log.Warn("proxy error", "instance", inst, "err", err)
		http.Error(w, fmt.Sprintf("instance %s: %v", inst, err), http.StatusBadGateway)
	}
}

type cancelBody struct {
	rc interface {
		Read([]byte) (int, error)
		Close() error
	}
	cancel context.CancelCauseFunc
}

func (c *cancelBody) Read(p []byte) (int, error) { return c.rc.Read(p) }
func (c *cancelBody) Close() error {
	err := c.rc.Close()
	c.cancel(nil)
	return err
}

type cancelRWC struct {
	rwc interface {
		Read([]byte) (int, error)
		Write([]byte) (int, error)
		Close() error
	}
	cancel context.CancelCauseFunc
}

func (c *cancelRWC) Read(p []byte) (int, error)  { return c.rwc.Read(p) }
func (c *cancelRWC) Write(p []byte) (int, error) { return c.rwc.Write(p) }
func (c *cancelRWC) Close() error {
	err := c.rwc.Close()
	c.cancel(nil)
	return err
}

// markAsleep records that the reaper stopped the service, unless systemd
// reported it running again since gen (a connection woke it meanwhile).
func (b *Route) markAsleep(gen uint64) {
	if b.awakeGen.Load() != gen && b.awake.Load() {
		return
	}
	b.awake.Store(false)
}
