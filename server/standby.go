package server

import (
	"context"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/shim"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// standbyPool keeps the instances that went to sleep last on standby
// (settings.standby): when the idle reaper puts one to sleep, ten restarts
// its service instead of stopping it, and the service's main process, the
// standby waiter (units.Standby, shim.Standby), waits in the sandbox
// systemd set up for it until a connection arrives, then becomes the app.
// So the next wake costs the app's own start, not systemd's set-up of the
// service (most of a sandboxed wake: BENCHMARKS.md, section 8). ten reports
// an instance on standby as sleeping (systemd.Manager.SetStandby) until the
// router wakes it (Waking). When the pool is full, the instance that went
// on standby first is stopped.
type standbyPool struct {
	mu sync.Mutex
	// order is the instances on standby, oldest first.
	order []units.Instance
	// capable caches whether an instance's service runs the standby
	// waiter: one made by an older ten does not, and would start its app.
	capable flagCache
}

// standbyView is c as the rest of ten sees it: an instance on standby
// sleeps. A failed one leaves the pool.
func (s *Server) standbyView(c systemd.Change) systemd.Change {
	if !s.sd.InStandby(c.Instance) {
		return c
	}
	if c.ActiveState == "failed" {
		s.leaveStandby(c.Instance)
		return c
	}
	if c.ActiveState != "" {
		c.ActiveState, c.SubState = "inactive", systemd.StandbySubState
	}
	return c
}

// standbyPut puts inst on standby instead of stopping its service, and
// reports whether it did: settings.standby is not 0, the instance's service
// runs the standby waiter, and systemd took the restart.
func (s *Server) standbyPut(ctx context.Context, inst units.Instance) bool {
	if s.cfg.Settings.StandbyCount() <= 0 {
		return false
	}
	e, ok := s.reg.Get(inst)
	if !ok || e.Svc == nil || !units.Standby(e.Svc) || !s.standbyCapable(ctx, inst) {
		return false
	}
	for _, ev := range s.standbyJoin(inst) {
		s.standbyEvict(ctx, ev)
	}
	if err := s.sd.SetStandby(ctx, inst); err != nil {
		s.log.Warn("put a sleeping instance on standby; stopping it instead", "instance", inst.String(), "err", err)
		s.standbyDrop(inst)
		return false
	}
	return true
}

// standbyEvict stops the service of an instance that leaves the full pool.
// If a request woke it meanwhile (Waking), it starts the service again:
// the stop flushed the request's wake.
func (s *Server) standbyEvict(ctx context.Context, inst units.Instance) {
	if !s.sd.InStandby(inst) {
		return
	}
	if err := s.sd.Sleep(ctx, inst); err != nil {
		s.log.Warn("stop an instance on standby", "instance", inst.String(), "err", err)
	}
	if !s.sd.EndStandby(inst) {
		go func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := s.sd.Start(sctx, inst); err != nil {
				s.log.Warn("start an instance woken while it left standby", "instance", inst.String(), "err", err)
			}
		}()
	}
}

// standbyJoin puts inst last in the pool's order and returns the
// instances the pool's bound (settings.standby) pushes out, oldest first.
func (s *Server) standbyJoin(inst units.Instance) (evict []units.Instance) {
	limit := s.cfg.Settings.StandbyCount()
	s.sb.mu.Lock()
	defer s.sb.mu.Unlock()
	s.sb.order = append(slices.DeleteFunc(s.sb.order, func(i units.Instance) bool { return i == inst }), inst)
	for len(s.sb.order) > limit {
		evict = append(evict, s.sb.order[0])
		s.sb.order = s.sb.order[1:]
	}
	return evict
}

// standbyDrop takes inst out of the pool's order.
func (s *Server) standbyDrop(inst units.Instance) {
	s.sb.mu.Lock()
	s.sb.order = slices.DeleteFunc(s.sb.order, func(i units.Instance) bool { return i == inst })
	s.sb.mu.Unlock()
}

// leaveStandby takes inst off standby (the Manager reports its true state
// again) and out of the pool's order; it reports whether it was on standby.
func (s *Server) leaveStandby(inst units.Instance) bool {
	was := s.sd.EndStandby(inst)
	s.standbyDrop(inst)
	return was
}

// standbyForget ends inst's standby and forgets what the pool knew of it
// (the instance is removed, or restarted by hand).
func (s *Server) standbyForget(inst units.Instance) {
	s.leaveStandby(inst)
	s.sb.capable.forget(inst)
}

// standbyCapable reports whether inst's service runs the standby waiter
// (its ExecStart, read once).
func (s *Server) standbyCapable(ctx context.Context, inst units.Instance) bool {
	return s.sb.capable.get(inst, false, func() (bool, bool) {
		argv, err := s.sd.ExecStartArgv(ctx, inst)
		if err != nil {
			// Not made yet (a spawn's readiness watch asks first), or gone.
			s.log.Debug("standby: read ExecStart", "instance", inst.String(), "err", err)
			return false, false
		}
		return shim.IsStandby(argv), true
	})
}

// Waking implements router.Waker: a request wakes inst. If it was on
// standby, ten reports its service as systemd has it again (follow then
// sees a directly run app activating and says READY=1 once it listens);
// the request's connection has the waiter become the app.
func (s *Server) Waking(inst units.Instance) {
	if !s.leaveStandby(inst) {
		return
	}
	st, ok := s.sd.TrueState(inst)
	if !ok {
		return
	}
	c := systemd.Change{Instance: inst, Kind: units.KindService, ActiveState: st.ActiveState, SubState: st.SubState}
	select {
	case s.synth <- c:
	default:
		go func() { s.synth <- c }() // never hold the request up
	}
}

// adoptStandby takes into the pool an instance found on standby when ten
// starts (state is its service's ActiveState as systemd has it): its main
// process is the standby waiter. It reports whether it did; the pool's
// bound holds, the extra ones are stopped.
func (s *Server) adoptStandby(ctx context.Context, e registry.Entry, state string) bool {
	if e.Svc == nil || !units.Standby(e.Svc) || (state != "active" && state != "activating") {
		return false
	}
	pid, err := s.sd.MainPID(ctx, e.Inst)
	if err != nil || pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	if !shim.IsStandby(strings.Split(string(cmdline), "\x00")) {
		return false
	}
	s.sd.AdoptStandby(e.Inst)
	for _, ev := range s.standbyJoin(e.Inst) {
		go s.standbyEvict(context.WithoutCancel(ctx), ev)
	}
	return true
}

// kickWaiter makes a socket-activated app whose service runs the standby
// waiter start now. A start by spawn or restart means "run": the waiter
// would otherwise wait for the first client, and ps would say running
// while only the waiter does. What it waits for is a connection on the
// instance's systemd socket; this one is closed at once (the app accepts
// it and reads its end). A directly run app gets the same from its
// readiness watch (WaitListening's wake).
func (s *Server) kickWaiter(ctx context.Context, e registry.Entry) {
	if e.Svc == nil || units.AppListens(e.Svc) || !s.behindWaiter(ctx, e) {
		return
	}
	c, err := net.DialTimeout("unix", s.backend(e).Socket, time.Second)
	if err != nil {
		s.log.Warn("start the app behind its standby waiter", "instance", e.Inst.String(), "err", err)
		return
	}
	c.Close()
}
