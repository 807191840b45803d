package system

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenhq/ten/units"
)

// freezeFile is the cgroup.freeze of the instance's service.
func freezeFile(inst string) string {
	in, err := units.ParseInstance(inst)
	if err != nil {
		panic(err)
	}
	return filepath.Join(cgroupV2, in.SliceCgroup(), in.ServiceUnit(), "cgroup.freeze")
}

// kernelFrozen reads the instance's cgroup.freeze.
func kernelFrozen(t *testing.T, inst string) bool {
	t.Helper()
	b, err := os.ReadFile(freezeFile(inst))
	if err != nil {
		return false
	}
	return strings.TrimSpace(string(b)) == "1"
}

// row returns the instance's `ten ps --all --json` row.
func (s *tenServer) row(inst string) map[string]any {
	s.t.Helper()
	var rows []map[string]any
	if err := json.Unmarshal([]byte(s.mustTen("ps", "--all", "--json")), &rows); err != nil {
		s.t.Fatal(err)
	}
	for _, r := range rows {
		if r["instance"] == inst {
			return r
		}
	}
	s.t.Fatalf("%s not in ps", inst)
	return nil
}

// labeled returns a ten_* sample with the given label set, -1 if absent.
func (s *tenServer) labeled(name, labels string) float64 {
	s.t.Helper()
	_, body, _ := s.get("127.0.0.1", "/metrics")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+"{"+labels+"} "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

var pidRe = regexp.MustCompile(`pid (\d+)`)

func pidOf(t *testing.T, body string) string {
	t.Helper()
	m := pidRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no pid in %q", body)
	}
	return m[1]
}

