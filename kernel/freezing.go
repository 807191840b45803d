package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/registry"
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

// Records keeps since when ten froze each instance (by name), across
// restarts of ten.
type Records interface {
	FrozenRecords() map[string]time.Time
	FrozenSince(name string) (time.Time, bool)
	RecordFrozen(name string, since time.Time) error
	ForgetFrozen(name string) error
}

// Router is what freezing needs of the router (*router.Router).
type Router interface {
	Thaw(ctx context.Context, inst units.Instance, why string) error
	SetFrozen(inst units.Instance, since time.Time)
	Stat(inst units.Instance) (router.Stat, bool)
	StopFrozen(ctx context.Context, inst units.Instance) (bool, error)
}

// Registry is what freezing needs of the instance registry
// (*registry.Registry).
type Registry interface {
	Instances() []units.Instance
	Snapshot() []registry.Entry
}

// FreezeOptions are what a Freezing needs from the server.
type FreezeOptions struct {
	Log *slog.Logger
	// Freezer freezes cgroups; nil when the host cannot, and Unsupported
	// says why.
	Freezer     *systemd.Freezer
	Unsupported error
	Wiring      *Wiring // frozen marks and wake events of L4 addresses
	Records     Records
	Registry    Registry
	// Usage reads a service's memory (systemd.Manager.Usage).
	Usage       func(ctx context.Context, inst units.Instance) (memory, cpuNSec uint64, err error)
	MaxFrozenMB int
	Metrics     prometheus.Registerer
}

// Freezing freezes and thaws instances for the router (it is the router's
// Freezer), keeps the records and the L4 marks in step, thaws on L4 wake
// events, restores what a previous ten froze, and holds frozen memory under
// settings.max_frozen_mb.
type Freezing struct {
	FreezeOptions
	feature apitype.Feature
	thaws   *prometheus.CounterVec
	router  Router
}

var _ router.Freezer = (*Freezing)(nil)

// NewFreezing says (once, in the log and in Feature) how instances are
// frozen, or why they are not. SetRouter must follow before any other call.
func NewFreezing(o FreezeOptions) *Freezing {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	f := &Freezing{FreezeOptions: o, thaws: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: prometheus.BuildFQName("ten", "", "thaws_total"),
		Help: "Thaws of frozen instances, by what thawed them (http, l4, probe, stop, start).",
	}, []string{"instance", "trigger"})}
	if o.Metrics != nil {
		o.Metrics.MustRegister(f.thaws)
	}
	if o.Freezer == nil {
		why := "cannot freeze"
		if o.Unsupported != nil {
			why = o.Unsupported.Error()
		}
		f.feature = apitype.Feature{Name: apitype.FeatureFreeze, On: false, Detail: why + `: services with sleep = "freeze" are stopped instead`}
	} else {
		method, why := o.Freezer.Method()
		f.feature = apitype.Feature{Name: apitype.FeatureFreeze, On: true, Detail: method + ": " + why}
	}
	f.Log.Info("feature", "name", f.feature.Name, "on", f.feature.On, "detail", f.feature.Detail)
	return f
}

// SetRouter gives f the router it thaws through (the router is made with f
// as its Freezer, so after f).
func (f *Freezing) SetRouter(r Router) { f.router = r }

// On reports whether this host can freeze instances.
func (f *Freezing) On() bool { return f.Freezer != nil }

// Feature says how instances are frozen, or why not.
func (f *Freezing) Feature() apitype.Feature { return f.feature }

// MemoryOf returns the memory of a frozen instance's cgroup, from the
// freezer (systemd may report none for a frozen service).
func (f *Freezing) MemoryOf(inst units.Instance) (uint64, bool) {
	if f.Freezer == nil {
		return 0, false
	}
	return f.Freezer.MemoryOf(inst)
}

// Freeze implements router.Freezer: it records the instance as frozen,
// marks its L4 destinations, and freezes its service. A connection that the
// sk_lookup program saw meanwhile thaws it again (ErrWokenWhileFreezing).
func (f *Freezing) Freeze(ctx context.Context, inst units.Instance) error {
	if f.Freezer == nil {
		return systemd.ErrFreezeUnsupported
	}
	if err := f.Records.RecordFrozen(inst.String(), time.Now()); err != nil {
		return fmt.Errorf("freeze %s: %w", inst, err)
	}
	f.Wiring.MarkFrozen(inst, true)
	err := f.Freezer.Freeze(ctx, inst)
	if err == nil && f.Wiring.FrozenConnections()[inst] > 0 {
		err = router.ErrWokenWhileFreezing
	}
	if err != nil {
		// Leave it running, and say so everywhere.
		f.thawNow(inst, "start")
		return err
	}
	return nil
}

// Thaw implements router.Freezer: the service runs again at once; the L4
// mark and the record go after (the record off the request's path).
func (f *Freezing) Thaw(ctx context.Context, inst units.Instance, why string) error {
	if f.Freezer == nil {
		return systemd.ErrFreezeUnsupported
	}
	if err := f.Freezer.Thaw(ctx, inst); err != nil {
		return err
	}
	f.thaws.WithLabelValues(inst.String(), why).Inc()
	f.Wiring.MarkFrozen(inst, false)
	go f.forget(inst)
	f.Log.Debug("thawed", "instance", inst.String(), "why", why)
	return nil
}

// thawNow thaws an instance without the router (its backend may be gone)
// and forgets that it was frozen.
func (f *Freezing) thawNow(inst units.Instance, why string) {
	if f.Freezer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Freezer.Thaw(ctx, inst); err != nil {
		f.Log.Error("thaw", "instance", inst.String(), "why", why, "err", err)
	}
	f.Wiring.MarkFrozen(inst, false)
	f.forget(inst)
}

