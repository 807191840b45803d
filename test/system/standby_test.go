package system

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// comm is the command name of a process ("" once it is gone).
func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// cgroupProcs lists the processes in a unit's cgroup.
func cgroupProcs(t *testing.T, unit string) []string {
	t.Helper()
	b, err := os.ReadFile(cgroupV2 + show(t, unit, "ControlGroup") + "/cgroup.procs")
	if err != nil {
		t.Fatalf("%s: %v", unit, err)
	}
	return strings.Fields(string(b))
}

// waitUnit polls a unit property until it is want.
func waitUnit(t *testing.T, unit, prop, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for show(t, unit, prop) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s=%s after %s, want %s\n%s", unit, prop, show(t, unit, prop), within, want, journal(t, unit))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settings.standby: an instance put to sleep by the idle reaper keeps its
// service started, sandbox and all, with ten's small waiter as its only
// process in place of the app; ten ps says it sleeps. The next request has
// the waiter become the app (same PID: execve inside the sandbox systemd
// set up) and is answered. The pool holds settings.standby instances: the
// one that went on standby first is stopped when another goes to sleep.
// Both kinds of app that can stand by are covered: a directly run PORT app
// (Type=notify, activating while it stands by) and one that takes systemd's
// socket (activation = "socket").
func TestStandby(t *testing.T) {
	s := startTen(t, `standby = 1

[service.port]
command = "ECHO --mode port"
idle_timeout = 1
start = "eager"

[service.act]
command = "ECHO --mode activation"
activation = "socket"
idle_timeout = 1
start = "eager"
`)
	type app struct{ inst, unit, standbyState string }
	port := app{"port:a", "tenement-port@a.service", "activating"}
	act := app{"act:a", "tenement-act@a.service", "active"}
	host := func(a app) string {
		svc, id, _ := strings.Cut(a.inst, ":")
		return id + "." + svc + ".localhost"
	}
	onStandby := func(a app) int {
		t.Helper()
		s.waitState(a.inst, "sleeping", 15*time.Second)
		waitUnit(t, a.unit, "ActiveState", a.standbyState, 10*time.Second)
		pid := mainPID(t, a.inst)
		deadline := time.Now().Add(5 * time.Second)
		for comm(pid) != "ten-shim" && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			pid = mainPID(t, a.inst)
		}
		if c := comm(pid); c != "ten-shim" {
			t.Fatalf("%s on standby: main process %d is %q, want ten's waiter\n%s", a.inst, pid, c, journal(t, a.unit))
		}
		if procs := cgroupProcs(t, a.unit); len(procs) != 1 || procs[0] != strconv.Itoa(pid) {
			t.Errorf("%s on standby: processes %v in the service, want only the waiter %d", a.inst, procs, pid)
		}
		if st := s.psState(a.inst); st != "sleeping" {
			t.Errorf("%s on standby: ten ps says %q", a.inst, st)
		}
		return pid
	}
	woken := func(a app, waiter int) {
		t.Helper()
		s.mustGet(host(a), "/")
		if pid := mainPID(t, a.inst); pid != waiter || comm(pid) != "echoapp" {
			t.Errorf("%s woken from standby: main process %d %q, want the waiter %d become echoapp", a.inst, pid, comm(pid), waiter)
		}
		waitUnit(t, a.unit, "ActiveState", "active", 10*time.Second)
		if procs := cgroupProcs(t, a.unit); len(procs) != 1 {
			t.Errorf("%s woken: processes %v in the service, want the app alone", a.inst, procs)
		}
	}

	// runsApp: the app itself started after the spawn or restart, with no
	// request sent (a spawn or a restart means run; the waiter must not
	// hold it for a first client). It reads the app's own "listening" line
	// in the service's journal, not its main process: with idle_timeout =
	// 1 the app may already be back on standby, the waiter, when a slow
	// machine looks.
	appStarts := func(a app) int {
		return strings.Count(journal(t, a.unit), "echoapp "+a.inst+" pid ")
	}
	runsApp := func(a app, when string, before int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for appStarts(a) <= before && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if appStarts(a) <= before {
			pid := mainPID(t, a.inst)
			t.Errorf("%s %s: the app did not start without a request (main process %d is %q)\n%s", a.inst, when, pid, comm(pid), journal(t, a.unit))
		}
	}

	before := appStarts(port)
	s.mustTen("spawn", port.inst)
	runsApp(port, "spawned", before)
	s.mustGet(host(port), "/")
	// Two rounds: the second wake is from a standby that followed a wake
	// from standby (the wake connections were flushed, not left queued).
	for i := 0; i < 2; i++ {
		woken(port, onStandby(port))
	}
	s.waitState(port.inst, "sleeping", 15*time.Second)
	onStandby(port)

	// act goes to sleep: the pool holds one, so port leaves it (stopped).
	before = appStarts(act)
	s.mustTen("spawn", act.inst)
	runsApp(act, "spawned", before)
	s.mustGet(host(act), "/")
	waiter := onStandby(act)
	waitUnit(t, port.unit, "ActiveState", "inactive", 10*time.Second)
	if st := s.psState(port.inst); st != "sleeping" {
		t.Errorf("%s out of the pool: ten ps says %q", port.inst, st)
	}
	woken(act, waiter)
	before = appStarts(act)
	s.mustTen("restart", act.inst)
	runsApp(act, "restarted", before)
	// And the stopped one still wakes, the ordinary way.
	s.mustGet(host(port), "/")
	waitUnit(t, port.unit, "ActiveState", "active", 10*time.Second)
	if c := comm(mainPID(t, port.inst)); c != "echoapp" {
		t.Errorf("%s woken from stopped: main process %q", port.inst, c)
	}
}

// An awake app behind the standby waiter that crashes is started again by
// systemd's restart at once, as without standby: the waiter it restarts
// into must not wait for a first client while ten ps says running.
func TestStandbyCrashRestart(t *testing.T) {
	s := startTen(t, `standby = 2

[service.act]
command = "ECHO --mode activation"
activation = "socket"
idle_timeout = 300
`)
	const inst, unit = "act:c", "tenement-act@c.service"
	appStarts := func() int { return strings.Count(journal(t, unit), "echoapp "+inst+" pid ") }
	s.mustTen("spawn", inst)
	s.mustGet("c.act.localhost", "/")
	pid := mainPID(t, inst)
	if c := comm(pid); c != "echoapp" {
		t.Fatalf("%s awake: main process %d is %q, want echoapp", inst, pid, c)
	}
	before := appStarts()
	if out, err := exec.Command("systemctl", "kill", "--kill-whom=main", "--signal=KILL", unit).CombinedOutput(); err != nil {
		t.Fatalf("systemctl kill: %v %s", err, out)
	}
	waitFor(t, 30*time.Second, "systemd to restart the crashed app", func() bool {
		return showU64(t, unit, "NRestarts") >= 1 && show(t, unit, "ActiveState") == "active"
	})
	deadline := time.Now().Add(10 * time.Second)
	for appStarts() <= before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if appStarts() <= before {
		pid := mainPID(t, inst)
		t.Fatalf("%s restarted after a crash: the app did not start without a request (main process %d is %q)\n%s", inst, pid, comm(pid), journal(t, unit))
	}
	if st := s.psState(inst); st != "running" {
		t.Errorf("%s restarted after a crash: ten ps says %q", inst, st)
	}
	s.mustGet("c.act.localhost", "/")
}
