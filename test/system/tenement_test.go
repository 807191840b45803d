package system

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A tenement user's setup, as tenement's own end-to-end scenarios drive it:
// a tenement.toml with relative commands (./run.sh next to it), a data_dir
// of its own, Python http.server apps, ids like wr_a, and nothing but the
// `ten` CLI (run in the config's directory, finding tenement.toml by
// walking up) and HTTP.

// tenementApp is the Python app every service of the suite runs: it
// answers with its instance and pid, echoes POST bodies, reads and writes
// files in its data directory (argv[1], {data_dir}/{name}/{id}), prints
// log lines and can turn its /health bad.
const tenementApp = `import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

INST = os.environ["TEN_INSTANCE"]
DATA = sys.argv[1]
state = {"healthy": True}

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body):
        b = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/health":
            return self.reply(200 if state["healthy"] else 500, "ok" if state["healthy"] else "sick")
        if u.path == "/sick":
            state["healthy"] = False
            return self.reply(200, "sick now")
        if u.path == "/pid":
            return self.reply(200, str(os.getpid()))
        if u.path == "/homepath":
            return self.reply(200, "%s|%s" % (os.environ.get("HOME"), os.environ.get("PATH")))
        if u.path == "/env":
            return self.reply(200, "%s %s %s" % (DATA, os.environ.get("DATA_DIR"), os.getcwd()))
        if u.path == "/write":
            with open(os.path.join(DATA, q["name"]), "w") as f:
                f.write(q["data"])
            return self.reply(200, "written")
        if u.path == "/read":
            try:
                with open(os.path.join(DATA, q["name"])) as f:
                    return self.reply(200, f.read())
            except OSError as e:
                return self.reply(404, str(e))
        if u.path == "/log":
            print(q["msg"], flush=True)
            return self.reply(200, "logged")
        return self.reply(200, "hello from %s pid %d" % (INST, os.getpid()))

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        b = self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

// tenementConfig is the suite's tenement.toml (LISTEN is replaced).
const tenementConfig = `[settings]
data_dir = "./data"
listen = "LISTEN"
health_check_interval = 1
backoff_base_ms = 0 # as tenement's own end-to-end suite: restart at once
spawn_rate_per_client = 1000

[service.api]
command = "./run.sh {data_dir}/{name}/{id}"
startup_timeout = 30 # Python on a loaded test machine
health = "/health"

[service.web]
command = "./run.sh {data_dir}/{name}/{id}"
startup_timeout = 30 # Python on a loaded test machine
health = "/health"

[service.idle]
command = "./run.sh {data_dir}/{name}/{id}"
startup_timeout = 30 # Python on a loaded test machine
idle_timeout = 2
health = "/health" # probed every second: a probe is not activity

[service.eph]
command = "./run.sh {data_dir}/{name}/{id}"
startup_timeout = 30 # Python on a loaded test machine
idle_timeout = 2
storage_persist = false

[service.proc]
command = "./run.sh {data_dir}/{name}/{id}"
startup_timeout = 30 # Python on a loaded test machine
isolation = "process"

[service.gv]
command = "./run.sh {data_dir}/{name}/{id}"
isolation = "sandbox"
startup_timeout = 30

[service.closed]
command = "./run.sh {data_dir}/{name}/{id}"
startup_timeout = 30 # Python on a loaded test machine
spawn_on_request = false

[service.capped]
command = "./run.sh {data_dir}/{name}/{id}"
startup_timeout = 30 # Python on a loaded test machine
max_instances = 1

