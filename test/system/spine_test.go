package system

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Item 2: spawn creates a listening socket unit and a service unit;
// systemctl status and journalctl work on them.
func TestSpawnCreatesUnits(t *testing.T) {
	s := startTen(t, `
[service.hello]
command = "ECHO --mode activation"
activation = "socket"
`)
	out := s.mustTen("spawn", "hello:one")
	// Started at spawn (no idle_timeout), and judged before spawn answers.
	if !strings.Contains(out, "hello:one") || !strings.Contains(out, "running") || !strings.Contains(out, "healthy") {
		t.Errorf("spawn printed %q", out)
	}
	if got := show(t, "tenement-hello@one.socket", "ActiveState"); got != "active" {
		t.Errorf("socket ActiveState = %q", got)
	}
	if got := show(t, "tenement-hello@one.socket", "Listen"); !strings.Contains(got, "/run/tenement/hello/one.sock (Stream)") {
		t.Errorf("socket Listen = %q", got)
	}
	if got := show(t, "tenement-hello@one.service", "ActiveState"); got != "active" {
		t.Errorf("service ActiveState = %q (eager start expected without idle_timeout)", got)
	}
	st, err := os.Stat("/run/tenement/hello/one.sock")
	if err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Errorf("no socket file: %v", err)
	}
	status, _ := exec.Command("systemctl", "status", "--no-pager", "tenement-hello@one").CombinedOutput()
	if !strings.Contains(string(status), "ten instance hello:one") || !strings.Contains(string(status), "active (running)") {
		t.Errorf("systemctl status tenement-hello@one:\n%s", status)
	}
	body := s.mustGet("one.hello.localhost", "/")
	if !strings.Contains(body, "hello from hello:one") {
		t.Errorf("body %q", body)
	}
	j := journal(t, "tenement-hello@one")
	if !strings.Contains(j, "echoapp hello:one") || !strings.Contains(j, "request GET /") {
		t.Errorf("journalctl -u tenement-hello@one lacks the app's output:\n%s", j)
	}
}

// Item 3: apps that take LISTEN_FDS and apps that bind PORT or SOCKET_PATH.
func TestBothKindsOfApp(t *testing.T) {
	s := startTen(t, `
[service.act]
command = "ECHO --mode activation"
activation = "socket"

[service.port]
command = "ECHO --mode port"

[service.sock]
command = "ECHO"
args = ["--mode", "socket"]

[service.sock.env]
GREETING = "hi {name}/{id} on {port}"
`)
	for _, inst := range []string{"act:a", "port:a", "sock:a"} {
		s.mustTen("spawn", inst)
	}
	var info map[string]any
	for _, tc := range []struct{ host, wantRemote string }{
		{"a.act.localhost", "@"}, {"a.port.localhost", "127.0.0.1:"}, {"a.sock.localhost", "@"},
	} {
		body := s.mustGet(tc.host, "/info")
		if err := json.Unmarshal([]byte(body), &info); err != nil {
			t.Fatalf("%s: %v: %s", tc.host, err, body)
		}
		if info["port"] == "" || info["socket_path"] == "" {
			t.Errorf("%s: PORT or SOCKET_PATH missing: %v", tc.host, info)
		}
		if r, _ := info["remote"].(string); !strings.HasPrefix(r, tc.wantRemote) && !(tc.wantRemote == "@" && r == "") {
			t.Errorf("%s: app saw peer %q", tc.host, r)
		}
	}
	// The socket-activated app holds systemd's socket itself: no shim process.
	if cmd := show(t, "tenement-act@a.service", "ExecStart"); strings.Contains(cmd, " shim ") {
		t.Errorf("socket-activated app runs behind the shim: %s", cmd)
	}
	// PORT and SOCKET_PATH apps run as their service's main process too:
	// the router dials the app itself, no process of ten's runs in the
	// service (ten told systemd the app is ready: Type=notify, active),
	// and nothing but the app is in the service's cgroup.
	for _, inst := range []string{"port:a", "sock:a"} {
		unit := "tenement-" + strings.Replace(inst, ":", "@", 1) + ".service"
		if cmd := show(t, unit, "ExecStart"); strings.Contains(cmd, " shim ") {
			t.Errorf("%s: the app runs behind the shim: %s", inst, cmd)
		}
		if cmd := show(t, unit, "ExecStartPost"); cmd != "" {
			t.Errorf("%s: a process besides the app at start: %s", inst, cmd)
		}
		if typ, st := show(t, unit, "Type"), show(t, unit, "ActiveState"); typ != "notify" || st != "active" {
			t.Errorf("%s: Type=%s ActiveState=%s, want notify and active (ten's READY=1)", inst, typ, st)
		}
		procs, err := os.ReadFile(cgroupV2 + show(t, unit, "ControlGroup") + "/cgroup.procs")
		if err != nil {
			t.Fatal(err)
		}
		pids := strings.Fields(string(procs))
		if len(pids) != 1 || pids[0] != strconv.Itoa(mainPID(t, inst)) {
			t.Errorf("%s: processes %v in the service, want only the app (MainPID %d)", inst, pids, mainPID(t, inst))
		}
		if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(mainPID(t, inst)) + "/comm"); strings.TrimSpace(string(comm)) != "echoapp" {
			t.Errorf("%s: main process is %q, want the app", inst, comm)
		}
	}
	body := s.mustGet("a.sock.localhost", "/info")
	json.Unmarshal([]byte(body), &info)
	if g := info["greeting"]; !strings.HasPrefix(g.(string), "hi sock/a on 2") {
		t.Errorf("env interpolation: GREETING=%q", g)
	}
}

