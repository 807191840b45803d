package kernel

import (
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/bpf/portguard"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// loadGuard loads the port guard (bpf/portguard) beside accounting and
// dispatch. A guard that does not load leaves ten serving without it, said
// in Features and in the log.
func (w *Wiring) loadGuard(reg prometheus.Registerer) {
	g, err := portguard.Load(BPFPinDir, w.log)
	if err != nil {
		w.features = append(w.features, apitype.Feature{Name: apitype.FeaturePortGuard, On: false,
			Detail: "off: " + err.Error() + ": a process of one instance can bind another's PORT while it sleeps (the router still sends it nothing)"})
		return
	}
	w.guard = g
	w.features = append(w.features, apitype.Feature{Name: apitype.FeaturePortGuard, On: true,
		Detail: "cgroup bind4/bind6 on " + units.RootSlice + ": only an instance's own processes bind its PORT (any address), pinned in " + BPFPinDir})
	if reg != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ten_port_guard_denied_total",
			Help: "Binds of an instance's PORT by a process of another instance that the port guard refused (EPERM).",
		}, func() float64 {
			n, err := g.Denied()
			if err != nil {
				return 0
			}
			return float64(n)
		}))
	}
}

// GuardPort keeps port, inst's PORT, for inst: from now on only processes
// of inst's slice bind it, while the instance runs and while it sleeps,
// until Down. Without the guard it does nothing; what fails is logged (the
// instance runs unguarded).
func (w *Wiring) GuardPort(inst units.Instance, port int) {
	if w.guard == nil || port <= 0 {
		return
	}
	root := filepath.Join(w.cgroups, units.RootSlice)
	if err := w.guard.Attach(root); err != nil {
		w.log.Warn("port guard", "instance", inst.String(), "err", err)
		return
	}
	owner, err := ebpf.CgroupID(systemd.SliceDir(w.cgroups, inst))
	if err != nil {
		w.log.Warn("port guard: the instance's slice", "instance", inst.String(), "port", port, "err", err)
		return
	}
	w.mu.Lock()
	li := w.inst[inst]
	var old int
	if li != nil {
		old, li.port = li.port, port
	}
	w.mu.Unlock()
	if li == nil {
		return
	}
	if old > 0 && old != port {
		if err := w.guard.Delete(old); err != nil {
			w.log.Warn("port guard", "instance", inst.String(), "err", err)
		}
	}
	if err := w.guard.Set(port, owner); err != nil {
		w.log.Warn("port guard", "instance", inst.String(), "err", err)
	}
}

// unguard frees the PORT of an instance that went away.
func (w *Wiring) unguard(inst units.Instance, port int) {
	if w.guard == nil || port <= 0 {
		return
	}
	if err := w.guard.Delete(port); err != nil {
		w.log.Warn("port guard", "instance", inst.String(), "err", err)
	}
}

// reconcileGuard frees the ports the pinned guard keeps for instances that
// went away while ten was down (no instance holds them now).
func (w *Wiring) reconcileGuard() {
	if w.guard == nil {
		return
	}
	owners, err := w.guard.Owners()
	if err != nil {
		w.log.Warn("port guard", "err", err)
		return
	}
	w.mu.Lock()
	held := map[int]bool{}
	for _, li := range w.inst {
		if li.port > 0 {
			held[li.port] = true
		}
	}
	w.mu.Unlock()
	for port := range owners {
		if held[port] {
			continue
		}
		w.log.Info("port guard: freeing the port of a gone instance", "port", port)
		if err := w.guard.Delete(port); err != nil {
			w.log.Warn("port guard", "port", port, "err", err)
		}
	}
}