// Issue 7, items 1, 2, 5, 6: an idle instance with sleep = "freeze" is
// frozen (same process, memory kept, shown as frozen in ps, the API and
// metrics); health checks leave it frozen; an HTTP request thaws it and gets
// the app's answer, concurrent requests all get one; its timers resume;
// ten stop and ten restart of a frozen instance work.
func TestFreezeHTTP(t *testing.T) {
	s := startTen(t, `
health_check_interval = 1

[service.web]
command = "ECHO --mode activation"
activation = "socket"
health = "/health"
idle_timeout = 1
sleep = "freeze"
`)
	if !strings.Contains(s.log.String(), "name=freeze on=true detail=\"cgroup.freeze") && !strings.Contains(s.log.String(), "name=freeze on=true detail=\"systemd") {
		t.Fatalf("ten serve does not say how it freezes:\n%s", s.log.String())
	}
	s.mustTen("spawn", "web:a")
	pid := pidOf(t, s.mustGet("a.web.localhost", "/"))
	ticks0, _ := strconv.Atoi(strings.TrimSpace(s.mustGet("a.web.localhost", "/ticks")))
	s.waitState("web:a", "frozen", 6*time.Second)
	if !kernelFrozen(t, "web:a") {
		t.Fatalf("ps says frozen, %s does not", freezeFile("web:a"))
	}
	if st := show(t, "tenement-web@a.service", "ActiveState"); st != "active" {
		t.Errorf("frozen service is %s", st)
	}
	r := s.row("web:a")
	if r["state"] != "frozen" || r["memory_bytes"].(float64) < 1<<20 {
		t.Errorf("ps row of a frozen instance: %v", r)
	}
	if v := s.labeled("ten_instances", `state="frozen"`); v != 1 {
		t.Errorf("ten_instances{state=frozen} = %v", v)
	}
	if v := s.metric("ten_instance_memory_bytes", "web:a"); v < 1<<20 {
		t.Errorf("memory metric of a frozen instance: %v", v)
	}
	// Health checks (every second) never thaw it.
	time.Sleep(2500 * time.Millisecond)
	if !kernelFrozen(t, "web:a") || s.psState("web:a") != "frozen" {
		t.Fatal("a health check thawed the frozen instance")
	}
	// A request thaws it: the same process answers.
	start := time.Now()
	body := s.mustGet("a.web.localhost", "/ticks")
	t.Logf("request to a frozen instance: %s", time.Since(start))
	if kernelFrozen(t, "web:a") {
		t.Fatal("still frozen after a request")
	}
	// Frozen for more than 2.5 s, the 100 ms ticker gained only what it
	// counted before the freeze and the one tick Go keeps: it resumed.
	ticks1, _ := strconv.Atoi(strings.TrimSpace(body))
	if ticks1-ticks0 > 15 {
		t.Errorf("ticker ran while frozen: %d then %d", ticks0, ticks1)
	}
	time.Sleep(500 * time.Millisecond)
	ticks2, _ := strconv.Atoi(strings.TrimSpace(s.mustGet("a.web.localhost", "/ticks")))
	if ticks2-ticks1 < 3 {
		t.Errorf("ticker did not resume after thaw: %d then %d 0.5 s later", ticks1, ticks2)
	}
	if p := pidOf(t, s.mustGet("a.web.localhost", "/")); p != pid {
		t.Errorf("thaw restarted the app: pid %s then %s", pid, p)
	}

	// Concurrent requests to a frozen instance all get the app's answer,
	// and thaw it once. (Counted from here: with idle_timeout = 1 the
	// requests above may meet a freeze of their own on a slow machine.)
	s.waitState("web:a", "frozen", 6*time.Second)
	thaws := s.labeled("ten_thaws_total", `instance="web:a",trigger="http"`)
	var wg sync.WaitGroup
	errs := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := s.get("a.web.localhost", "/")
			if err != nil || code != 200 || !strings.Contains(body, "pid "+pid) {
				errs <- strconv.Itoa(code) + " " + body
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent request during thaw: %s", e)
	}
	if v := s.labeled("ten_thaws_total", `instance="web:a",trigger="http"`); thaws < 1 || v != thaws+1 {
		t.Errorf("ten_thaws_total{trigger=http} = %v after 20 concurrent requests to a frozen instance, %v before; want one thaw more", v, thaws)
	}

	// ten restart and ten stop of a frozen instance: quick, and clean.
	s.waitState("web:a", "frozen", 6*time.Second)
	start = time.Now()
	s.mustTen("restart", "web:a")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("restart of a frozen instance took %s", d)
	}
	if p := pidOf(t, s.mustGet("a.web.localhost", "/")); p == pid {
		t.Error("restart kept the process")
	}
	s.waitState("web:a", "frozen", 6*time.Second)
	start = time.Now()
	s.mustTen("stop", "web:a")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop of a frozen instance took %s", d)
	}
	if st := show(t, "tenement-web@a.service", "LoadState"); st != "not-found" {
		t.Errorf("stopped frozen instance left its service: %s", st)
	}
	if out := journal(t, "tenement-web@a.service"); strings.Contains(out, "SIGKILL") || strings.Contains(out, "timed out") {
		t.Errorf("stop had to kill:\n%s", out)
	}
}

