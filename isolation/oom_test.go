package isolation

import (
	"context"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// TestExitKeepsOOMKill: the reads of an exit that follow the first (more
// signals about it, or one taken while systemd restarts the app, which
// shows the old code with no exit time) do not overwrite "oom-kill".
func TestExitKeepsOOMKill(t *testing.T) {
	b := NewOOM(slog.New(slog.DiscardHandler))
	inst := units.Instance{Service: "mem", ID: "a"}
	b.mu.Lock()
	b.pending[inst] = time.Now()
	b.kills[inst]++
	b.mu.Unlock()
	killed := systemd.Exit{Code: 2, Status: int32(syscall.SIGKILL), Result: "signal", At: 42}
	b.Exit(inst, killed)
	b.Exit(inst, killed)
	b.Exit(inst, systemd.Exit{Code: 2, Status: int32(syscall.SIGKILL), Result: "signal"})
	b.Exit(inst, systemd.Exit{Result: "success"})
	b.mu.Lock()
	last := b.last[inst]
	b.mu.Unlock()
	if last != "oom-kill" {
		t.Fatalf("last exit %q, want oom-kill", last)
	}
	b.Exit(inst, systemd.Exit{Code: 1, Status: 3, Result: "exit-code", At: 43})
	b.mu.Lock()
	last = b.last[inst]
	b.mu.Unlock()
	if last != "exit 3" {
		t.Fatalf("a later exit: last %q, want exit 3", last)
	}
}

// TestOOMCount: whatever order the kernel's events are read in, an OOM kill
// of a cgroup counts once and the cgroup's removal never counts; events
// read after the cgroup went count one kill at most.
func TestOOMCount(t *testing.T) {
	type rd struct {
		n       uint64
		present bool
	}
	for _, tc := range []struct {
		name  string
		reads []rd
		want  uint64
	}{
		{"oom read while there, then removal", []rd{{1, true}, {1, false}}, 1},
		{"oom and removal read together", []rd{{2, false}}, 1},
		{"oom read after rmdir, then removal", []rd{{1, false}, {1, false}}, 1},
		{"removal only", []rd{{1, false}}, 0},
		{"two ooms while there, then both late with removal", []rd{{2, true}, {1, false}}, 2},
		// Read late, notifications are not kills: the kernel may notify
		// twice for one kill, and the cgroup went with one death.
		{"two oom events read late one by one, then removal", []rd{{1, false}, {1, false}, {1, false}}, 1},
		{"three events in one late read", []rd{{3, false}}, 1},
		{"removal read first, then a late oom event", []rd{{1, false}, {1, false}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c oomCount
			var got uint64
			for _, r := range tc.reads {
				got += c.read(r.n, r.present)
			}
			if got != tc.want {
				t.Fatalf("counted %d OOM kills, want %d", got, tc.want)
			}
		})
	}
}

// TestOOMAfterExit: the OOM event read after the SIGKILL exit it caused
// (a slow machine) still makes the last exit "oom-kill"; one after Forget,
// or long after the exit, does not.
func TestOOMAfterExit(t *testing.T) {
	b := NewOOM(slog.New(slog.DiscardHandler))
	inst := units.Instance{Service: "mem", ID: "a"}
	l := &life{}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	b.lives[inst] = l
	b.Exit(inst, systemd.Exit{Code: 2, Status: int32(syscall.SIGKILL), Result: "signal", At: 7})
	if k, last := b.Get(inst); k != 0 || last != "signal SIGKILL" {
		t.Fatalf("before the OOM event: kills %d, last %q", k, last)
	}
	b.oomEvent(l, inst, "/system.slice/x.service")
	if k, last := b.Get(inst); k != 1 || last != "oom-kill" {
		t.Fatalf("after the late OOM event: kills %d, last %q; want 1, oom-kill", k, last)
	}
	// The OOM event matched: the next exit does not inherit it.
	b.Exit(inst, systemd.Exit{Code: 1, Status: 2, Result: "exit-code", At: 8})
	if k, last := b.Get(inst); k != 1 || last != "exit 2" {
		t.Fatalf("a later exit: kills %d, last %q; want 1, exit 2", k, last)
	}
	// A SIGKILL long ago is not this OOM's.
	b.Exit(inst, systemd.Exit{Code: 2, Status: int32(syscall.SIGKILL), Result: "signal", At: 9})
	b.mu.Lock()
	b.killed[inst] = b.killed[inst].Add(-2 * oomMatchWindow)
	b.mu.Unlock()
	b.oomEvent(l, inst, "/system.slice/x.service")
	if k, last := b.Get(inst); k != 2 || last != "signal SIGKILL" {
		t.Fatalf("OOM long after a SIGKILL: kills %d, last %q; want 2, signal SIGKILL", k, last)
	}
	// That OOM waits for its own exit (an OOM seen first).
	b.Exit(inst, systemd.Exit{Code: 2, Status: int32(syscall.SIGKILL), Result: "signal", At: 10})
	if k, last := b.Get(inst); k != 2 || last != "oom-kill" {
		t.Fatalf("the exit after the OOM: kills %d, last %q; want 2, oom-kill", k, last)
	}
	// An OOM kill long before a SIGKILL exit (it ended a worker) does not
	// explain that exit.
	b.oomEvent(l, inst, "/system.slice/x.service")
	b.mu.Lock()
	b.pending[inst] = b.pending[inst].Add(-2 * oomMatchWindow)
	b.mu.Unlock()
	b.Exit(inst, systemd.Exit{Code: 2, Status: int32(syscall.SIGKILL), Result: "signal", At: 105})
	if k, last := b.Get(inst); k != 3 || last != "signal SIGKILL" {
		t.Fatalf("a SIGKILL long after an OOM: kills %d, last %q; want 3, signal SIGKILL", k, last)
	}
	// An exit not from SIGKILL is not explained by an OOM event after it.
	b.Exit(inst, systemd.Exit{Code: 1, Status: 2, Result: "exit-code", At: 106})
	b.oomEvent(l, inst, "/system.slice/x.service")
	if k, last := b.Get(inst); k != 4 || last != "exit 2" {
		t.Fatalf("OOM after a plain exit: kills %d, last %q; want 4, exit 2", k, last)
	}
	b.Forget(inst)
	b.oomEvent(l, inst, "/system.slice/x.service")
	if k, last := b.Get(inst); k != 0 || last != "" {
		t.Fatalf("after Forget: kills %d, last %q; want nothing", k, last)
	}
}
