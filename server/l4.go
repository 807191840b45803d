package server

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/l4"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/units"
)

// EnvDisableBPF, set to 1, makes ten serve run without BPF, as on a host
// that cannot load it: activity from the router alone, L4 addresses served
// by the userspace proxy. For testing the fallback, and a way out should the
// BPF path misbehave.
const EnvDisableBPF = "TEN_DISABLE_BPF"

// BPFPinDir is where ten pins its BPF programs' links and maps, so that
// accounting and dispatch go on while ten is down or restarting.
const BPFPinDir = ebpf.DefaultBPFFS + "/tenement"

// CheckBPF reports why ten serve would run without BPF on this host (nil:
// it would use it): TEN_DISABLE_BPF=1, or what ebpf.Supported finds missing
// (privilege, kernel features, bpffs, cgroup v2).
func CheckBPF() error {
	if os.Getenv(EnvDisableBPF) == "1" {
		return fmt.Errorf("disabled by %s=1", EnvDisableBPF)
	}
	return ebpf.Supported()
}

// l4State is the eBPF side of ten serve (accounting, sk_lookup dispatch)
// or, without BPF, the userspace proxy for L4 addresses; and what each
// instance holds of it.
type l4State struct {
	acct     *ebpf.Accounting // nil without BPF
	disp     *ebpf.Dispatcher // nil without BPF
	proxy    *l4.Proxy        // serves L4 addresses when disp is nil
	cgroups  string           // cgroup v2 mount
	pins     *ebpf.PinLock    // flock on BPFPinDir while ten uses it
	features []Feature

	mu   sync.Mutex
	inst map[units.Instance]*l4Instance
	// sockets records which socket units were last seen active, so that
	// sockets are registered again only when one becomes active.
	sockets  map[units.Instance]bool
	byCgroup map[uint64]units.Instance
}

// l4Instance is what one instance holds.
type l4Instance struct {
	listen   []config.Listen // its L4 addresses (one address each)
	internal []string        // the socket unit's internal TCP sockets
	cgroup   uint64          // id of its slice's cgroup when accounting is attached
	up       bool            // units exist (false while a spawn is being planned)
}

// initL4 loads the BPF objects, or falls back, and says which and why. It
// fails only when another ten serve holds the pinned state.
func (s *Server) initL4() error {
	st := &l4State{inst: map[units.Instance]*l4Instance{}, byCgroup: map[uint64]units.Instance{}, sockets: map[units.Instance]bool{}}
	s.l4 = st
	err := CheckBPF()
	if err == nil {
		err = st.loadBPF(s)
		var held *ebpf.PinsHeldError
		if errors.As(err, &held) {
			return err
		}
	} else if os.Getenv(EnvDisableBPF) == "1" {
		// Off means off: a dispatcher a previous ten pinned would go on
		// steering (or refusing) connections for addresses the proxy now
		// serves. Removing the pins releases the links, which detaches them.
		if _, serr := os.Stat(BPFPinDir); serr == nil {
			lock, lerr := ebpf.LockPins(BPFPinDir)
			var held *ebpf.PinsHeldError
			if errors.As(lerr, &held) {
				return lerr
			}
			defer lock.Unlock()
			s.log.Info("removing the BPF state a previous ten pinned", "pins", BPFPinDir, "reason", err)
			if rerr := os.RemoveAll(BPFPinDir); rerr != nil {
				s.log.Warn("remove pinned BPF state", "pins", BPFPinDir, "err", rerr)
			}
		}
	}
	if err != nil {
		st.proxy = l4.NewProxy(s.log)
		st.features = []Feature{
			{Name: FeatureAccounting, On: false, Detail: "BPF unavailable (" + err.Error() + "): idle time comes from the HTTP router and the L4 proxy only"},
			{Name: FeatureL4Dispatch, On: false, Detail: "BPF unavailable: L4 addresses are served by ten's userspace proxy (apps see the proxy as peer; nothing listens while ten is down)"},
		}
	} else {
		st.features = []Feature{
			{Name: FeatureAccounting, On: true, Detail: "cgroup_skb/sock_ops counters on each instance's slice, pinned in " + BPFPinDir},
			{Name: FeatureL4Dispatch, On: true, Detail: "sk_lookup steers L4 addresses to the instances' systemd-held sockets, pinned in " + BPFPinDir},
		}
		s.metrics.MustRegister(ebpf.NewCollector(st.acct, st.instanceOf, s.log))
	}
	for _, f := range st.features {
		s.log.Info("feature", "name", f.Name, "on", f.On, "detail", f.Detail)
	}
	return nil
}

