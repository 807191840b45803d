// Package server is `ten serve`: it loads tenement.toml, rebuilds its view of
// the instances from systemd, creates the ones the config declares, and runs
// the router, the idle reaper and the admin API. It is a coordinator only:
// systemd is the parent of every app, so ten can die and come back without
// dropping an instance. It keeps the lifecycle of instances (adopt, spawn,
// stop, restart, weights) and wires the packages that do the rest: api (the
// admin API, over the server as its Backend), ps, metrics, deploy,
// fleet/fleetnode, kernel, health, isolation, router.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/api"
	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/dashboard"
	"github.com/tenhq/ten/deploy"
	"github.com/tenhq/ten/fleet/fleetnode"
	"github.com/tenhq/ten/front"
	"github.com/tenhq/ten/health"
	"github.com/tenhq/ten/isolation"
	"github.com/tenhq/ten/kernel"
	"github.com/tenhq/ten/logs"
	"github.com/tenhq/ten/metrics"
	"github.com/tenhq/ten/ondemand"
	"github.com/tenhq/ten/ps"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/router/wakeq"
	"github.com/tenhq/ten/selfunit"
	"github.com/tenhq/ten/statefile"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/systemd/journal"
	"github.com/tenhq/ten/tlsfront"
	"github.com/tenhq/ten/units"
)

// Options configure a server.
type Options struct {
	Config *config.Config
	// Listen overrides settings.listen when not empty.
	Listen string
	// Domain overrides settings.domain when not empty.
	Domain string
	Log    *slog.Logger
}

// Server is a running `ten serve`.
type Server struct {
	// runCtx lives as long as Run: for the watches a spawn starts that must
	// outlast its request. Set before Run makes any instance.
	runCtx context.Context
	// crashed marks the instances systemd is restarting after a crash
	// (noteServiceState).
	crashed crashMarks
	cfg     *config.Config
	log     *slog.Logger
	sd      *systemd.Manager
	router  *router.Router
	// guard checks the API's bearer tokens; api is the admin API
	// (package api), over the server as its Backend (backend.go).
	guard *auth.Guard
	api   *api.API
	shim  string
	// shimBin is the small ten-shim binary, "" where not installed.
	shimBin string
	// metrics is the registry GET /metrics serves.
	metrics *prometheus.Registry
	// kern is BPF accounting and L4 dispatch, or their fallbacks
	// (package kernel).
	kern *kernel.Wiring
	// im counts requests, wakes and restarts per instance (package metrics).
	im *metrics.Instances
	// state holds weights and failed marks across restarts of ten.
	state *statefile.Store
	// ps reads the instances' rows (package ps).
	ps *ps.Reader
	// deployer runs deploys (package deploy).
	deployer *deploy.Deployer
	health   *health.Monitor
	// oom counts OOM kills per instance (package isolation).
	oom *isolation.OOM
	// storage makes and removes quota images and data_dir binds.
	storage *isolation.Storage
	// frz freezes idle instances (sleep = "freeze") when the host can
	// (package kernel).
	frz *kernel.Freezing
	// ownerCheck says whether the router checks who answers on a PORT
	// app's address (portOwner), in cgroupRoot, the cgroup v2 mount.
	ownerCheck apitype.Feature
	cgroupRoot string
	// onDemand creates instances that requests name (ondemand.go).
	onDemand *ondemand.Guard
	// tls is the HTTPS front ([settings.tls], tls.go), nil when off; tlsLn
	// and httpLn are its listeners when systemd passed them.
	tls           *tlsfront.Front
	tlsLn, httpLn net.Listener
	// dash is the web dashboard (dashboard.go), hist its per-instance
	// history of the last hour.
	dash *dashboard.Handler
	hist *dashboard.History
	// streams bounds the open log streams of the API and the dashboard.
	streams logs.Slots
	// meter measures instances' storage for the API, shared and bounded.
	meter isolation.Meter
	// ready sends READY=1 for directly run apps once they listen (ready.go).
	ready readiness
	// sb is the pool of instances on standby (standby.go); synth carries
	// the state of an instance woken from standby to follow.
	sb    standbyPool
	synth chan systemd.Change

	// reg holds the instances, the busy set and every port they hold
	// (package registry).
	reg *registry.Registry
	// fleet is this node's part in a fleet ([fleet], package
	// fleet/fleetnode), nil on a single server.
	fleet *fleetnode.Node
	// slices orders the removal of emptied services' slices with spawns
	// (slicegate.go).
	slices serviceSlices
}

