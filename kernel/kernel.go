// Package kernel wires ten's instances into the kernel: BPF activity
// accounting on each instance's slice, sk_lookup dispatch of its L4
// addresses straight to the sockets systemd holds for it (or, without BPF,
// ten's userspace proxy), the dispatcher's frozen marks and wake events for
// instances that sleep frozen, and the port guard that keeps each instance's
// PORT for its own processes.
//
// One Wiring owns all of it: the BPF objects, the lock on their pinned
// state, and what each instance holds (addresses, internal sockets, cgroup),
// under one mutex. The server drives it through a few calls along an
// instance's life (Reserve, SetInternal, Up, SocketState, Down; Adopt and
// Reconcile after a restart of ten) and reads activity from it (Activity,
// Connections). The programs themselves are in bpf/, their loaders in
// bpf/acct, bpf/dispatch and bpf/portguard, what they share in bpf/ebpf.
package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/bpf/acct"
	"github.com/tenhq/ten/bpf/dispatch"
	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/bpf/portguard"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/l4"
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

// Options are what a Wiring needs from the server.
type Options struct {
	Log *slog.Logger
	// Metrics gets the BPF accounting collector when accounting is on.
	Metrics prometheus.Registerer
	// MaxConnsPerAddr bounds the connections one client address holds
	// open through the userspace L4 proxy (settings.max_conns_per_address;
	// 0: no bound). With sk_lookup the connections are the apps' own.
	MaxConnsPerAddr int
}

// Wiring is the kernel side of ten serve (accounting, sk_lookup dispatch)
// or, without BPF, the userspace proxy for L4 addresses; and what each
// instance holds of it.
type Wiring struct {
	log             *slog.Logger
	maxConnsPerAddr int

	acct     *acct.Accounting     // nil without BPF
	disp     *dispatch.Dispatcher // nil without BPF
	guard    *portguard.Guard     // nil without BPF, or when it failed to load
	proxy    *l4.Proxy            // serves L4 addresses when disp is nil
	cgroups  string               // cgroup v2 mount
	pins     *ebpf.PinLock        // flock on BPFPinDir while ten uses it
	features []apitype.Feature

	mu sync.Mutex // mu guards the following
	// inst is what each instance holds.
	inst map[units.Instance]*instance
	// sockets records which socket units were last seen active, so that
	// sockets are registered again only when one becomes active.
	sockets  map[units.Instance]bool
	byCgroup map[uint64]units.Instance
}

// instance is what one instance holds.
type instance struct {
	listen   []config.Listen // its L4 addresses (one address each)
	internal []string        // the socket unit's internal TCP sockets
	cgroup   uint64          // id of its slice's cgroup when accounting is attached
	port     int             // its PORT while the port guard keeps it for it
	up       bool            // units exist (false while a spawn is being planned)
}

func newWiring(o Options) *Wiring {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Wiring{
		log: log, maxConnsPerAddr: o.MaxConnsPerAddr,
		inst: map[units.Instance]*instance{}, byCgroup: map[uint64]units.Instance{}, sockets: map[units.Instance]bool{},
	}
}

// New loads the BPF objects, or falls back to the userspace proxy, and says
// which and why (Features). It fails only when another ten serve holds the
// pinned state.
func New(o Options) (*Wiring, error) {
	w := newWiring(o)
	err := CheckBPF()
	if err == nil {
		err = w.loadBPF()
		var held *ebpf.PinsHeldError
		if errors.As(err, &held) {
			return nil, err
		}
	} else if os.Getenv(EnvDisableBPF) == "1" {
		// Off means off: a dispatcher a previous ten pinned would go on
		// steering (or refusing) connections for addresses the proxy now
		// serves. Removing the pins releases the links, which detaches them.
		if _, serr := os.Stat(BPFPinDir); serr == nil {
			lock, lerr := ebpf.LockPins(BPFPinDir)
			var held *ebpf.PinsHeldError
			if errors.As(lerr, &held) {
				return nil, lerr
			}
			defer lock.Unlock()
			w.log.Info("removing the BPF state a previous ten pinned", "pins", BPFPinDir, "reason", err)
			if rerr := os.RemoveAll(BPFPinDir); rerr != nil {
				w.log.Warn("remove pinned BPF state", "pins", BPFPinDir, "err", rerr)
			}
		}
	}
	if err != nil {
		w.useProxy(err)
	} else {
		w.features = []apitype.Feature{
			{Name: apitype.FeatureAccounting, On: true, Detail: "cgroup_skb/sock_ops counters on each instance's slice, pinned in " + BPFPinDir},
			{Name: apitype.FeatureL4Dispatch, On: true, Detail: "sk_lookup steers L4 addresses to the instances' systemd-held sockets (to a PORT app's own socket once it listens), pinned in " + BPFPinDir},
		}
		if o.Metrics != nil {
			o.Metrics.MustRegister(acct.NewCollector(w.acct, w.instanceOf, w.log))
		}
		w.loadGuard(o.Metrics)
	}
	for _, f := range w.features {
		w.log.Info("feature", "name", f.Name, "on", f.On, "detail", f.Detail)
	}
	return w, nil
}

