// Package ps reads the instances as `ten ps` shows them: a row per
// instance (state, health, memory, CPU, weight, idle time, OOM kills,
// storage), the health answer of the API, and the state collector's Source
// (package metrics). Sleepers are read from the state cache systemd's
// signals keep; only instances that can use memory and CPU are read live.
// Every state is registry.State's judgement. It only reads.
package ps

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/internal/coalesce"
	"github.com/tenhq/ten/isolation"
	"github.com/tenhq/ten/metrics"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// Systemd is what ps reads of systemd (systemd.Manager).
type Systemd interface {
	// State is the cached state of inst's service and socket unit.
	State(inst units.Instance) (service, socket systemd.UnitState, ok bool)
	// Info reads inst's units live.
	Info(ctx context.Context, inst units.Instance) (systemd.Info, error)
	// Usage reads a running instance's memory and CPU time.
	Usage(ctx context.Context, inst units.Instance) (memory, cpuNSec uint64, err error)
}

// Health is what ps reads of the health book (health.Monitor).
type Health interface {
	Failed(inst units.Instance) string
	Of(inst units.Instance) string
	Fill(out *apitype.Health, inst units.Instance)
	Restarts(inst units.Instance) uint32
}

// Options configure a Reader.
type Options struct {
	Config   *config.Config
	Registry *registry.Registry
	Systemd  Systemd
	// Router gives weights, requests in flight, activity and frozen marks.
	Router *router.Router
	Health Health
	// FrozenMemory is a frozen instance's memory when systemd says 0.
	FrozenMemory func(units.Instance) (uint64, bool)
	// OOM gives OOM kills and last exits.
	OOM *isolation.OOM
}

// Reader reads rows; it is safe for concurrent use.
type Reader struct {
	cfg          *config.Config
	reg          *registry.Registry
	sd           Systemd
	router       *router.Router
	health       Health
	frozenMemory func(units.Instance) (uint64, bool)
	oom          *isolation.OOM
	// rows coalesces Rows: a list reads systemd for every live instance,
	// so lists asked for at once (API, dashboard) share one read at a time.
	rows coalesce.Group[[]apitype.Row]
}

// rowsTimeout bounds one shared read of every row (it runs for all the
// callers waiting for it, whatever their own deadlines).
const rowsTimeout = 30 * time.Second

// New returns a Reader over o.
func New(o Options) *Reader {
	return &Reader{cfg: o.Config, reg: o.Registry, sd: o.Systemd, router: o.Router, health: o.Health, frozenMemory: o.FrozenMemory, oom: o.OOM}
}

var _ metrics.Source = (*Reader)(nil)

// Rows returns every instance's row. The state comes from the state cache
// systemd's signals keep (no D-Bus call); only instances that can use
// memory and CPU — running, starting, frozen, failed, or not cached — are
// read live, a few at once. Callers at once share one read that began
// after they asked (internal/coalesce); each gets its own copy.
func (p *Reader) Rows(ctx context.Context) ([]apitype.Row, error) {
	rows, err := p.rows.Do(ctx, func() ([]apitype.Row, error) {
		ctx, cancel := context.WithTimeout(context.Background(), rowsTimeout)
		defer cancel()
		return p.readRows(ctx)
	})
	return slices.Clone(rows), err
}

// readRows reads every instance's row (Rows).
func (p *Reader) readRows(ctx context.Context) ([]apitype.Row, error) {
	ins := p.reg.Snapshot()
	now := time.Now()
	rows := make([]apitype.Row, len(ins))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, in := range ins {
		if r, ok := p.cachedRow(in); ok {
			rows[i] = r
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r, err := p.row(ctx, in, now)
			if err != nil {
				// One unreadable instance must not hide the others.
				r = apitype.Row{Instance: in.Inst.String(), ID: in.Inst.String(), State: "unknown", Detail: err.Error(), Socket: in.Listen}
			}
			rows[i] = r
		}()
	}
	wg.Wait()
	return rows, nil
}

// cachedRow is the row of a sleeping instance from the state cache alone;
// ok is false when the instance is anything but asleep (or not cached), so
// its live numbers must be read.
func (p *Reader) cachedRow(in registry.Entry) (apitype.Row, bool) {
	svc, sock, ok := p.sd.State(in.Inst)
	if !ok || svc.ActiveState != "inactive" {
		return apitype.Row{}, false
	}
	st, _ := p.router.Stat(in.Inst)
	r := apitype.Row{Instance: in.Inst.String(), ID: in.Inst.String(), Socket: in.Listen, Weight: st.Weight, Inflight: st.Inflight, Port: in.Port, Since: svc.InactiveSince,
		Restarts: p.health.Restarts(in.Inst)}
	r.State, r.Detail, r.Health = registry.State(registry.Facts{
		Failed: p.health.Failed(in.Inst), WakeFailed: in.WakeFailed,
		ServiceActive: svc.ActiveState, SocketActive: sock.ActiveState, SocketUnit: in.Inst.SocketUnit(),
		Frozen: st.Frozen, Health: p.health.Of(in.Inst),
	})
	if r.State != apitype.StateSleeping {
		return apitype.Row{}, false
	}
	if !st.LastActivity.IsZero() {
		r.IdleSec = time.Since(st.LastActivity).Seconds()
	}
	if st.Inflight > 0 {
		r.IdleSec = 0
	}
	p.isolationRow(in, &r)
	return r, true
}

