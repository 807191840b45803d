package system

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// exposureRe is the last line of `systemd-analyze security UNIT`.
var exposureRe = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9]+\.[0-9]+)`)

// exposure runs systemd-analyze security on a loaded unit and returns its
// overall exposure (0 = locked down, 10 = fully exposed).
func exposure(t *testing.T, unit string) float64 {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "security", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security %s: %v\n%s", unit, err, out)
	}
	m := exposureRe.FindStringSubmatch(string(out))
	if m == nil || m[1] != unit {
		t.Fatalf("systemd-analyze security %s: no exposure line in\n%s", unit, out)
	}
	v, _ := strconv.ParseFloat(m[2], 64)
	var open []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "✗") {
			open = append(open, strings.Join(strings.Fields(l), " "))
		}
	}
	t.Logf("%s: exposure %.1f; still open:\n%s", unit, v, strings.Join(open, "\n"))
	return v
}

// TestSandboxExposure: the default isolation scores at most 2.0 in
// systemd-analyze security (systemd-timesyncd, among the best-hardened of
// systemd's own daemons, scores 2.1), and keeps no capability.
func TestSandboxExposure(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO"
args = ["--mode", "port"]

[service.ctl]
command = "ECHO"
args = ["--mode", "port"]
isolation = "process"
`)
	s.mustTen("spawn", "web:a")
	s.mustTen("spawn", "ctl:a")
	s.mustGet("a.web.localhost", "/")
	unit := "tenement-web@a.service"
	if e := exposure(t, unit); e > 2.0 {
		t.Errorf("%s: exposure %.1f, want <= 2.0", unit, e)
	}
	// Control: the same check tells a bare unit from a sandboxed one.
	if e := exposure(t, "tenement-ctl@a.service"); e < 9.0 {
		t.Errorf("control: tenement-ctl@a.service (isolation = process) scores %.1f; the parse or the check is off", e)
	}
	for prop, want := range map[string]string{
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"PrivateUsers":            "yes",
		"ProcSubset":              "pid",
		"UMask":                   "0077",
		"RestrictRealtime":        "yes",
		"ProtectHostname":         "yes",
		"ProtectClock":            "yes",
		"SystemCallArchitectures": "native",
		"MemoryDenyWriteExecute":  "no",
	} {
		if got := show(t, unit, prop); got != want {
			t.Errorf("%s %s=%q, want %q", unit, prop, got, want)
		}
	}
	// The running tenant has no capability at all, even in its own user
	// namespace.
	pid := mainPID(t, "web:a")
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		for _, k := range []string{"CapBnd:", "CapEff:", "CapPrm:", "CapAmb:"} {
			if strings.HasPrefix(l, k) && strings.TrimSpace(strings.TrimPrefix(l, k)) != "0000000000000000" {
				t.Errorf("tenant pid %d: %s", pid, l)
			}
		}
	}
}

// nodeApp is a small HTTP server that makes V8 compile a hot function
// (optimizing JIT) before it answers.
const nodeApp = `const http = require('http');
function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
let x = 0; for (let i = 0; i < 200; i++) x += fib(18);
http.createServer((req, res) => res.end('node ' + process.version + ' ' + x + '\n')).listen(process.env.PORT, '127.0.0.1');
`

