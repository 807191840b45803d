package acct

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	tenebpf "github.com/tenhq/ten/bpf/ebpf"
)

// Accounting counts the network activity of cgroups: bytes and packets in
// and out, TCP connections, and the time of the last of them. One set of
// programs and one map serve every attached cgroup.
//
// Traffic is counted for the cgroup the programs are attached to, for every
// socket created in it or below it. A socket belongs to the cgroup of the
// process that created it, and an accepted connection to the cgroup of its
// listener: for a socket-activated service the inbound connections count where
// the listening socket was created (the socket unit's cgroup, where systemd
// creates IP sockets when it supports BPF firewalling), the connections the
// app opens count in the service's cgroup. Attach both, or a slice holding
// both, and sum per instance (the Collector does).
//
// With a pin directory the map and one link per (cgroup, program) are pinned,
// so counting goes on while no process holds an Accounting and a new one
// (after a ten restart) continues where the old one left off.
type Accounting struct {
	log  *slog.Logger
	objs accountingObjects
	dir  string // pin directory of this Accounting, "" when not pinned

	mu sync.Mutex
	// links are the attached cgroups by id. With a pin directory the
	// value is nil: the pins hold the links, and ten holds no file
	// descriptor per cgroup (three per instance ran a ten with 10,000
	// instances out of descriptors, and every dial of an instance socket
	// failed). Without one the value holds the links' descriptors.
	links map[uint64][]link.Link
}

// accountingHooks are the programs attached to each cgroup, in order; name
// is also the pin file name of the link.
func (a *Accounting) hooks() []struct {
	name   string
	attach ebpf.AttachType
	prog   *ebpf.Program
} {
	return []struct {
		name   string
		attach ebpf.AttachType
		prog   *ebpf.Program
	}{
		{"ingress", ebpf.AttachCGroupInetIngress, a.objs.CountIngress},
		{"egress", ebpf.AttachCGroupInetEgress, a.objs.CountEgress},
		{"sockops", ebpf.AttachCGroupSockOps, a.objs.CountConnections},
	}
}

// LoadAccounting loads the accounting programs into the kernel. With pinDir
// "" nothing is pinned and Close detaches everything. Otherwise pinDir must
// be on a bpf filesystem (ten uses /sys/fs/bpf/tenement); the map and the
// links are pinned in pinDir/accounting, and a pinned state found there is
// adopted: its cgroups stay attached and switch to the programs loaded now.
func LoadAccounting(pinDir string, log *slog.Logger) (*Accounting, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec, err := loadAccounting()
	if err != nil {
		return nil, fmt.Errorf("load accounting: %w", err)
	}
	if err := spec.Variables["peer_mark"].Set(uint32(PeerMark)); err != nil {
		return nil, fmt.Errorf("load accounting: %w", err)
	}
	a := &Accounting{log: log, links: make(map[uint64][]link.Link)}
	var opts ebpf.CollectionOptions
	if pinDir != "" {
		if err := migrateAccounting(pinDir, log); err != nil {
			return nil, fmt.Errorf("load accounting: %w", err)
		}
		a.dir = filepath.Join(pinDir, accountingPinDir)
		if err := os.MkdirAll(filepath.Join(a.dir, "links"), 0o700); err != nil {
			return nil, fmt.Errorf("load accounting: %w", err)
		}
		spec.Maps[accountingMapActivity].Pinning = ebpf.PinByName
		// The sockets' flags (ten's own, the app's own connections) too:
		// a connection open across a restart of ten keeps them.
		spec.Maps[accountingMapTenPeer].Pinning = ebpf.PinByName
		opts.Maps.PinPath = a.dir
	}
	if err := spec.LoadAndAssign(&a.objs, &opts); err != nil {
		return nil, fmt.Errorf("load accounting: %w", err)
	}
	if a.dir != "" {
		if err := a.adopt(); err != nil {
			a.Close()
			return nil, fmt.Errorf("load accounting from %s: %w", a.dir, err)
		}
	}
	return a, nil
}

// accountingPinDir is the pin directory of the current layout of the
// activity map. A pinned map whose layout differs cannot be reused, and a
// pinned link must not be moved to programs that expect another layout of
// its cgroup storage (the kernel keeps the storage the link was attached
// with), so a new layout gets a new directory and the old one is removed.
const accountingPinDir = "accounting-v3"

// oldAccountingPinDirs are pin directories of earlier layouts: "accounting"
// had no open_connections, "accounting-v2" no last_in_ns.
var oldAccountingPinDirs = []string{"accounting", "accounting-v2"}

