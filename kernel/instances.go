package kernel

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/tenhq/ten/bpf/dispatch"
	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/l4"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// Activity is the router's Activity hook: the later of what BPF saw on the
// instance's slice (with inbound, only what was not on a connection the
// instance opened itself) and what the proxy relayed.
func (w *Wiring) Activity(inst units.Instance, inbound bool) (time.Time, bool) {
	w.mu.Lock()
	li := w.inst[inst]
	var cgroup uint64
	if li != nil {
		cgroup = li.cgroup
	}
	w.mu.Unlock()
	var last time.Time
	if cgroup != 0 && w.acct != nil {
		if stats, ok, err := w.acct.Stats(cgroup); err == nil && ok {
			last = stats.LastActivity
			if inbound {
				last = stats.LastInbound
			}
		}
	}
	if w.proxy != nil {
		if t, ok := w.proxy.Activity(inst.String()); ok && t.After(last) {
			last = t
		}
	}
	return last, !last.IsZero()
}

// Connections is the router's Connections hook: the open accepted TCP
// connections BPF counts on the instance's slice (0 without accounting).
func (w *Wiring) Connections(inst units.Instance) int {
	if w.acct == nil {
		return 0
	}
	w.mu.Lock()
	li := w.inst[inst]
	var cgroup uint64
	if li != nil {
		cgroup = li.cgroup
	}
	w.mu.Unlock()
	if cgroup == 0 {
		return 0
	}
	stats, ok, err := w.acct.Stats(cgroup)
	if err != nil || !ok {
		return 0
	}
	return int(stats.OpenConnections)
}

// Reserve assigns a new instance its L4 addresses before its units are
// made; Release undoes it when the spawn fails. The port of its internal
// sockets comes from the registry, then SetInternal.
func (w *Wiring) Reserve(inst units.Instance, svc *config.Service) ([]config.Listen, error) {
	specs, err := l4.ParseAll(svc.Listen...)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	li := &instance{}
	if len(specs) > 0 {
		held := map[units.Instance][]config.Listen{}
		for other, o := range w.inst {
			held[other] = o.listen
		}
		if li.listen, err = l4.Assign(inst, specs, held); err != nil {
			return nil, err
		}
	}
	w.inst[inst] = li
	return li.listen, nil
}

// SetInternal records the internal sockets on port (0: the instance has
// no L4 addresses) and returns what units.Options needs: the L4 addresses
// and the internal sockets.
func (w *Wiring) SetInternal(inst units.Instance, listen []config.Listen, port int) (addrs, internal []string) {
	if port > 0 && len(listen) > 0 {
		internal = l4.InternalSockets(listen, port)
	}
	w.mu.Lock()
	if li := w.inst[inst]; li != nil {
		li.internal = internal
	}
	w.mu.Unlock()
	return l4.Strings(listen), internal
}

// Release forgets a reservation whose spawn failed (not an instance whose
// units exist).
func (w *Wiring) Release(inst units.Instance) {
	w.mu.Lock()
	if li := w.inst[inst]; li != nil && !li.up {
		delete(w.inst, inst)
	}
	w.mu.Unlock()
}

// Adopt records what an instance found in systemd holds, from the
// environment ten gave its service (TEN_LISTEN, TEN_L4_SOCKETS), and sets it
// up again: a new ten re-adopts the pinned BPF state and re-registers the
// sockets, the proxy listens again. It returns the ports of the internal
// sockets, for the registry to hold.
func (w *Wiring) Adopt(ctx context.Context, inst units.Instance, env []string) (ports []int) {
	li := &instance{}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "TEN_LISTEN="); ok {
			ls, err := l4.ParseAll(v)
			if err != nil {
				w.log.Warn("adopt: bad TEN_LISTEN", "instance", inst.String(), "err", err)
			}
			li.listen = ls
		}
		if v, ok := strings.CutPrefix(kv, "TEN_L4_SOCKETS="); ok {
			li.internal = strings.Fields(v)
		}
	}
	w.mu.Lock()
	w.inst[inst] = li
	w.mu.Unlock()
	w.Up(ctx, inst)
	return internalPorts(li.internal)
}

// internalPorts are the ports of internal socket addresses.
func internalPorts(addrs []string) []int {
	var out []int
	for _, a := range addrs {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			out = append(out, int(ap.Port()))
		}
	}
	return out
}

// Up starts accounting for an instance whose units exist, binds its L4
// addresses and registers its sockets (or starts proxying them). What fails
// is logged: the instance runs, with less than it should have.
func (w *Wiring) Up(ctx context.Context, inst units.Instance) {
	w.mu.Lock()
	li := w.inst[inst]
	if li == nil {
		w.mu.Unlock()
		return
	}
	li.up = true
	w.sockets[inst] = true // Create and adopt see it active
	listen, internal := li.listen, li.internal
	w.mu.Unlock()
	if w.acct != nil {
		path := systemd.SliceDir(w.cgroups, inst)
		if err := w.acct.Attach(path); err != nil {
			w.log.Warn("activity accounting", "instance", inst.String(), "err", err)
		} else if id, err := ebpf.CgroupID(path); err == nil {
			w.mu.Lock()
			li.cgroup = id
			w.byCgroup[id] = inst
			w.mu.Unlock()
		}
	}
	if len(listen) == 0 {
		return
	}
	if w.disp == nil {
		if err := w.proxy.Add(inst.String(), listen, internal); err != nil {
			w.log.Error("L4 proxy", "instance", inst.String(), "err", err)
		}
		return
	}
	for _, b := range bindings(inst, listen) {
		if err := w.disp.AddBinding(b); err != nil {
			w.log.Error("L4 dispatch", "instance", inst.String(), "err", err)
		}
	}
	w.register(inst)
}

