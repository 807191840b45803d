// Package system holds ten's system tests: they drive the built `ten` binary
// against a real systemd (PID 1 of this host, or a private one booted by
// internal/systemtest) and check what a user would check: HTTP answers,
// `systemctl show` properties, the journal, the process table.
package system

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tenhq/ten/internal/shimbuild"
	"github.com/tenhq/ten/internal/systemtest"
	"github.com/tenhq/ten/internal/tentest"
)

// Binaries are copied here inside the box: a checkout under /root would be
// hidden from sandboxed instances by ProtectHome.
const binDir = "/run/ten-test/bin"

// builtDir is where TestMain builds the binaries, under the module root:
// bin/ as `make build` does, or bin/race/ for a -race run, so that a race
// build never takes the place of the ten that `make build` made.
var builtDir = map[bool]string{false: "bin", true: filepath.Join("bin", "race")}[raceBuild]

var (
	tenBin  = filepath.Join(binDir, "ten")
	echoBin = filepath.Join(binDir, "echoapp")
	// tenantBin is the hostile tenant of the isolation tests (TENANT in configs).
	tenantBin = filepath.Join(binDir, "tenant")
)

func TestMain(m *testing.M) {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, b := range [][2]string{{"ten", "./cmd/ten"}, {"ten-shim", "./cmd/ten-shim"}, {"echoapp", "./test/apps/echoapp"}, {"tenant", "./test/apps/tenant"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(root, builtDir, b[0]), b[1])
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static: the same binary runs under gVisor
		if b[0] == "ten-shim" && !raceBuild {
			// As make build and the package build it: static, with cgo for
			// the C fast path of `ten-shim cat` (cmd/ten-shim/cat_linux.c).
			if err := shimbuild.Build(root, filepath.Join(root, builtDir, b[0]), os.Stderr); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			continue
		}
		if raceBuild && (b[0] == "ten" || b[0] == "ten-shim") {
			// ten (daemon and CLI) and the shim (which runs outside
			// gVisor) with the race detector, which needs cgo.
			cmd.Args = append(cmd.Args[:2:2], append([]string{"-race"}, cmd.Args[2:]...)...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		}
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", b[0], err)
			os.Exit(1)
		}
	}
	systemtest.Main(m)
}

var installOnce sync.Once

