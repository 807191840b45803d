package portguard

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	tenebpf "github.com/tenhq/ten/bpf/ebpf"
)

// pinSubdir is the pin directory of the current layout of the maps; a new
// layout gets a new name (see bpf/portguard.c).
const pinSubdir = "portguard-v1"

// Guard keeps the ports it is told about for the cgroups that own them.
type Guard struct {
	log  *slog.Logger
	objs portguardObjects
	dir  string // pin directory, "" when not pinned

	mu       sync.Mutex
	attached uint64      // cgroup id the programs are attached to, 0: none
	links    []link.Link // without a pin directory: the links' descriptors
}

// Load loads the programs and maps into the kernel. The programs allow
// binds in the network namespace of the calling process only to owners
// (see Set). With pinDir "" nothing is pinned and Close detaches the
// programs; otherwise pinDir must be on a bpf filesystem, the maps and the
// links are pinned in pinDir/portguard-v1, and a pinned state found there is
// adopted: the owners stay, the links move to the programs loaded now.
func Load(pinDir string, log *slog.Logger) (*Guard, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cookie, err := netnsCookie()
	if err != nil {
		return nil, fmt.Errorf("load port guard: network namespace cookie: %w", err)
	}
	spec, err := loadPortguard()
	if err != nil {
		return nil, fmt.Errorf("load port guard: %w", err)
	}
	if err := spec.Variables["host_netns"].Set(cookie); err != nil {
		return nil, fmt.Errorf("load port guard: %w", err)
	}
	g := &Guard{log: log}
	var opts ebpf.CollectionOptions
	if pinDir != "" {
		g.dir = filepath.Join(pinDir, pinSubdir)
		if err := os.MkdirAll(g.dir, 0o700); err != nil {
			return nil, fmt.Errorf("load port guard: %w", err)
		}
		spec.Maps["owners"].Pinning = ebpf.PinByName
		spec.Maps["denied"].Pinning = ebpf.PinByName
		opts.Maps.PinPath = g.dir
	}
	if err := spec.LoadAndAssign(&g.objs, &opts); err != nil {
		return nil, fmt.Errorf("load port guard: %w", err)
	}
	if g.dir != "" {
		g.adopt()
	}
	return g, nil
}

// netnsCookie returns the cookie of this process's network namespace, as
// bpf_get_netns_cookie() gives it (SO_NETNS_COOKIE, Linux 5.14+).
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
}

// hooks are the programs attached to the cgroup; name is also the pin file
// name of the link.
func (g *Guard) hooks() []struct {
	name   string
	attach ebpf.AttachType
	prog   *ebpf.Program
} {
	return []struct {
		name   string
		attach ebpf.AttachType
		prog   *ebpf.Program
	}{
		{"bind4", ebpf.AttachCGroupInet4Bind, g.objs.GuardBind4},
		{"bind6", ebpf.AttachCGroupInet6Bind, g.objs.GuardBind6},
	}
}

// adopt moves the links a previous ten pinned to the programs loaded now.
// A link whose cgroup was removed is dropped; Attach makes a new one.
func (g *Guard) adopt() {
	var id uint64
	for _, h := range g.hooks() {
		p := filepath.Join(g.dir, h.name)
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			continue
		}
		err = l.Update(h.prog)
		if err == nil {
			var info *link.Info
			if info, err = l.Info(); err == nil {
				if ci := info.Cgroup(); ci != nil {
					id = ci.CgroupId
				}
			}
		}
		l.Close() // the pin holds it
		if err != nil {
			g.log.Info("port guard: dropping a link of a removed cgroup", "pin", p, "err", err)
			os.Remove(p)
			id = 0
		}
	}
	g.attached = id
}

// Attach attaches the programs to the cgroup v2 directory at cgroupPath
// (ten: tenement.slice), so that they run for every process below it. It
// does nothing when they are attached there already; when they were
// attached to another cgroup (the directory was removed and made again),
// they move to this one.
func (g *Guard) Attach(cgroupPath string) error {
	id, err := tenebpf.CgroupID(cgroupPath)
	if err != nil {
		return fmt.Errorf("attach port guard to %s: %w", cgroupPath, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.attached == id {
		return nil
	}
	g.detachLocked()
	var ls []link.Link
	for _, h := range g.hooks() {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: h.attach, Program: h.prog})
		if err != nil {
			for _, l := range ls {
				l.Unpin()
				l.Close()
			}
			return fmt.Errorf("attach port guard to %s: %s: %w", cgroupPath, h.name, err)
		}
		ls = append(ls, l)
		if g.dir != "" {
			p := filepath.Join(g.dir, h.name)
			os.Remove(p) // a link of a removed cgroup
			if err := l.Pin(p); err != nil {
				for _, l := range ls {
					l.Unpin()
					l.Close()
				}
				return fmt.Errorf("attach port guard to %s: pin %s: %w", cgroupPath, h.name, err)
			}
		}
	}
	if g.dir != "" {
		for _, l := range ls {
			l.Close() // the pins hold them
		}
		ls = nil
	}
	g.links = ls
	g.attached = id
	return nil
}

// detachLocked drops the current links, pinned or held.
func (g *Guard) detachLocked() {
	for _, l := range g.links {
		l.Close()
	}
	g.links = nil
	if g.dir != "" {
		for _, h := range g.hooks() {
			os.Remove(filepath.Join(g.dir, h.name))
		}
	}
	g.attached = 0
}

// Attached returns the id of the cgroup the programs are attached to, 0
// when none.
func (g *Guard) Attached() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.attached
}

// Set makes owner, a cgroup id (tenebpf.CgroupID), the owner of TCP port:
// below the attached cgroup, only processes inside owner may bind it.
func (g *Guard) Set(port int, owner uint64) error {
	if port <= 0 || port > 65535 || owner == 0 {
		return fmt.Errorf("port guard: bad entry port %d owner %d", port, owner)
	}
	if err := g.objs.Owners.Put(uint16(port), owner); err != nil {
		return fmt.Errorf("port guard: set owner of port %d: %w", port, err)
	}
	return nil
}

// Delete frees port: anyone may bind it again. A port with no owner is no
// error.
func (g *Guard) Delete(port int) error {
	if port <= 0 || port > 65535 {
		return nil
	}
	if err := g.objs.Owners.Delete(uint16(port)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("port guard: free port %d: %w", port, err)
	}
	return nil
}

// Owners returns every guarded port with its owner.
func (g *Guard) Owners() (map[int]uint64, error) {
	out := map[int]uint64{}
	var (
		port  uint16
		owner uint64
	)
	it := g.objs.Owners.Iterate()
	for it.Next(&port, &owner) {
		out[int(port)] = owner
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("port guard: list owners: %w", err)
	}
	return out, nil
}

// Denied returns how many binds the programs refused since the maps were
// made (pinned: across restarts of ten).
func (g *Guard) Denied() (uint64, error) {
	var per []uint64
	if err := g.objs.Denied.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("port guard: read denied: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// Close releases the objects. Pinned links and maps stay and keep
// guarding; without a pin directory the programs are detached.
func (g *Guard) Close() error {
	g.mu.Lock()
	for _, l := range g.links {
		l.Close()
	}
	g.links = nil
	g.mu.Unlock()
	return g.objs.Close()
}

// Unload detaches the programs and removes the pinned state.
func (g *Guard) Unload() error {
	g.mu.Lock()
	g.detachLocked()
	g.mu.Unlock()
	err := g.objs.Close()
	if g.dir != "" {
		err = errors.Join(err, os.RemoveAll(g.dir))
	}
	return err
}