// ErrNotRoot means ten serve runs without the privilege to create units.
var ErrNotRoot = errors.New("ten serve must run as root: it creates systemd units over the system bus and binds the instances' sockets under /run/tenement")

// HowToRun is the hint printed when ten cannot reach a systemd.
const HowToRun = `To try ten on a machine without systemd as init (a container, a CI box), let it boot a private one:
    sudo ./bin/tenbox run -- ./bin/ten serve --config examples/tenement.toml
(see README.md, "Run it").`

// New checks the environment, connects to systemd and adopts existing units.
func New(ctx context.Context, o Options) (*Server, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w\n%s", ErrNotRoot, HowToRun)
	}
	cfg := o.Config
	if o.Domain != "" {
		d := config.NormalDomain(o.Domain)
		if err := config.CheckDomain(d); err != nil {
			return nil, fmt.Errorf("--domain: %w", err)
		}
		cfg.Settings.Domain = d
	}
	if o.Listen != "" {
		cfg.Settings.Listen = o.Listen
	}
	s := &Server{cfg: cfg, log: o.Log, reg: registry.New(), metrics: metrics.Registry(), synth: make(chan systemd.Change, 256)}
	// A node that cannot join its fleet (etcd unreachable, its name held by
	// a live node) stops here, before it touches systemd. Until Run adopts
	// the instances the registry is empty, so a fence meanwhile stops
	// nothing.
	if cfg.Fleet.Enabled() {
		var err error
		s.fleet, err = fleetnode.Start(ctx, fleetnode.Options{Config: cfg, Log: o.Log, Local: fleetLocal{s},
			OnStale: func() { fleetnode.StopStale(ctx, o.Log) }})
		if err != nil {
			return nil, err
		}
	}
	sdm, err := systemd.Connect(ctx, o.Log)
	if err != nil {
		if s.fleet != nil {
			s.fleet.LeaveEmpty()
		}
		return nil, fmt.Errorf("%w\n%s", err, HowToRun)
	}
	s.sd = sdm
	capTenants(ctx, sdm, cfg.Settings, o.Log)
	if err := os.MkdirAll(cfg.DataDirAbs(), 0o700); err != nil {
		sdm.Close()
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s.state, err = statefile.Load(cfg.DataDirAbs())
	if err != nil {
		sdm.Close()
		return nil, err
	}
	s.oom = isolation.NewOOM(o.Log)
	s.storage = isolation.NewStorage(cfg, sdm, o.Log)
	s.hist = dashboard.NewHistory()
	s.im = metrics.NewInstances(s.hist)
	s.metrics.MustRegister(s.im.Collectors()...)
	s.metrics.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: prometheus.BuildFQName("ten", "systemd", "events_dropped_total"),
		Help: "systemd state changes lost to a full buffer; each loss makes ten resynchronise from a full listing of its units.",
	}, func() float64 { return float64(sdm.DroppedEvents()) }))
	s.guard, err = api.LoadGuard(cfg.DataDirAbs(), o.Log)
	if err != nil {
		sdm.Close()
		return nil, err
	}
	// Whether journalctl can search is found out once, here, never from a
	// request's error.
	if ok, why := journal.DetectGrep(); !ok {
		o.Log.Info("log search runs in ten, over every line read: journalctl cannot --grep", "why", why)
	}
	s.shim, s.shimBin, err = selfunit.InstallShims(cfg.Settings.SocketDir, o.Log)
	if err != nil {
		sdm.Close()
		return nil, err
	}
	s.kern, err = kernel.New(kernel.Options{Log: o.Log, Metrics: s.metrics, MaxConnsPerAddr: cfg.Settings.ConnsPerAddress()})
	if err != nil {
		sdm.Close()
		return nil, err
	}
	s.onDemand = ondemand.New(cfg.Settings.SpawnRatePerClient, nil)
	s.metrics.MustRegister(s.onDemand.Collector())
	s.cgroupRoot, _ = ebpf.CgroupV2Root()
	s.ownerCheck = portOwnerFeature(checkPortOwners())
	if !s.ownerCheck.On {
		o.Log.Warn("the owner of an app's PORT is not checked: another process that binds a sleeping instance's PORT would get its requests", "reason", s.ownerCheck.Detail)
	}
	freezer, noFreeze := sdm.NewFreezer()
	s.frz = kernel.NewFreezing(kernel.FreezeOptions{Log: o.Log, Freezer: freezer, Unsupported: noFreeze,
		Wiring: s.kern, Records: s.state, Registry: s.reg, Usage: sdm.Usage,
		MaxFrozenMB: cfg.Settings.MaxFrozenMB, Metrics: s.metrics})
	if err := s.initTLS(); err != nil {
		sdm.Close()
		return nil, err
	}
	s.dash = dashboard.New(&dashBackend{s: s}, s.hist, cfg.Settings.Domain, o.Log.With("component", "dashboard"))
	ro := s.routerOptions()
	ro.Wakes = wakeq.New(cfg.Settings.ConcurrentWakes(runtime.NumCPU()), *cfg.Settings.WakeQueue)
	ro.WakeQueueTimeout = cfg.Settings.WakeQueueWait()
	s.metrics.MustRegister(ro.Wakes.Collectors()...)
	ro.MaxBodyBytes = cfg.Settings.MaxBodyBytes()
	s.api = api.New(api.Options{Backend: backend{s}, Config: cfg, Guard: s.guard, Streams: &s.streams,
		Dashboard: s.dash, Metrics: metrics.Handler(s.metrics, o.Log), RequestStats: s.im.RequestStats, Log: o.Log})
	s.router = router.New(cfg.Settings.Domain, s.api.Handler(), s, o.Log, ro)
	s.frz.SetRouter(s.router)
	s.health = health.NewMonitor(health.MonitorOptions{Log: o.Log, Settings: &cfg.Settings, Systemd: sdm, Router: s.router,
		Registry: s.reg, Marks: s.marks(), ThawForStop: s.frz.ThawForStop,
		OnRestart: s.im.Restarted})
	s.ps = ps.New(ps.Options{Config: cfg, Registry: s.reg, Systemd: sdm, Router: s.router, Health: s.health,
		FrozenMemory: s.frz.MemoryOf, OOM: s.oom})
	s.metrics.MustRegister(metrics.NewStateCollector(s.ps))
	s.deployer = deploy.New(deployInstances{s}, o.Log)
	s.router.SetServices(cfg.ServiceNames())
	return s, nil
}

