package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// Light sleep (sleep = "freeze" or "freeze-then-stop"): the reaper freezes an
// idle instance's service cgroup instead of stopping it; it keeps its memory
// and wakes in well under a millisecond. The router thaws it for an HTTP
// request; for an L4 connection the sk_lookup program sends a wake event that
// ten answers by thawing (the connection waits in the socket's backlog).
// ten records since when an instance is frozen in state.json, so that a new
// ten (after kill -9) keeps it frozen or thaws it.

var _ router.Freezer = (*Server)(nil)

// freezeMetrics count thaws and show frozen memory.
type freezeMetrics struct {
	thaws *prometheus.CounterVec
}

func newFreezeMetrics() *freezeMetrics {
	return &freezeMetrics{
		thaws: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName("ten", "", "thaws_total"),
			Help: "Thaws of frozen instances, by what thawed them (http, l4, probe, stop, start).",
		}, []string{"instance", "trigger"}),
	}
}

// initFreezer picks how instances are frozen (once) and says which.
func (s *Server) initFreezer() {
	s.fm = newFreezeMetrics()
	s.metrics.MustRegister(s.fm.thaws)
	f, err := s.sd.NewFreezer()
	if err != nil {
		s.freezeFeature = Feature{Name: FeatureFreeze, On: false, Detail: err.Error() + `: services with sleep = "freeze" are stopped instead`}
	} else {
		s.freezer = f
		method, why := f.Method()
		s.freezeFeature = Feature{Name: FeatureFreeze, On: true, Detail: method + ": " + why}
	}
	s.log.Info("feature", "name", s.freezeFeature.Name, "on", s.freezeFeature.On, "detail", s.freezeFeature.Detail)
}

// Freeze implements router.Freezer: it records the instance as frozen,
// marks its L4 destinations, and freezes its service. A connection that the
// sk_lookup program saw meanwhile thaws it again (ErrWokenWhileFreezing).
func (s *Server) Freeze(ctx context.Context, inst units.Instance) error {
	if s.freezer == nil {
		return systemd.ErrFreezeUnsupported
	}
	now := time.Now()
	if err := s.state.update(func(p *persisted) { p.Frozen[inst.String()] = now }); err != nil {
		return fmt.Errorf("freeze %s: %w", inst, err)
	}
	s.kern.MarkFrozen(inst, true)
	err := s.freezer.Freeze(ctx, inst)
	if err == nil && s.kern.FrozenConnections()[inst] > 0 {
		err = router.ErrWokenWhileFreezing
	}
	if err != nil {
		// Leave it running, and say so everywhere.
		s.thawNow(inst, "start")
		return err
	}
	return nil
}

// Thaw implements router.Freezer: the service runs again at once; the L4
// mark and the record go after (the record off the request's path).
func (s *Server) Thaw(ctx context.Context, inst units.Instance, why string) error {
	if s.freezer == nil {
		return systemd.ErrFreezeUnsupported
	}
	if err := s.freezer.Thaw(ctx, inst); err != nil {
		return err
	}
	s.fm.thaws.WithLabelValues(inst.String(), why).Inc()
	s.kern.MarkFrozen(inst, false)
	go s.forgetFrozen(inst)
	s.log.Debug("thawed", "instance", inst.String(), "why", why)
	return nil
}

// thawNow thaws an instance without the router (its backend may be gone)
// and forgets that it was frozen.
func (s *Server) thawNow(inst units.Instance, why string) {
	if s.freezer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.freezer.Thaw(ctx, inst); err != nil {
		s.log.Error("thaw", "instance", inst.String(), "why", why, "err", err)
	}
	s.kern.MarkFrozen(inst, false)
	s.forgetFrozen(inst)
}

func (s *Server) forgetFrozen(inst units.Instance) {
	if err := s.state.update(func(p *persisted) { delete(p.Frozen, inst.String()) }); err != nil {
		s.log.Error("save state", "instance", inst.String(), "err", err)
	}
}

// thawForStop thaws a frozen instance before `ten stop` or `ten restart`:
// systemd cannot stop a frozen service cleanly (the app cannot handle
// SIGTERM while frozen, and systemd waits out TimeoutStopSec).
func (s *Server) thawForStop(ctx context.Context, inst units.Instance) {
	if s.freezer == nil {
		return
	}
	if err := s.router.Thaw(ctx, inst, "stop"); err != nil && !errors.Is(err, router.ErrNoInstance) {
		s.log.Warn("thaw before stop", "instance", inst.String(), "err", err)
	}
	if fr, _ := s.freezer.Frozen(inst); fr {
		s.thawNow(inst, "stop")
	}
}

