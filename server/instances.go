package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tenhq/ten/appcmd"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/datadir"
	"github.com/tenhq/ten/isolation"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/statefile"
	"github.com/tenhq/ten/strictjson"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// Errors a client can act on; the API maps them to status codes (package
// registry owns them).
var (
	ErrUnknownService = registry.ErrUnknownService
	ErrExists         = registry.ErrExists
	ErrNotFound       = registry.ErrNotFound
	ErrBusy           = registry.ErrBusy
	ErrBadInput       = strictjson.ErrBadInput
)

// adopt rebuilds the server's view from the units systemd has, from one
// listing: every instance whose socket unit systemd has is registered and
// routable before anything is read of it one by one, and stays so whatever
// a later read says (a restarted ten must never answer 404 for an instance
// that exists). What the listing lacks — the service's Environment (PORT,
// the L4 addresses) — is then read a property at a time, a few at once.
func (s *Server) adopt(ctx context.Context) error {
	list, err := s.sd.List(ctx)
	if err != nil {
		return err
	}
	service := map[units.Instance]string{}
	var insts []units.Instance
	for _, u := range list {
		switch u.Kind {
		case units.KindSocket:
			insts = append(insts, u.Instance)
		case units.KindService:
			service[u.Instance] = u.ActiveState
		}
	}
	if len(insts) > 0 {
		// The router dials each instance at the path settings.socket_dir
		// gives it; instances made under another socket_dir listen
		// elsewhere and would all answer 502. Refused before anything is
		// routed: the instances keep running.
		want := units.ListenPath(s.cfg.Settings.SocketDir, insts[0])
		if got, err := s.sd.SocketPath(ctx, insts[0]); err == nil && got != want {
			return fmt.Errorf("%s: settings.socket_dir is %q, but %s listens on %s: the instances systemd has were made with another socket_dir; set it back, or ten stop every instance before changing it",
				s.cfg.Path, s.cfg.Settings.SocketDir, insts[0].SocketUnit(), got)
		}
	}
	for _, inst := range insts {
		s.reg.Add(registry.Entry{Inst: inst, Svc: s.cfg.Services[inst.Service], Listen: units.ListenPath(s.cfg.Settings.SocketDir, inst)})
	}
	envs := make([][]string, len(insts))
	// systemd writes a transient unit's properties to its unit file in
	// TransientDir; reading 10,000 small files takes a fraction of the
	// time of 10,000 D-Bus round trips (and keeps systemd idle). The files
	// are trusted only where the first instance's file says what systemd
	// says over D-Bus; an instance whose file is missing or unreadable is
	// read over D-Bus.
	files := s.transientFilesAgree(ctx, insts)
	fromFiles := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, adoptReads)
	for i, inst := range insts {
		if files {
			if env, ok := systemd.TransientEnvironment(systemd.TransientDir, inst); ok {
				envs[i] = env
				fromFiles++
				continue
			}
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			for try := 0; ; try++ {
				env, err := s.sd.Environment(ctx, inst)
				if err == nil || try == 2 || ctx.Err() != nil {
					if err != nil {
						// Still routed; only its PORT is unknown to ten.
						s.log.Warn("adopt: read environment", "instance", inst.String(), "err", err)
					}
					envs[i] = env
					return
				}
				time.Sleep(time.Duration(50<<try) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for i, inst := range insts {
		port := 0
		for _, kv := range envs[i] {
			if v, ok := strings.CutPrefix(kv, "PORT="); ok {
				port, _ = strconv.Atoi(v)
			}
		}
		in, _ := s.reg.Get(inst)
		if port > 0 {
			in.Port = port
			s.reg.Add(in)
		}
		// Routed whether or not its environment could be read (only its
		// PORT is unknown then); with it, a directly run app is dialled at
		// its own address. As in follow: awake once its service is active.
		st := service[inst]
		if s.adoptStandby(ctx, in, st) {
			st = "inactive" // on standby: asleep, its waiter waits
		}
		s.router.Put(s.backend(in), st == "active" || st == "reloading")
		s.reg.Hold(inst, s.kern.Adopt(ctx, inst, envs[i])...)
		s.kern.GuardPort(inst, in.Port)
		if st == "activating" {
			// Started while no ten ran, or while it restarted: READY=1
			// once its app listens.
			s.watchReady(ctx, in)
		}
		if st == "active" {
			// Started before this ten watched: its OOM watch, and its
			// L4 connections steered to the app (the pinned map keeps
			// what an earlier ten did, but it may have woken meanwhile).
			s.activeNow(ctx, inst)
		}
		s.health.RestoreFailed(inst)
	}
	s.log.Info("adopted instances from systemd", "instances", len(insts), "environment_from_unit_files", fromFiles)
	for _, inst := range insts {
		if s.cfg.Services[inst.Service] == nil {
			s.log.Warn("instance of a service the config does not declare: not served (its requests answer 503) until the service is declared again; ten stop removes it",
				"instance", inst.String(), "service", inst.Service, "config", s.cfg.Path)
		}
	}
	s.kern.Reconcile()
	return nil
}

// transientFilesAgree reports whether the first instance's Environment as
// its transient unit file has it is what systemd answers over D-Bus.
func (s *Server) transientFilesAgree(ctx context.Context, insts []units.Instance) bool {
	if len(insts) == 0 {
		return false
	}
	env, ok := systemd.TransientEnvironment(systemd.TransientDir, insts[0])
	if !ok {
		return false
	}
	bus, err := s.sd.Environment(ctx, insts[0])
	if err != nil || !slices.Equal(env, bus) {
		s.log.Debug("adopt: transient unit files not used", "instance", insts[0].String(), "err", err)
		return false
	}
	return true
}

// adoptReads is how many property reads adopt has in flight at once.
const adoptReads = 16

func (s *Server) backend(in registry.Entry) router.Backend {
	b := router.Backend{Instance: in.Inst, Socket: in.Listen, Weight: s.state.Weight(in.Inst), StartupTimeout: 10 * time.Second, RequestTimeout: 30 * time.Second,
		MaxInflight: config.DefaultMaxInflight}
	if in.Svc == nil {
		// Adopted from systemd, its service no longer declared (removed
		// from the config, or renamed): how its app listens is unknown,
		// and a request through its systemd-held socket would wait in
		// the backlog of an app that never takes it.
		b.Refuse = fmt.Sprintf("instance %s is not served: service %q is no longer declared in the config (`ten stop %s` removes the instance; its data stays)", in.Inst, in.Inst.Service, in.Inst)
	}
	if in.Svc != nil {
		b.IdleTimeout = in.Svc.IdleTimeoutDuration()
		b.StartupTimeout = in.Svc.StartupTimeoutDuration()
		b.RequestTimeout = in.Svc.RequestTimeoutDuration()
		b.Freeze = in.Svc.Freezes() && s.frz.On()
		b.StopAfter = in.Svc.StopAfterDuration()
		b.IdleInbound = in.Svc.IdleActivity == config.IdleActivityInbound
		b.MaxInflight = in.Svc.InflightCap()
		// A directly run app, also of an L4 service (whose relay serves
		// the L4 connections that wake it): the router connects to the
		// app's own address once it listens, with no relay between; with
		// network = "none", to its PORT in the instance's own namespace.
		if units.AppListens(in.Svc) {
			b.AppSocket = units.AppSocketPath(s.cfg, in.Svc, in.Inst.ID, in.Port)
			b.AppPort = in.Port
			if units.PrivateNetwork(in.Svc) {
				inst := in.Inst
				b.AppNetns = func() string { return s.kern.Netns(inst) }
			} else if b.AppPort > 0 && s.ownerCheck.On {
				inst, port := in.Inst, in.Port
				b.AppOwner = func(id uint64) error { return s.portOwner(inst, port, id) }
			}
		}
	}
	return b
}

// spawnDeclared creates the [instances] that systemd does not have yet.
func (s *Server) spawnDeclared(ctx context.Context) error {
	var todo []units.Instance
	for _, svc := range s.cfg.ServiceNames() {
		for _, id := range s.cfg.Instances[svc] {
			inst := units.Instance{Service: svc, ID: id}
			if !s.reg.Has(inst) {
				todo = append(todo, inst)
			}
		}
	}
	// Each spawn waits for systemd's jobs; several in flight on the one bus
	// connection keep systemd busy instead of idle between round trips (a
	// first start with hundreds of declared instances).
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, 8)
	for _, inst := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.spawnListed(ctx, inst); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Spawn creates the instance's units. It checks everything it can before
// touching systemd, and removes what it made if a later step fails.
func (s *Server) Spawn(ctx context.Context, inst units.Instance) error {
	return s.spawn(ctx, inst, false)
}

// SpawnNow is Spawn for an explicit spawn (`ten spawn`, POST
// /api/instances/spawn, the dashboard): the app starts now when
// Service.SpawnStarts says so, and goes to sleep after idle_timeout without a
// request. Instances made at boot ([instances]) and by a request keep
// Service.Lazy's choice.
func (s *Server) SpawnNow(ctx context.Context, inst units.Instance) error {
	return s.spawn(ctx, inst, true)
}

// spawn is Spawn and SpawnNow: explicit says whether the caller asked for
// this instance by name.
func (s *Server) spawn(ctx context.Context, inst units.Instance, explicit bool) error {
	svc, ok := s.cfg.Services[inst.Service]
	if !ok {
		return fmt.Errorf("spawn %s: %w %q", inst, ErrUnknownService, inst.Service)
	}
	if err := s.reg.Lock(inst); err != nil {
		return err
	}
	defer s.reg.Unlock(inst)
	return s.spawnLocked(ctx, inst, spawnOptions{weight: -1, start: explicit && svc.SpawnStarts()})
}

// spawnListed is Spawn for an instance that adopt's listing of systemd's
// units just showed absent: it skips the look-up of the units (one D-Bus
// call per instance).
func (s *Server) spawnListed(ctx context.Context, inst units.Instance) error {
	if err := s.reg.Lock(inst); err != nil {
		return err
	}
	defer s.reg.Unlock(inst)
	return s.spawnLocked(ctx, inst, spawnOptions{weight: -1, listed: true})
}

// spawnOptions change how spawnLocked creates an instance.
type spawnOptions struct {
	// listed: a listing of systemd's units made since ten started showed
	// the instance's units absent.
	listed bool
	// weight is the routing weight to start with; -1 keeps a stored one (100).
	weight int
	// start starts the service even when the service is lazy.
	start bool
}

// spawnLocked is Spawn for a caller that holds the instance's lock.
func (s *Server) spawnLocked(ctx context.Context, inst units.Instance, o spawnOptions) error {
	if _, ok := s.cfg.Services[inst.Service]; !ok {
		return fmt.Errorf("spawn %s: %w %q", inst, ErrUnknownService, inst.Service)
	}
	createFailed, err := s.spawnGated(ctx, inst, o)
	if createFailed {
		// systemd made the slices for the units Create removed again.
		rctx, cancel := cleanupContext(ctx)
		defer cancel()
		if rerr := s.sd.RemoveSlice(rctx, inst); rerr != nil {
			s.log.Warn("remove slice", "instance", inst.String(), "err", rerr)
		}
		s.removeServiceSlice(rctx, inst.Service)
	}
	return err
}

// spawnGated is spawnLocked's work under the service's slice gate, held
// until the instance is registered or its units are gone again: the stop of
// the service's last instance must not stop the service's slice (and with
// it these units) meanwhile (slicegate.go). createFailed says that systemd's
// Create failed (and removed the units).
func (s *Server) spawnGated(ctx context.Context, inst units.Instance, o spawnOptions) (createFailed bool, err error) {
	gate := s.slices.gate(inst.Service)
	gate.RLock()
	defer gate.RUnlock()
	return s.spawnUnits(ctx, inst, o)
}

// spawnUnits checks, creates and registers the instance (spawnLocked);
// createFailed as spawnGated.
func (s *Server) spawnUnits(ctx context.Context, inst units.Instance, o spawnOptions) (createFailed bool, err error) {
	svc := s.cfg.Services[inst.Service]
	if s.reg.Has(inst) {
		return false, fmt.Errorf("spawn %s: %w (stop it first, or restart it)", inst, ErrExists)
	}
	if other := s.foldTwin(inst); other != "" {
		return false, fmt.Errorf("spawn %s: %w: instance %s exists, and its id differs only by case; Host routing cannot tell them apart (DNS ignores case)", inst, ErrExists, other)
	}
	if o.listed {
		// adopt listed systemd's units: no look-up.
	} else if exists, err := s.sd.Exists(ctx, inst); err != nil {
		return false, err
	} else if exists {
		return false, fmt.Errorf("spawn %s: %w: systemd has %s", inst, ErrExists, inst.SocketUnit())
	}
	l4Listen, err := s.kern.Reserve(inst, svc)
	if err != nil {
		return false, fmt.Errorf("spawn %s: %w: service.%s.listen: %v", inst, ErrBadInput, svc.Name, err)
	}
	defer s.kern.Release(inst) // unless the units were made
	// PORT and the port of the L4 internal sockets are reserved together,
	// in one critical section of the registry: concurrent spawns never get
	// the same port.
	ports, err := s.reservePorts(inst, l4Listen)
	if err != nil {
		return false, fmt.Errorf("spawn %s: %w", inst, err)
	}
	defer s.reg.Release(inst) // the instance holds them once registered
	port := ports.Port
	listen, l4Sockets := s.kern.SetInternal(inst, l4Listen, ports.L4Port)
	opts := units.Options{Port: port, Shim: s.shim, ShimBin: s.shimBin, Standby: s.cfg.Settings.StandbyCount() > 0, Listen: listen, L4Sockets: l4Sockets, Runsc: isolation.RunscPath(), Cat: systemdCat(),
		Home: userHome(), Path: os.Getenv("PATH"),
		Resolve: func(cmd, workdir string) (string, error) { return appcmd.Resolve(cmd, workdir, svc) }}
	plan, err := units.Build(s.cfg, svc, inst.ID, opts)
	if err != nil {
		return false, fmt.Errorf("spawn %s: %w: %v", inst, ErrBadInput, err)
	}
	if err := checkSocketFree(plan.Listen); err != nil {
		return false, fmt.Errorf("spawn %s: %w", inst, err)
	}
	if err := checkMountSources(svc); err != nil {
		return false, fmt.Errorf("spawn %s: %w: %v", inst, ErrBadInput, err)
	}
	if units.CustomDataDir(s.cfg) {
		// The sandbox binds it in, so it must exist before the first start;
		// systemd gives it the instance's user (isolation.Storage.PrepareDataBind).
		o := datadir.Options{Dir: plan.DataDir}
		if svc.Isolation == config.IsolationNamespace {
			o.Traverse = s.cfg.InstanceRoot()
		}
		if err := datadir.Prepare(o); err != nil {
			return false, fmt.Errorf("spawn %s: %w", inst, err)
		}
	}
	if svc.Socket != "" && svc.Isolation == config.IsolationProcess {
		// The app binds the socket key's path, e.g. tenement's
		// /tmp/tenement/{name}-{id}.sock: its directory must exist, as
		// tenement makes it (sandboxed apps bind only in their own
		// directories, which systemd makes; config.Parse checks that).
		if err := os.MkdirAll(filepath.Dir(plan.AppSocket), 0o755); err != nil {
			return false, fmt.Errorf("spawn %s: service.%s.socket: %w", inst, svc.Name, err)
		}
	}
	start := !svc.Lazy() || o.start
	s.health.Clear(inst)
	if err := isolation.AdoptStateDir(s.cfg, svc, inst); err != nil {
		return false, fmt.Errorf("spawn %s: %w", inst, err)
	}
	if err := s.storage.PrepareQuota(ctx, svc, inst); err != nil {
		return false, fmt.Errorf("spawn %s: %w", inst, err)
	}
	if err := s.storage.PrepareDataBind(ctx, svc, inst); err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		s.storage.ReleaseQuota(cctx, svc, inst)
		return false, fmt.Errorf("spawn %s: %w", inst, err)
	}
	in := registry.Entry{Inst: inst, Svc: svc, Port: port, Listen: plan.Listen, Created: time.Now()}
	if start {
		// The start job ends once the app is ready; ten tells systemd so
		// for a directly run app (ready.go).
		s.watchReady(ctx, in)
	}
	if err := s.sd.Create(ctx, plan, start); err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		s.settled(inst, "failed")
		s.storage.ReleaseDataBind(cctx, svc, inst)
		s.storage.ReleaseQuota(cctx, svc, inst)
		var je *systemd.JobError
		if start && errors.As(err, &je) && je.UnitResult != "" && !je.TimedOut() {
			return true, fmt.Errorf("spawn %s: %w (the app ended before it was ready: journalctl -u %s says what it did)", inst, err, inst.ServiceUnit())
		}
		if start && svc.Activation == config.ActivationShim {
			return true, fmt.Errorf("spawn %s: %w (the app must listen on PORT or SOCKET_PATH within startup_timeout %ds: journalctl -u %s says what it did)", inst, err, svc.StartupTimeout, inst.ServiceUnit())
		}
		return true, fmt.Errorf("spawn %s: %w", inst, err)
	}
	b := s.backend(in)
	if o.weight >= 0 {
		// Stored only once the units exist: a spawn that fails must not
		// leave a weight behind for a later spawn of the same name.
		b.Weight = o.weight
		if err := s.state.Update(func(p *statefile.Persisted) { p.Weights[inst.String()] = o.weight }); err != nil {
			s.log.Error("save state", "instance", inst.String(), "weight", o.weight, "err", err)
		}
	}
	s.reg.Add(in)
	s.kern.Up(ctx, inst)
	s.kern.GuardPort(inst, in.Port)
	s.router.Put(b, start)
	if start {
		s.kickWaiter(ctx, in)
		// The service turned active inside Create, before the instance
		// was registered: what follow does for an active service may have
		// found it unknown and passed.
		if s.runCtx != nil {
			s.activeNow(s.runCtx, inst)
		}
	}
	return false, nil
}

// cleanupContext is the context of the clean-up after a failed spawn step
// (the data_dir bind, the storage image, the slices): not ended with ctx,
// whose end (a client that disconnected or gave up waiting, a deadline) is
// often why the step failed, and which would leave them behind; bounded on
// its own.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// checkSocketFree refuses to take over a path some other program listens on.
func checkSocketFree(path string) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err == nil {
		c.Close()
		return fmt.Errorf("socket %s is in use by another program", path)
	}
	return nil
}