func (st *l4State) loadBPF(s *Server) error {
	root, err := ebpf.CgroupV2Root()
	if err != nil {
		return err
	}
	st.cgroups = root
	if err := ebpf.EnsureBPFFS(ebpf.DefaultBPFFS); err != nil {
		return err
	}
	if err := os.MkdirAll(BPFPinDir, 0o700); err != nil {
		return err
	}
	// One ten serve at a time changes the pinned state.
	if st.pins, err = ebpf.LockPins(BPFPinDir); err != nil {
		return err
	}
	st.acct, err = ebpf.LoadAccounting(BPFPinDir, s.log)
	if err != nil {
		st.pins.Unlock()
		st.pins = nil
		return err
	}
	st.disp, err = ebpf.LoadDispatcher("/proc/self/ns/net", BPFPinDir, s.log)
	if err != nil {
		st.acct.Close()
		st.acct = nil
		st.pins.Unlock()
		st.pins = nil
		return err
	}
	return nil
}

// Features reports which optional features this ten serve uses, and why one
// is off.
func (s *Server) Features() []Feature {
	return append(append([]Feature(nil), s.l4.features...), s.freezeFeature)
}

// registerFeatures serves GET /api/features (for `ten doctor` against a
// running server).
func (s *Server) registerFeatures(api *http.ServeMux) {
	api.HandleFunc("GET /api/features", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Features())
	})
}

// closeL4 releases the BPF objects (pinned state stays and keeps working)
// and stops the proxy.
func (s *Server) closeL4() {
	st := s.l4
	if st.acct != nil {
		st.acct.Close()
	}
	if st.disp != nil {
		st.disp.Close()
	}
	if st.proxy != nil {
		st.proxy.Close()
	}
	if err := st.pins.Unlock(); err != nil {
		s.log.Warn("unlock pinned BPF state", "pins", BPFPinDir, "err", err)
	}
}

func (st *l4State) instanceOf(id uint64) (string, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	inst, ok := st.byCgroup[id]
	return inst.String(), ok
}

// l4Activity is the router's Activity hook: the later of what BPF saw on the
// instance's slice and what the proxy relayed.
func (s *Server) l4Activity(inst units.Instance) (time.Time, bool) {
	st := s.l4
	st.mu.Lock()
	li := st.inst[inst]
	st.mu.Unlock()
	var last time.Time
	if li != nil && li.cgroup != 0 && st.acct != nil {
		if stats, ok, err := st.acct.Stats(li.cgroup); err == nil && ok {
			last = stats.LastActivity
		}
	}
	if st.proxy != nil {
		if t, ok := st.proxy.Activity(inst.String()); ok && t.After(last) {
			last = t
		}
	}
	return last, !last.IsZero()
}

// l4Reserve assigns a new instance its L4 addresses before its units are
// made; l4Release undoes it when the spawn fails. The port of its internal
// sockets comes from the registry (reservePorts), then l4SetInternal.
func (s *Server) l4Reserve(inst units.Instance, svc *config.Service) ([]config.Listen, error) {
	specs, err := l4.ParseAll(svc.Listen...)
	if err != nil {
		return nil, err
	}
	st := s.l4
	st.mu.Lock()
	defer st.mu.Unlock()
	li := &l4Instance{}
	if len(specs) > 0 {
		held := map[units.Instance][]config.Listen{}
		for other, o := range st.inst {
			held[other] = o.listen
		}
		if li.listen, err = l4.Assign(inst, specs, held); err != nil {
			return nil, err
		}
	}
	st.inst[inst] = li
	return li.listen, nil
}

// l4SetInternal records the internal sockets on port (0: the instance has
// no L4 addresses) and returns what units.Options needs: the L4 addresses
// and the internal sockets.
func (s *Server) l4SetInternal(inst units.Instance, listen []config.Listen, port int) (addrs, internal []string) {
	if port > 0 && len(listen) > 0 {
		internal = l4.InternalSockets(listen, port)
	}
	s.l4.mu.Lock()
	if li := s.l4.inst[inst]; li != nil {
		li.internal = internal
	}
	s.l4.mu.Unlock()
	return l4.Strings(listen), internal
}