// Item 4: routing by host, weights, 404s, forwarded headers, streaming both
// ways, Upgrade.
func TestRouting(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO --mode activation"
activation = "socket"
# Routing alone: a request for a new id does not create it here
# (tenement_test.go covers wake on request of a new id).
spawn_on_request = false

[instances]
web = ["a", "b"]
`)
	if b := s.mustGet("a.web.localhost", "/"); !strings.Contains(b, "web:a") {
		t.Errorf("a.web: %q", b)
	}
	if b := s.mustGet("B.Web.LOCALHOST:80", "/"); !strings.Contains(b, "web:b") {
		t.Errorf("host matching is not case-insensitive: %q", b)
	}
	code, body, _ := s.get("zz.web.localhost", "/")
	if code != 404 || !strings.Contains(body, "web:zz") {
		t.Errorf("unknown instance: %d %q", code, body)
	}
	code, body, _ = s.get("nope.localhost", "/")
	if code != 404 || !strings.Contains(body, "nope") {
		t.Errorf("unknown service: %d %q", code, body)
	}
	code, body, _ = s.get("x.y.z.localhost", "/")
	if code != 404 || !strings.Contains(body, "x.y.z.localhost") {
		t.Errorf("too deep host: %d %q", code, body)
	}

	// Weighted choice: weight 0 takes b out of the service route.
	s.mustTen("weight", "web:b", "0")
	for i := 0; i < 40; i++ {
		if b := s.mustGet("web.localhost", "/"); !strings.Contains(b, "web:a") {
			t.Fatalf("weight 0 instance got traffic: %q", b)
		}
	}
	if b := s.mustGet("b.web.localhost", "/"); !strings.Contains(b, "web:b") {
		t.Errorf("weight 0 must keep the direct route: %q", b)
	}
	s.mustTen("weight", "web:b", "100")
	seen := map[string]int{}
	for i := 0; i < 200; i++ {
		b := s.mustGet("web.localhost", "/")
		seen[strings.Fields(b)[2]]++
	}
	if seen["web:a"] < 50 || seen["web:b"] < 50 {
		t.Errorf("equal weights split 200 requests as %v", seen)
	}
	s.mustTen("weight", "web:a", "0")
	s.mustTen("weight", "web:b", "0")
	code, body, _ = s.get("web.localhost", "/")
	if code != 503 || !strings.Contains(body, "web") {
		t.Errorf("no instance with weight: %d %q", code, body)
	}
	if out, err := s.ten("weight", "web:a", "101"); err == nil {
		t.Errorf("weight 101 accepted: %s", out)
	}

	// X-Forwarded-*.
	var info map[string]any
	json.Unmarshal([]byte(s.mustGet("a.web.localhost", "/info")), &info)
	if info["x_forwarded_for"] != "127.0.0.1" || info["x_forwarded_host"] != "a.web.localhost" || info["x_forwarded_proto"] != "http" {
		t.Errorf("forwarded headers: %v", info)
	}

	// Streaming: the echo comes back while the request body is still open,
	// so neither direction is buffered whole.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/echo", pr)
	req.Host = "a.web.localhost"
	respCh := make(chan *http.Response, 1)
	errCh := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			errCh <- err
			return
		}
		respCh <- resp
	}()
	pw.Write([]byte("first line\n"))
	select {
	case resp := <-respCh:
		buf := make([]byte, 11)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first line\n" {
			t.Errorf("streamed echo: %q %v", buf, err)
		}
		pw.Write([]byte("second\n"))
		buf = make([]byte, 7)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "second\n" {
			t.Errorf("streamed echo 2: %q %v", buf, err)
		}
		pw.Close()
		resp.Body.Close()
	case err := <-errCh:
		t.Fatalf("echo: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no streamed response while the request body was open: bodies are buffered")
	}

	// Upgrade.
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /upgrade HTTP/1.1\r\nHost: a.web.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	if !strings.Contains(line, "101") {
		t.Fatalf("upgrade answer %q", line)
	}
	for {
		l, _ := br.ReadString('\n')
		if l == "\r\n" || l == "" {
			break
		}
	}
	fmt.Fprintf(c, "ping\n")
	if l, _ := br.ReadString('\n'); l != "echo: ping\n" {
		t.Errorf("upgraded connection echoed %q", l)
	}
}

// Item 5: a request to a sleeping instance gets the app's answer; 50
// concurrent requests during one wake all succeed and start the app once.
func TestWakeConcurrent(t *testing.T) {
	for _, mode := range []string{"socket", "shim"} {
		t.Run(mode, func(t *testing.T) {
			cmd := "ECHO --mode activation"
			if mode == "shim" {
				cmd = "ECHO --mode port"
			}
			s := startTen(t, fmt.Sprintf(`
[service.lazy]
command = %q
activation = %q
idle_timeout = 300
start = "lazy" # asleep after ten spawn too: the wake is what is tested
`, strings.ReplaceAll(cmd, "ECHO", echoBin), mode))
			inst, host := "lazy:"+mode, mode+".lazy.localhost"
			s.mustTen("spawn", inst)
			if st := s.psState(inst); st != "sleeping" {
				t.Fatalf("a new instance of a lazy service should sleep; ps says %q", st)
			}
			if got := show(t, "tenement-lazy@"+mode+".service", "ActiveState"); got != "inactive" {
				t.Fatalf("service ActiveState %q before any request", got)
			}
			var wg sync.WaitGroup
			pids := make(chan string, 50)
			fails := make(chan string, 50)
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, body, err := s.get(host, "/info")
					if err != nil || code != 200 {
						fails <- fmt.Sprintf("%d %v %s", code, err, body)
						return
					}
					var info map[string]any
					json.Unmarshal([]byte(body), &info)
					pids <- fmt.Sprint(info["pid"])
				}()
			}
			wg.Wait()
			close(pids)
			close(fails)
			for f := range fails {
				t.Errorf("request during wake failed: %s", f)
			}
			distinct := map[string]bool{}
			for p := range pids {
				distinct[p] = true
			}
			if len(distinct) != 1 {
				t.Errorf("50 requests saw app pids %v, want one app", distinct)
			}
			if n := strings.Count(journal(t, "tenement-lazy@"+mode), "listening on"); n != 1 {
				t.Errorf("app started %d times during one wake", n)
			}
			// A directly run app answers as soon as it listens; its unit
			// turns active a moment later, when its waiter has seen that.
			s.waitState(inst, "running", 10*time.Second)
		})
	}
}

// Item 5: an app that never answers gets a 504 after startup_timeout that
// names the instance, and ps shows the failure.
func TestWakeTimeout(t *testing.T) {
	s := startTen(t, `
[service.stuck]
command = "ECHO --mode activation --never-accept"
activation = "socket"
idle_timeout = 300
start = "lazy" # asleep after ten spawn: the request wakes it
startup_timeout = 2

[service.slow]
command = "ECHO --mode port --start-delay 1h"
idle_timeout = 300
start = "lazy"
startup_timeout = 2
`)
	for _, inst := range []string{"stuck:x", "slow:x"} {
		s.mustTen("spawn", inst)
		host := strings.Split(inst, ":")[1] + "." + strings.Split(inst, ":")[0] + ".localhost"
		code, body, err := s.get(host, "/")
		if err != nil || code != 504 {
			t.Errorf("%s: got %d %v %q, want 504", inst, code, err, body)
		}
		if !strings.Contains(body, inst) || !strings.Contains(body, "startup_timeout") {
			t.Errorf("%s: 504 body does not name the instance and the timeout: %q", inst, body)
		}
		s.waitState(inst, "failed", 15*time.Second)
	}
	// The shim gives up at the same deadline and says why in the journal.
	deadline := time.Now().Add(15 * time.Second)
	for j := ""; !strings.Contains(j, "did not listen on SOCKET_PATH"); j = journal(t, "tenement-slow@x") {
		if time.Now().After(deadline) {
			t.Fatalf("the shim's reason is not in the journal:\n%s", j)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Item 6: idle instances sleep (service stopped, socket listening) and wake
// on the next request; an open connection keeps an instance awake.
func TestSleepAndWake(t *testing.T) {
	s := startTen(t, `
[service.nap]
command = "ECHO --mode activation"
activation = "socket"
idle_timeout = 2
start = "eager"
`)
	s.mustTen("spawn", "nap:a")
	s.mustGet("a.nap.localhost", "/")
	s.waitState("nap:a", "sleeping", 15*time.Second)
	if got := show(t, "tenement-nap@a.service", "ActiveState"); got != "inactive" {
		t.Errorf("sleeping service ActiveState %q", got)
	}
	if got := show(t, "tenement-nap@a.socket", "ActiveState"); got != "active" {
		t.Errorf("socket of a sleeping instance: %q", got)
	}
	if b := s.mustGet("a.nap.localhost", "/"); !strings.Contains(b, "nap:a") {
		t.Errorf("wake: %q", b)
	}
	if st := s.psState("nap:a"); st != "running" {
		t.Errorf("after wake: %q", st)
	}

	// A long download (8 chunks, 0.6 s apart: twice the idle timeout) is
	// never cut by the reaper. The app's pid is taken once the download
	// runs: before it, a slow run (-race) may already see the app asleep.
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/stream?n=8&ms=600", nil)
	req.Host = "a.nap.localhost"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("long download: %d %v", resp.StatusCode, err)
	}
	pid := mainPID(t, "nap:a")
	rest, err := io.ReadAll(br)
	resp.Body.Close()
	if body := first + string(rest); err != nil || resp.StatusCode != 200 || strings.Count(body, "chunk") != 8 {
		t.Errorf("long download: %d %v, %d chunks", resp.StatusCode, err, strings.Count(body, "chunk"))
	}
	if p := mainPID(t, "nap:a"); p != pid || p == 0 {
		t.Errorf("app restarted during the download: pid %d -> %d", pid, p)
	}
	// An upgraded connection held open for 5 s keeps it awake too.
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /upgrade HTTP/1.1\r\nHost: a.nap.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br = bufio.NewReader(c)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	for i := 0; i < 5; i++ {
		time.Sleep(time.Second)
		if st := s.psState("nap:a"); st != "running" {
			t.Fatalf("instance with an open upgraded connection went %q", st)
		}
	}
	fmt.Fprintf(c, "still here\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, _ := br.ReadString('\n'); l != "echo: still here\n" {
		t.Errorf("upgraded connection after 5 s: %q", l)
	}
	c.Close()
	s.waitState("nap:a", "sleeping", 15*time.Second)
}

// Item 7: ps, ls, stop, restart.
func TestPsStopRestart(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"
spawn_on_request = false # a stopped instance stays gone

[instances]
api = ["prod"]
`)
	out := s.mustTen("ps")
	// tenement's six columns, in its order, then ten's own.
	lines := strings.Split(out, "\n")
	if h := strings.Fields(lines[0]); strings.Join(h, " ") != "INSTANCE LISTEN UPTIME IDLE HEALTH WEIGHT STATE MEMORY RESTARTS LAST-EXIT DISK" {
		t.Errorf("ps header: %q", lines[0])
	}
	// and tenement's last line.
	if !strings.HasSuffix(out, "\n\n1 instance(s) running on http://"+s.addr+"\n") {
		t.Errorf("ps footer:\n%s", out)
	}
	if s.mustTen("ls") == "" || !strings.Contains(s.mustTen("ls"), "api:prod") {
		t.Error("ls alias")
	}
	f := strings.Fields(lines[1])
	if len(f) < 8 || f[0] != "api:prod" || !strings.HasSuffix(f[1], ".sock") || f[5] != "100" || f[6] != "running" || !strings.HasSuffix(f[7], "M") && !strings.HasSuffix(f[7], "K") {
		t.Errorf("ps row %q", f)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(s.mustTen("--json", "ps")), &rows); err != nil || len(rows) != 1 || rows[0]["memory_bytes"].(float64) <= 0 {
		t.Errorf("ps --json: %v %v", rows, err)
	}
	pid := mainPID(t, "api:prod")
	s.mustTen("restart", "api:prod")
	if p := mainPID(t, "api:prod"); p == pid || p == 0 {
		t.Errorf("restart kept pid %d (now %d)", pid, p)
	}
	// Judged when restart returns: not "unknown" until the next check.
	if h := s.health("api:prod"); h.Health != "healthy" || h.State != "running" {
		t.Errorf("health right after restart: %+v", h)
	}
	// A restart by hand counts, as tenement's does: ps and the metrics.
	rows = nil
	if err := json.Unmarshal([]byte(s.mustTen("--json", "ps")), &rows); err != nil || len(rows) != 1 || rows[0]["restarts"] != float64(1) {
		t.Errorf("ps --json restarts after ten restart: %v %v, want 1", rows, err)
	}
	if v := s.scrape().value("ten_instance_restarts_total", "instance", "api:prod", "reason", "manual"); v != 1 {
		t.Errorf("ten_instance_restarts_total{reason=manual} = %v after ten restart, want 1", v)
	}
	s.mustGet("prod.api.localhost", "/")
	s.mustTen("stop", "api:prod")
	for _, u := range []string{"tenement-api@prod.socket", "tenement-api@prod.service"} {
		if got := show(t, u, "LoadState"); got != "not-found" {
			t.Errorf("%s after stop: LoadState %q", u, got)
		}
	}
	if _, err := os.Stat("/run/tenement/api/prod.sock"); err == nil {
		t.Error("socket file left behind after stop")
	}
	if code, _, _ := s.get("prod.api.localhost", "/"); code != 404 {
		t.Errorf("stopped instance answers %d", code)
	}
}