// checkMountSources refuses a service whose [[service.NAME.mounts]] source
// is missing: systemd would fail the start with only "Failed to set up
// mount namespacing" in the journal, after the units were made.
func checkMountSources(svc *config.Service) error {
	for i, m := range svc.Mounts {
		if _, err := os.Stat(m.Source); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("service.%s.mounts[%d].source %s does not exist; create it or change the path", svc.Name, i, m.Source)
			}
			return fmt.Errorf("service.%s.mounts[%d].source: %v", svc.Name, i, err)
		}
	}
	return nil
}

// foldTwin returns an instance of the same service whose id equals inst's
// ignoring case, or "".
func (s *Server) foldTwin(inst units.Instance) string {
	if twin, ok := s.reg.FoldTwin(inst); ok {
		return twin.String()
	}
	return ""
}

// Stop removes both units of the instance.
func (s *Server) Stop(ctx context.Context, inst units.Instance) error {
	if err := s.reg.Lock(inst); err != nil {
		return err
	}
	defer s.reg.Unlock(inst)
	return s.stopLocked(ctx, inst, 0)
}

// stopGrace is how long a stop a user asks for (`ten stop`, DELETE
// /api/instances/ID, the dashboard) lets the instance's requests in flight
// finish before its units go, as tenement's stop waits up to 5 s for open
// connections.
const stopGrace = 5 * time.Second

