// Package isolation holds what ten serve adds to systemd's isolation of an
// instance and reports about it: the OOM kills and last exit of each
// instance (an OOM watch on cgroup v1, where systemd does not see them),
// the use of a storage_quota_mb file system, and where gVisor's runsc is;
// and what an instance's state directory is made of (Storage): the ext4
// image of storage_quota_mb, the bind mount of data_dir, a state directory
// left by a run under another isolation level. The mount units themselves
// are systemd's (package systemd, behind Mounter).
package isolation

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"golang.org/x/sys/unix"

	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// RunscPath finds gVisor's runsc for units.Options.Runsc ("" when missing:
// units.Build then refuses isolation = "sandbox" with how to install it).
func RunscPath() string {
	for _, p := range []string{"/usr/bin/runsc", "/usr/local/bin/runsc"} {
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath("runsc"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}

// OOM remembers, per instance, the OOM kills and how the app last ended. It
// must watch as it happens: systemd makes a new cgroup for every start (an
// automatic restart too) and resets ExecMainStatus and Result when the
// service starts again, so nothing is left to read afterwards.
//
// An OOM event and the exit it caused reach ten on two paths (the cgroup's
// eventfd, systemd's signal) in either order: an OOM seen first waits for
// its exit (pending); a SIGKILL exit seen first is told again as "oom-kill"
// when the OOM turns up within oomMatchWindow. Either waits no longer: an
// OOM kill with no exit after it ended another process of the app.
type OOM struct {
	log      *slog.Logger
	mu       sync.Mutex
	kills    map[units.Instance]uint64
	pending  map[units.Instance]time.Time // an OOM kill not yet matched to an exit
	watching map[units.Instance]*watch    // the cgroup watched for OOM events (the newest)
	lives    map[units.Instance]*life     // ends with Forget: every watch of the instance
	last     map[units.Instance]string    // last crash, as LastExit says it
	lastAt   map[units.Instance]uint64    // its ExecMainExitTimestampMonotonic
	killed   map[units.Instance]time.Time // a SIGKILL exit no OOM explained yet
}

// oomMatchWindow is how long after a SIGKILL exit an OOM event of the
// instance still explains it.
const oomMatchWindow = 10 * time.Second

// oomSettle is how long a watch waits, once its cgroup is gone, for the one
// event the kernel adds when it removes a cgroup (see oomCount).
const oomSettle = 2 * time.Second

type watch struct {
	cgroup string
	ino    uint64 // the cgroup directory's inode: a restart makes a new one at the same path
}

// life is an instance's time in the book, from its first watch to Forget.
type life struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// NewOOM returns an empty book.
func NewOOM(log *slog.Logger) *OOM {
	return &OOM{log: log, kills: map[units.Instance]uint64{}, pending: map[units.Instance]time.Time{},
		watching: map[units.Instance]*watch{}, lives: map[units.Instance]*life{},
		last: map[units.Instance]string{}, lastAt: map[units.Instance]uint64{}, killed: map[units.Instance]time.Time{}}
}

// Get returns inst's OOM kills and how its app last ended.
func (b *OOM) Get(inst units.Instance) (kills uint64, last string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kills[inst], b.last[inst]
}

// Forget drops what the book holds of inst (it was removed) and ends its
// watches.
func (b *OOM) Forget(inst units.Instance) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l := b.lives[inst]; l != nil {
		l.cancel()
	}
	delete(b.lives, inst)
	delete(b.kills, inst)
	delete(b.pending, inst)
	delete(b.last, inst)
	delete(b.lastAt, inst)
	delete(b.killed, inst)
	delete(b.watching, inst)
}

// Watch follows the OOM events of inst's memory cgroup (cgroup v1:
// cgroup.event_control + eventfd on memory.oom_control) until the cgroup
// goes away, ctx ends or Forget. The eventfd is registered before Watch
// returns; the events are read in a goroutine of their own. A watch of a
// cgroup that went away finishes on its own, beside the watch of its
// successor at the same path. On cgroup v2 systemd reports OOM kills itself
// (Result oom-kill) and Watch does nothing.
func (b *OOM) Watch(ctx context.Context, inst units.Instance, cgroup string) {
	dir := filepath.Join("/sys/fs/cgroup/memory", cgroup)
	ino := dirInode(dir)
	b.mu.Lock()
	if w := b.watching[inst]; w != nil && w.cgroup == cgroup && w.ino == ino {
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	ev, err := registerOOM(dir)
	if err != nil {
		b.log.Debug("oom watch", "instance", inst.String(), "err", err)
		return
	}
	if ev == nil {
		return // nothing to watch: cgroup v2, or no memory controller
	}
	b.mu.Lock()
	if w := b.watching[inst]; w != nil && w.ino == ev.ino {
		b.mu.Unlock() // another call registered on this cgroup meanwhile
		ev.close()
		return
	}
	l := b.lives[inst]
	if l == nil {
		l = &life{}
		l.ctx, l.cancel = context.WithCancel(ctx)
		b.lives[inst] = l
	}
	w := &watch{cgroup: cgroup, ino: ev.ino}
	b.watching[inst] = w
	b.mu.Unlock()
	go func() {
		defer func() {
			b.mu.Lock()
			if b.watching[inst] == w {
				delete(b.watching, inst)
			}
			b.mu.Unlock()
		}()
		if err := ev.follow(l.ctx, oomSettle, func() { b.oomEvent(l, inst, cgroup) }); err != nil {
			b.log.Debug("oom watch", "instance", inst.String(), "err", err)
		}
	}()
}

// oomEvent counts one OOM kill in inst's cgroup and matches it to its exit.
func (b *OOM) oomEvent(l *life, inst units.Instance, cgroup string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lives[inst] != l {
		return // forgotten: the instance was removed
	}
	b.log.Warn("instance hit memory_limit_mb: the kernel's OOM killer ran in its cgroup", "instance", inst.String(), "cgroup", cgroup)
	b.kills[inst]++
	if at, ok := b.killed[inst]; ok && time.Since(at) < oomMatchWindow {
		// The exit came first: it was this OOM kill.
		delete(b.killed, inst)
		b.last[inst] = "oom-kill"
		b.oomExit(inst)
		b.log.Warn("instance app ended", "instance", inst.String(), "exit", "oom-kill", "result", "signal")
		return
	}
	b.pending[inst] = time.Now()
}

// oomExit tells inst's own journal that its app was OOM-killed. Called with
// b.mu held.
func (b *OOM) oomExit(inst units.Instance) {
	// In the instance's own journal (journalctl -u shows entries that root
	// logs with OBJECT_SYSTEMD_UNIT), where systemd's own line on cgroup v1
	// says only "killed, status=9/KILL".
	msg := fmt.Sprintf("%s: the app was killed by the kernel's OOM killer at memory_limit_mb (MemoryMax); systemd restarts it (Restart=)", inst.ServiceUnit())
	if err := journal.Send(msg, journal.PriWarning, map[string]string{"OBJECT_SYSTEMD_UNIT": inst.ServiceUnit(), "TEN_INSTANCE": inst.String(), "TEN_EVENT": "oom-kill"}); err != nil {
		b.log.Debug("journal", "err", err)
	}
}

// Watching reports the cgroup watched for inst ("" when none).
func (b *OOM) Watching(inst units.Instance) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.watching[inst]; w != nil {
		return w.cgroup
	}
	return ""
}

// Exit records how inst's app ended (e, read from systemd once it ended).
func (b *OOM) Exit(inst units.Instance, e systemd.Exit) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.At != 0 && b.lastAt[inst] == e.At {
		return // another signal about the same exit
	}
	if e.At == 0 && e.Code != 0 {
		// A main process that ended has an exit time: this read caught
		// systemd restarting the app, and the exit it still shows is one
		// read with its time already (in CI such a read overwrote an
		// oom-kill with "signal SIGKILL").
		return
	}
	b.lastAt[inst] = e.At
	at, oom := b.pending[inst]
	// An OOM kill long before this exit killed another process of the
	// app (a worker), not the one whose exit this is.
	oom = oom && time.Since(at) < oomMatchWindow
	delete(b.pending, inst)
	delete(b.killed, inst)
	if e.Result == "oom-kill" && !oom {
		b.kills[inst]++ // cgroup v2: systemd saw it in memory.events
	}
	if oom {
		b.oomExit(inst)
	} else if killedBy(e) && e.Result != "oom-kill" {
		b.killed[inst] = time.Now() // an OOM event read late may still explain it
	}
	if d := LastExit(e.Result, e, oom); d != "" {
		b.last[inst] = d
		b.log.Warn("instance app ended", "instance", inst.String(), "exit", d, "result", e.Result)
	}
}