func install(t *testing.T) {
	t.Helper()
	systemtest.Require(t)
	checkRaces(t)
	installOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(binDir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod("/run/ten-test", 0o755)
		for _, n := range []string{"ten", "ten-shim", "echoapp", "tenant"} {
			data, err := os.ReadFile(filepath.Join(root, builtDir, n))
			if err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(binDir, "."+n)
			if err := os.WriteFile(tmp, data, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(binDir, n)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// tenServer is one `ten serve` process started by a test.
type tenServer struct {
	t       *testing.T
	dir     string
	config  string
	addr    string
	cmd     *exec.Cmd
	log     *logFile
	exited  chan struct{}
	exitErr error
	// env is added to ten serve's environment.
	env []string
}

// writeConfig writes a tenement.toml with [settings] pointing at a fresh data
// dir and port, followed by body. ECHO in body is replaced by echoapp's path.
func writeConfig(t *testing.T, body string) (dir, path, addr string) {
	t.Helper()
	dir = t.TempDir()
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dataDir := fmt.Sprintf("data_dir = %q\n", filepath.Join(dir, "data"))
	if strings.Contains(body, defaultDataDir) {
		// Instance data in systemd's state directories (no data_dir);
		// ten's own files in ./tenement-data, linked as data for the CLI.
		dataDir = ""
		if err := os.Symlink("tenement-data", filepath.Join(dir, "data")); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf("[settings]\n%slisten = %q\n\n%s", dataDir, addr, strings.NewReplacer("ECHO", echoBin, "TENANT", tenantBin).Replace(body))
	path = filepath.Join(dir, "tenement.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path, addr
}

// defaultDataDir in a test's config body leaves data_dir out, so that
// instance data lives in systemd's state directories (/var/lib/tenement,
// /var/lib/private/tenement) as without data_dir.
const defaultDataDir = "# no data_dir"

// startTen writes the config and starts `ten serve` on it; the server and
// every unit it made are removed when the test ends.
func startTen(t *testing.T, body string, env ...string) *tenServer {
	t.Helper()
	install(t)
	dir, path, addr := writeConfig(t, body)
	s := &tenServer{t: t, dir: dir, config: path, addr: addr, env: env}
	watchdog(t, s)
	s.start()
	t.Cleanup(func() {
		var jobs string
		if t.Failed() {
			jobs = systemdJobs()
		}
		s.kill()
		removeAllUnits(t)
		if t.Failed() {
			t.Logf("ten serve log:\n%s", s.log.String())
			t.Logf("systemd at the failure:\n%s", jobs)
		}
	})
	return s
}

// systemdJobs is what systemd was doing: its queued and running jobs and the
// units between states, for the log of a failed test (a start that never
// ends is a job waiting behind another).
func systemdJobs() string {
	var b strings.Builder
	for _, args := range [][]string{
		{"list-jobs", "--no-pager"},
		{"list-units", "--all", "--no-pager", "--plain", "--state=activating,deactivating,reloading,failed"},
	} {
		out, err := exec.Command("systemctl", args...).CombinedOutput()
		fmt.Fprintf(&b, "$ systemctl %s\n%s", strings.Join(args, " "), out)
		if err != nil {
			fmt.Fprintf(&b, "(%v)\n", err)
		}
	}
	return b.String()
}

func (s *tenServer) start() {
	s.t.Helper()
	s.log = newLogFile(s.t, s.dir)
	s.exited = make(chan struct{})
	s.cmd = exec.Command(tenBin, "serve", "--config", s.config)
	s.cmd.Stdout, s.cmd.Stderr = s.log.f, s.log.f
	if len(s.env) > 0 {
		s.cmd.Env = append(os.Environ(), s.env...)
	}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() { s.exitErr = s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.t.Fatalf("ten serve exited: %v\n%s", s.exitErr, s.log.String())
		default:
		}
		// ten listens before it adopts and makes its instances: a
		// connection is accepted then and waits for an answer, which a
		// ten stuck there never gives.
		resp, err := healthClient.Get("http://" + s.addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("ten serve did not answer /health within 20s; its log, then its goroutines:\n%s", s.quit())
}

// healthClient asks a starting ten serve for /health, a try at a time.
var healthClient = &http.Client{Timeout: 2 * time.Second}

// quit ends ten serve with SIGQUIT, which has the Go runtime write every
// goroutine's stack to its log, and returns the log: what a stuck ten was
// doing.
func (s *tenServer) quit() string {
	if s.cmd == nil || s.cmd.Process == nil {
		return s.log.String()
	}
	select {
	case <-s.exited:
		return s.log.String()
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	return s.log.String()
}

// kill ends ten serve with SIGKILL, as a crash would.
func (s *tenServer) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// ten runs the CLI against this server.
func (s *tenServer) ten(args ...string) (string, error) {
	s.t.Helper()
	full := append([]string{"--server", "http://" + s.addr, "--data-dir", filepath.Join(s.dir, "data")}, args...)
	// The CLI gives up on a server after 2 minutes; this bounds the rest.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, tenBin, full...).CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("ten %s ran over 4 minutes: %w", strings.Join(args, " "), err)
	}
	return string(out), err
}

// mustTen runs the CLI and fails the test on error.
func (s *tenServer) mustTen(args ...string) string {
	s.t.Helper()
	out, err := s.ten(args...)
	if err != nil {
		s.t.Fatalf("ten %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

var client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get sends GET path with the given Host header to the router.
func (s *tenServer) get(host, path string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+s.addr+path, nil)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (s *tenServer) mustGet(host, path string) string {
	s.t.Helper()
	code, body, err := s.get(host, path)
	if err != nil || code != 200 {
		s.t.Fatalf("GET %s%s: %d %v\n%s", host, path, code, err, body)
	}
	return body
}

// psState returns the STATE column of `ten ps --all` for inst (ten ps
// alone leaves out instances that are asleep).
func (s *tenServer) psState(inst string) string {
	s.t.Helper()
	return s.psColumn(inst, "STATE")
}

// psColumn returns the first word of inst's row in `ten ps --all` under
// the header's column name (columns are aligned, so the header's offset
// holds for every row).
func (s *tenServer) psColumn(inst, name string) string {
	s.t.Helper()
	lines := strings.Split(s.mustTen("ps", "--all"), "\n")
	col := strings.Index(lines[0], " "+name+" ")
	if col < 0 {
		s.t.Fatalf("ps has no %s column: %q", name, lines[0])
	}
	col++
	for _, line := range lines[1:] {
		if f := strings.Fields(line); len(f) > 0 && f[0] == inst && len(line) > col {
			return strings.Fields(line[col:])[0]
		}
	}
	return ""
}

// waitState polls `ten ps` until inst shows state.
func (s *tenServer) waitState(inst, state string, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	got := ""
	for time.Now().Before(deadline) {
		if got = s.psState(inst); got == state {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("%s: state %q after %s, want %q\n%s", inst, got, within, state, s.mustTen("ps", "--all"))
}

// show returns one property of a unit as `systemctl show` prints it.
func show(t *testing.T, unit, prop string) string {
	t.Helper()
	out, err := exec.Command("systemctl", "show", "-p", prop, "--value", unit).Output()
	if err != nil {
		t.Fatalf("systemctl show %s %s: %v", unit, prop, err)
	}
	return strings.TrimSpace(string(out))
}

// journal returns what the unit wrote to the journal.
func journal(t *testing.T, unit string) string {
	t.Helper()
	exec.Command("journalctl", "--sync").Run()
	out, _ := exec.Command("journalctl", "-u", unit, "--no-pager", "-o", "cat").CombinedOutput()
	return string(out)
}

// tenUnits lists the loaded units of ten.
func tenUnits(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", "tenement-*").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func removeAllUnits(t *testing.T) {
	defer removeMounts()
	names := tenUnits(t)
	if len(names) == 0 {
		return
	}
	thawAll()
	args := append([]string{"stop"}, names...)
	exec.Command("systemctl", args...).Run()
	exec.Command("systemctl", append([]string{"reset-failed"}, names...)...).Run()
}

// removeMounts stops the mount units ten made for instances (data_dir
// binds over state directories, storage quota images), which `ten stop`
// would have removed: a later test's instance of the same name must not
// find an old one still mounted, and the test's directory must be
// removable.
func removeMounts() {
	out, _ := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", "--type=mount").Output()
	var mounts []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		where, _ := exec.Command("systemctl", "show", "-p", "Where", "--value", f[0]).Output()
		w := strings.TrimSpace(string(where))
		if strings.HasPrefix(w, "/var/lib/private/tenement/") || strings.HasPrefix(w, "/var/lib/tenement/") || strings.HasPrefix(w, os.TempDir()+"/") {
			mounts = append(mounts, f[0])
		}
	}
	if len(mounts) > 0 {
		// The binds over state directories first: they show the images.
		exec.Command("systemctl", append([]string{"stop"}, mounts...)...).Run()
		exec.Command("systemctl", append([]string{"stop"}, mounts...)...).Run()
	}
}

// thawAll thaws every cgroup of ten's (a test may leave an instance frozen):
// systemd cannot stop a frozen service until its stop timeout.
func thawAll() {
	filepath.WalkDir(cgroupV2+"/tenement.slice", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "cgroup.freeze" {
			os.WriteFile(p, []byte("0"), 0)
		}
		return nil
	})
}

// cgroupV2 is the cgroup v2 mount: /sys/fs/cgroup/unified on hybrid hosts.
var cgroupV2 = func() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "/sys/fs/cgroup"
	}
	return "/sys/fs/cgroup/unified"
}()

func mainPID(t *testing.T, inst string) int {
	t.Helper()
	pid, _ := strconv.Atoi(show(t, "tenement-"+strings.Replace(inst, ":", "@", 1)+".service", "MainPID"))
	return pid
}

func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

var (
	moduleRoot = tentest.ModuleRoot
	freePort   = tentest.FreePort
)

// logFile is where a ten serve writes its log: a file it writes to itself,
// so everything logged before it answered a request is there once the
// answer arrives (a pipe copied by a goroutine could lag behind).
type logFile struct {
	f *os.File
}

var logFiles atomic.Int32

func newLogFile(t *testing.T, dir string) *logFile {
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("serve-%d.log", logFiles.Add(1))))
	if err != nil {
		t.Fatal(err)
	}
	l := &logFile{f: f}
	t.Cleanup(func() {
		// After the test's own cleanups (which stop this ten serve): the
		// race detector has written every report it will write.
		if r := raceReports(l.String()); r != "" {
			t.Errorf("ten serve reported a data race:\n%s", r)
		}
		f.Close()
	})
	return l
}

// String returns everything logged so far.
func (l *logFile) String() string {
	b, _ := os.ReadFile(l.f.Name())
	return string(b)
}

// raceMarker starts every report of the race detector.
const raceMarker = "WARNING: DATA RACE"

// raceReports returns log from the race detector's first report on (at
// most 64 KiB of it), or "" when it holds no report.
func raceReports(log string) string {
	i := strings.Index(log, raceMarker)
	if i < 0 {
		return ""
	}
	// The report is framed by lines of '='; keep the one before it.
	if j := strings.LastIndex(log[:i], "=================="); j >= 0 && i-j < 100 {
		i = j
	}
	const max = 64 << 10
	if len(log)-i > max {
		return log[i:i+max] + "\n[...]"
	}
	return log[i:]
}

var (
	racesMu      sync.Mutex
	racesChecked = map[*testing.T]bool{}
)

// checkRaces fails t, when ten is a -race build, if a ten process that
// writes to the journal (a shim of an instance, a ten serve installed as a
// unit) reports a data race while t runs. A ten serve started by startTen
// is checked on its own log (newLogFile). System tests do not run in
// parallel, so what the journal got meanwhile is t's.
func checkRaces(t *testing.T) {
	if !raceBuild {
		return
	}
	racesMu.Lock()
	seen := racesChecked[t]
	racesChecked[t] = true
	racesMu.Unlock()
	if seen {
		return
	}
	out, err := exec.Command("journalctl", "-n", "1", "--show-cursor", "--no-pager", "-o", "cat").Output()
	if err != nil {
		t.Fatalf("journal cursor: %v", err)
	}
	cursor := ""
	if i := strings.LastIndex(string(out), "-- cursor: "); i >= 0 {
		cursor = strings.TrimSpace(string(out[i+len("-- cursor: "):]))
	}
	t.Cleanup(func() {
		exec.Command("journalctl", "--sync").Run()
		args := []string{"--no-pager", "-o", "cat"}
		if cursor != "" {
			args = append(args, "--after-cursor", cursor)
		}
		out, err := exec.Command("journalctl", args...).Output()
		if err != nil {
			t.Errorf("read the journal for race reports: %v", err)
			return
		}
		if r := raceReports(string(out)); r != "" {
			t.Errorf("a ten process reported a data race in the journal:\n%s", r)
		}
	})
}