// migrateAccounting removes the pinned state of an earlier layout: removing
// the pins detaches its links (no process holds them once the ten that made
// them is gone). Counting starts again from zero; ten re-attaches every
// instance's slice.
func migrateAccounting(pinDir string, log *slog.Logger) error {
	for _, old := range oldAccountingPinDirs {
		dir := filepath.Join(pinDir, old)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		log.Info("accounting: removing pinned state of an earlier map layout; counters start again", "pins", dir, "now", filepath.Join(pinDir, accountingPinDir))
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return nil
}

// adopt opens the pinned links, drops the ones whose cgroup is gone and moves
// the others to the programs of this Accounting.
func (a *Accounting) adopt() error {
	dirs, err := os.ReadDir(filepath.Join(a.dir, "links"))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		id, err := strconv.ParseUint(d.Name(), 10, 64)
		if err != nil {
			continue
		}
		dir := filepath.Join(a.dir, "links", d.Name())
		var ls []link.Link
		alive := true
		for _, h := range a.hooks() {
			l, err := link.LoadPinnedLink(filepath.Join(dir, h.name), nil)
			if err != nil {
				alive = false
				break
			}
			ls = append(ls, l)
			if err := l.Update(h.prog); err != nil {
				// A link whose cgroup was removed is defunct (ENOLINK).
				alive = false
				break
			}
		}
		if !alive {
			a.log.Info("accounting: dropping links of a removed cgroup", "cgroup_id", id)
			for _, l := range ls {
				l.Close()
			}
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			continue
		}
		for _, l := range ls {
			l.Close() // the pin holds it
		}
		a.links[id] = nil
	}
	return nil
}

// Attach starts counting for the cgroup v2 directory at cgroupPath (on hybrid
// hosts below /sys/fs/cgroup/unified). Attaching a cgroup that is attached
// already does nothing, also when a previous ten attached it.
func (a *Accounting) Attach(cgroupPath string) error {
	id, err := tenebpf.CgroupID(cgroupPath)
	if err != nil {
		return fmt.Errorf("attach accounting to %s: %w", cgroupPath, err)
	}
	// The id is taken under the lock; the attaches and pins (a syscall
	// each) run outside it, so concurrent spawns do not wait for each
	// other's.
	a.mu.Lock()
	if _, ok := a.links[id]; ok {
		a.mu.Unlock()
		return nil
	}
	a.links[id] = nil
	a.mu.Unlock()
	var ls []link.Link
	undo := func() {
		for _, l := range ls {
			l.Unpin()
			l.Close()
		}
		if a.dir != "" {
			os.RemoveAll(a.linkDir(id))
		}
		a.mu.Lock()
		delete(a.links, id)
		a.mu.Unlock()
	}
	if a.dir != "" {
		if err := os.MkdirAll(a.linkDir(id), 0o700); err != nil {
			undo()
			return fmt.Errorf("attach accounting to %s: %w", cgroupPath, err)
		}
	}
	for _, h := range a.hooks() {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: h.attach, Program: h.prog})
		if err != nil {
			undo()
			return fmt.Errorf("attach accounting to %s: %s: %w", cgroupPath, h.name, err)
		}
		ls = append(ls, l)
		if a.dir != "" {
			if err := l.Pin(filepath.Join(a.linkDir(id), h.name)); err != nil {
				undo()
				return fmt.Errorf("attach accounting to %s: pin %s: %w", cgroupPath, h.name, err)
			}
		}
	}
	if a.dir != "" {
		for _, l := range ls {
			l.Close() // the pin holds it
		}
		ls = nil
	}
	a.mu.Lock()
	a.links[id] = ls
	a.mu.Unlock()
	a.log.Debug("accounting attached", "cgroup", cgroupPath, "cgroup_id", id)
	return nil
}

func (a *Accounting) linkDir(id uint64) string {
	return filepath.Join(a.dir, "links", strconv.FormatUint(id, 10))
}

// Detach stops counting for the cgroup at cgroupPath. Its counters stay
// readable and go on from where they were if it is attached again: the
// kernel frees them with the cgroup. Detaching a cgroup that is not attached
// does nothing.
func (a *Accounting) Detach(cgroupPath string) error {
	id, err := tenebpf.CgroupID(cgroupPath)
	if err != nil {
		return fmt.Errorf("detach accounting from %s: %w", cgroupPath, err)
	}
	if err := a.detach(id); err != nil {
		return fmt.Errorf("detach accounting from %s: %w", cgroupPath, err)
	}
	return nil
}

// DetachID stops counting for the cgroup with the given id, which may be
// gone already (a removed instance's slice): the teardown of one instance
// touches only its own links.
func (a *Accounting) DetachID(id uint64) error {
	if err := a.detach(id); err != nil {
		return fmt.Errorf("detach accounting from cgroup %d: %w", id, err)
	}
	return nil
}

func (a *Accounting) detach(id uint64) error {
	// Only the map under the lock: the unpins and closes (a syscall each,
	// about a millisecond for the three) of concurrent removals must not
	// wait for each other.
	a.mu.Lock()
	links := a.links[id]
	delete(a.links, id)
	a.mu.Unlock()
	var errs []error
	for _, l := range links {
		if a.dir != "" {
			if err := l.Unpin(); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, l.Close())
	}
	if a.dir != "" {
		errs = append(errs, os.RemoveAll(a.linkDir(id)))
	}
	return errors.Join(errs...)
}

