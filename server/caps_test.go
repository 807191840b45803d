package server

import (
	"testing"

	"github.com/tenhq/ten/config"
)

func TestTasksMaxTotal(t *testing.T) {
	n := func(v int) *int { return &v }
	for _, c := range []struct {
		set  *int
		pids int
		want int
	}{
		{nil, 32768, 24576},        // three quarters of the kernel's PIDs
		{nil, 4194304, 3145728},    // a big pid_max
		{nil, 0, 0},                // unknown: no cap
		{n(300), 32768, 300},       // as set
		{n(0), 32768, 0},           // 0: no cap
		{n(100000), 32768, 100000}, // systemd takes more than the kernel has; the kernel's own limit holds
	} {
		if got := TasksMaxTotal(config.Settings{TasksMaxTotal: c.set}, c.pids); got != c.want {
			t.Errorf("TasksMaxTotal(%v, %d) = %d, want %d", c.set, c.pids, got, c.want)
		}
	}
}

func TestMemoryMaxTotalMB(t *testing.T) {
	n := func(v int) *int { return &v }
	for _, c := range []struct {
		set  *int
		mem  int
		want int
	}{
		{nil, 24000, 21600}, // nine tenths of the machine's
		{nil, 0, 0},         // unknown: no cap
		{n(200), 24000, 200},
		{n(0), 24000, 0},
	} {
		if got := MemoryMaxTotalMB(config.Settings{MemoryMaxTotalMB: c.set}, c.mem); got != c.want {
			t.Errorf("MemoryMaxTotalMB(%v, %d) = %d, want %d", c.set, c.mem, got, c.want)
		}
	}
	if memTotalMB() <= 0 || kernelPIDs() <= 0 {
		t.Errorf("read the machine: %d MiB, %d PIDs", memTotalMB(), kernelPIDs())
	}
}