// killedBy reports whether e is a SIGKILL of the main process, or the
// shim's exit 137 for its app's.
func killedBy(e systemd.Exit) bool {
	return (e.Code == 2 || e.Code == 3) && e.Status == int32(syscall.SIGKILL) || e.Code == 1 && e.Status == 128+int32(syscall.SIGKILL)
}

// LastExit describes how the app ended: "oom-kill" when the kernel's OOM
// killer ended it (systemd's Result on cgroup v2; on v1 a SIGKILL, or the
// shim's exit 137, right after an OOM event in its cgroup), else "exit N",
// "signal NAME", "core dump NAME".
func LastExit(result string, e systemd.Exit, oom bool) string {
	if result == "oom-kill" {
		return "oom-kill"
	}
	if killedBy(e) && oom {
		return "oom-kill"
	}
	switch e.Code {
	case 1:
		return "exit " + strconv.Itoa(int(e.Status))
	case 2:
		return "signal " + unix.SignalName(syscall.Signal(e.Status))
	case 3:
		return "core dump " + unix.SignalName(syscall.Signal(e.Status))
	}
	if result != "" && result != "success" {
		return result
	}
	return ""
}

// oomCount tells the OOM kills in the counts read from a cgroup's
// oom_control eventfd. While the cgroup is there every event counts as an
// OOM kill. Once it is gone, the counts read hold one event more than the
// OOM events (the kernel adds one when it removes the cgroup, and only
// after its directory is gone), in whatever order they were read; and the
// kernel may notify more than once for one kill (two threads of the
// process hit the limit before the victim is gone). So events read after
// the cgroup went count one OOM kill at most: the service's cgroup goes
// when its main process dies, which is one kill.
type oomCount struct {
	gone    bool
	unsure  uint64 // events read once the cgroup was gone
	emitted bool   // one of them was told as an OOM kill
}

// read takes a count n read from the eventfd (present: the cgroup was still
// there after the read) and returns how many new OOM kills it tells.
func (c *oomCount) read(n uint64, present bool) uint64 {
	if present && !c.gone {
		return n
	}
	c.gone = true
	c.unsure += n
	if c.unsure <= 1 || c.emitted {
		return 0
	}
	c.emitted = true
	return 1
}