func (f *Freezing) forget(inst units.Instance) {
	if err := f.Records.ForgetFrozen(inst.String()); err != nil {
		f.Log.Error("save state", "instance", inst.String(), "err", err)
	}
}

// ThawForStop thaws a frozen instance before `ten stop` or `ten restart`:
// systemd cannot stop a frozen service cleanly (the app cannot handle
// SIGTERM while frozen, and systemd waits out TimeoutStopSec).
func (f *Freezing) ThawForStop(ctx context.Context, inst units.Instance) {
	if f.Freezer == nil {
		return
	}
	if err := f.router.Thaw(ctx, inst, "stop"); err != nil && !errors.Is(err, router.ErrNoInstance) {
		f.Log.Warn("thaw before stop", "instance", inst.String(), "err", err)
	}
	if fr, _ := f.Freezer.Frozen(inst); fr {
		f.thawNow(inst, "stop")
	}
}

// Restore runs once at start, after adoption: an instance that ten
// froze (its record) and that is still frozen stays frozen when its service
// still says sleep = "freeze*" and no L4 connection arrived for it while ten
// was down; every other frozen instance is thawed. Records of instances
// that are not frozen are dropped. So a crash of ten never leaves an
// instance frozen that nobody would thaw.
func (f *Freezing) Restore() {
	if f.Freezer == nil {
		return
	}
	pending := f.Wiring.FrozenConnections()
	ins := f.Registry.Snapshot()
	records := f.Records.FrozenRecords()
	known := map[string]bool{}
	for _, in := range ins {
		name := in.Inst.String()
		known[name] = true
		frozen, err := f.Freezer.Frozen(in.Inst)
		if err != nil {
			f.Log.Warn("read freezer state", "instance", name, "err", err)
			continue
		}
		since, recorded := records[name]
		if !frozen {
			if recorded {
				f.forget(in.Inst)
			}
			f.Wiring.MarkFrozen(in.Inst, false)
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
			f.Log.Info("thawing an instance found frozen at start", "instance", name, "why", why)
			f.thaws.WithLabelValues(name, "start").Inc()
			f.thawNow(in.Inst, "start")
			continue
		}
		f.router.SetFrozen(in.Inst, since)
		f.Wiring.MarkFrozen(in.Inst, true)
		f.Log.Info("instance stays frozen", "instance", name, "frozen_since", since)
	}
	for name := range records {
		if !known[name] {
			if err := f.Records.ForgetFrozen(name); err != nil {
				f.Log.Error("save state", "instance", name, "err", err)
			}
		}
	}
}

// RunWakes thaws frozen L4 instances on the sk_lookup program's wake events
// until ctx ends, and returns once the thaws it started have ended.
func (f *Freezing) RunWakes(ctx context.Context) {
	if f.Freezer == nil {
		return
	}
	err := f.Wiring.Wakes(ctx, func(inst units.Instance) {
		if err := f.router.Thaw(ctx, inst, "l4"); err != nil {
			f.Log.Warn("thaw on L4 connection", "instance", inst.String(), "err", err)
		}
	})
	if err != nil {
		f.Log.Error("L4 wake events", "err", err)
	}
}

// frozenMemory returns the memory of a frozen instance's service.
func (f *Freezing) frozenMemory(ctx context.Context, inst units.Instance) uint64 {
	if mem, _, err := f.Usage(ctx, inst); err == nil && mem > 0 {
		return mem
	}
	if mem, ok := f.MemoryOf(inst); ok {
		return mem
	}
	return 0
}

// enforceCap stops the longest-frozen instances while the frozen ones
// together use more than settings.max_frozen_mb.
func (f *Freezing) enforceCap(ctx context.Context) {
	limit := uint64(f.MaxFrozenMB) << 20
	if limit == 0 || f.Freezer == nil {
		return
	}
	type frozen struct {
		inst  units.Instance
		since time.Time
		mem   uint64
	}
	var fs []frozen
	var total uint64
	for _, inst := range f.Registry.Instances() {
		st, ok := f.router.Stat(inst)
		if !ok || !st.Frozen {
			continue
		}
		m := f.frozenMemory(ctx, inst)
		fs = append(fs, frozen{inst, st.FrozenSince, m})
		total += m
	}
	if total <= limit {
		return
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].since.Before(fs[j].since) })
	for _, fz := range fs {
		if total <= limit {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		stopped, err := f.router.StopFrozen(sctx, fz.inst)
		cancel()
		if err != nil {
			f.Log.Warn("stop frozen instance over max_frozen_mb", "instance", fz.inst.String(), "err", err)
			continue
		}
		if stopped {
			total -= fz.mem
			f.Log.Info("frozen memory over settings.max_frozen_mb; stopped the longest-frozen instance",
				"instance", fz.inst.String(), "frozen_since", fz.since, "memory_bytes", fz.mem, "max_frozen_mb", f.MaxFrozenMB)
		}
	}
}

// RunCap checks the frozen-memory cap every interval until ctx ends.
func (f *Freezing) RunCap(ctx context.Context, interval time.Duration) {
	if f.MaxFrozenMB == 0 || f.Freezer == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.enforceCap(ctx)
		}
	}
}

// Stopped forgets the record of an instance whose service stopped (a
// stopped service is not frozen).
func (f *Freezing) Stopped(inst units.Instance) {
	if _, ok := f.Records.FrozenSince(inst.String()); ok {
		f.forget(inst)
	}
}