// reservePorts reserves inst's PORT (from a stable hash of its name) and,
// when it has L4 addresses, the port of its internal sockets, in one step
// of the registry.
func (s *Server) reservePorts(inst units.Instance, listen []config.Listen) (registry.Ports, error) {
	lo, hi := s.cfg.Settings.PortRange[0], s.cfg.Settings.PortRange[1]
	h := fnv.New32a()
	h.Write([]byte(inst.String()))
	req := registry.PortRequest{Lo: lo, Hi: hi, Start: int(h.Sum32() % uint32(max(hi-lo+1, 1))), L4Start: int(time.Now().UnixNano() % int64(max(hi-lo+1, 1)))}
	if len(listen) > 0 {
		req.L4 = func(p int) []string { return l4.InternalSockets(listen, p) }
	}
	return s.reg.ReservePorts(inst, req, canBind)
}

// canBind reports whether a TCP address can be bound on this host now.
func canBind(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
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

// l4Release forgets a reservation whose spawn failed.
func (s *Server) l4Release(inst units.Instance) {
	s.l4.mu.Lock()
	if li := s.l4.inst[inst]; li != nil && !li.up {
		delete(s.l4.inst, inst)
	}
	s.l4.mu.Unlock()
}

// l4Adopt records what an instance found in systemd holds, from the
// environment ten gave its service (TEN_LISTEN, TEN_L4_SOCKETS), and sets it
// up again: a new ten re-adopts the pinned BPF state and re-registers the
// sockets, the proxy listens again.
func (s *Server) l4Adopt(ctx context.Context, inst units.Instance, env []string) (ports []int) {
	li := &l4Instance{}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "TEN_LISTEN="); ok {
			ls, err := l4.ParseAll(v)
			if err != nil {
				s.log.Warn("adopt: bad TEN_LISTEN", "instance", inst.String(), "err", err)
			}
			li.listen = ls
		}
		if v, ok := strings.CutPrefix(kv, "TEN_L4_SOCKETS="); ok {
			li.internal = strings.Fields(v)
		}
	}
	s.l4.mu.Lock()
	s.l4.inst[inst] = li
	s.l4.mu.Unlock()
	s.l4Up(ctx, inst)
	return internalPorts(li.internal)
}

// l4Up starts accounting for an instance whose units exist, binds its L4
// addresses and registers its sockets (or starts proxying them). What fails
// is logged: the instance runs, with less than it should have.
func (s *Server) l4Up(ctx context.Context, inst units.Instance) {
	st := s.l4
	st.mu.Lock()
	li := st.inst[inst]
	if li == nil {
		st.mu.Unlock()
		return
	}
	li.up = true
	st.sockets[inst] = true // Create and adopt see it active
	st.mu.Unlock()
	if st.acct != nil {
		path := filepath.Join(st.cgroups, inst.SliceCgroup())
		if err := st.acct.Attach(path); err != nil {
			s.log.Warn("activity accounting", "instance", inst.String(), "err", err)
		} else if id, err := ebpf.CgroupID(path); err == nil {
			st.mu.Lock()
			li.cgroup = id
			st.byCgroup[id] = inst
			st.mu.Unlock()
		}
	}
	if len(li.listen) == 0 {
		return
	}
	if st.disp == nil {
		if err := st.proxy.Add(inst.String(), li.listen, li.internal); err != nil {
			s.log.Error("L4 proxy", "instance", inst.String(), "err", err)
		}
		return
	}
	for _, b := range bindings(inst, li.listen) {
		if err := st.disp.AddBinding(b); err != nil {
			s.log.Error("L4 dispatch", "instance", inst.String(), "err", err)
		}
	}
	s.l4Register(inst)
}

func bindings(inst units.Instance, ls []config.Listen) []ebpf.Binding {
	out := make([]ebpf.Binding, len(ls))
	for i, l := range ls {
		out[i] = ebpf.Binding{Label: l4.Label(inst), Protocol: l.Protocol, Prefix: l.Prefix, Port: l.Port, PortEnd: l.PortEnd}
	}
	return out
}