func (p *Reader) row(ctx context.Context, in registry.Entry, now time.Time) (apitype.Row, error) {
	info, err := p.sd.Info(ctx, in.Inst)
	if err != nil {
		return apitype.Row{}, err
	}
	st, _ := p.router.Stat(in.Inst)
	r := apitype.Row{Instance: in.Inst.String(), ID: in.Inst.String(), Socket: in.Listen, MemoryBytes: info.MemoryCurrent, CPUNSec: info.CPUUsageNSec,
		Weight: st.Weight, Restarts: max(p.health.Restarts(in.Inst), info.NRestarts), Inflight: st.Inflight, Port: in.Port}
	r.State, r.Detail, r.Health = registry.State(registry.Facts{
		Failed: p.health.Failed(in.Inst), WakeFailed: in.WakeFailed,
		ServiceActive: info.ActiveState, ServiceResult: info.Result,
		SocketActive: info.SocketState, SocketUnit: in.Inst.SocketUnit(),
		Frozen: st.Frozen, Health: p.health.Of(in.Inst),
	})
	switch r.State {
	case apitype.StateFrozen:
		r.Since = st.FrozenSince
		if r.MemoryBytes == 0 {
			r.MemoryBytes, _ = p.frozenMemory(in.Inst)
		}
	case apitype.StateRunning:
		r.Since = info.ActiveSince
		r.Address = st.Address
	case apitype.StateSleeping:
		r.Since = info.InactiveSince
	}
	if r.State == apitype.StateRunning && !info.ActiveSince.IsZero() {
		r.UptimeSec = now.Sub(info.ActiveSince).Seconds()
		r.UptimeSecs = uint64(r.UptimeSec)
	}
	if !st.LastActivity.IsZero() {
		r.IdleSec = now.Sub(st.LastActivity).Seconds()
	}
	if st.Inflight > 0 {
		r.IdleSec = 0
	}
	p.isolationRow(in, &r)
	return r, nil
}

// Row returns one instance's row.
func (p *Reader) Row(ctx context.Context, inst units.Instance) (apitype.Row, error) {
	in, ok := p.reg.Get(inst)
	if !ok {
		return apitype.Row{}, fmt.Errorf("%s: %w", inst, registry.ErrNotFound)
	}
	return p.row(ctx, in, time.Now())
}

// isolationRow fills the isolation columns of a ps row. It only reads: OOM
// watches start with the service (follow) or at adoption, never from ps.
func (p *Reader) isolationRow(in registry.Entry, r *apitype.Row) {
	r.OOMKills, r.LastExit = p.oom.Get(in.Inst)
	r.StorageBytes, r.StorageQuotaBytes = isolation.QuotaUse(p.cfg, in.Svc, in.Inst)
}

// Health reports inst's health.
func (p *Reader) Health(ctx context.Context, inst units.Instance) (apitype.Health, error) {
	row, err := p.Row(ctx, inst)
	if err != nil {
		return apitype.Health{}, err
	}
	in, have := p.reg.Get(inst)
	h := apitype.Health{Instance: inst.String(), State: row.State, Check: "systemd state",
		MaxRestarts: p.cfg.Settings.MaxRestarts, RestartWindowSec: p.cfg.Settings.RestartWindow}
	if have && in.Svc != nil && in.Svc.Health != "" {
		h.Check = "GET " + in.Svc.Health
	}
	p.health.Fill(&h, inst)
	// A sleeping instance is not checked; say so rather than show a stale result.
	if row.State == apitype.StateSleeping && h.Failed == "" {
		h.Health = apitype.HealthSleeping
	}
	return h, nil
}

// Instances judges every instance as ps does, from the state cache
// systemd's signals keep: a scrape costs systemd one call per running
// instance (Usage), none per sleeper.
func (p *Reader) Instances() []metrics.Instance {
	ins := p.reg.Snapshot()
	out := make([]metrics.Instance, 0, len(ins))
	for _, in := range ins {
		svc, sock, _ := p.sd.State(in.Inst)
		st, routed := p.router.Stat(in.Inst)
		state, _, h := registry.State(registry.Facts{
			Failed: p.health.Failed(in.Inst), WakeFailed: in.WakeFailed,
			ServiceActive: svc.ActiveState, SocketActive: sock.ActiveState,
			Frozen: routed && st.Frozen, Health: p.health.Of(in.Inst),
		})
		kills, _ := p.oom.Get(in.Inst)
		used, quota := isolation.QuotaUse(p.cfg, in.Svc, in.Inst)
		out = append(out, metrics.Instance{Inst: in.Inst, State: state, Health: h, Weight: st.Weight, Routed: routed,
			OOMKills: kills, StorageUsed: used, StorageQuota: quota})
	}
	return out
}

// Usage reads the memory and CPU time of a running or frozen instance (a
// frozen one's memory from the freezer when systemd says 0).
func (p *Reader) Usage(ctx context.Context, in metrics.Instance) (memory, cpuNSec uint64, err error) {
	memory, cpuNSec, err = p.sd.Usage(ctx, in.Inst)
	if err == nil && memory == 0 && in.State == apitype.StateFrozen {
		memory, _ = p.frozenMemory(in.Inst)
	}
	return memory, cpuNSec, err
}
