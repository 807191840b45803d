package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

	"github.com/tenhq/ten/internal/systemtest"
	"github.com/tenhq/ten/internal/tentest"
)

// Binaries are copied here inside the box: a checkout under /root would be
// hidden from sandboxed instances by ProtectHome.
const binDir = "/run/ten-bench/bin"

var (
	tenBin  = filepath.Join(binDir, "ten")
	echoBin = filepath.Join(binDir, "echoapp")
	// wwwDir is what the Python app serves: one small index.html.
	wwwDir = "/run/ten-bench/www"
)

var (
	installOnce sync.Once
	installErr  error
)

// setup checks for systemd and copies the binaries where every instance can
// run them.
func setup(b *testing.B) {
	b.Helper()
	systemtest.Require(b)
	installOnce.Do(func() { installErr = installBinaries() })
	if installErr != nil {
		b.Fatal(installErr)
	}
}

func installBinaries() error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	for _, d := range []string{binDir, wwwDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	os.Chmod("/run/ten-bench", 0o755)
	if err := os.WriteFile(filepath.Join(wwwDir, "index.html"), []byte("hello from python\n"), 0o644); err != nil {
		return err
	}
	for _, n := range []string{"ten", "ten-shim", "echoapp"} {
		src := filepath.Join(root, "bin", n)
		if v := os.Getenv("TEN_BENCH_TEN_BIN"); v != "" && n == "ten" {
			src = v // another build of ten (a before/after comparison)
		}
		if v := os.Getenv("TEN_BENCH_SHIM_BIN"); v != "" && n == "ten-shim" {
			src = v // another build of ten-shim (a before/after comparison)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("%w (make build)", err)
		}
		tmp := filepath.Join(binDir, "."+n)
		if err := os.WriteFile(tmp, data, 0o755); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(binDir, n)); err != nil {
			return err
		}
	}
	return nil
}

// need fails the benchmark when a tool it drives is missing (make bench
// installs them).
func need(b *testing.B, tools ...string) {
	b.Helper()
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			b.Fatalf("%s is not installed: `make bench` installs it (apt-get install wrk nginx python3)", t)
		}
	}
}

// once makes a benchmark body run a single time whatever b.N the testing
// package asks for: every benchmark here takes its own fixed samples.
var (
	onceMu  sync.Mutex
	onceRan = map[string]bool{}
)

func once(b *testing.B) bool {
	onceMu.Lock()
	defer onceMu.Unlock()
	if onceRan[b.Name()] {
		return false
	}
	onceRan[b.Name()] = true
	return true
}

// tenServer is one `ten serve` started by a benchmark.
type tenServer struct {
	tb      testing.TB
	dir     string
	config  string
	addr    string
	cmd     *exec.Cmd
	log     *syncBuffer
	exited  chan struct{}
	exitErr error
	started time.Time
	// ready is how long ten took from exec to answering /health (it creates
	// the declared instances before it listens).
	ready time.Duration
}

// writeConfig writes a tenement.toml with [settings] for a fresh data dir
// and port, then body; ECHO in body is echoapp's path, WWW the Python app's
// directory.
func writeConfig(tb testing.TB, body string) (dir, path, addr string) {
	tb.Helper()
	dir = tb.TempDir()
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	body = strings.NewReplacer("ECHO", echoBin, "WWW", wwwDir).Replace(body)
	// No data_dir: ten's files go to ./tenement-data beside the config and
	// instance data stays in systemd's state directories, as the numbers
	// in BENCHMARKS.md were measured (data_dir adds a start-time step).
	cfg := fmt.Sprintf("[settings]\nlisten = %q\n\n%s", addr, body)
	path = filepath.Join(dir, "tenement.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir, path, addr
}

// startTen starts `ten serve` on a config; it and every unit it made are
// gone when the benchmark ends.
func startTen(tb testing.TB, body string, env ...string) *tenServer {
	tb.Helper()
	dir, path, addr := writeConfig(tb, body)
	s := &tenServer{tb: tb, dir: dir, config: path, addr: addr}
	tb.Cleanup(func() {
		s.kill()
		removeAllUnits()
		if tb.Failed() {
			tb.Logf("ten serve log:\n%s", s.log.String())
		}
	})
	s.start(env, 120*time.Second)
	return s
}

func (s *tenServer) start(env []string, within time.Duration) {
	s.tb.Helper()
	s.log = &syncBuffer{}
	s.exited = make(chan struct{})
	s.cmd = exec.Command(tenBin, "serve", "--config", s.config)
	s.cmd.Env = append(os.Environ(), env...)
	// TEN_BENCH_TEN_ENV: more of ten serve's environment (words of
	// KEY=VALUE), e.g. GOMAXPROCS=2 for a before/after comparison.
	s.cmd.Env = append(s.cmd.Env, strings.Fields(os.Getenv("TEN_BENCH_TEN_ENV"))...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	go func() { s.exitErr = s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(within)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.tb.Fatalf("ten serve exited: %v\n%s", s.exitErr, s.log.String())
		default:
		}
		resp, err := c.Get("http://" + s.addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				s.ready = time.Since(s.started)
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.tb.Fatalf("ten serve did not answer /health within %s\n%s", within, s.log.String())
}

// stop ends ten serve with SIGTERM, as systemctl stop would.
func (s *tenServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		s.cmd = nil
	}
}

func (s *tenServer) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.cmd = nil
	}
}