// routerOptions are the router's hooks: activity and open connections from
// the L4 side and freezing when the host can (package kernel),
// and the metrics (package metrics).
func (s *Server) routerOptions() router.Options {
	o := router.Options{Activity: s.kern.Activity, Observer: s.im, Create: s.createOnRequest, TrustedProxy: s.cfg.Settings.TrustedProxy()}
	if s.fleet != nil {
		o.FleetPeer = s.fleet.IsPeer
		o.FleetAuth = s.fleet.PeerAuth()
		o.FleetService = s.fleet.Service
	}
	if s.kern.Accounting() {
		// Open L4 connections keep an instance awake, frozen or stopped.
		o.Connections = s.kern.Connections
		// The router's own connections to PORT apps are not activity.
		o.PeerMark = s.kern.PeerMark()
	}
	if s.frz.On() {
		o.Freezer = s.frz
	}
	return o
}

// Run serves until ctx ends. Instances keep running after it returns.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	defer s.sd.Close()
	defer func() {
		// The BPF objects are released; the pinned state stays and keeps
		// working.
		if err := s.kern.Close(); err != nil {
			s.log.Warn("release BPF state", "err", err)
		}
	}()
	// Every goroutine Run starts reads the BPF maps, directly or through
	// the router's hooks (the reaper, ps rows of the dashboard's sampler,
	// metrics scrapes): all of them have ended before s.kern.Close
	// (deferred above) closes the maps. bctx also ends them when Run returns for
	// another reason than ctx.
	bctx, stop := context.WithCancel(ctx)
	s.runCtx = bctx
	var bg sync.WaitGroup
	defer func() { stop(); bg.Wait() }()
	if err := s.adopt(ctx); err != nil {
		return err
	}
	s.frz.Restore()
	// The declared instances are made before ten subscribes to systemd's
	// signals (Watch then catches up from a listing): with a subscriber,
	// systemd signals every change of every unit, and making 1,000
	// instances took twice as long.
	if s.fleet != nil {
		// The fleet places declared instances; each node creates what is
		// placed on it.
		if err := s.fleet.PlaceLocal(ctx); err != nil {
			s.log.Error("fleet: placing instances", "err", err)
		}
	} else if err := s.spawnDeclared(ctx); err != nil {
		s.log.Error("spawning declared instances", "err", err)
	}
	changes, err := s.sd.Watch(bctx)
	if err != nil {
		return err
	}
	if s.fleet != nil {
		fleetDone := make(chan struct{})
		fctx, stopFleet := context.WithCancel(ctx)
		go func() { defer close(fleetDone); s.fleet.Run(fctx) }()
		defer func() { stopFleet(); <-fleetDone }()
	}
	bg.Go(func() { s.follow(bctx, changes) })
	bg.Go(func() { s.frz.RunWakes(bctx) })
	bg.Go(func() { s.frz.RunCap(bctx, time.Second) })
	bg.Go(func() { s.router.RunReaper(bctx, 250*time.Millisecond) })
	bg.Go(func() { s.health.Run(bctx) })
	bg.Go(func() { s.dash.RunSampler(bctx) })

	if ln == nil {
		ln, err = net.Listen("tcp", s.cfg.Settings.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s (settings.listen): %w", s.cfg.Settings.Listen, err)
		}
	}
	mln, err := metrics.Listen(s.cfg.Settings.MetricsListen)
	if err != nil {
		ln.Close()
		return err
	}
	if mln != nil {
		bg.Go(func() { metrics.Serve(bctx, mln, s.api.MetricsEndpoint(false), s.log) })
	}
	return front.Serve(ctx, ln, front.Options{Router: s.router, Log: s.log, Domain: s.cfg.Settings.Domain,
		Instances: s.reg.Len, TLS: s.serveTLS, MaxConnsPerAddr: s.cfg.Settings.ConnsPerAddress()})
}

