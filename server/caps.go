package server

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
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

// memTotalMB is the machine's memory in MiB (MemTotal of /proc/meminfo; 0
// when unknown).
func memTotalMB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				return 0
			}
			return kb >> 10
		}
	}
	return 0
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

// MemoryMaxTotalMB is the cap on all instances' memory in MiB
// (settings.memory_max_total_mb): as set, or nine tenths of memMB (the
// machine's) when unset; 0 means none, and so does an unknown memMB.
func MemoryMaxTotalMB(s config.Settings, memMB int) int {
	if s.MemoryMaxTotalMB != nil {
		return *s.MemoryMaxTotalMB
	}
	return memMB / 10 * 9
}

// capTenants puts those caps on tenement.slice. A failure is logged, not
// fatal: every instance keeps its own tasks_max and memory_limit_mb.
func capTenants(ctx context.Context, sdm *systemd.Manager, s config.Settings, log *slog.Logger) {
	pids, mem := kernelPIDs(), memTotalMB()
	tasks, memMB := TasksMaxTotal(s, pids), MemoryMaxTotalMB(s, mem)
	if err := sdm.CapTenants(ctx, uint64(tasks), uint64(memMB)<<20); err != nil {
		log.Warn("all instances together are not capped", "err", err)
		return
	}
	log.Debug("capped all instances together", "slice", units.RootSlice, "tasks_max", tasks, "kernel_pids", pids, "memory_max_mb", memMB, "memory_mb", mem)
}