func (s *tenServer) pid() int { return s.cmd.Process.Pid }

func (s *tenServer) token() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "tenement-data", "api_token"))
	if err != nil {
		s.tb.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// apiClient keeps up to 64 connections to ten's API open between requests
// (Go's default keeps 2, so 16 requests at a time opened a connection for
// most of them: TCP set-up and a new server goroutine per request, a cost
// of the client, not of the request).
var apiClient = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// api calls ten's admin API and decodes a JSON answer into out (when not nil).
func (s *tenServer) api(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+s.addr+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.token())
	resp, err := apiClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// state is the instance's STATE as `ten ps` shows it.
func (s *tenServer) state(inst string) string {
	var row struct {
		State string `json:"state"`
	}
	if err := s.api("GET", "/api/instances/"+inst, nil, &row); err != nil {
		s.tb.Fatal(err)
	}
	return row.State
}

// sleep stops the instance's service the way ten's idle reaper does (its
// socket stays listening) and waits until ten sees it asleep.
func (s *tenServer) sleep(inst string) {
	s.tb.Helper()
	if out, err := exec.Command("systemctl", "stop", serviceUnit(inst)).CombinedOutput(); err != nil {
		s.tb.Fatalf("systemctl stop %s: %v %s", serviceUnit(inst), err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.state(inst) != "sleeping" {
		if time.Now().After(deadline) {
			s.tb.Fatalf("%s: not sleeping 10s after systemctl stop (%s)", inst, s.state(inst))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func serviceUnit(inst string) string {
	return "tenement-" + strings.Replace(inst, ":", "@", 1) + ".service"
}

// host is the Host header that routes to inst ("a.web.localhost" for web:a).
func host(inst string) string {
	svc, id, _ := strings.Cut(inst, ":")
	return id + "." + svc + ".localhost"
}

// firstByte dials addr, sends GET / for host with Connection: close, and
// returns the time from before the dial to the first byte of the answer. The
// rest of the answer is read, and anything but a 200 is an error.
func firstByte(addr, host string, timeout time.Duration) (time.Duration, error) {
	return firstByteNet("tcp", addr, host, timeout)
}

func firstByteNet(network, addr, host string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(start.Add(timeout))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return 0, err
	}
	br := bufio.NewReader(c)
	if _, err := br.Peek(1); err != nil {
		return 0, err
	}
	d := time.Since(start)
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if f := strings.Fields(line); len(f) < 2 || f[1] != "200" {
		return 0, fmt.Errorf("answer %q", strings.TrimSpace(line))
	}
	io.Copy(io.Discard, br)
	return d, nil
}

// get sends one GET on a new connection and returns the status.
func get(ctx context.Context, c *http.Client, addr, host string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// tenUnits lists ten's loaded units.
func tenUnits() []string {
	out, err := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", "tenement-*").Output()
	if err != nil {
		return nil
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

func removeAllUnits() {
	names := tenUnits()
	if len(names) == 0 {
		return
	}
	exec.Command("systemctl", append([]string{"stop"}, names...)...).Run()
	exec.Command("systemctl", append([]string{"reset-failed"}, names...)...).Run()
}

// procRSS is a process's resident memory in bytes (VmRSS).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// procCPU is a process's user+system CPU time so far.
func procCPU(pid int) (time.Duration, error) {
	cpu, _, err := procStat(pid)
	return cpu, err
}

// cpu is ten's CPU time so far (0 once it has exited).
func (s *tenServer) cpu() time.Duration {
	c, _ := procCPU(s.cmd.Process.Pid)
	return c
}

// direct runs a command as a plain child process (no systemd, no ten): the
// baselines.
type direct struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startDirect(tb testing.TB, env []string, argv ...string) *direct {
	tb.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	d := &direct{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	return d
}

func (d *direct) stop() {
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.done
}

// waitAnswer polls addr until GET / answers 200.
func waitAnswer(tb testing.TB, addr, host string, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		_, err := firstByte(addr, host, 2*time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s (Host %s) does not answer: %v", addr, host, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func matchUnit(pattern, name string) (bool, error) { return filepath.Match(pattern, name) }

var (
	moduleRoot = tentest.ModuleRoot
	freePort   = tentest.FreePort
)

type syncBuffer = tentest.SyncBuffer