// StopDraining is Stop for a user's request: the instance takes no new
// request, and those in flight get up to stopGrace to end. A fleet's
// fence and deploy --replace (which drained already) use Stop.
func (s *Server) StopDraining(ctx context.Context, inst units.Instance) error {
	if err := s.reg.Lock(inst); err != nil {
		return err
	}
	defer s.reg.Unlock(inst)
	return s.stopLocked(ctx, inst, stopGrace)
}

// stopLocked is Stop for a caller that holds the instance's lock; grace
// is how long requests in flight may take to end.
func (s *Server) stopLocked(ctx context.Context, inst units.Instance, grace time.Duration) error {
	if !s.reg.Has(inst) {
		exists, err := s.sd.Exists(ctx, inst)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("stop %s: %w", inst, ErrNotFound)
		}
	}
	// Once started, removal finishes even if the client hangs up: a half
	// removed instance would be listed but unroutable.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	s.frz.ThawForStop(ctx, inst)
	if left := s.router.RemoveAndDrain(ctx, inst, grace); left > 0 && grace > 0 {
		s.log.Warn("stop: requests still in flight after the grace; stopping anyway", "instance", inst.String(), "inflight", left, "grace", grace)
	}
	if err := s.sd.Remove(ctx, inst); err != nil {
		return fmt.Errorf("stop %s: %w", inst, err)
	}
	svc := s.cfg.Services[inst.Service] // nil: no longer declared
	s.storage.ReleaseDataBind(ctx, svc, inst)
	s.storage.ReleaseQuota(ctx, svc, inst)
	s.storage.Discard(svc, inst)
	s.removeAppSocket(svc, inst)
	s.oom.Forget(inst)
	s.kern.Down(ctx, inst)
	s.standbyForget(inst)
	s.crashed.take(inst)
	s.ready.notify.forget(inst) // made again, it may differ
	s.reg.Remove(inst)
	s.health.Clear(inst)
	if err := s.state.Forget(inst); err != nil {
		s.log.Error("save state", "instance", inst.String(), "err", err)
	}
	s.im.Forget(inst)
	s.removeServiceSlice(ctx, inst.Service)
	return nil
}

