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
