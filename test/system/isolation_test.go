package system

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Isolation tests (issue 5): a hostile tenant (test/apps/tenant) tries to
// break out of its instance; each attempt is logged, and one that succeeds
// fails the test. A tenant at isolation = "process" (plain root service)
// runs some of the same probes as a control, so that a probe that cannot
// see a hole is caught too.

// report is the tenant's answer.
type report struct {
	Tried  string          `json:"tried"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Err    string          `json:"err"`
}

// try asks the tenant behind host to do path and logs what happened.
func (s *tenServer) try(host, path string) report {
	s.t.Helper()
	code, body, err := s.get(host, path)
	if err != nil || code != 200 {
		s.t.Fatalf("GET %s%s: %d %v\n%s", host, path, code, err, body)
	}
	var r report
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		s.t.Fatalf("GET %s%s: %v\n%s", host, path, err, body)
	}
	s.t.Logf("%s tried %s: ok=%v err=%q result=%s", host, r.Tried, r.OK, r.Err, trim(string(r.Result), 300))
	return r
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// mustFail fails the test when the tenant's attempt succeeded.
func (s *tenServer) mustFail(host, path string) report {
	s.t.Helper()
	r := s.try(host, path)
	if r.OK {
		s.t.Errorf("HOLE: %s could %s", host, r.Tried)
	}
	return r
}

func tenantInfo(t *testing.T, s *tenServer, host string) (pid, uid int) {
	t.Helper()
	r := s.try(host, "/info")
	var info struct{ PID, UID int }
	if err := json.Unmarshal(r.Result, &info); err != nil {
		t.Fatal(err)
	}
	return info.PID, info.UID
}

func TestIsolationNamespaceEscapes(t *testing.T) {
	s := startTen(t, `
# no data_dir: the probes below look at systemd's state directories
[service.t]
command = "TENANT"

[service.ctl]
command = "TENANT"
isolation = "process"
`)
	for _, inst := range []string{"t:a", "t:b", "ctl:x"} {
		s.mustTen("spawn", inst)
	}
	a, b, ctl := "a.t.localhost", "b.t.localhost", "x.ctl.localhost"
	pidA, uidA := tenantInfo(t, s, a)
	pidB, uidB := tenantInfo(t, s, b)
	pidCtl, _ := tenantInfo(t, s, ctl)
	if uidA == 0 || uidA == uidB {
		t.Errorf("DynamicUser: a runs as uid %d, b as %d; want two distinct non-root users", uidA, uidB)
	}

	// /proc shows only the tenant's own processes.
	var seen map[string]string
	json.Unmarshal(s.try(a, "/proc").Result, &seen)
	for pid, comm := range seen {
		n, _ := strconv.Atoi(pid)
		if n == pidB || n == pidCtl || n == 1 || n == s.cmd.Process.Pid {
			t.Errorf("HOLE: a sees pid %s (%s) in /proc", pid, comm)
		}
	}
	if _, ok := seen[strconv.Itoa(pidA)]; !ok {
		t.Errorf("a does not see itself (pid %d) in /proc: %v", pidA, seen)
	}
	t.Logf("a sees %d processes: %v", len(seen), seen)

	// b's state: a secret a must not read or overwrite.
	if r := s.try(b, "/fill?name=secret&mb=1"); !r.OK {
		t.Fatalf("b cannot write its own state dir: %s", r.Err)
	}
	if r := s.try(a, "/fill?name=mine&mb=1"); !r.OK {
		t.Errorf("a cannot write its own state dir: %s", r.Err)
	}
	for _, p := range []string{"/var/lib/tenement/t/b/secret", "/var/lib/private/tenement/t/b/secret", "/var/lib/tenement/t/b", "/var/lib/private/tenement/t/b"} {
		s.mustFail(a, "/read?path="+p)
	}
	for _, p := range []string{"/etc/tenant-was-here", "/usr/tenant-was-here", "/usr/local/bin/tenant-was-here",
		"/var/lib/tenement/t/b/x", "/var/lib/private/tenement/t/b/x", "/run/tenement/t/x", "/var/lib/tenement/t/x"} {
		s.mustFail(a, "/write?path="+p)
		if _, err := os.Stat(p); err == nil {
			t.Errorf("HOLE: %s exists on the host after a's write", p)
			os.Remove(p)
		}
	}
	// Another instance's sockets: the one ten's router uses, and the app's own.
	s.mustFail(a, "/connect?path=/run/tenement/t/b.sock")
	s.mustFail(a, "/connect?path=/run/tenement-app/t-b/app.sock")
	s.mustFail(a, "/connect?path=/run/tenement/ctl/x.sock")
	s.mustFail(a, "/setuid")
	s.mustFail(a, "/unshare")
	s.mustFail(a, "/module")
	s.mustFail(a, fmt.Sprintf("/ptrace?pid=%d", pidB))
	s.mustFail(a, fmt.Sprintf("/ptrace?pid=%d", pidCtl))
	s.mustFail(a, "/ptrace?pid=1")

	// Controls: the same probes find the holes a plain root service has.
	for _, c := range []struct{ path, what string }{
		{"/write?path=/etc/tenant-was-here", "write /etc"},
		{"/read?path=/var/lib/private/tenement/t/b/secret", "read b's state"},
		{fmt.Sprintf("/ptrace?pid=%d", pidB), "ptrace b"},
		{"/connect?path=/run/tenement/t/b.sock", "connect to b's socket"},
		{"/unshare", "unshare"},
	} {
		if r := s.try(ctl, c.path); !r.OK {
			t.Errorf("control: a root tenant at isolation = process could not %s (%s): the probe cannot detect a hole", c.what, r.Err)
		}
	}
	os.Remove("/etc/tenant-was-here")
	var ctlSeen map[string]string
	json.Unmarshal(s.try(ctl, "/proc").Result, &ctlSeen)
	if _, ok := ctlSeen[strconv.Itoa(pidB)]; !ok {
		t.Errorf("control: the process-level tenant does not see b (pid %d) in /proc", pidB)
	}
	// init_module: the test box drops CAP_SYS_MODULE for everyone, so the
	// control cannot load modules either; the namespace result above is
	// ProtectKernelModules + the syscall filter on a normal host.
	s.try(ctl, "/module")
}

// show's property as a number.
func showU64(t *testing.T, unit, prop string) uint64 {
	t.Helper()
	n, _ := strconv.ParseUint(show(t, unit, prop), 10, 64)
	return n
}

func waitFor(t *testing.T, within time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", within, what)
}

// apiRow reads the instance's row from the API (what `ten ps` prints).
func (s *tenServer) apiRow(inst string) map[string]any {
	s.t.Helper()
	out := s.mustTen("--json", "ps", "--all")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		s.t.Fatalf("ten --json ps: %v\n%s", err, out)
	}
	for _, r := range rows {
		if r["instance"] == inst {
			return r
		}
	}
	s.t.Fatalf("%s not in ten ps:\n%s", inst, out)
	return nil
}

// metricLike returns the value of the first sample of name whose labels
// contain label, or -1.
func (s *tenServer) metricLike(name, label string) float64 {
	s.t.Helper()
	_, body, err := s.get(s.addr, "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, label) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return -1
}

func TestIsolationMemoryLimitOOM(t *testing.T) {
	s := startTen(t, `
[service.mem]
command = "TENANT"
memory_limit_mb = 64
`)
	s.mustTen("spawn", "mem:a")
	checkOOMKill(t, s, "a")
}

// TestIsolationMemoryLimitOOMDeclared is the OOM kill of an instance
// declared in [instances], made when ten starts (before it follows
// systemd's signals): ps, the journal and metrics tell it the same.
func TestIsolationMemoryLimitOOMDeclared(t *testing.T) {
	s := startTen(t, `
[service.mem]
command = "TENANT"
memory_limit_mb = 64

[instances]
mem = ["b"]
`)
	waitFor(t, 30*time.Second, "the declared instance to run", func() bool {
		return show(t, "tenement-mem@b.service", "ActiveState") == "active"
	})
	checkOOMKill(t, s, "b")
}

// checkOOMKill makes instance mem:id allocate past its memory_limit_mb of
// 64 and checks that systemd restarts it and that ps, the journal and the
// metrics say it was OOM-killed.
func checkOOMKill(t *testing.T, s *tenServer, id string) {
	t.Helper()
	unit := "tenement-mem@" + id + ".service"
	host := id + ".mem.localhost"
	inst := "mem:" + id
	t.Logf("MemoryMax=%s MemorySwapMax=%s", show(t, unit, "MemoryMax"), show(t, unit, "MemorySwapMax"))
	if got := show(t, unit, "MemorySwapMax"); got != "0" {
		t.Errorf("MemorySwapMax = %s, want 0", got)
	}
	s.try(host, "/alloc?mb=16") // under the limit: fine
	code, body, err := s.get(host, "/alloc?mb=256&hold=2000")
	t.Logf("tried to allocate 256 MiB with memory_limit_mb = 64: HTTP %d %v %s", code, err, trim(body, 200))
	if code == 200 && strings.Contains(body, `"ok":true`) {
		t.Fatalf("HOLE: the tenant allocated 256 MiB past memory_limit_mb = 64")
	}
	waitFor(t, 30*time.Second, "systemd to restart the OOM-killed app", func() bool {
		return showU64(t, unit, "NRestarts") >= 1 && show(t, unit, "ActiveState") == "active"
	})
	s.try(host, "/info") // serves again
	row := s.apiRow(inst)
	t.Logf("ten ps row after the OOM kill: restarts=%v oom_kills=%v last_exit=%v state=%v", row["restarts"], row["oom_kills"], row["last_exit"], row["state"])
	if row["last_exit"] != "oom-kill" || row["oom_kills"].(float64) < 1 || row["restarts"].(float64) < 1 {
		t.Errorf("ten ps does not show the OOM kill and restart: %v", row)
	}
	ps := s.mustTen("ps")
	t.Logf("ten ps:\n%s", ps)
	if !strings.Contains(ps, "oom-kill") {
		t.Errorf("ten ps does not say oom-kill")
	}
	j := journal(t, "tenement-mem@"+id)
	t.Logf("journal:\n%s", trim(j, 3000))
	if !strings.Contains(j, "OOM killer") && !strings.Contains(j, "oom-kill") {
		t.Errorf("the journal of %s does not show the kill", unit)
	}
	if !strings.Contains(j, "Scheduled restart job") {
		t.Errorf("the journal of %s does not show systemd's restart", unit)
	}
	label := `instance="` + inst + `"`
	if v := s.metricLike("ten_instance_oom_kills_total", label); v < 1 {
		t.Errorf("ten_instance_oom_kills_total{%s} = %v, want >= 1", label, v)
	} else {
		t.Logf("ten_instance_oom_kills_total{%s} = %v", label, v)
	}
	t.Logf("ten_instance_restarts_total{%s} = %v (-1: not exported)", label, s.metricLike("ten_instance_restarts_total", label))
}

func TestIsolationForkBomb(t *testing.T) {
	s := startTen(t, `
[service.bomb]
command = "TENANT"
tasks_max = 40

[service.quiet]
command = "TENANT"
`)
	s.mustTen("spawn", "bomb:a")
	s.mustTen("spawn", "quiet:a")
	done := make(chan report, 1)
	go func() {
		code, body, err := s.get("a.bomb.localhost", "/fork?n=2000")
		var r report
		json.Unmarshal([]byte(body), &r)
		t.Logf("fork bomb: HTTP %d %v: tried %s: ok=%v result=%s err=%q", code, err, r.Tried, r.OK, r.Result, r.Err)
		done <- r
	}()
	// While it runs, the box and ten stay responsive.
	var worst time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		if code, _, err := s.get("a.quiet.localhost", "/info"); err != nil || code != 200 {
			t.Errorf("neighbour did not answer during the fork bomb: %d %v", code, err)
		}
		if _, err := s.ten("ps"); err != nil {
			t.Errorf("ten ps failed during the fork bomb: %v", err)
		}
		if d := time.Since(start); d > worst {
			worst = d
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := <-done
	var res struct{ Started, Asked int }
	json.Unmarshal(r.Result, &res)
	t.Logf("slowest neighbour request + ten ps during the bomb: %s", worst)
	if r.OK || res.Started >= 40 {
		t.Errorf("HOLE: the tenant started %d processes with tasks_max = 40", res.Started)
	}
	if worst > 5*time.Second {
		t.Errorf("the host was unresponsive during the fork bomb: %s", worst)
	}
	if got := show(t, "tenement-bomb@a.service", "TasksMax"); got != "40" {
		t.Errorf("TasksMax = %s", got)
	}
	s.try("a.bomb.localhost", "/info") // the bomber itself recovers
}

func TestIsolationCPUQuota(t *testing.T) {
	s := startTen(t, `
[service.cpu]
command = "TENANT"
cpu_quota_percent = 20
`)
	s.mustTen("spawn", "cpu:a")
	unit := "tenement-cpu@a.service"
	cg := show(t, unit, "ControlGroup")
	t.Logf("CPUAccounting=%s CPUUsageNSec=%s ControlGroup=%s", show(t, unit, "CPUAccounting"), show(t, unit, "CPUUsageNSec"), cg)
	before, src := cgroupCPU(t, unit, cg)
	start := time.Now()
	r := s.try("a.cpu.localhost", "/burn?sec=6")
	wall := time.Since(start)
	after, _ := cgroupCPU(t, unit, cg)
	used := after - before
	pct := 100 * float64(used) / float64(wall.Nanoseconds())
	var self struct {
		Percent float64 `json:"percent_of_one_cpu"`
	}
	json.Unmarshal(r.Result, &self)
	t.Logf("cpu_quota_percent = 20 (CPUQuotaPerSecUSec=%s): the unit used %.1f%% of one CPU over %s (%s); the app measured %.1f%% itself (getrusage)",
		show(t, unit, "CPUQuotaPerSecUSec"), pct, wall.Round(time.Millisecond), src, self.Percent)
	if pct < 10 || pct > 30 {
		t.Errorf("CPU use %.1f%% of one CPU, want about 20%% (10-30)", pct)
	}
}

// cgroupCPU is the CPU time of the unit's cgroup in ns: systemd's
// CPUUsageNSec, or where systemd cannot read it (v1 hosts that mount cpu and
// cpuacct apart) the kernel's counters of the cgroup.
func cgroupCPU(t *testing.T, unit, cg string) (uint64, string) {
	t.Helper()
	if v := show(t, unit, "CPUUsageNSec"); v != "" && v != "[not set]" {
		n, _ := strconv.ParseUint(v, 10, 64)
		return n, "systemd CPUUsageNSec"
	}
	for _, d := range []string{"/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpu,cpuacct"} {
		if b, err := os.ReadFile(d + cg + "/cpuacct.usage"); err == nil {
			n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			return n, d + cg + "/cpuacct.usage"
		}
	}
	for _, d := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if b, err := os.ReadFile(d + cg + "/cpu.stat"); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
					n, _ := strconv.ParseUint(v, 10, 64)
					return n * 1000, d + cg + "/cpu.stat"
				}
			}
		}
	}
	t.Fatalf("no CPU counter for %s (%s)", unit, cg)
	return 0, ""
}

func hostRelease(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// At isolation = "sandbox" the tenant runs under gVisor: it sees gVisor's
// kernel, is still socket-activated (through the shim) and limited by the
// unit's cgroup, and serves through sleep and wake.
func TestIsolationSandboxGVisor(t *testing.T) {
	s := startTen(t, `
[service.sbx]
command = "TENANT"
isolation = "sandbox"
idle_timeout = 2
memory_limit_mb = 256

[service.sbxact]
command = "TENANT"
isolation = "gvisor"
activation = "socket"
idle_timeout = 2

[service.plain]
command = "TENANT"
`)
	for _, inst := range []string{"sbx:a", "sbxact:a", "plain:a"} {
		s.mustTen("spawn", inst)
	}
	host := hostRelease(t)
	for _, h := range []string{"a.sbx.localhost", "a.sbxact.localhost"} {
		for cycle := 1; cycle <= 2; cycle++ {
			start := time.Now()
			r := s.try(h, "/uname")
			var u struct{ Release string }
			json.Unmarshal(r.Result, &u)
			t.Logf("%s (wake %d, %s): uname -r inside = %q, host = %q", h, cycle, time.Since(start).Round(time.Millisecond), u.Release, host)
			if u.Release == "" || u.Release == host {
				t.Errorf("HOLE: %s sees the host kernel %q, not gVisor's", h, u.Release)
			}
			inst := strings.Split(h, ".")[1] + ":a"
			unit := "tenement-" + strings.Replace(inst, ":", "@", 1) + ".service"
			if cycle == 1 {
				// Everything of the sandbox (runsc, its sentry and gofer)
				// is in the unit's cgroup, under its limits.
				cg := show(t, unit, "ControlGroup")
				procs, _ := os.ReadFile("/sys/fs/cgroup/unified" + cg + "/cgroup.procs")
				var comms []string
				for _, p := range strings.Fields(string(procs)) {
					c, _ := os.ReadFile("/proc/" + p + "/cmdline")
					argv0, _, _ := strings.Cut(string(c), "\x00")
					comms = append(comms, argv0)
				}
				t.Logf("%s cgroup %s holds %v; MemoryCurrent=%s MemoryMax=%s", unit, cg, comms, show(t, unit, "MemoryCurrent"), show(t, unit, "MemoryMax"))
				if !strings.Contains(strings.Join(comms, " "), "runsc-sandbox") {
					t.Errorf("gVisor's sentry is not in %s's cgroup: %v", unit, comms)
				}
				// From inside gVisor: only the sandbox's processes, no host sockets.
				var seen map[string]string
				json.Unmarshal(s.try(h, "/proc").Result, &seen)
				if len(seen) > 4 {
					t.Errorf("HOLE: the sandboxed tenant sees %d processes: %v", len(seen), seen)
				}
				s.mustFail(h, "/connect?path=/run/tenement/plain/a.sock")
				s.mustFail(h, "/connect?path=/run/systemd/private")
				s.mustFail(h, "/write?path=/etc/tenant-was-here")
				if r := s.try(h, "/fill?name=f&mb=1"); !r.OK {
					t.Errorf("the sandboxed tenant cannot write its state dir: %s", r.Err)
				}
			}
			s.waitState(inst, "sleeping", 20*time.Second)
		}
	}
	var u struct{ Release string }
	json.Unmarshal(s.try("a.plain.localhost", "/uname").Result, &u)
	if u.Release != host {
		t.Errorf("control: the namespace-level tenant sees %q, want the host's %q", u.Release, host)
	}
}

// storage_quota_mb: an ext4 image per instance mounted over its state dir;
// a write past the quota fails with ENOSPC inside; usage in ps, the API and
// metrics; the mount survives restarts of the app and of ten, and goes
// away with ten stop.
func TestIsolationStorageQuota(t *testing.T) {
	s := startTen(t, `
# no data_dir: the probes below look at systemd's state directories
[service.q]
command = "TENANT"
storage_quota_mb = 16
`)
	s.mustTen("spawn", "q:a")
	where := "/var/lib/private/tenement/q/a"
	mountUnit := "var-lib-private-tenement-q-a.mount"
	t.Cleanup(func() { exec.Command("systemctl", "stop", mountUnit).Run() })
	t.Logf("%s: ActiveState=%s What=%s Where=%s", mountUnit, show(t, mountUnit, "ActiveState"), show(t, mountUnit, "What"), show(t, mountUnit, "Where"))
	if r := s.try("a.q.localhost", "/fill?name=small&mb=8"); !r.OK {
		t.Fatalf("8 MiB within a 16 MiB quota failed: %s", r.Err)
	}
	r := s.try("a.q.localhost", "/fill?name=big&mb=32")
	var res struct {
		Written int
		ENOSPC  bool
	}
	json.Unmarshal(r.Result, &res)
	if r.OK || !res.ENOSPC {
		t.Errorf("HOLE: writing 32 MiB past storage_quota_mb = 16: ok=%v err=%q (want ENOSPC)", r.OK, r.Err)
	}
	t.Logf("past the quota: wrote %d MiB, then %q", res.Written>>20, r.Err)
	row := s.apiRow("q:a")
	used, quota := row["storage_bytes"].(float64), row["storage_quota_bytes"].(float64)
	t.Logf("API: storage_bytes=%.0f storage_quota_bytes=%.0f; ten ps:\n%s", used, quota, s.mustTen("ps"))
	if quota != 16<<20 || used < 8<<20 {
		t.Errorf("API row: storage_bytes=%.0f storage_quota_bytes=%.0f", used, quota)
	}
	if v := s.metricLike("ten_instance_storage_used_bytes", `instance="q:a"`); v < 8<<20 {
		t.Errorf("ten_instance_storage_used_bytes = %v", v)
	}
	s.try("a.q.localhost", "/fill?name=big&mb=0") // free the space again

	// The files and the mount outlive a restart of the app and of ten.
	s.mustTen("restart", "q:a")
	s.kill()
	s.start()
	if r := s.try("a.q.localhost", "/read?path=/var/lib/tenement/q/a"); !r.OK || !strings.Contains(string(r.Result), "small") {
		t.Errorf("after restarts the state dir lost its files: %s %s", r.Result, r.Err)
	}
	if got := show(t, mountUnit, "ActiveState"); got != "active" {
		t.Errorf("%s is %s after restarts", mountUnit, got)
	}
	s.mustTen("stop", "q:a")
	if out, _ := exec.Command("findmnt", "-n", where).CombinedOutput(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("after ten stop %s is still mounted: %s", where, out)
	}
	t.Logf("after ten stop: %s ActiveState=%q", mountUnit, show(t, mountUnit, "ActiveState"))
}

// storage_persist = false: the state dir is wiped whenever the app stops.
func TestIsolationStorageNotPersisted(t *testing.T) {
	s := startTen(t, `
# no data_dir: the probes below look at systemd's state directories
[service.eph]
command = "TENANT"
storage_persist = false
`)
	s.mustTen("spawn", "eph:a")
	if r := s.try("a.eph.localhost", "/fill?name=x&mb=1"); !r.OK {
		t.Fatal(r.Err)
	}
	s.mustTen("restart", "eph:a")
	r := s.try("a.eph.localhost", "/read?path=/var/lib/tenement/eph/a/x")
	if r.OK {
		t.Errorf("storage_persist = false: the file survived a restart")
	}
	// ten stop ends the instance and its state directory with it.
	s.mustTen("stop", "eph:a")
	for _, d := range []string{"/var/lib/private/tenement/eph/a", "/var/lib/tenement/eph/a"} {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("storage_persist = false: %s is still there after ten stop (%v)", d, err)
		}
	}
}