// removeAppSocket removes the socket file an app of isolation = "process"
// left at its service's socket key (tenement's
// /tmp/tenement/{name}-{id}.sock) once the instance is stopped for good, as
// tenement's stop does. Sandboxed apps' sockets are in their runtime
// directory, which systemd removes; at a start the shim removes a stale
// one anyway. Only a socket is removed, never another kind of file.
func (s *Server) removeAppSocket(svc *config.Service, inst units.Instance) {
	if svc == nil || svc.Socket == "" || svc.Isolation != config.IsolationProcess {
		return
	}
	port := 0
	if e, ok := s.reg.Get(inst); ok {
		port = e.Port
	}
	path := units.AppSocketPath(s.cfg, svc, inst.ID, port)
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if err := os.Remove(path); err != nil {
			s.log.Warn("stop: remove the app's socket", "instance", inst.String(), "path", path, "err", err)
		}
	}
}

// Restart restarts the instance's service (starting it if it sleeps), then
// checks its health once, so that ps and health show it judged.
func (s *Server) Restart(ctx context.Context, inst units.Instance) error {
	if err := s.restart(ctx, inst); err != nil {
		return err
	}
	s.health.CheckNow(ctx, inst)
	return nil
}

func (s *Server) restart(ctx context.Context, inst units.Instance) error {
	if err := s.reg.Lock(inst); err != nil {
		return err
	}
	defer s.reg.Unlock(inst)
	if !s.reg.Has(inst) {
		return fmt.Errorf("restart %s: %w", inst, ErrNotFound)
	}
	if _, ok := s.cfg.Services[inst.Service]; !ok {
		// Its app would start, but ten could neither mark it ready nor
		// route to it: systemd would fail the start and restart it forever.
		return fmt.Errorf("restart %s: %w %q: the config no longer declares it, so ten cannot run the instance (ten stop %s removes it)", inst, ErrUnknownService, inst.Service, inst)
	}
	s.reg.SetWakeFailed(inst, "")
	// A restart by hand clears a failed mark and the restart history that
	// max_restarts judges; it counts as a restart (ps, metrics).
	s.health.ClearForRestart(inst)
	s.frz.ThawForStop(ctx, inst)
	s.standbyForget(inst) // restarted to run, not to stand by
	if err := s.sd.Restart(ctx, inst); err != nil {
		return err
	}
	s.health.RestartedByHand(inst)
	if e, ok := s.reg.Get(inst); ok {
		s.kickWaiter(ctx, e)
	}
	return nil
}

