package server

import (
	"context"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/isolation"
	"github.com/tenhq/ten/metrics"
	"github.com/tenhq/ten/registry"
)

// metricsSource is the server as the state collector's Source (package
// metrics).
type metricsSource struct{ *Server }

// Instances judges every instance as ps does, from the state cache
// systemd's signals keep: a scrape costs systemd one call per running
// instance (Usage), none per sleeper.
func (m metricsSource) Instances() []metrics.Instance {
	s := m.Server
	ins := s.reg.Snapshot()
	out := make([]metrics.Instance, 0, len(ins))
	for _, in := range ins {
		svc, sock, _ := s.sd.State(in.Inst)
		st, routed := s.router.Stat(in.Inst)
		state, _, h := registry.State(registry.Facts{
			Failed: s.health.Failed(in.Inst), WakeFailed: in.WakeFailed,
			ServiceActive: svc.ActiveState, SocketActive: sock.ActiveState,
			Frozen: routed && st.Frozen, Health: s.health.Of(in.Inst),
		})
		kills, _ := s.oom.Get(in.Inst)
		used, quota := isolation.QuotaUse(s.cfg, in.Svc, in.Inst)
		out = append(out, metrics.Instance{Inst: in.Inst, State: state, Health: h, Weight: st.Weight, Routed: routed,
			OOMKills: kills, StorageUsed: used, StorageQuota: quota})
	}
	return out
}

// Usage reads the memory and CPU time of a running or frozen instance (a
// frozen one's memory from the freezer when systemd says 0).
func (m metricsSource) Usage(ctx context.Context, in metrics.Instance) (memory, cpuNSec uint64, err error) {
	memory, cpuNSec, err = m.sd.Usage(ctx, in.Inst)
	if err == nil && memory == 0 && in.State == apitype.StateFrozen {
		memory, _ = m.frz.MemoryOf(in.Inst)
	}
	return memory, cpuNSec, err
}