// Listen is the address from settings (after overrides).
func (s *Server) Listen() string { return s.cfg.Settings.Listen }

// follow feeds systemd's state changes into the router.
func (s *Server) follow(ctx context.Context, changes <-chan systemd.Change) {
	// up holds the instances whose service follow last saw running
	// (active, reloading or stopping): the next "active" of the others is a
	// fresh start (health.Monitor.CheckChange).
	up := map[units.Instance]bool{}
	for {
		var c systemd.Change
		select {
		case ch, ok := <-changes:
			if !ok {
				return
			}
			c = ch
		case c = <-s.synth:
		}
		if c.Kind == units.KindService {
			c = s.standbyView(c)
		}
		if c.Kind == units.KindSocket {
			s.kern.SocketState(c.Instance, c.ActiveState) // a restarted socket unit has new sockets
		}
		if c.Kind != units.KindService || c.ActiveState == "" {
			continue
		}
		// "activating" is not awake: a shim-mode service turns active only
		// once its app listens (Type=notify), and a request meanwhile is
		// waiting for a wake (startup_timeout), not for an answer.
		awake := c.ActiveState == "active" || c.ActiveState == "reloading"
		s.router.SetAwake(c.Instance, awake)
		switch c.ActiveState {
		case "activating":
			if c.SubState == "start" {
				s.starting(ctx, c.Instance) // a directly run app: READY=1 once it listens
			}
		case "active", "reloading":
		default:
			s.settled(c.Instance, c.ActiveState)
		}
		if c.ActiveState == "active" {
			s.activeNow(ctx, c.Instance)
		}
		if !awake {
			s.frz.Stopped(c.Instance)
		}
		restarted := s.noteServiceState(ctx, c) // last exit, restart after a crash (isolation.go)
		// A start from a stopped service (not a reload, not systemd's
		// restart after a crash) reset its Result and NRestarts.
		fresh := !up[c.Instance] && !restarted
		switch c.ActiveState {
		case "active", "reloading", "deactivating":
			up[c.Instance] = true
		case "inactive", "failed":
			delete(up, c.Instance)
		}
		// Count a crash (systemd restarts it), a start or a sleep without
		// waiting for the next health tick (which skips known sleepers).
		switch {
		case c.SubState == "auto-restart" || c.ActiveState == "failed":
			s.health.Check(c.Instance)
		case c.ActiveState == "active" || c.ActiveState == "inactive":
			s.health.CheckChange(c.Instance, c.ActiveState, c.SubState, fresh)
		}
	}
}

// Sleep implements router.Controller: the instance goes on standby
// (standby.go) or its service stops.
func (s *Server) Sleep(ctx context.Context, inst units.Instance) error {
	if s.standbyPut(ctx, inst) {
		return nil
	}
	return s.sd.Sleep(ctx, inst)
}

// WakeFailed implements router.Controller: the instance did not answer a
// waking request in time. ps shows it as failed, with the reason, until it
// answers a request or is restarted. ten does not stop it: connections still
// queued on its socket would start it again at once.
func (s *Server) WakeFailed(inst units.Instance, reason string) {
	s.reg.SetWakeFailed(inst, reason)
}

// Answered implements router.Controller: a waking request got an answer.
func (s *Server) Answered(inst units.Instance) {
	s.reg.SetWakeFailed(inst, "")
}