// SetWeight changes the instance's routing weight (in a fleet, wherever
// it runs: fleet/fleetnode).
func (s *Server) SetWeight(inst units.Instance, w int) error {
	if s.fleet != nil {
		return s.fleet.SetWeight(inst, w)
	}
	return s.setWeightLocal(inst, w)
}

// setWeightLocal changes the routing weight of an instance of this node.
func (s *Server) setWeightLocal(inst units.Instance, w int) error {
	if w < 0 || w > 100 {
		return fmt.Errorf("weight %d: %w: must be 0..100", w, ErrBadInput)
	}
	// Set and saved under the state lock, as Route does, so that a
	// concurrent route cannot save weights the router no longer has.
	found := false
	err := s.state.Update(func(p *statefile.Persisted) {
		if found = s.router.SetWeight(inst, w); found {
			p.Weights[inst.String()] = w
		}
	})
	if !found {
		return fmt.Errorf("weight %s: %w", inst, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("weight %s: %w", inst, err)
	}
	return nil
}

// userHome is the home directory of the user ten runs as: HOME, or the
// password database's entry where HOME is not set (a systemd service).
var userHome = sync.OnceValue(func() string {
	if h := os.Getenv("HOME"); filepath.IsAbs(h) {
		return h
	}
	if u, err := user.Current(); err == nil && filepath.IsAbs(u.HomeDir) {
		return u.HomeDir
	}
	return ""
})

// systemdCat returns the path of systemd-cat, or "" when it is missing
// (then stdout and stderr share one priority; see units.Options.Cat).
var systemdCat = sync.OnceValue(func() string {
	p, err := exec.LookPath("systemd-cat")
	if err != nil {
		return ""
	}
	return p
})