// restoreFrozen runs once at start, after adoption: an instance that ten
// froze (its record) and that is still frozen stays frozen when its service
// still says sleep = "freeze*" and no L4 connection arrived for it while ten
// was down; every other frozen instance is thawed. Records of instances
// that are not frozen are dropped. So a crash of ten never leaves an
// instance frozen that nobody would thaw.
func (s *Server) restoreFrozen() {
	if s.freezer == nil {
		return
	}
	pending := s.kern.FrozenConnections()
	ins := s.reg.Snapshot()
	s.state.mu.Lock()
	records := map[string]time.Time{}
	for k, v := range s.state.p.Frozen {
		records[k] = v
	}
	s.state.mu.Unlock()
	known := map[string]bool{}
	for _, in := range ins {
		name := in.Inst.String()
		known[name] = true
		frozen, err := s.freezer.Frozen(in.Inst)
		if err != nil {
			s.log.Warn("read freezer state", "instance", name, "err", err)
			continue
		}
		since, recorded := records[name]
		if !frozen {
			if recorded {
				s.forgetFrozen(in.Inst)
			}
			s.kern.MarkFrozen(in.Inst, false)
			continue
		}
		var why string
		switch {
		case !recorded:
			why = "frozen without a record of ten's"
		case in.Svc == nil || !in.Svc.Freezes():
			why = "its service no longer says sleep = freeze"
		case pending[in.Inst] > 0:
			why = "L4 connections arrived while ten was down"
		}
		if why != "" {
			s.log.Info("thawing an instance found frozen at start", "instance", name, "why", why)
			s.fm.thaws.WithLabelValues(name, "start").Inc()
			s.thawNow(in.Inst, "start")
			continue
		}
		s.router.SetFrozen(in.Inst, since)
		s.kern.MarkFrozen(in.Inst, true)
		s.log.Info("instance stays frozen", "instance", name, "frozen_since", since)
	}
	for name := range records {
		if !known[name] {
			if err := s.state.update(func(p *persisted) { delete(p.Frozen, name) }); err != nil {
				s.log.Error("save state", "instance", name, "err", err)
			}
		}
	}
}

// runWakes thaws frozen L4 instances on the sk_lookup program's wake events
// until ctx ends, and returns once the thaws it started have ended.
func (s *Server) runWakes(ctx context.Context) {
	if s.freezer == nil {
		return
	}
	err := s.kern.Wakes(ctx, func(inst units.Instance) {
		if err := s.router.Thaw(ctx, inst, "l4"); err != nil {
			s.log.Warn("thaw on L4 connection", "instance", inst.String(), "err", err)
		}
	})
	if err != nil {
		s.log.Error("L4 wake events", "err", err)
	}
}

// frozenMemory returns the memory of a frozen instance's service.
func (s *Server) frozenMemory(ctx context.Context, inst units.Instance) uint64 {
	if mem, _, err := s.sd.Usage(ctx, inst); err == nil && mem > 0 {
		return mem
	}
	if s.freezer != nil {
		if mem, ok := s.freezer.MemoryOf(inst); ok {
			return mem
		}
	}
	return 0
}

// enforceFrozenCap stops the longest-frozen instances while the frozen ones
// together use more than settings.max_frozen_mb.
func (s *Server) enforceFrozenCap(ctx context.Context) {
	limit := uint64(s.cfg.Settings.MaxFrozenMB) << 20
	if limit == 0 || s.freezer == nil {
		return
	}
	type frozen struct {
		inst  units.Instance
		since time.Time
		mem   uint64
	}
	var fs []frozen
	var total uint64
	insts := s.reg.Instances()
	for _, inst := range insts {
		st, ok := s.router.Stat(inst)
		if !ok || !st.Frozen {
			continue
		}
		m := s.frozenMemory(ctx, inst)
		fs = append(fs, frozen{inst, st.FrozenSince, m})
		total += m
	}
	if total <= limit {
		return
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].since.Before(fs[j].since) })
	for _, f := range fs {
		if total <= limit {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		stopped, err := s.router.StopFrozen(sctx, f.inst)
		cancel()
		if err != nil {
			s.log.Warn("stop frozen instance over max_frozen_mb", "instance", f.inst.String(), "err", err)
			continue
		}
		if stopped {
			total -= f.mem
			s.log.Info("frozen memory over settings.max_frozen_mb; stopped the longest-frozen instance",
				"instance", f.inst.String(), "frozen_since", f.since, "memory_bytes", f.mem, "max_frozen_mb", s.cfg.Settings.MaxFrozenMB)
		}
	}
}

// runFrozenCap checks the frozen-memory cap every interval until ctx ends.
func (s *Server) runFrozenCap(ctx context.Context, interval time.Duration) {
	if s.cfg.Settings.MaxFrozenMB == 0 || s.freezer == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.enforceFrozenCap(ctx)
		}
	}
}

// stoppedWhileFrozen forgets the record of an instance whose service
// stopped (a stopped service is not frozen).
func (s *Server) stoppedWhileFrozen(inst units.Instance) {
	s.state.mu.Lock()
	_, ok := s.state.p.Frozen[inst.String()]
	s.state.mu.Unlock()
	if ok {
		s.forgetFrozen(inst)
	}
}