// Issue 7, item 3: a frozen L4 tenant wakes on a client connection through
// sk_lookup, with no proxy: the program's wake event makes ten thaw it, the
// connection waits in the backlog meanwhile, and the app sees the client's
// own address.
func TestFreezeL4(t *testing.T) {
	s := startTen(t, `
[service.tcpecho]
command = "ECHO --mode tcp"
activation = "socket"
idle_timeout = 1
sleep = "freeze"
listen = ["tcp://127.0.5.0/24:7400"]
`)
	s.mustTen("spawn", "tcpecho:a")
	addr := net.JoinHostPort(l4Address(t, "tcpecho:a"), "7400")
	cl, greeting := dialL4(t, addr, true)
	cl.echo(t, "warm")
	pid := mainPID(t, "tcpecho:a")
	// An open connection keeps it from freezing.
	s.stayAwake("tcpecho:a", 2500*time.Millisecond, "with an open L4 connection")
	cl.c.Close()
	s.waitState("tcpecho:a", "frozen", 6*time.Second)
	if !kernelFrozen(t, "tcpecho:a") {
		t.Fatal("not frozen in the kernel")
	}
	for i := 0; i < 3; i++ {
		start := time.Now()
		cl2, g2 := dialL4(t, addr, true)
		t.Logf("connect to first byte, frozen L4 instance: %s", time.Since(start))
		if !strings.HasPrefix(g2, "hello from tcpecho:a") {
			t.Fatalf("greeting %q (first was %q)", g2, greeting)
		}
		cl2.echo(t, "thawed")
		cl2.c.Close()
		if p := mainPID(t, "tcpecho:a"); p != pid {
			t.Fatalf("thaw restarted the app: %d -> %d", pid, p)
		}
		s.waitState("tcpecho:a", "frozen", 6*time.Second)
	}
	if v := s.labeled("ten_thaws_total", `instance="tcpecho:a",trigger="l4"`); v != 3 {
		t.Errorf("ten_thaws_total{trigger=l4} = %v, want 3", v)
	}
}

