package isolation

import (
	"log/slog"
	"syscall"
	"testing"

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
	b.pending[inst] = true
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
