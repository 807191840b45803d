package system

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// kernelPIDs reads what the kernel allows: the smaller of pid_max and
// threads-max.
func kernelPIDs(t *testing.T) int {
	t.Helper()
	n := 0
	for _, f := range []string{"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 || v < n {
			n = v
		}
	}
	return n
}

// memTotalMB reads the machine's memory in MiB.
func memTotalMB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return kb >> 10
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

// forkBomb asks inst's tenant app to start n processes and returns how many
// it started before the first failure.
func forkBomb(s *tenServer, host string, n int) (started int, ok bool) {
	code, body, err := s.get(host, fmt.Sprintf("/fork?n=%d", n))
	var r report
	json.Unmarshal([]byte(body), &r)
	var res struct{ Started int }
	json.Unmarshal(r.Result, &res)
	s.t.Logf("%s: HTTP %d %v: %s: ok=%v started=%d err=%q", host, code, err, r.Tried, r.OK, res.Started, r.Err)
	return res.Started, r.OK
}

// TestTasksMaxDefault: without tasks_max an instance may have 1024
// processes and threads (not systemd's 15 % of the kernel's PIDs, seven
// instances of which take them all), and all instances together three
// quarters of the kernel's PIDs (TasksMax of tenement.slice) and nine
// tenths of the machine's memory (MemoryMax). A fork bomb
// stops at its own cap; its neighbour and ten keep answering.
func TestTasksMaxDefault(t *testing.T) {
	s := startTen(t, `
[service.bomb]
command = "TENANT"

[service.quiet]
command = "TENANT"
`)
	s.mustTen("spawn", "bomb:a")
	s.mustTen("spawn", "quiet:a")
	if got := show(t, "tenement-bomb@a.service", "TasksMax"); got != "1024" {
		t.Errorf("TasksMax of an instance without tasks_max = %s, want 1024", got)
	}
	if got, want := show(t, "tenement.slice", "TasksMax"), strconv.Itoa(kernelPIDs(t)/4*3); got != want {
		t.Errorf("TasksMax of tenement.slice = %s, want %s (three quarters of the kernel's PIDs)", got, want)
	}
	if got, want := show(t, "tenement.slice", "MemoryMax"), strconv.Itoa(memTotalMB(t)/10*9<<20); got != want {
		t.Errorf("MemoryMax of tenement.slice = %s, want %s (nine tenths of the machine's memory)", got, want)
	}
	// Each child is a Go process: its main thread and at least the
	// runtime's sysmon, two tasks or more, so at most 512 fit in 1024.
	started, ok := forkBomb(s, "a.bomb.localhost", 5000)
	if ok || started == 0 || started > 512 {
		t.Errorf("HOLE: the fork bomb started %d processes (ok=%v), each of two tasks or more, under TasksMax 1024", started, ok)
	}
	s.mustGet("a.quiet.localhost", "/info")
	s.mustTen("ps")
}

// TestTasksMaxTotal: settings.tasks_max_total caps all instances
// together, whatever each may have alone: two fork bombs with systemd's
// own per-unit limit (tasks_max = 0) start fewer than that many between
// them, and ten, outside tenement.slice, keeps serving.
func TestTasksMaxTotal(t *testing.T) {
	s := startTen(t, `tasks_max_total = 300

[service.bomb]
command = "TENANT"
tasks_max = 0
`)
	s.mustTen("spawn", "bomb:a")
	s.mustTen("spawn", "bomb:b")
	if got := show(t, "tenement.slice", "TasksMax"); got != "300" {
		t.Errorf("TasksMax of tenement.slice = %s, want 300", got)
	}
	if got := show(t, "tenement-bomb@a.service", "TasksMax"); got == "1024" || got == "300" {
		t.Errorf("TasksMax of an instance with tasks_max = 0 is %s, want systemd's default", got)
	}
	var wg sync.WaitGroup
	var a, b int
	wg.Add(2)
	go func() { defer wg.Done(); a, _ = forkBomb(s, "a.bomb.localhost", 2000) }()
	go func() { defer wg.Done(); b, _ = forkBomb(s, "b.bomb.localhost", 2000) }()
	wg.Wait()
	if a+b == 0 || a+b >= 300 {
		t.Errorf("HOLE: two fork bombs started %d+%d processes with tasks_max_total = 300", a, b)
	}
	s.mustTen("ps")
}

// TestMemoryMaxTotal: settings.memory_max_total_mb caps the memory of all
// instances together (MemoryMax of tenement.slice; by default nine tenths
// of the machine's): an instance without memory_limit_mb that allocates
// past it is OOM-killed and restarted by systemd, and ten keeps serving.
func TestMemoryMaxTotal(t *testing.T) {
	s := startTen(t, `memory_max_total_mb = 200

[service.mem]
command = "TENANT"
`)
	s.mustTen("spawn", "mem:a")
	if got := show(t, "tenement.slice", "MemoryMax"); got != strconv.Itoa(200<<20) {
		t.Errorf("MemoryMax of tenement.slice = %s, want %d", got, 200<<20)
	}
	s.try("a.mem.localhost", "/alloc?mb=16") // under the cap: fine
	code, body, err := s.get("a.mem.localhost", "/alloc?mb=400&hold=2000")
	t.Logf("tried to allocate 400 MiB with memory_max_total_mb = 200: HTTP %d %v %s", code, err, trim(body, 200))
	if code == 200 && strings.Contains(body, `"ok":true`) {
		t.Fatalf("HOLE: the tenant allocated 400 MiB past memory_max_total_mb = 200")
	}
	waitFor(t, 30*time.Second, "systemd to restart the OOM-killed app", func() bool {
		return showU64(t, "tenement-mem@a.service", "NRestarts") >= 1 && show(t, "tenement-mem@a.service", "ActiveState") == "active"
	})
	s.try("a.mem.localhost", "/info")
	s.mustTen("ps")
}