// Issue 7, item 1: freeze-then-stop freezes after idle_timeout and stops
// after stop_after; the next request starts it again.
func TestFreezeThenStop(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO --mode activation"
activation = "socket"
sleep = "freeze-then-stop"
# Awake for 3 s after a request and frozen for 7 s: long enough for
# waitState's polls (each a run of the CLI, slow under -race on a loaded
# machine) to see each state.
idle_timeout = 3
stop_after = 10
`)
	s.mustTen("spawn", "web:a")
	pid := pidOf(t, s.mustGet("a.web.localhost", "/"))
	s.waitState("web:a", "frozen", 6*time.Second)
	s.waitState("web:a", "sleeping", 15*time.Second)
	if st := show(t, "tenement-web@a.service", "ActiveState"); st != "inactive" {
		t.Errorf("stopped service is %s", st)
	}
	if out := journal(t, "tenement-web@a.service"); strings.Contains(out, "SIGKILL") || strings.Contains(out, "timed out") {
		t.Errorf("stop after freeze had to kill:\n%s", out)
	}
	if p := pidOf(t, s.mustGet("a.web.localhost", "/")); p == pid {
		t.Error("woke with the same process")
	}
	// Thawed by a request while frozen, it counts silence from then.
	s.waitState("web:a", "frozen", 6*time.Second)
	s.mustGet("a.web.localhost", "/")
	if st := s.psState("web:a"); st != "running" {
		t.Errorf("after a request: %s", st)
	}
}

// Issue 7, item 5: kill -9 of ten while instances are frozen. The new ten
// keeps frozen what its records and the config say, thaws an instance whose
// service no longer says freeze, and thaws an L4 instance a client connected
// to while ten was down (the connection then gets its answer).
func TestFreezeKill9Serve(t *testing.T) {
	cfg := `
[service.keep]
command = "ECHO --mode activation"
activation = "socket"
idle_timeout = 1
sleep = "freeze"

[service.change]
command = "ECHO --mode activation"
activation = "socket"
idle_timeout = 1 # change
sleep = "freeze" # change

[service.tcpecho]
command = "ECHO --mode tcp"
activation = "socket"
idle_timeout = 1
sleep = "freeze"
listen = ["tcp://127.0.6.1:7500"]
`
	s := startTen(t, cfg)
	for _, inst := range []string{"keep:a", "change:a", "tcpecho:a"} {
		s.mustTen("spawn", inst)
	}
	keepPID := pidOf(t, s.mustGet("a.keep.localhost", "/"))
	s.mustGet("a.change.localhost", "/")
	cl, _ := dialL4(t, "127.0.6.1:7500", true)
	cl.c.Close()
	for _, inst := range []string{"keep:a", "change:a", "tcpecho:a"} {
		s.waitState(inst, "frozen", 6*time.Second)
	}
	state, _ := os.ReadFile(filepath.Join(s.dir, "data", "state.json"))
	if !strings.Contains(string(state), `"keep:a"`) || !strings.Contains(string(state), `"frozen"`) {
		t.Errorf("state.json has no frozen records:\n%s", state)
	}
	s.kill()
	// ten is down: a client connects to the frozen L4 instance and waits.
	type result struct {
		greeting string
		err      error
	}
	got := make(chan result, 1)
	go func() {
		c, err := net.DialTimeout("tcp", "127.0.6.1:7500", 5*time.Second)
		if err != nil {
			got <- result{"", err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		b := make([]byte, 200)
		n, err := c.Read(b)
		got <- result{string(b[:n]), err}
	}()
	time.Sleep(500 * time.Millisecond)
	select {
	case r := <-got:
		t.Fatalf("a frozen instance answered with ten down: %q %v", r.greeting, r.err)
	default:
	}
	// The config now says the change service stops when idle.
	data, _ := os.ReadFile(s.config)
	changed := strings.Replace(string(data), "idle_timeout = 1 # change\nsleep = \"freeze\" # change", "idle_timeout = 300 # change", 1)
	if changed == string(data) {
		t.Fatal("config rewrite did not apply")
	}
	if err := os.WriteFile(s.config, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	select {
	case r := <-got:
		if r.err != nil || !strings.HasPrefix(r.greeting, "hello from tcpecho:a") {
			t.Errorf("client that connected while ten was down: %q %v", r.greeting, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection made while ten was down never got an answer")
	}
	if st := s.psState("keep:a"); st != "frozen" || !kernelFrozen(t, "keep:a") {
		t.Errorf("keep:a after restart: ps %q, kernel frozen %v", st, kernelFrozen(t, "keep:a"))
	}
	if st := s.psState("change:a"); st != "running" || kernelFrozen(t, "change:a") {
		t.Errorf("change:a (config now sleep = stop) after restart: ps %q, kernel frozen %v", st, kernelFrozen(t, "change:a"))
	}
	if !strings.Contains(s.log.String(), "its service no longer says sleep = freeze") {
		t.Errorf("no word on thawing change:a:\n%s", s.log.String())
	}
	if p := pidOf(t, s.mustGet("a.keep.localhost", "/")); p != keepPID {
		t.Errorf("keep:a restarted across ten's kill -9: %s -> %s", keepPID, p)
	}
}

// Issue 7, item 6: past settings.max_frozen_mb the longest-frozen instances
// are stopped, and the others stay frozen.
func TestFrozenMemoryCap(t *testing.T) {
	s := startTen(t, `
max_frozen_mb = 60

[service.web]
command = "ECHO --mode activation"
activation = "socket"
idle_timeout = 1
sleep = "freeze"
`)
	s.mustTen("spawn", "web:old")
	s.mustTen("spawn", "web:new")
	s.mustGet("old.web.localhost", "/alloc?mb=40")
	s.waitState("web:old", "frozen", 6*time.Second)
	if st := s.psState("web:old"); st != "frozen" {
		t.Fatalf("one frozen instance under the cap: %s", st)
	}
	s.mustGet("new.web.localhost", "/alloc?mb=40")
	s.waitState("web:new", "frozen", 6*time.Second)
	s.waitState("web:old", "sleeping", 5*time.Second)
	if st := s.psState("web:new"); st != "frozen" {
		t.Errorf("the newer frozen instance: %s", st)
	}
	if !strings.Contains(s.log.String(), "stopped the longest-frozen instance") {
		t.Errorf("no log line:\n%s", s.log.String())
	}
	if out, _ := exec.Command("systemctl", "show", "-p", "Result", "--value", "tenement-web@old.service").Output(); strings.TrimSpace(string(out)) != "success" {
		t.Errorf("stopped frozen instance result %s", out)
	}
}
