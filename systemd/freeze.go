package systemd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tenhq/ten/units"
)

// Freeze methods, as Freezer.Method reports them.
const (
	// FreezeSystemd is systemd's FreezeUnit/ThawUnit (systemd 246+ on a
	// unified cgroup v2 host): systemd knows the unit is frozen.
	FreezeSystemd = "systemd"
	// FreezeCgroupFS writes cgroup.freeze in the service's cgroup v2
	// directory: for hosts where systemd answers FreezeUnit with "does not
	// support freezing" (systemd 252 on hybrid cgroups, whose v2 tree is at
	// /sys/fs/cgroup/unified).
	FreezeCgroupFS = "cgroup.freeze"
)

// ErrFreezeUnsupported means neither systemd nor the kernel can freeze an
// instance here (no cgroup v2 tree, or a kernel older than 5.2).
var ErrFreezeUnsupported = errors.New("freezing is not supported on this host")

// Freezer freezes and thaws the cgroup of an instance's service: a frozen
// service keeps its memory and its sockets but gets no CPU, and resumes where
// it was when thawed (its timers simply fire late). It uses systemd's
// FreezeUnit/ThawUnit where systemd supports freezing and writes cgroup.freeze
// itself where it does not; which one is decided once, by NewFreezer.
//
// systemd does not stop a frozen unit cleanly (on hybrid hosts it does not
// know the unit is frozen, and the app cannot handle SIGTERM while frozen),
// so callers thaw an instance before stopping or restarting it.
type Freezer struct {
	m      *Manager
	root   string // cgroup v2 mount
	method string
	why    string

	mu sync.Mutex
}

// cgroupV2Roots are where a cgroup v2 hierarchy is mounted: the whole
// /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
var cgroupV2Roots = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}

// NewFreezer picks how instances are frozen on this host: systemd's
// FreezeUnit on a unified cgroup v2 host with systemd 246 or later, else
// cgroup.freeze in the v2 tree. It fails when neither can work.
func (m *Manager) NewFreezer() (*Freezer, error) {
	f := &Freezer{m: m}
	for _, r := range cgroupV2Roots {
		if _, err := os.Stat(filepath.Join(r, "cgroup.controllers")); err == nil {
			f.root = r
			break
		}
	}
	if f.root == "" {
		return nil, fmt.Errorf("%w: no cgroup v2 hierarchy at %s", ErrFreezeUnsupported, strings.Join(cgroupV2Roots, " or "))
	}
	// The root cgroup has no cgroup.freeze; a child does (kernel 5.2+).
	if _, err := os.Stat(filepath.Join(f.root, "init.scope", "cgroup.freeze")); err != nil {
		if _, err2 := os.Stat(filepath.Join(f.root, "system.slice", "cgroup.freeze")); err2 != nil {
			return nil, fmt.Errorf("%w: the kernel's cgroup v2 has no cgroup.freeze (Linux 5.2+ needed)", ErrFreezeUnsupported)
		}
	}
	v, _ := strconv.Atoi(strings.TrimPrefix(strings.Fields(m.Version() + " 0")[0], "v"))
	switch {
	case f.root != "/sys/fs/cgroup":
		f.method, f.why = FreezeCgroupFS, "hybrid cgroups: systemd cannot freeze units, ten writes cgroup.freeze in "+f.root
	case v < 246:
		f.method, f.why = FreezeCgroupFS, fmt.Sprintf("systemd %d has no FreezeUnit (246+), ten writes cgroup.freeze", v)
	default:
		f.method, f.why = FreezeSystemd, fmt.Sprintf("systemd %d FreezeUnit/ThawUnit", v)
	}
	return f, nil
}

// Method returns FreezeSystemd or FreezeCgroupFS, and why.
func (f *Freezer) Method() (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.method, f.why
}

// CgroupPath is the cgroup v2 directory of the instance's service.
func (f *Freezer) CgroupPath(inst units.Instance) string {
	return ServiceDir(f.root, inst)
}

// Freeze freezes the instance's service and waits until every task in it is
// frozen. A service that does not run cannot be frozen (the error wraps
// os.ErrNotExist).
func (f *Freezer) Freeze(ctx context.Context, inst units.Instance) error {
	if err := f.set(ctx, inst, true); err != nil {
		return fmt.Errorf("freeze %s: %w", inst.ServiceUnit(), err)
	}
	return nil
}

// Thaw thaws the instance's service; it runs again at once. Thawing a service
// that is not frozen, or does not run, does nothing.
func (f *Freezer) Thaw(ctx context.Context, inst units.Instance) error {
	if err := f.set(ctx, inst, false); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("thaw %s: %w", inst.ServiceUnit(), err)
	}
	return nil
}

func (f *Freezer) set(ctx context.Context, inst units.Instance, freeze bool) error {
	method, _ := f.Method()
	if method == FreezeSystemd {
		var err error
		if freeze {
			err = f.m.conn.FreezeUnit(ctx, inst.ServiceUnit())
		} else {
			err = f.m.conn.ThawUnit(ctx, inst.ServiceUnit())
		}
		if err == nil || !strings.Contains(err.Error(), "not support") {
			return err
		}
		// Detection guessed wrong (a systemd built without it): fall back
		// for good, and say so once.
		f.mu.Lock()
		f.method, f.why = FreezeCgroupFS, "systemd answered FreezeUnit with: "+err.Error()+"; ten writes cgroup.freeze"
		f.mu.Unlock()
		f.m.log.Warn("freezer: falling back to cgroup.freeze", "why", err)
	}
	dir := f.CgroupPath(inst)
	v := "0"
	if freeze {
		v = "1"
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte(v), 0); err != nil {
		return err
	}
	if !freeze {
		return nil
	}
	// The kernel freezes tasks as they reach a safe point; cgroup.events
	// says "frozen 1" once all have.
	for {
		fr, err := eventsFrozen(dir)
		if err != nil || fr {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not frozen yet: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// Frozen reports whether the instance's service is frozen, or being frozen:
// its cgroup.freeze is 1. A service that does not run is not frozen.
func (f *Freezer) Frozen(inst units.Instance) (bool, error) {
	b, err := os.ReadFile(filepath.Join(f.CgroupPath(inst), "cgroup.freeze"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// eventsFrozen reads "frozen" from the cgroup's cgroup.events.
func eventsFrozen(dir string) (bool, error) {
	fh, err := os.Open(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "frozen "); ok {
			return v == "1", nil
		}
	}
	return false, sc.Err()
}

// MemoryOf reads the memory of the instance's service from its cgroup:
// memory.current in the v2 tree where the memory controller is there, else
// the v1 memory controller's usage (hybrid hosts). 0, false when neither can
// be read.
func (f *Freezer) MemoryOf(inst units.Instance) (uint64, bool) {
	for _, p := range []string{
		filepath.Join(ServiceDir(f.root, inst), "memory.current"),
		filepath.Join(ServiceDir("/sys/fs/cgroup/memory", inst), "memory.usage_in_bytes"),
	} {
		if b, err := os.ReadFile(p); err == nil {
			if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}