// bindings are the dispatcher bindings of an instance's L4 addresses.
func bindings(inst units.Instance, ls []config.Listen) []dispatch.Binding {
	out := make([]dispatch.Binding, len(ls))
	for i, l := range ls {
		out[i] = dispatch.Binding{Label: l4.Label(inst), Protocol: l.Protocol, Prefix: l.Prefix, Port: l.Port, PortEnd: l.PortEnd}
	}
	return out
}

// SocketState follows the instance's socket unit (from systemd's signals):
// when it becomes active again (restarted: it has new sockets, and the
// kernel dropped the old ones from the sockmap when systemd closed them),
// its sockets are registered again.
func (w *Wiring) SocketState(inst units.Instance, activeState string) {
	if activeState == "" {
		return
	}
	active := activeState == "active"
	w.mu.Lock()
	was := w.sockets[inst]
	w.sockets[inst] = active
	w.mu.Unlock()
	if active && !was {
		w.register(inst)
	}
}

// register puts the instance's systemd-held internal sockets in the
// dispatcher's sockmap: after spawn and adoption, and when the socket unit
// becomes active again.
func (w *Wiring) register(inst units.Instance) {
	if w.disp == nil {
		return
	}
	w.mu.Lock()
	li := w.inst[inst]
	var internal []string
	if li != nil && li.up {
		internal = li.internal
	}
	w.mu.Unlock()
	for _, a := range internal {
		f, err := ebpf.FindListener(1, "tcp", a)
		if err != nil {
			w.log.Error("L4 dispatch: find the socket systemd holds", "instance", inst.String(), "err", err)
			continue
		}
		err = w.disp.RegisterSocket(l4.Label(inst), f)
		f.Close()
		if err != nil {
			w.log.Error("L4 dispatch", "instance", inst.String(), "err", err)
			continue
		}
		w.log.Debug("L4 socket registered", "instance", inst.String(), "socket", a)
	}
}

// Down undoes Up for an instance whose units and slice were removed
// (systemd.Manager.Remove).
func (w *Wiring) Down(ctx context.Context, inst units.Instance) {
	w.mu.Lock()
	li := w.inst[inst]
	delete(w.inst, inst)
	delete(w.sockets, inst)
	if li != nil && li.cgroup != 0 {
		delete(w.byCgroup, li.cgroup)
	}
	w.mu.Unlock()
	if li == nil {
		return
	}
	w.unguard(inst, li.port)
	if w.disp != nil && len(li.listen) > 0 {
		for _, b := range bindings(inst, li.listen) {
			if err := w.disp.RemoveBinding(b); err != nil && !errors.Is(err, os.ErrNotExist) {
				w.log.Warn("L4 dispatch", "instance", inst.String(), "err", err)
			}
		}
		if err := w.disp.UnregisterSocket(l4.Label(inst)); err != nil {
			w.log.Warn("L4 dispatch", "instance", inst.String(), "err", err)
		}
	}
	if w.proxy != nil {
		w.proxy.Remove(inst.String())
	}
	if w.acct != nil && li.cgroup != 0 {
		// Its own links only: Prune looks at every instance's (a
		// syscall each), which made tearing down n instances O(n²).
		if err := w.acct.DetachID(li.cgroup); err != nil {
			w.log.Warn("activity accounting", "instance", inst.String(), "err", err)
		}
	}
}

// Reconcile drops what the pinned BPF state still holds for instances
// that went away while ten was down: their bindings, the links of their
// removed cgroups and their guarded ports.
func (w *Wiring) Reconcile() {
	w.reconcileGuard()
	if w.disp == nil {
		return
	}
	w.mu.Lock()
	known := map[string]bool{}
	for inst := range w.inst {
		known[l4.Label(inst)] = true
	}
	w.mu.Unlock()
	bs, err := w.disp.Bindings()
	if err != nil {
		w.log.Warn("L4 dispatch", "err", err)
		return
	}
	for _, b := range bs {
		if known[b.Label] {
			continue
		}
		w.log.Info("L4 dispatch: removing a binding of a gone instance", "binding", b.String())
		if err := w.disp.RemoveBinding(b); err != nil {
			w.log.Warn("L4 dispatch", "err", err)
		}
		if err := w.disp.UnregisterSocket(b.Label); err != nil {
			w.log.Warn("L4 dispatch: unregister socket", "label", b.Label, "err", err)
		}
	}
	if err := w.acct.Prune(); err != nil {
		w.log.Warn("activity accounting", "err", err)
	}
}

// Addresses returns the L4 addresses an instance holds, as TEN_LISTEN
// gives them to the app.
func (w *Wiring) Addresses(inst units.Instance) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if li := w.inst[inst]; li != nil {
		return l4.Strings(li.listen)
	}
	return nil
}
