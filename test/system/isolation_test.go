package system

import (
	"encoding/json"
	"fmt"
	"os"
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

var _ = strings.Contains