[instances]
web = ["a", "b"]
`

// tenementSetup writes the app, run.sh and tenement.toml into a fresh
// directory with the modes a user's checkout has (0755: an instance's
// DynamicUser must enter it), and returns the directory and the address.
func tenementSetup(t *testing.T, config string) (dir, addr string) {
	t.Helper()
	dir = t.TempDir()
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	files := map[string]string{
		"app.py":        tenementApp,
		"run.sh":        "#!/bin/sh\nexec /usr/bin/python3 app.py \"$@\"\n",
		"tenement.toml": strings.ReplaceAll(config, "LISTEN", addr),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, addr
}

// tenIn runs the CLI in dir as a tenement user does: no --config, no
// --data-dir (tenement.toml is found by walking up), the server from
// TENEMENT_SERVER.
func tenIn(dir, addr string, args ...string) (string, error) {
	cmd := exec.Command(tenBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TENEMENT_SERVER=http://"+addr)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// printedToken is the token line of `ten token-gen`: alone, indented by two
// spaces, where tenement's users' scripts look for it.
func printedToken(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if tok, ok := strings.CutPrefix(line, "  "); ok && strings.HasPrefix(tok, "ten_") && !strings.Contains(tok, " ") {
			return tok
		}
	}
	t.Fatalf("no token line (two spaces, then the token) in token-gen output:\n%s", out)
	return ""
}

// startServeIn starts `ten serve` in dir (config found by walking up).
func startServeIn(t *testing.T, dir, addr string) *tenServer {
	t.Helper()
	s := &tenServer{t: t, dir: dir, config: filepath.Join(dir, "tenement.toml"), addr: addr}
	watchdog(t, s)
	s.log = newLogFile(t, dir)
	s.exited = make(chan struct{})
	s.cmd = exec.Command(tenBin, "serve")
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.log.f, s.log.f
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exitErr = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.kill()
		removeAllUnits(t)
		if t.Failed() {
			t.Logf("ten serve log:\n%s", s.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			t.Fatalf("ten serve exited: %v\n%s", s.exitErr, s.log.String())
		default:
		}
		if resp, err := healthClient.Get("http://" + addr + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("ten serve did not answer /health within 30s; its log, then its goroutines:\n%s", s.quit())
	return nil
}

// in returns a copy of s whose CLI runs in its directory and whose
// failures end test t.
func (s *tenServer) in(t *testing.T) *tenServer {
	c := *s
	c.t = t
	return &c
}

// tn runs the CLI in the server's directory, tenement-style.
func (s *tenServer) tn(args ...string) (string, error) {
	return tenIn(s.dir, s.addr, args...)
}

func (s *tenServer) mustTn(args ...string) string {
	s.t.Helper()
	out, err := s.tn(args...)
	if err != nil {
		s.t.Fatalf("ten %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// waitGet polls GET until it answers 200 (an instance the test has just
// made may still be starting).
func (s *tenServer) waitGet(host, path string, within time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(within)
	var code int
	var body string
	var err error
	for time.Now().Before(deadline) {
		if code, body, err = s.get(host, path); err == nil && code == 200 {
			return body
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("GET %s%s: %d %v %q after %s", host, path, code, err, body, within)
	return ""
}

func TestTenementUserSwitches(t *testing.T) {
	install(t)
	dir, addr := tenementSetup(t, tenementConfig)

	// tenement's bootstrap: mint tokens before the server ever ran.
	out, err := tenIn(dir, addr, "token-gen")
	if err != nil {
		t.Fatalf("offline token-gen: %v\n%s", err, out)
	}
	offlineAdmin := printedToken(t, out)
	if b, err := os.ReadFile(filepath.Join(dir, "data", "api_token")); err != nil || strings.TrimSpace(string(b)) != offlineAdmin {
		t.Errorf("admin token-gen did not write data/api_token: %v %q", err, b)
	}
	out, err = tenIn(dir, addr, "token-gen", "--tenant", "wr_a")
	if err != nil {
		t.Fatalf("offline tenant token-gen: %v\n%s", err, out)
	}
	offlineTenant := printedToken(t, out)

	s := startServeIn(t, dir, addr)

	t.Run("auth", func(t *testing.T) {
		s := s.in(t)
		if code, body, _ := s.apiCall("GET", "/api/instances", "", ""); code != 401 {
			t.Errorf("no token: %d %s", code, body)
		}
		if code, body, _ := s.apiCall("GET", "/api/instances", "ten_0123456789abcdef_bad", ""); code != 401 {
			t.Errorf("bad token: %d %s", code, body)
		}
		if code, body, _ := s.apiCall("GET", "/api/instances", offlineAdmin, ""); code != 200 {
			t.Errorf("admin token minted offline: %d %s", code, body)
		} else {
			// tenement's row fields, beside ten's.
			var rows []map[string]any
			if err := json.Unmarshal([]byte(body), &rows); err != nil || len(rows) == 0 {
				t.Fatalf("GET /api/instances: %v %s", err, body)
			}
			for _, k := range []string{"id", "socket", "uptime_secs", "idle_secs", "restarts", "health", "storage_used_bytes", "storage_quota_bytes", "weight"} {
				if _, ok := rows[0][k]; !ok {
					t.Errorf("GET /api/instances: no %q (tenement's field) in %v", k, rows[0])
				}
			}
		}
		// The CLI reads data/api_token by itself.
		if out := s.mustTn("ps"); !strings.Contains(out, "web:a") {
			t.Errorf("ps: %s", out)
		}
	})

	t.Run("spawn proxy stop", func(t *testing.T) {
		s := s.in(t)
		s.mustTn("spawn", "api:wr_a")
		body := s.waitGet("wr_a.api.localhost", "/", 30*time.Second)
		if !strings.HasPrefix(body, "hello from api:wr_a pid ") {
			t.Errorf("body %q", body)
		}
		// tenement's meanings: {data_dir} is data_dir, the instance's data
		// {data_dir}/{name}/{id}, the app runs next to tenement.toml.
		want := fmt.Sprintf("%s/data/api/wr_a %s/data/api/wr_a %s", dir, dir, dir)
		if env := s.mustGet("wr_a.api.localhost", "/env"); env != want {
			t.Errorf("/env = %q, want %q", env, want)
		}
		if out, err := exec.Command("systemctl", "status", "--no-pager", "tenement-api@wr_a").CombinedOutput(); err != nil || !strings.Contains(string(out), "active (running)") {
			t.Errorf("systemctl status tenement-api@wr_a: %v\n%s", err, out)
		}
		// Stopped, an instance is gone (a service that creates instances on
		// request would make it again at the next request: see below).
		// tenement's lines, which its users' scripts grep for.
		out := s.mustTn("spawn", "closed:tmp1")
		if !strings.HasPrefix(out, "Spawned closed:tmp1\nListening on 127.0.0.1:") {
			t.Errorf("spawn printed %q", out)
		}
		s.waitGet("tmp1.closed.localhost", "/", 30*time.Second)
		// The app is there, as tenement's line says (the app binds PORT).
		var port int
		if _, err := fmt.Sscanf(strings.SplitN(out, "\n", 3)[1], "Listening on 127.0.0.1:%d", &port); err != nil {
			t.Errorf("spawn's Listening line: %v in %q", err, out)
		} else if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil {
			t.Errorf("GET the address spawn printed: %v", err)
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasPrefix(string(b), "hello from closed:tmp1 pid ") {
				t.Errorf("the address spawn printed answered %d %q", resp.StatusCode, b)
			}
		}
		if out := s.mustTn("weight", "closed:tmp1", "40"); out != "Set closed:tmp1 weight to 40\n" {
			t.Errorf("weight printed %q", out)
		}
		if out := s.mustTn("restart", "closed:tmp1"); out != "Restarted closed:tmp1\n" {
			t.Errorf("restart printed %q", out)
		}
		if out := s.mustTn("--json", "restart", "closed:tmp1"); !strings.Contains(out, `"socket": "/run/tenement/closed/tmp1.sock"`) {
			t.Errorf("restart --json printed %q", out)
		}
		if out := s.mustTn("stop", "closed:tmp1"); out != "Stopped closed:tmp1\n" {
			t.Errorf("stop printed %q", out)
		}
		// Scripts read ten's output through head and grep -q under
		// pipefail (tenement's own examples: `ten spawn X | head -1`): the
		// reader closes the pipe after its line, and ten must not die of
		// SIGPIPE (status 141) writing the rest.
		for i := 0; i < 40; i++ {
			for _, script := range []string{`"$0" ps | head -1`, `"$0" health api:wr_a | grep -q healthy`, `"$0" token list | head -1`} {
				cmd := exec.Command("bash", "-o", "pipefail", "-c", script+" >/dev/null", tenBin)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "TENEMENT_SERVER=http://"+s.addr)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("round %d: %s: %v %s", i, script, err, out)
				}
			}
		}
		if code, body, _ := s.get("tmp1.closed.localhost", "/"); code != 404 {
			t.Errorf("stopped instance: %d %q", code, body)
		}
		if out := s.mustTn("ps"); strings.Contains(out, "closed:tmp1") {
			t.Errorf("ps lists a stopped instance:\n%s", out)
		}
		// tenement's older form of spawn: SERVICE --id ID.
		s.mustTn("spawn", "api", "--id", "older")
		if body := s.waitGet("older.api.localhost", "/", 30*time.Second); !strings.HasPrefix(body, "hello from api:older pid ") {
			t.Errorf("spawn api --id older: %q", body)
		}
		s.mustTn("stop", "api:older")
		// A second id differing only by case is refused: Host routing could
		// not tell them apart.
		if out, err := s.tn("spawn", "api:WR_A"); err == nil || !strings.Contains(out, "case") {
			t.Errorf("spawn api:WR_A: %v %s", err, out)
		}
	})

	t.Run("isolation levels", func(t *testing.T) {
		s := s.in(t)
		for _, inst := range []string{"proc:x", "gv:x"} {
			s.mustTn("spawn", inst)
		}
		for _, svc := range []string{"proc", "gv"} {
			body := s.waitGet("x."+svc+".localhost", "/env", 60*time.Second)
			want := fmt.Sprintf("%s/data/%s/x %s/data/%s/x %s", dir, svc, dir, svc, dir)
			if body != want {
				t.Errorf("%s /env = %q, want %q", svc, body, want)
			}
			if svc == "proc" {
				// As under tenement, whose apps inherit its environment:
				// `go run`, uv and npm need HOME, and find tools in PATH.
				home := os.Getenv("HOME")
				if home == "" {
					u, _ := user.Current()
					home = u.HomeDir
				}
				if got, want := s.mustGet("x.proc.localhost", "/homepath"), home+"|"+os.Getenv("PATH"); got != want {
					t.Errorf("proc's HOME|PATH = %q, want ten serve's %q", got, want)
				}
			}
			s.mustGet("x."+svc+".localhost", "/write?name=f&data="+svc)
			if b, err := os.ReadFile(filepath.Join(dir, "data", svc, "x", "f")); err != nil || string(b) != svc {
				t.Errorf("%s: file on the host: %v %q", svc, err, b)
			}
		}
	})

	t.Run("wake on request of a new id", func(t *testing.T) {
		s := s.in(t)
		body := s.waitGet("new1.api.localhost", "/", 30*time.Second)
		if !strings.HasPrefix(body, "hello from api:new1 pid ") {
			t.Errorf("new id: %q", body)
		}
		if out := s.mustTn("ps"); !strings.Contains(out, "api:new1") {
			t.Errorf("ps after wake of a new id:\n%s", out)
		}
		if code, body, _ := s.get("x.closed.localhost", "/"); code != 404 || !strings.Contains(body, "spawn_on_request = false") {
			t.Errorf("spawn_on_request = false: %d %q", code, body)
		}
		if code, body, _ := s.get("x.nosuch.localhost", "/"); code != 404 {
			t.Errorf("undeclared service: %d %q", code, body)
		}
		s.waitGet("c1.capped.localhost", "/", 30*time.Second)
		if code, body, _ := s.get("c2.capped.localhost", "/"); code != 429 || !strings.Contains(body, "max_instances") {
			t.Errorf("past max_instances: %d %q", code, body)
		}
		m := s.scrape()
		if m.series[`ten_instances_created_on_request_total{result="created",service="api"}`] < 1 ||
			m.series[`ten_instances_created_on_request_total{result="off",service="closed"}`] < 1 ||
			m.series[`ten_instances_created_on_request_total{result="max_instances",service="capped"}`] != 1 {
			t.Errorf("creation metrics:\n%s", grepLines(m.text, "created_on_request"))
		}
	})

	t.Run("weighted routing", func(t *testing.T) {
		s := s.in(t)
		s.waitGet("a.web.localhost", "/", 30*time.Second)
		s.waitGet("b.web.localhost", "/", 30*time.Second)
		s.mustTn("weight", "web:b", "0")
		if seen := s.hits("web.localhost", 20); seen["web:a"] != 20 {
			t.Errorf("weight 0 got traffic: %v", seen)
		}
		s.mustTn("weight", "web:b", "100")
		if seen := s.hits("web.localhost", 40); seen["web:a"] == 0 || seen["web:b"] == 0 {
			t.Errorf("equal weights: %v", seen)
		}
	})

	// tenement's GET /api/telemetry (with a token in ten: tenement serves
	// it to anyone) and its metric names.
	t.Run("telemetry and tenement metrics", func(t *testing.T) {
		s := s.in(t)
		if code, body, _ := s.apiCall("GET", "/api/telemetry", "", ""); code != 401 {
			t.Errorf("telemetry without a token: %d %s", code, body)
		}
		type telemetry struct {
			Summary struct {
				TotalInstances int    `json:"total_instances"`
				TotalRequests  uint64 `json:"total_requests"`
			} `json:"summary"`
			Instances []struct {
				ID       string  `json:"id"`
				Process  string  `json:"process"`
				Instance string  `json:"instance"`
				Requests uint64  `json:"requests_total"`
				AvgMs    float64 `json:"request_duration_avg_ms"`
				P99Ms    float64 `json:"request_duration_p99_ms"`
			} `json:"instances"`
		}
		get := func(tok string) telemetry {
			code, body, _ := s.apiCall("GET", "/api/telemetry", tok, "")
			var tel telemetry
			if err := json.Unmarshal([]byte(body), &tel); err != nil || code != 200 {
				t.Fatalf("GET /api/telemetry: %d %v %s", code, err, body)
			}
			return tel
		}
		tel := get(offlineAdmin)
		var sum uint64
		webA := -1
		for i, in := range tel.Instances {
			sum += in.Requests
			if in.ID == "web:a" {
				webA = i
			}
		}
		if webA < 0 || tel.Summary.TotalInstances != len(tel.Instances) || tel.Summary.TotalRequests != sum {
			t.Fatalf("telemetry: %+v", tel)
		}
		if a := tel.Instances[webA]; a.Process != "web" || a.Instance != "a" || a.Requests < 20 || a.AvgMs <= 0 || a.P99Ms < a.AvgMs/10 {
			t.Errorf("telemetry of web:a: %+v", a)
		}
		m := s.scrape()
		if v := m.value("tenement_requests_total", "process", "web", "instance", "a"); v < float64(tel.Instances[webA].Requests) {
			t.Errorf("tenement_requests_total{web,a} = %v, telemetry said %d", v, tel.Instances[webA].Requests)
		}
		if v := m.value("tenement_instances_up"); v < 2 {
			t.Errorf("tenement_instances_up = %v with web:a and web:b running", v)
		}
		// A tenant sees its own instances only.
		own := get(offlineTenant)
		if len(own.Instances) == 0 || own.Summary.TotalInstances != len(own.Instances) {
			t.Errorf("tenant wr_a's telemetry: %+v", own)
		}
		for _, in := range own.Instances {
			if in.Instance != "wr_a" {
				t.Errorf("tenant wr_a sees %s in telemetry", in.ID)
			}
		}
	})

	t.Run("kill -9 then first request", func(t *testing.T) {
		s := s.in(t)
		pid, err := strconv.Atoi(s.mustGet("wr_a.api.localhost", "/pid"))
		if err != nil {
			t.Fatal(err)
		}
		if err := exec.Command("kill", "-9", strconv.Itoa(pid)).Run(); err != nil {
			t.Fatal(err)
		}
		code, body, err := s.get("wr_a.api.localhost", "/")
		if err != nil || code/100 != 2 {
			t.Errorf("first request after kill -9: %d %v %q", code, err, body)
		}
		if p2, _ := strconv.Atoi(s.mustGet("wr_a.api.localhost", "/pid")); p2 == pid {
			t.Errorf("app pid unchanged after kill -9")
		}
	})

	t.Run("idle timeout then wake", func(t *testing.T) {
		s := s.in(t)
		// tenement's own end-to-end scenario, through the CLI: spawn
		// starts the app, so the instance is in `ten ps`; with no request
		// for idle_timeout it sleeps and leaves `ten ps` (ten ps --all
		// still lists it, sleeping); a request wakes it and it is listed
		// again; stopped, it is gone.
		s.mustTn("spawn", "idle:x")
		if out := s.mustTn("ps"); !strings.Contains(out, "idle:x") {
			t.Errorf("ten ps right after ten spawn does not list idle:x:\n%s", out)
		}
		s.waitState("idle:x", "sleeping", 20*time.Second)
		if out := s.mustTn("ps"); strings.Contains(out, "idle:x") {
			t.Errorf("ten ps lists the sleeping idle:x:\n%s", out)
		}
		if body := s.mustGet("x.idle.localhost", "/"); !strings.HasPrefix(body, "hello from idle:x") {
			t.Errorf("wake: %q", body)
		}
		if out := s.mustTn("ps"); !strings.Contains(out, "idle:x") {
			t.Errorf("ten ps after the wake does not list idle:x:\n%s", out)
		}
		s.mustTn("stop", "idle:x")
		if out := s.mustTn("ps", "--all"); strings.Contains(out, "idle:x") {
			t.Errorf("ten ps --all lists idle:x after ten stop:\n%s", out)
		}
	})

	t.Run("logs search and stream", func(t *testing.T) {
		s := s.in(t)
		s.mustGet("wr_a.api.localhost", "/log?msg=tenement-marker-1")
		deadline := time.Now().Add(15 * time.Second)
		for {
			out := s.mustTn("logs", "api:wr_a", "--search", "tenement-marker")
			if strings.Contains(out, "tenement-marker-1") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("logs --search: %s", out)
			}
			time.Sleep(300 * time.Millisecond)
		}
		// tenement's query and fields: ?process=&id=, and entries with
		// timestamp (Unix ms), level, process, instance_id, message.
		code, body, _ := s.apiCall("GET", "/api/logs?process=api&id=wr_a&search=tenement-marker&limit=5", offlineAdmin, "")
		var entries []struct {
			Timestamp  int64  `json:"timestamp"`
			Level      string `json:"level"`
			Process    string `json:"process"`
			InstanceID string `json:"instance_id"`
			Message    string `json:"message"`
		}
		if err := json.Unmarshal([]byte(body), &entries); err != nil || code != 200 || len(entries) == 0 {
			t.Fatalf("GET /api/logs: %d %v %s", code, err, body)
		}
		e := entries[len(entries)-1]
		if age := time.Since(time.UnixMilli(e.Timestamp)); age < 0 || age > 10*time.Minute ||
			(e.Level != "stdout" && e.Level != "stderr") || e.Process != "api" || e.InstanceID != "wr_a" || !strings.Contains(e.Message, "tenement-marker-1") {
			t.Errorf("log entry in tenement's fields: %+v\n%s", e, body)
		}
		cmd := exec.Command(tenBin, "logs", "api:wr_a", "-f")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TENEMENT_SERVER=http://"+addr)
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait(); pw.Close() }()
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		time.Sleep(time.Second) // the stream is open
		s.mustGet("wr_a.api.localhost", "/log?msg=tenement-stream-2")
		timeout := time.After(15 * time.Second)
		for found := false; !found; {
			select {
			case l := <-lines:
				found = strings.Contains(l, "tenement-stream-2")
			case <-timeout:
				t.Fatal("logs -f did not stream the new line within 15s")
			}
		}
	})

	t.Run("cli surface", func(t *testing.T) {
		s := s.in(t)
		if out := s.mustTn("config"); !strings.Contains(out, "spawn_on_request") || !strings.Contains(out, "./data") {
			t.Errorf("config:\n%s", out)
		}
		if out := s.mustTn("health", "api:wr_a"); !strings.Contains(out, "healthy") {
			t.Errorf("health:\n%s", out)
		}
		pid := s.mustGet("wr_a.api.localhost", "/pid")
		s.mustTn("restart", "api:wr_a")
		if p2 := s.waitGet("wr_a.api.localhost", "/pid", 30*time.Second); p2 == pid {
			t.Errorf("restart kept pid %s", pid)
		}
		big := strings.Repeat("0123456789abcdef", 16<<10) // 256 KiB
		req, _ := http.NewRequest("POST", "http://"+addr+"/echo", strings.NewReader(big))
		req.Host = "wr_a.api.localhost"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != big {
			t.Errorf("POST body through the proxy: %d, %d bytes back of %d", resp.StatusCode, len(got), len(big))
		}
		initDir := t.TempDir()
		os.WriteFile(filepath.Join(initDir, "app.py"), []byte("print('hi')\n"), 0o644)
		if out, err := tenIn(initDir, addr, "init"); err != nil {
			t.Errorf("init: %v %s", err, out)
		} else if b, _ := os.ReadFile(filepath.Join(initDir, "tenement.toml")); !strings.Contains(string(b), "python3 app.py") {
			t.Errorf("init wrote:\n%s", b)
		}
	})

	t.Run("deploy then route", func(t *testing.T) {
		s := s.in(t)
		s.mustTn("deploy", "web:v2")
		if w := s.weights(); w["web:v2"] != 100 {
			t.Errorf("weights after deploy: %v", w)
		}
		s.mustTn("route", "web", "--from", "a", "--to", "v2")
		if w := s.weights(); w["web:a"] != 0 || w["web:v2"] != 100 {
			t.Errorf("weights after route: %v", w)
		}
		if seen := s.hits("web.localhost", 20); seen["web:a"] != 0 || seen["web:v2"] == 0 {
			t.Errorf("after route: %v", seen)
		}
	})

	t.Run("tenant tokens", func(t *testing.T) {
		s := s.in(t)
		s.waitGet("other.api.localhost", "/", 30*time.Second)
		// Minted while the server runs, offline and over the API: both work at once.
		online := printedToken(t, s.mustTn("token-gen", "--tenant", "other"))
		remote := printedToken(t, s.mustTn("token-gen", "--remote", "--tenant", "other"))
		for name, tc := range map[string]struct{ tok, own, foreign string }{
			"offline before serve":  {offlineTenant, "api:wr_a", "api:other"},
			"offline while serving": {online, "api:other", "api:wr_a"},
			"over the API":          {remote, "api:other", "api:wr_a"},
		} {
			out, err := s.tn("--token", tc.tok, "ps")
			if err != nil || !strings.Contains(out, tc.own) || strings.Contains(out, tc.foreign) || strings.Contains(out, "web:a") {
				t.Errorf("%s: tenant ps: %v\n%s", name, err, out)
			}
			if out, err := s.tn("--token", tc.tok, "deploy", "web:v9"); err == nil || !strings.Contains(out, "admin") {
				t.Errorf("%s: tenant deploy: %v %s", name, err, out)
			}
		}
		// A list with nothing in it says so in tenement's words.
		nobody := printedToken(t, s.mustTn("token-gen", "--tenant", "nobody"))
		if out := s.mustTn("--token", nobody, "ps"); !strings.HasPrefix(out, "No running instances\nServer: http://") {
			t.Errorf("ps of a tenant with no instances:\n%s", out)
		}
	})

	t.Run("unhealthy detection", func(t *testing.T) {
		s := s.in(t)
		s.waitGet("sick.api.localhost", "/", 30*time.Second)
		s.mustGet("sick.api.localhost", "/sick")
		deadline := time.Now().Add(15 * time.Second)
		for {
			out := s.mustTn("health", "api:sick")
			if strings.Contains(out, "unhealthy") || strings.Contains(out, "degraded") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not detected within 15s:\n%s", out)
			}
			time.Sleep(300 * time.Millisecond)
		}
	})

	t.Run("storage", func(t *testing.T) {
		s := s.in(t)
		s.mustGet("wr_a.api.localhost", "/write?name=keep&data=kept")
		if b, err := os.ReadFile(filepath.Join(dir, "data", "api", "wr_a", "keep")); err != nil || string(b) != "kept" {
			t.Errorf("ls data/api/wr_a on the host: %v %q", err, b)
		}
		s.mustTn("stop", "api:wr_a")
		s.mustTn("spawn", "api:wr_a")
		if b := s.waitGet("wr_a.api.localhost", "/read?name=keep", 30*time.Second); b != "kept" {
			t.Errorf("after stop/spawn: %q", b)
		}
		s.mustTn("spawn", "eph:x")
		s.waitGet("x.eph.localhost", "/write?name=gone&data=x", 30*time.Second)
		if _, err := os.Stat(filepath.Join(dir, "data", "eph", "x", "gone")); err != nil {
			t.Errorf("eph file on the host: %v", err)
		}
		s.waitState("eph:x", "sleeping", 20*time.Second)
		// ps says sleeping from the moment the unit deactivates; the wipe
		// is its ExecStopPost, which runs then and may take a moment on a
		// busy machine.
		gone := filepath.Join(dir, "data", "eph", "x", "gone")
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, err := os.Stat(gone)
			if os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("storage_persist = false kept the file 10s after the app stopped: %v", err)
				break
			}
		}
		if code, body, _ := s.get("x.eph.localhost", "/read?name=gone"); code != 404 {
			t.Errorf("eph read after sleep: %d %q", code, body)
		}
		// ten stop ends the instance: with storage_persist = false its data
		// directory goes with it, as tenement's stop removes it.
		s.mustTn("stop", "eph:x")
		if _, err := os.Lstat(filepath.Join(dir, "data", "eph", "x")); !os.IsNotExist(err) {
			t.Errorf("storage_persist = false: data/eph/x is still there after ten stop (%v)", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "data", "api", "wr_a")); err != nil {
			t.Errorf("data/api/wr_a (storage_persist left at its default) after eph:x's stop: %v", err)
		}
	})
}

// TestTenementTwentyTokenGens: 20 `ten token-gen` at once, offline, while
// ten serve runs: every token works afterwards.
func TestTenementTwentyTokenGens(t *testing.T) {
	install(t)
	dir, addr := tenementSetup(t, "[settings]\ndata_dir = \"./data\"\nlisten = \"LISTEN\"\n")
	s := startServeIn(t, dir, addr)
	toks := make([]string, 20)
	var wg sync.WaitGroup
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"token-gen"}
			if i%2 == 1 {
				args = append(args, "--tenant", fmt.Sprintf("t_%d", i))
			}
			out, err := tenIn(dir, addr, args...)
			if err != nil {
				t.Errorf("token-gen %d: %v %s", i, err, out)
				return
			}
			toks[i] = printedToken(t, out)
		}()
	}
	wg.Wait()
	for i, tok := range toks {
		if code, body, _ := s.apiCall("GET", "/api/instances", tok, ""); code != 200 {
			t.Errorf("token %d: %d %s", i, code, body)
		}
	}
}

// TestTenementWorkdirUnreadable: a relative command in a directory the
// instance's DynamicUser cannot enter is refused with what to change.
func TestTenementWorkdirUnreadable(t *testing.T) {
	install(t)
	dir, addr := tenementSetup(t, "[settings]\nlisten = \"LISTEN\"\n\n[service.api]\ncommand = \"./run.sh /tmp\"\n")
	s := startServeIn(t, dir, addr)
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := s.tn("spawn", "api:x")
	if err == nil || !strings.Contains(out, "chmod o+x "+dir) {
		t.Errorf("spawn in a 0700 directory: %v %s", err, out)
	}
	if units := tenUnits(t); len(units) != 0 {
		t.Errorf("refused spawn left units: %v", units)
	}
}

// TestShimAppNeverListens: an app behind the shim that never listens gets
// the client a 504 naming the instance after startup_timeout, ps shows it
// is not running, and the loop of restarts counts toward max_restarts.
func TestShimAppNeverListens(t *testing.T) {
	s := startTen(t, `max_restarts = 2