// TestSandboxApps: Python, Node (with its JIT) and Go apps start and answer
// under the default isolation, asleep and woken again; Node dies under the
// opt-in memory_deny_write_execute (the reason it is opt-in) while the Go app
// runs under it.
func TestSandboxApps(t *testing.T) {
	install(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed (apt-get install nodejs; .ci/run installs it)")
	}
	dir := "/run/ten-test/apps"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.js"), []byte(nodeApp), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello from python\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startTen(t, `
[service.py]
command = "/usr/bin/python3"
args = ["-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", "`+dir+`"]

[service.node]
command = "`+node+`"
args = ["`+dir+`/app.js"]

[service.go]
command = "ECHO"
args = ["--mode", "port"]

[service.nodemdwe]
command = "`+node+`"
args = ["`+dir+`/app.js"]
memory_deny_write_execute = true
startup_timeout = 5

[service.gomdwe]
command = "ECHO"
args = ["--mode", "port"]
memory_deny_write_execute = true
`)
	for _, c := range []struct{ inst, want string }{
		{"py:a", "hello from python"},
		{"node:a", "node v"},
		{"go:a", "hello from go:a"},
		{"gomdwe:a", "hello from gomdwe:a"},
	} {
		s.mustTen("spawn", c.inst)
		svc, id, _ := strings.Cut(c.inst, ":")
		host := id + "." + svc + ".localhost"
		for round := 0; round < 2; round++ {
			if body := s.mustGet(host, "/"); !strings.Contains(body, c.want) {
				t.Errorf("%s (round %d): %q, want %q", c.inst, round, body, c.want)
			}
			// Put it to sleep as the reaper does; the next GET wakes it.
			unit := "tenement-" + svc + "@" + id + ".service"
			if out, err := exec.Command("systemctl", "stop", unit).CombinedOutput(); err != nil {
				t.Fatalf("systemctl stop %s: %v %s", unit, err, out)
			}
		}
	}
	// The app dies before it listens: the start fails (the unit's waiter
	// sees it never listen), or the request does.
	out, err := s.ten("spawn", "nodemdwe:a")
	t.Logf("ten spawn nodemdwe:a: %v %s", err, out)
	code, body, _ := s.get("a.nodemdwe.localhost", "/")
	if code == 200 {
		t.Errorf("node under MemoryDenyWriteExecute answered %q: the opt-in is not applied", body)
	}
	t.Logf("node under MemoryDenyWriteExecute: %d %s; journal:\n%s", code, strings.TrimSpace(body), journal(t, "tenement-nodemdwe@a.service"))
}

// TestShimLogPriorities: the app's stdout reaches the journal at priority
// info and its stderr at err, under the app's name and the instance's unit:
// through `ten-shim cat` (no systemd-cat) for a PORT app that runs directly
// and for a socket-activated one (whose sockets must still reach it
// through the exec), and from the shim itself where the shim stays in
// front (network = "none" with an L4 address). A line starting "<N>" is
// logged at priority N, as systemd does for any service. ten-shim cat does
// it before its Go runtime starts (the C fast path): with GODEBUG=inittrace=1
// the app's runtime reports its start and ten-shim's never does.
func TestShimLogPriorities(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode port"

[service.api.env]
GODEBUG = "inittrace=1"

[service.priv]
command = "ECHO --mode port"
network = "none"
listen = ["tcp://127.0.5.1:7600"]

[service.act]
command = "ECHO --mode activation"
activation = "socket"

[service.act.env]
GODEBUG = "inittrace=1"
`)
	cat := func(argv string) bool {
		return strings.Contains(argv, "/.bin/ten-shim cat --instance=") && strings.Contains(argv, " --identifier=echoapp -- ") && !strings.Contains(argv, "systemd-cat") && !strings.Contains(argv, " shim ")
	}
	for _, c := range []struct {
		svc  string
		want func(argv string) bool
	}{
		{"api", cat},
		{"act", cat},
		{"priv", func(argv string) bool {
			return !strings.Contains(argv, "systemd-cat") && strings.Contains(argv, "--identifier=echoapp") && strings.Contains(argv, "/.bin/ten-shim ")
		}},
	} {
		inst, unit, host := c.svc+":a", "tenement-"+c.svc+"@a.service", "a."+c.svc+".localhost"
		s.mustTen("spawn", inst)
		if argv := show(t, unit, "ExecStart"); !c.want(argv) {
			t.Errorf("%s: unexpected ExecStart %s", inst, argv)
		}
		tag := strconv.FormatInt(time.Now().UnixNano(), 10)
		out1, err1 := "out-"+tag, "err-"+tag
		s.mustGet(host, "/log?msg="+out1)
		s.mustGet(host, "/log?stream=stderr&msg="+err1)
		// "<4>" picks priority warning, on stdout as on stderr.
		warn := "warn-" + tag
		s.mustGet(host, "/log?msg=%3C4%3E"+warn)
		s.waitLogs(err1, inst)
		s.waitLogs(warn, inst)
		var entries []logEntry
		if err := json.Unmarshal([]byte(s.mustTen("--json", "logs", inst)), &entries); err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, e := range entries {
			switch e.Message {
			case out1:
				found++
				if e.Stream != "stdout" || e.Priority != 6 || e.Unit != unit {
					t.Errorf("%s: stdout entry %+v", inst, e)
				}
			case err1:
				found++
				if e.Stream != "stderr" || e.Priority != 3 || e.Unit != unit {
					t.Errorf("%s: stderr entry %+v", inst, e)
				}
			case warn:
				found++
				if e.Priority != 4 || e.Unit != unit {
					t.Errorf("%s: \"<4>\" entry %+v, want priority 4", inst, e)
				}
			}
		}
		if found != 3 {
			t.Errorf("%s: found %d of the 3 lines in %+v", inst, found, entries)
		}
		if c.svc == "priv" {
			continue
		}
		// The app (echoapp, which links neither log/slog nor x/sys/unix)
		// reports its runtime's start; a ten-shim whose Go runtime started
		// would report those two packages' too.
		s.waitLogs("init runtime @", inst)
		if err := json.Unmarshal([]byte(s.mustTen("--json", "logs", inst)), &entries); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Message, "init log/slog @") || strings.HasPrefix(e.Message, "init golang.org/x/sys/unix @") {
				t.Errorf("%s: ten-shim cat started its Go runtime (no C fast path): %+v", inst, e)
			}
		}
	}
}
