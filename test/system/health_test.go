package system

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// health is what `ten --json health` prints (the fields the tests read).
type health struct {
	Instance         string `json:"instance"`
	Health           string `json:"health"`
	Detail           string `json:"detail"`
	State            string `json:"state"`
	RestartsInWindow int    `json:"restarts_in_window"`
	Restarts         []struct {
		At     time.Time `json:"at"`
		Reason string    `json:"reason"`
	} `json:"restarts"`
	BackoffMs int64  `json:"backoff_ms"`
	Failed    string `json:"failed"`
}

func (s *tenServer) health(inst string) health {
	s.t.Helper()
	var h health
	out := s.mustTen("--json", "health", inst)
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		s.t.Fatalf("ten --json health %s: %v\n%s", inst, err, out)
	}
	return h
}

// waitHealth polls `ten health` until cond holds.
func (s *tenServer) waitHealth(inst string, within time.Duration, what string, cond func(health) bool) health {
	s.t.Helper()
	deadline := time.Now().Add(within)
	var h health
	for time.Now().Before(deadline) {
		if h = s.health(inst); cond(h) {
			return h
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("%s: not %s within %s: %+v\n%s", inst, what, within, h, s.mustTen("ps"))
	return h
}

// psRow returns inst's line in `ten ps`.
func (s *tenServer) psRow(inst string) string {
	s.t.Helper()
	for _, line := range strings.Split(s.mustTen("ps", "--all"), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == inst {
			return line
		}
	}
	return ""
}

// psHealth returns the HEALTH column of inst in `ten ps --all`, which is
// tenement's fifth column.
func (s *tenServer) psHealth(inst string) string {
	s.t.Helper()
	lines := strings.Split(s.mustTen("ps", "--all"), "\n")
	if f := strings.Fields(lines[0]); len(f) < 5 || f[4] != "HEALTH" {
		s.t.Errorf("ps header: HEALTH must be the fifth column, as tenement's: %q", lines[0])
	}
	return s.psColumn(inst, "HEALTH")
}

func waitPIDChange(t *testing.T, inst string, old int, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p := mainPID(t, inst); p != 0 && p != old {
			return p
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: main pid still %d after %s", inst, old, within)
	return 0
}

// An instance whose /health starts failing goes degraded, then unhealthy,
// and ten restarts it with a backoff that doubles per restart; a crash
// (kill -9) is restarted by systemd and counted too.
func TestHealthUnhealthyRestart(t *testing.T) {
	s := startTen(t, `
health_check_interval = 1
backoff_base_ms = 500
backoff_max_ms = 4000
max_restarts = 5

[service.web]
command = "ECHO --mode activation"
activation = "socket"
health = "/health"

[instances]
web = ["a"]
`)
	s.waitHealth("web:a", 10*time.Second, "healthy", func(h health) bool { return h.Health == "healthy" })
	if h := s.psHealth("web:a"); h != "healthy" {
		t.Errorf("ps HEALTH %q\n%s", h, s.mustTen("ps"))
	}

	// kill -9: systemd restarts it (Restart=on-failure) and ten counts it.
	pid := mainPID(t, "web:a")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pid = waitPIDChange(t, "web:a", pid, 10*time.Second)
	h := s.waitHealth("web:a", 10*time.Second, "counting the crash", func(h health) bool { return h.RestartsInWindow == 1 })
	if h.Restarts[0].Reason != "crash" {
		t.Errorf("restart after kill -9: %+v", h.Restarts)
	}
	s.waitHealth("web:a", 10*time.Second, "healthy again", func(h health) bool { return h.Health == "healthy" })

	// Failing checks: degraded after one, restarted after three.
	s.mustGet("a.web.localhost", "/sethealth?code=500")
	s.waitHealth("web:a", 5*time.Second, "degraded", func(h health) bool { return h.Health == "degraded" || h.Health == "unhealthy" })
	pid = waitPIDChange(t, "web:a", pid, 15*time.Second)
	h = s.waitHealth("web:a", 10*time.Second, "healthy after the restart", func(h health) bool { return h.Health == "healthy" })
	if h.RestartsInWindow != 2 || h.Restarts[1].Reason != "health" || h.BackoffMs != 1000 {
		// One restart in the window already (the crash): base 500 ms doubled once.
		t.Errorf("after the health restart: %+v", h)
	}

	// Again: the backoff doubles.
	s.mustGet("a.web.localhost", "/sethealth?code=503")
	unhealthyAt := time.Now()
	waitPIDChange(t, "web:a", pid, 20*time.Second)
	if d := time.Since(unhealthyAt); d < 4*time.Second {
		// 3 failed checks 1 s apart, then a 2 s backoff.
		t.Errorf("restarted %s after the checks began to fail; want >= 4s (3 checks + 2s backoff)", d)
	}
	h = s.waitHealth("web:a", 10*time.Second, "healthy after the second restart", func(h health) bool { return h.Health == "healthy" })
	if h.RestartsInWindow != 3 || h.BackoffMs != 2000 {
		t.Errorf("after the second health restart: %+v", h)
	}
	// ps counts every restart, as the metric does: systemd's NRestarts
	// alone went back to 0 at each of ten's restarts.
	var rows []struct {
		Instance string `json:"instance"`
		Restarts int    `json:"restarts"`
	}
	if err := json.Unmarshal([]byte(s.mustTen("ps", "--json")), &rows); err != nil || len(rows) != 1 || rows[0].Restarts != 3 {
		t.Errorf("ps --json restarts after a crash and two health restarts: %+v %v, want 3", rows, err)
	}
	if !strings.Contains(s.log.String(), "restarted unhealthy instance") {
		t.Errorf("ten's log does not mention the restart:\n%s", s.log.String())
	}
	m := s.scrape()
	if v := m.value("ten_instance_restarts_total", "instance", "web:a", "reason", "health"); v != 2 {
		t.Errorf("ten_instance_restarts_total{reason=health} = %v, want 2", v)
	}
	if v := m.value("ten_instance_restarts_total", "instance", "web:a", "reason", "crash"); v != 1 {
		t.Errorf("ten_instance_restarts_total{reason=crash} = %v, want 1", v)
	}
	// Neither a kill -9 nor a health restart is an OOM kill (the old
	// cgroup's removal must not count as one).
	if v := m.value("ten_instance_oom_kills_total", "instance", "web:a"); v != 0 {
		t.Errorf("ten_instance_oom_kills_total = %v after restarts without OOM, want 0", v)
	}
}

// An app that keeps crashing is restarted by systemd until it used up
// max_restarts within restart_window; then ten marks it failed and keeps it
// stopped: ps, the API and the metrics say so, and requests get 503 without
// waking it, until `ten restart`.
func TestCrashLoopFails(t *testing.T) {
	s := startTen(t, `
health_check_interval = 1
backoff_base_ms = 200
max_restarts = 3
restart_window = 120

[service.crash]
command = "ECHO --mode activation --crash-after 700ms"
activation = "socket"
health = "/health"

[instances]
crash = ["a"]
`)
	s.waitState("crash:a", "failed", 40*time.Second)
	row := s.psRow("crash:a")
	if !regexp.MustCompile(`failed \(restarted \d+ times within restart_window 120s \(max_restarts 3\)`).MatchString(row) || s.psHealth("crash:a") != "failed" {
		t.Errorf("ps row of the failed instance: %q", row)
	}
	time.Sleep(2 * time.Second)
	if got := show(t, "tenement-crash@a.service", "ActiveState"); got != "inactive" {
		t.Errorf("failed instance's service is %q, want inactive (stopped)", got)
	}
	n := show(t, "tenement-crash@a.service", "NRestarts")

	code, body, err := s.get("a.crash.localhost", "/")
	if err != nil || code != 503 || !strings.Contains(body, "instance crash:a failed: restarted") {
		t.Errorf("request to the failed instance: %d %v %q", code, err, body)
	}
	code, _, _ = s.get("crash.localhost", "/")
	if code != 503 {
		t.Errorf("service-level request with only a failed instance: %d", code)
	}
	time.Sleep(1500 * time.Millisecond)
	if got := show(t, "tenement-crash@a.service", "ActiveState"); got != "inactive" || show(t, "tenement-crash@a.service", "NRestarts") != n {
		t.Errorf("a request woke the failed instance: %s, NRestarts %s -> %s", got, n, show(t, "tenement-crash@a.service", "NRestarts"))
	}

	var rows []map[string]any
	if err := json.Unmarshal([]byte(s.mustTen("--json", "ps")), &rows); err != nil || len(rows) != 1 || rows[0]["state"] != "failed" || rows[0]["health"] != "failed" {
		t.Errorf("API rows: %v %v", rows, err)
	}
	h := s.health("crash:a")
	if h.Health != "failed" || !strings.Contains(h.Failed, "max_restarts 3") || h.RestartsInWindow < 4 || h.Restarts[0].Reason != "crash" {
		t.Errorf("health: %+v", h)
	}
	if out := s.mustTen("health", "crash:a"); !strings.Contains(out, "stopped until `ten restart crash:a`") {
		t.Errorf("ten health:\n%s", out)
	}
	m := s.scrape()
	if v := m.value("ten_instances", "state", "failed"); v != 1 {
		t.Errorf("ten_instances{state=failed} = %v", v)
	}
	if v := m.value("ten_instance_health", "instance", "crash:a", "state", "failed"); v != 1 {
		t.Errorf("ten_instance_health{state=failed} = %v", v)
	}
	if v := m.value("ten_instance_restarts_total", "instance", "crash:a", "reason", "crash"); v < 4 {
		t.Errorf("ten_instance_restarts_total{reason=crash} = %v", v)
	}

	// The mark survives a restart of ten.
	s.kill()
	s.start()
	if st := s.psState("crash:a"); st != "failed" {
		t.Errorf("after restarting ten: %q", st)
	}
	if code, _, _ := s.get("a.crash.localhost", "/"); code != 503 {
		t.Errorf("after restarting ten the failed instance answers %d", code)
	}

	// ten restart clears it. The app goes on crashing 700ms after each
	// start, so what was cleared is told by time, not by a count that a
	// slow run (-race, a loaded machine) sees growing again: no restart
	// from before ten restart is left, and a new failed mark can only come
	// from max_restarts new crashes.
	before := time.Now()
	s.mustTen("restart", "crash:a")
	h = s.health("crash:a")
	for _, r := range h.Restarts {
		if r.At.Before(before) {
			t.Errorf("after ten restart: a restart of %s is still counted: %+v", r.At, h)
		}
	}
	if h.Failed != "" && len(h.Restarts) < 3 {
		t.Errorf("still failed after ten restart: %+v", h)
	}
}

// Health checks never wake a sleeping instance, and a service without
// `health` is judged by systemd alone: never restarted for a missing check.
func TestHealthSleepingNotWoken(t *testing.T) {
	s := startTen(t, `
health_check_interval = 1

[service.nap]
command = "ECHO --mode activation"
activation = "socket"
health = "/health"
idle_timeout = 2
start = "eager"

[service.plain]
command = "ECHO --mode port"

[instances]
nap = ["a"]
plain = ["a"]
`)
	s.waitHealth("nap:a", 10*time.Second, "healthy", func(h health) bool { return h.Health == "healthy" })
	// Checks are not activity: it falls asleep with checks running.
	s.waitState("nap:a", "sleeping", 15*time.Second)
	inv := show(t, "tenement-nap@a.service", "InvocationID")
	for i := 0; i < 16; i++ {
		time.Sleep(250 * time.Millisecond)
		if got := show(t, "tenement-nap@a.service", "ActiveState"); got != "inactive" {
			t.Fatalf("sleeping instance woke (%s) with only health checks running\n%s", got, journal(t, "tenement-nap@a"))
		}
	}
	if got := show(t, "tenement-nap@a.service", "InvocationID"); got != inv {
		t.Errorf("service ran again while asleep: invocation %s -> %s", inv, got)
	}
	if h := s.health("nap:a"); h.Health != "sleeping" {
		t.Errorf("health of a sleeping instance: %+v", h)
	}
	if h := s.psHealth("nap:a"); h != "sleeping" {
		t.Errorf("ps HEALTH %q", h)
	}
	// A request wakes it as always; checks resume.
	s.mustGet("a.nap.localhost", "/")
	s.waitHealth("nap:a", 5*time.Second, "healthy after the wake", func(h health) bool { return h.Health == "healthy" })

	pid := mainPID(t, "plain:a")
	h := s.waitHealth("plain:a", 10*time.Second, "healthy by systemd state", func(h health) bool { return h.Health == "healthy" })
	if !strings.Contains(h.Detail, "systemd") {
		t.Errorf("plain:a health detail %q", h.Detail)
	}
	time.Sleep(3 * time.Second)
	if p := mainPID(t, "plain:a"); p != pid {
		t.Errorf("service without health was restarted: pid %d -> %d", pid, p)
	}
	if h := s.health("plain:a"); h.RestartsInWindow != 0 || h.Health != "healthy" {
		t.Errorf("plain:a: %+v", h)
	}
}

// metrics is a parsed scrape of /metrics.
type metrics struct {
	text   string
	series map[string]float64 // `name{k="v",...}` with labels sorted, as exposed
}

var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func (s *tenServer) scrape() metrics {
	s.t.Helper()
	code, body, err := s.get("localhost", "/metrics")
	if err != nil || code != 200 {
		s.t.Fatalf("GET /metrics: %d %v\n%s", code, err, body)
	}
	m := metrics{text: body, series: map[string]float64{}}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m.series[line[:i]] = v
	}
	return m
}

// value returns the sample of name with exactly the given label pairs, or
// -1 when there is none.
func (m metrics) value(name string, kv ...string) float64 {
	want := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		want[kv[i]] = kv[i+1]
	}
	for series, v := range m.series {
		n, labels, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		got := map[string]string{}
		for _, mm := range labelRE.FindAllStringSubmatch(labels, -1) {
			got[mm[1]] = mm[2]
		}
		if len(got) != len(want) {
			continue
		}
		ok := true
		for k, v := range want {
			if got[k] != v {
				ok = false
			}
		}
		if ok {
			return v
		}
	}
	return -1
}

// An unhealthy instance that the reaper freezes while its restart waits out
// the backoff is thawed before ten restarts it: systemd cannot stop a frozen
// service (it waits out TimeoutStopSec, then SIGKILLs it).
func TestHealthRestartOfFrozenInstance(t *testing.T) {
	s := startTen(t, `
health_check_interval = 1
backoff_base_ms = 6000

[service.web]
command = "ECHO --mode activation --health-file /run/ten-test/health-{id}"
activation = "socket"
health = "/health"
idle_timeout = 5
sleep = "freeze"
start = "eager"
`)
	healthFile(t, "fz", "500")
	s.mustTen("spawn", "web:fz")
	pid := mainPID(t, "web:fz")
	s.waitState("web:fz", "frozen", 10*time.Second)
	healthFile(t, "fz", "200")
	// The restart is due about 9 s after the spawn.
	newPID := waitPIDChange(t, "web:fz", pid, 20*time.Second)
	if newPID == 0 {
		t.Fatal("no new process")
	}
	if out := journal(t, "tenement-web@fz.service"); strings.Contains(out, "SIGKILL") || strings.Contains(out, "timed out") {
		t.Errorf("restart of a frozen instance had to kill it:\n%s", out)
	}
	s.waitState("web:fz", "running", 5*time.Second)
}

// An instance a new ten serve adopts running is checked at once, not at the
// next health_check_interval: ps shows it healthy within seconds of the
// restart (it showed "unknown" for a whole interval).
func TestAdoptedHealthyAtOnce(t *testing.T) {
	s := startTen(t, `health_check_interval = 60

[service.api]
command = "ECHO"
args = ["--mode", "port"]
health = "/health"

[instances]
api = ["one"]
`)
	s.mustGet("one.api.localhost", "/")
	s.kill()
	s.start()
	deadline := time.Now().Add(8 * time.Second)
	for {
		got := s.psHealth("api:one")
		if got == "healthy" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("adopted running instance: health %q 8s after the restart, interval 60s", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