// Prune detaches what is left of cgroups that were removed: systemd removes a
// service's cgroup when the service stops, and the kernel frees its counters.
func (a *Accounting) Prune() error {
	a.mu.Lock()
	var gone []uint64
	for id, ls := range a.links {
		l, opened := link.Link(nil), false
		if len(ls) > 0 {
			l = ls[0]
		} else if a.dir != "" {
			pl, err := link.LoadPinnedLink(filepath.Join(a.linkDir(id), a.hooks()[0].name), nil)
			if err != nil {
				gone = append(gone, id)
				continue
			}
			l, opened = pl, true
		}
		if l == nil {
			continue
		}
		info, err := l.Info()
		if opened {
			l.Close()
		}
		if err != nil || info.Cgroup() == nil || info.Cgroup().CgroupId == 0 {
			gone = append(gone, id)
		}
	}
	a.mu.Unlock()
	var errs []error
	for _, id := range gone {
		errs = append(errs, a.detach(id))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prune accounting: %w", err)
	}
	return nil
}

// Attached returns the ids of the attached cgroups.
func (a *Accounting) Attached() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]uint64, 0, len(a.links))
	for id := range a.links {
		ids = append(ids, id)
	}
	return ids
}

// Stats returns the activity of the cgroup with the given id (see tenebpf.CgroupID);
// ok is false when it was never attached or has been removed.
func (a *Accounting) Stats(cgroupID uint64) (s Stats, ok bool, err error) {
	var perCPU []accountingActivity
	err = a.objs.Activity.Lookup(cgroupID, &perCPU)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return Stats{}, false, nil
	}
	if err != nil {
		return Stats{}, false, fmt.Errorf("accounting stats of cgroup %d: %w", cgroupID, err)
	}
	clock, err := newBootClock()
	if err != nil {
		return Stats{}, false, fmt.Errorf("accounting stats of cgroup %d: %w", cgroupID, err)
	}
	return clock.stats(perCPU), true, nil
}

// All returns the activity of every cgroup that has counters (attached now
// or before, and not removed), by cgroup id.
func (a *Accounting) All() (map[uint64]Stats, error) {
	clock, err := newBootClock()
	if err != nil {
		return nil, fmt.Errorf("accounting stats: %w", err)
	}
	all := make(map[uint64]Stats)
	// MapIterator gives up on cgroup storage (it bounds iteration by
	// max_entries, which is 0 for this map type), so walk the keys by hand.
	var (
		id     uint64
		perCPU []accountingActivity
	)
	err = a.objs.Activity.NextKey(nil, &id)
	for err == nil {
		switch err = a.objs.Activity.Lookup(id, &perCPU); {
		case err == nil:
			all[id] = clock.stats(perCPU)
		case errors.Is(err, ebpf.ErrKeyNotExist): // detached meanwhile
		default:
			return nil, fmt.Errorf("accounting stats of cgroup %d: %w", id, err)
		}
		err = a.objs.Activity.NextKey(id, &id)
	}
	if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("accounting stats: %w", err)
	}
	return all, nil
}

// Close releases the Accounting. Pinned cgroups stay attached and keep
// counting; without a pin directory everything is detached.
func (a *Accounting) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for id, ls := range a.links {
		for _, l := range ls {
			errs = append(errs, l.Close())
		}
		delete(a.links, id)
	}
	errs = append(errs, a.objs.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close accounting: %w", err)
	}
	return nil
}

// Unload detaches every cgroup, removes the pinned state and closes the
// Accounting.
func (a *Accounting) Unload() error {
	var errs []error
	for _, id := range a.Attached() {
		errs = append(errs, a.detach(id))
	}
	if a.dir != "" {
		errs = append(errs, a.objs.Activity.Unpin(), a.objs.TenPeer.Unpin())
	}
	errs = append(errs, a.Close())
	if a.dir != "" {
		errs = append(errs, os.RemoveAll(a.dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unload accounting: %w", err)
	}
	return nil
}

// bootClock converts bpf_ktime_get_boot_ns() readings to wall-clock time.
// CLOCK_BOOTTIME keeps running during suspend, so the conversion holds for
// packets seen before a suspend too.
type bootClock struct {
	now    time.Time
	bootNs int64
}

func newBootClock() (bootClock, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return bootClock{}, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	return bootClock{now: time.Now().Round(0), bootNs: ts.Nano()}, nil
}

func (c bootClock) wall(bootNs uint64) time.Time {
	if bootNs == 0 {
		return time.Time{}
	}
	return c.now.Add(-time.Duration(c.bootNs - int64(bootNs)))
}

// stats sums the per-CPU counters; the last activity is the latest of them.
func (c bootClock) stats(perCPU []accountingActivity) Stats {
	var s Stats
	var last, lastIn uint64
	var open int64
	for _, v := range perCPU {
		s.RxBytes += v.RxBytes
		s.TxBytes += v.TxBytes
		s.RxPackets += v.RxPackets
		s.TxPackets += v.TxPackets
		s.Connections += v.Connections
		open += int64(v.OpenConnections) // per-CPU halves may be negative
		last = max(last, v.LastNs)
		lastIn = max(lastIn, v.LastInNs)
	}
	s.LastActivity = c.wall(last)
	s.LastInbound = c.wall(lastIn)
	s.OpenConnections = max(open, 0)
	return s
}