// Item 8: ten is not the parent of any app: kill -9 of ten serve leaves the
// instances running, and a new ten serve adopts them without duplicates.
func TestKill9Serve(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode port"
idle_timeout = 300
start = "eager"

[instances]
api = ["one", "two"]
`)
	s.mustTen("spawn", "api:three")
	s.mustTen("weight", "api:two", "0")
	before := tenUnits(t)
	pid := mainPID(t, "api:one")
	if pid == 0 {
		t.Fatal("api:one has no main pid")
	}
	s.kill()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("app pid %d died with ten serve: %v", pid, err)
	}
	// The instance still answers with ten down: a PORT app runs as its
	// service's main process and listens on its own PORT (the systemd
	// socket only wakes it).
	port := ""
	for _, kv := range strings.Fields(show(t, "tenement-api@one.service", "Environment")) {
		if v, ok := strings.CutPrefix(kv, "PORT="); ok {
			port = v
		}
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
	if err != nil {
		t.Fatalf("api:one on its PORT %q with ten down: %v", port, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(c)
	c.Close()
	if !strings.Contains(string(b), "hello from api:one") {
		t.Errorf("direct request with ten down: %q", b)
	}
	s.start()
	after := tenUnits(t)
	if strings.Join(before, ",") != strings.Join(after, ",") {
		t.Errorf("units before kill -9: %v\nafter restart: %v", before, after)
	}
	if p := mainPID(t, "api:one"); p != pid {
		t.Errorf("app restarted: %d -> %d", pid, p)
	}
	out := s.mustTen("ps", "--all")
	for _, inst := range []string{"api:one", "api:two", "api:three"} {
		if strings.Count(out, inst+" ") != 1 {
			t.Errorf("ps after restart lists %s %d times:\n%s", inst, strings.Count(out, inst+" "), out)
		}
	}
	s.mustGet("three.api.localhost", "/")
	// The PORTs came from systemd's transient unit files (checked against
	// D-Bus on the first), not from a D-Bus read per instance.
	if !strings.Contains(s.log.String(), `msg="adopted instances from systemd" instances=3 environment_from_unit_files=3`) {
		t.Errorf("adoption did not read the transient unit files:\n%s", s.log.String())
	}
	if strings.Contains(s.log.String(), "level=ERROR") {
		t.Errorf("errors on restart:\n%s", s.log.String())
	}
}

// Item 9: wake/sleep cycles faster than systemd's default start and trigger
// limits never leave the socket failed.
func TestWakeCyclesNoRateLimit(t *testing.T) {
	s := startTen(t, `
[service.cyc]
command = "ECHO --mode activation"
activation = "socket"
idle_timeout = 300
`)
	s.mustTen("spawn", "cyc:a")
	for i := 0; i < 30; i++ {
		code, body, err := s.get("a.cyc.localhost", "/")
		if err != nil || code != 200 {
			t.Fatalf("cycle %d: %d %v %q (socket %s)", i, code, err, body, show(t, "tenement-cyc@a.socket", "ActiveState"))
		}
		if err := exec.Command("systemctl", "stop", "tenement-cyc@a.service").Run(); err != nil {
			t.Fatal(err)
		}
	}
	if got := show(t, "tenement-cyc@a.socket", "ActiveState"); got != "active" {
		t.Errorf("socket after 30 fast cycles: %q", got)
	}
	if got := show(t, "tenement-cyc@a.socket", "Result"); got != "success" {
		t.Errorf("socket Result after 30 fast cycles: %q", got)
	}
	s.mustGet("a.cyc.localhost", "/")
}

// Item 10: ten serve without root, or without systemd on the bus, says what
// is missing and how to run ten anyway.
func TestServeRefusesWithoutRootOrSystemd(t *testing.T) {
	install(t)
	_, path, _ := writeConfig(t, "[service.a]\ncommand = \"ECHO\"\n")
	os.Chmod(filepath.Dir(path), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(path)), 0o755)
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", tenBin, "serve", "--config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must run as root") || !strings.Contains(string(out), "tenbox run") {
		t.Errorf("serve as nobody: %v\n%s", err, out)
	}
	// A mount namespace of this test where /run/systemd is empty: no systemd.
	out, err = exec.Command("unshare", "-m", "sh", "-c", "mount -t tmpfs none /run/systemd && exec \"$0\" serve --config \"$1\"", tenBin, path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no systemd") || !strings.Contains(string(out), "tenbox run") {
		t.Errorf("serve without systemd: %v\n%s", err, out)
	}
}

// Item 11: bad input says what is wrong and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"

[service.ghost]
command = "/nonexistent/bin/app --x"

[instances]
api = ["prod"]
`)
	before := tenUnits(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"spawn", "api:../x"}, "'.'"},
		{[]string{"spawn", "api:"}, "instance id is empty"},
		{[]string{"spawn", "api:" + strings.Repeat("x", 64)}, "at most 63"},
		{[]string{"spawn", "api:a@b"}, "'@'"},
		{[]string{"spawn", "api:Prod"}, "differs only by case"},
		{[]string{"spawn", "apiprod"}, "SERVICE:ID"},
		{[]string{"spawn", "nosuch:x"}, "unknown service"},
		{[]string{"spawn", "ghost:x"}, "/nonexistent/bin/app"},
		{[]string{"stop", "api:nothere"}, "no such instance"},
		{[]string{"restart", "api:nothere"}, "no such instance"},
	}
	for _, tc := range cases {
		out, err := s.ten(tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("ten %s: err=%v, output %q, want it to say %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
	// Spawning an instance that exists succeeds and leaves it as it was, as
	// tenement's spawn does (scripts spawn at every deploy).
	pid := mainPID(t, "api:prod")
	if out, err := s.ten("spawn", "api:prod"); err != nil || !strings.Contains(out, "Spawned api:prod (it existed already") {
		t.Errorf("ten spawn api:prod, which exists: err=%v, output %q", err, out)
	}
	if p := mainPID(t, "api:prod"); p != pid || pid == 0 {
		t.Errorf("ten spawn of a running instance: its app's pid %d -> %d", pid, p)
	}
	// Through the API too, with a JSON error.
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/api/instances/spawn", strings.NewReader(`{"instance":"api:../x"}`))
	tok, _ := os.ReadFile(filepath.Join(s.dir, "data", "api_token"))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 400 || e["error"] == "" {
		t.Errorf("API bad name: %d %v", resp.StatusCode, e)
	}
	if after := tenUnits(t); strings.Join(before, ",") != strings.Join(after, ",") {
		t.Errorf("bad input changed units:\nbefore %v\nafter  %v", before, after)
	}

	// A bad config is refused whole, naming file, line and key; the running
	// instance is untouched.
	pid = mainPID(t, "api:prod")
	dir := t.TempDir()
	bad := filepath.Join(dir, "tenement.toml")
	os.WriteFile(bad, []byte("[service.api]\ncommand = \"/bin/true\"\nidel_timeout = 5\n"), 0o644)
	out, err := exec.Command(tenBin, "serve", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), bad+":3: service.api.idel_timeout: unknown key") {
		t.Errorf("bad config: %v\n%s", err, out)
	}
	if p := mainPID(t, "api:prod"); p != pid {
		t.Errorf("bad config touched the running instance: pid %d -> %d", pid, p)
	}
	// The listen port in use: a clear error. Where BPF is on, the second
	// serve meets the first one's lock on the pinned BPF state before it
	// gets to listen, and says so.
	_, path, _ := writeConfig(t, "[service.a]\ncommand = \"ECHO\"\n")
	out, err = exec.Command(tenBin, "serve", "--config", path, "--listen", s.addr).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") && !strings.Contains(string(out), fmt.Sprintf("is in use by process %d", s.cmd.Process.Pid)) {
		t.Errorf("port in use: %v\n%s", err, out)
	}
	if p := mainPID(t, "api:prod"); p != pid {
		t.Errorf("second serve touched the running instance: pid %d -> %d", pid, p)
	}
}

// A wake that timed out marks the instance failed in ps until it answers a
// request; the requests that follow are no longer "waking" (systemd says
// the service is active), and their answer must clear the mark too.
func TestWakeTimeoutMarkClearedByLaterAnswer(t *testing.T) {
	s := startTen(t, `
[service.slow]
command = "ECHO --mode activation --start-delay 3s"
activation = "socket"
idle_timeout = 300
start = "lazy" # asleep after ten spawn: the request wakes it
startup_timeout = 1
`)
	s.mustTen("spawn", "slow:x")
	code, body, err := s.get("x.slow.localhost", "/")
	if err != nil || code != 504 {
		t.Fatalf("first request: %d %v %q, want 504", code, err, body)
	}
	s.waitState("slow:x", "failed", 5*time.Second)
	time.Sleep(3 * time.Second) // the app listens now
	s.mustGet("x.slow.localhost", "/")
	if st := s.psState("slow:x"); st != "running" {
		t.Errorf("after the instance answered, ps says %q, want running\n%s", st, s.mustTen("ps"))
	}
}