// useProxy makes w serve L4 addresses with the userspace proxy, because of
// why.
func (w *Wiring) useProxy(why error) {
	w.proxy = l4.NewProxy(w.log, w.maxConnsPerAddr)
	w.features = []apitype.Feature{
		{Name: apitype.FeatureAccounting, On: false, Detail: "BPF unavailable (" + why.Error() + "): idle time comes from the HTTP router and the L4 proxy only"},
		{Name: apitype.FeatureL4Dispatch, On: false, Detail: "BPF unavailable: L4 addresses are served by ten's userspace proxy (apps see the proxy as peer; nothing listens while ten is down)"},
		{Name: apitype.FeaturePortGuard, On: false, Detail: "BPF unavailable (" + why.Error() + "): a process of one instance can bind another's PORT while it sleeps (the router still sends it nothing)"},
	}
}

func (w *Wiring) loadBPF() error {
	root, err := ebpf.CgroupV2Root()
	if err != nil {
		return err
	}
	w.cgroups = root
	if err := ebpf.EnsureBPFFS(ebpf.DefaultBPFFS); err != nil {
		return err
	}
	if err := os.MkdirAll(BPFPinDir, 0o700); err != nil {
		return err
	}
	// One ten serve at a time changes the pinned state.
	if w.pins, err = ebpf.LockPins(BPFPinDir); err != nil {
		return err
	}
	w.acct, err = acct.LoadAccounting(BPFPinDir, w.log)
	if err != nil {
		w.pins.Unlock()
		w.pins = nil
		return err
	}
	w.disp, err = dispatch.LoadDispatcher("/proc/self/ns/net", BPFPinDir, w.log)
	if err != nil {
		w.acct.Close()
		w.acct = nil
		w.pins.Unlock()
		w.pins = nil
		return err
	}
	return nil
}

// Features reports whether accounting and L4 dispatch are on, and why one
// is off.
func (w *Wiring) Features() []apitype.Feature {
	return append([]apitype.Feature(nil), w.features...)
}

// Accounting reports whether BPF counts each instance's traffic (and so
// Connections means something).
func (w *Wiring) Accounting() bool { return w.acct != nil }

// PeerMark is the SO_MARK for ten's own TCP connections to instances, whose
// traffic the accounting does not take for activity (acct.PeerMark); 0
// without accounting.
func (w *Wiring) PeerMark() int {
	if w.acct == nil {
		return 0
	}
	return acct.PeerMark
}

// Dispatching reports whether the sk_lookup dispatcher serves L4 addresses
// (and so keeps frozen marks and sends wake events).
func (w *Wiring) Dispatching() bool { return w.disp != nil }

// Close releases the BPF objects (pinned state stays and keeps working)
// and stops the proxy. Every caller of w's other methods must have returned
// before: they read the maps Close closes.
func (w *Wiring) Close() error {
	var errs []error
	if w.acct != nil {
		errs = append(errs, w.acct.Close())
	}
	if w.disp != nil {
		errs = append(errs, w.disp.Close())
	}
	if w.guard != nil {
		errs = append(errs, w.guard.Close())
	}
	if w.proxy != nil {
		w.proxy.Close()
	}
	if err := w.pins.Unlock(); err != nil {
		errs = append(errs, fmt.Errorf("unlock pinned BPF state %s: %w", BPFPinDir, err))
	}
	return errors.Join(errs...)
}

func (w *Wiring) instanceOf(id uint64) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	inst, ok := w.byCgroup[id]
	return inst.String(), ok
}
