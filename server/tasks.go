package server

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/systemd"
)

// kernelPIDs is how many processes and threads the kernel can have: the
// smaller of kernel.pid_max and kernel.threads-max (0 when unknown).
func kernelPIDs() int {
	n := 0
	for _, f := range []string{"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || v <= 0 {
			return 0
		}
		if n == 0 || v < n {
			n = v
		}
	}
	return n
}

// TasksMaxTotal is the cap on all instances' processes and threads
// (settings.tasks_max_total): as set, or three quarters of pids (the
// kernel's) when unset; 0 means none, and so does an unknown pids.
func TasksMaxTotal(s config.Settings, pids int) int {
	if s.TasksMaxTotal != nil {
		return *s.TasksMaxTotal
	}
	return pids / 4 * 3
}

// capTenantTasks puts that cap on tenement.slice. A failure is logged, not
// fatal: every instance keeps its own tasks_max.
func capTenantTasks(ctx context.Context, sdm *systemd.Manager, s config.Settings, log *slog.Logger) {
	pids := kernelPIDs()
	n := TasksMaxTotal(s, pids)
	if err := sdm.CapTenantTasks(ctx, uint64(n)); err != nil {
		log.Warn("all instances' processes and threads are not capped together", "err", err)
		return
	}
	log.Debug("capped all instances' processes and threads together", "slice", systemd.TenantSlice, "tasks_max", n, "kernel_pids", pids)
}
