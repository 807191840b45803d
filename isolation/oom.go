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
type OOM struct {
	log      *slog.Logger
	mu       sync.Mutex
	kills    map[units.Instance]uint64
	pending  map[units.Instance]bool   // an OOM kill not yet matched to an exit
	watching map[units.Instance]*watch // the cgroup watched for OOM events
	last     map[units.Instance]string // last crash, as LastExit says it
	lastAt   map[units.Instance]uint64 // its ExecMainExitTimestampMonotonic
}

type watch struct {
	cgroup string
	cancel context.CancelFunc
}

// NewOOM returns an empty book.
func NewOOM(log *slog.Logger) *OOM {
	return &OOM{log: log, kills: map[units.Instance]uint64{}, pending: map[units.Instance]bool{},
		watching: map[units.Instance]*watch{}, last: map[units.Instance]string{}, lastAt: map[units.Instance]uint64{}}
}

// Get returns inst's OOM kills and how its app last ended.
func (b *OOM) Get(inst units.Instance) (kills uint64, last string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kills[inst], b.last[inst]
}

// Forget drops what the book holds of inst (it was removed) and ends its
// watch.
func (b *OOM) Forget(inst units.Instance) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.watching[inst]; w != nil {
		w.cancel()
	}
	delete(b.kills, inst)
	delete(b.pending, inst)
	delete(b.last, inst)
	delete(b.lastAt, inst)
	delete(b.watching, inst)
}

// Watch follows the OOM events of inst's memory cgroup (cgroup v1:
// cgroup.event_control + eventfd on memory.oom_control) until the cgroup
// goes away, ctx ends or Forget; a watch of another cgroup of inst ends. On
// cgroup v2 systemd reports OOM kills itself (Result oom-kill) and Watch
// does nothing. It returns at once.
func (b *OOM) Watch(ctx context.Context, inst units.Instance, cgroup string) {
	b.mu.Lock()
	if w := b.watching[inst]; w != nil {
		if w.cgroup == cgroup {
			b.mu.Unlock()
			return
		}
		w.cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &watch{cgroup: cgroup, cancel: cancel}
	b.watching[inst] = w
	b.mu.Unlock()
	go func() {
		defer func() {
			cancel()
			b.mu.Lock()
			if b.watching[inst] == w {
				delete(b.watching, inst)
			}
			b.mu.Unlock()
		}()
		err := watchCgroup(ctx, filepath.Join("/sys/fs/cgroup/memory", cgroup), func() {
			b.mu.Lock()
			b.kills[inst]++
			b.pending[inst] = true
			b.mu.Unlock()
			b.log.Warn("instance hit memory_limit_mb: the kernel's OOM killer ran in its cgroup", "instance", inst.String(), "cgroup", cgroup)
		})
		if err != nil {
			b.log.Debug("oom watch", "instance", inst.String(), "err", err)
		}
	}()
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
	oom := b.pending[inst]
	delete(b.pending, inst)
	if e.Result == "oom-kill" && !oom {
		b.kills[inst]++ // cgroup v2: systemd saw it in memory.events
	}
	if oom {
		// In the instance's own journal (journalctl -u shows entries that
		// root logs with OBJECT_SYSTEMD_UNIT), where systemd's own line
		// on cgroup v1 says only "killed, status=9/KILL".
		msg := fmt.Sprintf("%s: the app was killed by the kernel's OOM killer at memory_limit_mb (MemoryMax); systemd restarts it (Restart=)", inst.ServiceUnit())
		if err := journal.Send(msg, journal.PriWarning, map[string]string{"OBJECT_SYSTEMD_UNIT": inst.ServiceUnit(), "TEN_INSTANCE": inst.String(), "TEN_EVENT": "oom-kill"}); err != nil {
			b.log.Debug("journal", "err", err)
		}
	}
	if d := LastExit(e.Result, e, oom); d != "" {
		b.last[inst] = d
		b.log.Warn("instance app ended", "instance", inst.String(), "exit", d, "result", e.Result)
	}
}

// LastExit describes how the app ended: "oom-kill" when the kernel's OOM
// killer ended it (systemd's Result on cgroup v2; on v1 a SIGKILL, or the
// shim's exit 137, right after an OOM event in its cgroup), else "exit N",
// "signal NAME", "core dump NAME".
func LastExit(result string, e systemd.Exit, oom bool) string {
	if result == "oom-kill" {
		return "oom-kill"
	}
	killed := (e.Code == 2 || e.Code == 3) && e.Status == int32(syscall.SIGKILL) || e.Code == 1 && e.Status == 128+int32(syscall.SIGKILL)
	if killed && oom {
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