// l4SocketState follows the instance's socket unit (from systemd's signals):
// when it becomes active again (restarted: it has new sockets, and the
// kernel dropped the old ones from the sockmap when systemd closed them),
// its sockets are registered again.
func (s *Server) l4SocketState(inst units.Instance, activeState string) {
	if activeState == "" {
		return
	}
	active := activeState == "active"
	s.l4.mu.Lock()
	was := s.l4.sockets[inst]
	s.l4.sockets[inst] = active
	s.l4.mu.Unlock()
	if active && !was {
		s.l4Register(inst)
	}
}

// l4Register puts the instance's systemd-held internal sockets in the
// dispatcher's sockmap: after spawn and adoption, and when the socket unit
// becomes active again.
func (s *Server) l4Register(inst units.Instance) {
	st := s.l4
	if st.disp == nil {
		return
	}
	st.mu.Lock()
	li := st.inst[inst]
	var internal []string
	if li != nil && li.up {
		internal = li.internal
	}
	st.mu.Unlock()
	for _, a := range internal {
		f, err := ebpf.FindListener(1, "tcp", a)
		if err != nil {
			s.log.Error("L4 dispatch: find the socket systemd holds", "instance", inst.String(), "err", err)
			continue
		}
		err = st.disp.RegisterSocket(l4.Label(inst), f)
		f.Close()
		if err != nil {
			s.log.Error("L4 dispatch", "instance", inst.String(), "err", err)
			continue
		}
		s.log.Debug("L4 socket registered", "instance", inst.String(), "socket", a)
	}
}

// l4Down undoes l4Up for an instance whose units were removed, and removes
// its slice.
func (s *Server) l4Down(ctx context.Context, inst units.Instance) {
	st := s.l4
	st.mu.Lock()
	li := st.inst[inst]
	delete(st.inst, inst)
	delete(st.sockets, inst)
	if li != nil && li.cgroup != 0 {
		delete(st.byCgroup, li.cgroup)
	}
	st.mu.Unlock()
	if li == nil {
		return
	}
	if st.disp != nil && len(li.listen) > 0 {
		for _, b := range bindings(inst, li.listen) {
			if err := st.disp.RemoveBinding(b); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("L4 dispatch", "instance", inst.String(), "err", err)
			}
		}
		if err := st.disp.UnregisterSocket(l4.Label(inst)); err != nil {
			s.log.Warn("L4 dispatch", "instance", inst.String(), "err", err)
		}
	}
	if st.proxy != nil {
		st.proxy.Remove(inst.String())
	}
	if err := s.sd.RemoveSlice(ctx, inst); err != nil {
		s.log.Warn("remove slice", "instance", inst.String(), "err", err)
	}
	if st.acct != nil && li.cgroup != 0 {
		// Its own links only: Prune looks at every instance's (a
		// syscall each), which made tearing down n instances O(n²).
		if err := st.acct.DetachID(li.cgroup); err != nil {
			s.log.Warn("activity accounting", "instance", inst.String(), "err", err)
		}
	}
}

// l4Reconcile drops what the pinned BPF state still holds for instances
// that went away while ten was down: their bindings and the links of their
// removed cgroups.
func (s *Server) l4Reconcile() {
	st := s.l4
	if st.disp == nil {
		return
	}
	st.mu.Lock()
	known := map[string]bool{}
	for inst := range st.inst {
		known[l4.Label(inst)] = true
	}
	st.mu.Unlock()
	bs, err := st.disp.Bindings()
	if err != nil {
		s.log.Warn("L4 dispatch", "err", err)
		return
	}
	for _, b := range bs {
		if known[b.Label] {
			continue
		}
		s.log.Info("L4 dispatch: removing a binding of a gone instance", "binding", b.String())
		if err := st.disp.RemoveBinding(b); err != nil {
			s.log.Warn("L4 dispatch", "err", err)
		}
		if err := st.disp.UnregisterSocket(b.Label); err != nil {
			s.log.Warn("L4 dispatch: unregister socket", "label", b.Label, "err", err)
		}
	}
	if err := st.acct.Prune(); err != nil {
		s.log.Warn("activity accounting", "err", err)
	}
}

// L4Addresses returns the L4 addresses an instance holds, as TEN_LISTEN
// gives them to the app.
func (s *Server) L4Addresses(inst units.Instance) []string {
	s.l4.mu.Lock()
	defer s.l4.mu.Unlock()
	if li := s.l4.inst[inst]; li != nil {
		return l4.Strings(li.listen)
	}
	return nil
}