health_check_interval = 1
backoff_base_ms = 100

[service.hang]
command = "/usr/bin/sleep 1000"
startup_timeout = 2
start = "lazy"

[service.eager]
command = "/usr/bin/sleep 1000"
startup_timeout = 2
`)
	// Started at spawn: the spawn fails, saying why.
	if out, err := s.ten("spawn", "eager:x"); err == nil || !strings.Contains(out, "startup_timeout") {
		t.Errorf("spawn of an eager app that never listens: %v %s", err, out)
	}
	s.mustTen("spawn", "hang:x")
	start := time.Now()
	code, body, err := s.get("x.hang.localhost", "/")
	if err != nil || code != 504 || !strings.Contains(body, "hang:x") {
		t.Errorf("request: %d %v %q", code, err, body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("answered after %s, startup_timeout is 2s", d)
	}
	if st := s.psState("hang:x"); st == "running" {
		t.Errorf("ps says running for an app that never listened:\n%s", s.mustTen("ps"))
	}
	s.waitState("hang:x", "failed", 30*time.Second)

	// Created by a request (an id never spawned) and started at once: 504
	// at startup_timeout, as for a wake, naming the instance and not the
	// command, which is the operator's business.
	code, body, err = s.get("y.eager.localhost", "/")
	if err != nil || code != 504 || !strings.Contains(body, "eager:y") || !strings.Contains(body, "startup_timeout") || strings.Contains(body, "/usr/bin/sleep") {
		t.Errorf("request creating an app that never listens: %d %v %q; want 504 naming eager:y, not its command", code, err, body)
	}
}
