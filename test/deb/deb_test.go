// Package deb tests ten's Debian package the way an administrator uses it,
// inside a private systemd whose root is a copy-on-write view of the host
// (internal/systemtest), so nothing of the host is installed or removed:
// apt-get install of the package `make deb` builds, an instance spawned and
// curled, an upgrade to a rebuilt package with a higher version under load,
// apt-get remove, apt-get purge.
package deb

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/internal/box"
	"github.com/tenhq/ten/internal/systemtest"
	"github.com/tenhq/ten/internal/tentest"
	"github.com/tenhq/ten/selfunit"
)

// Where the packages and the test app are built (in the checkout, which the
// box sees read-write).
var (
	outDir   string
	v1, v2   string
	echoHost string
)

// The test app lives where sandboxed instances can read it.
const echoBin = "/run/ten-deb-test/echoapp"

func TestMain(m *testing.M) {
	root, err := tentest.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	outDir = filepath.Join(root, "dist", "debtest")
	echoHost = filepath.Join(root, "bin", "echoapp")
	vf := filepath.Join(outDir, "versions")
	flag.Parse()
	if os.Getenv(box.EnvInside) == "" && !testing.Short() && os.Getenv("TEN_UNIT_ONLY") == "" {
		// Outside the box (or on a host whose PID 1 is systemd): build the
		// two packages with make deb, the second a rebuild with a higher
		// version, as a release after this one would be.
		if err := build(root, vf); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if b, err := os.ReadFile(vf); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			v1, v2 = f[0], f[1]
		}
	}
	systemtest.Main(m)
}

func build(root, vf string) error {
	run := func(env []string, name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err != nil {
			return "", fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
		}
		return out.String(), nil
	}
	if _, err := run([]string{"CGO_ENABLED=0"}, "go", "build", "-o", echoHost, "./test/apps/echoapp"); err != nil {
		return err
	}
	out, err := run(nil, "make", "-s", "deb-version")
	if err != nil {
		return err
	}
	first := strings.TrimSpace(out)
	second := first + "+rebuild1"
	os.RemoveAll(filepath.Join(root, "dist", "debtest"))
	for _, v := range []string{first, second} {
		if _, err := run(nil, "make", "deb", "DEB_ARCHES=amd64", "DEB_OUT=dist/debtest", "VERSION="+v); err != nil {
			return err
		}
	}
	return os.WriteFile(vf, []byte(first+" "+second+"\n"), 0o644)
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := shTry(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func shTry(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func show(t *testing.T, unit, prop string) string {
	t.Helper()
	return strings.TrimSpace(sh(t, "systemctl", "show", "-p", prop, "--value", unit))
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func apt(t *testing.T, args ...string) {
	t.Helper()
	full := append([]string{"-y", "-q", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"}, args...)
	out := sh(t, "apt-get", full...)
	t.Logf("apt-get %s:\n%s", strings.Join(args, " "), out)
}

func deb(v string) string { return filepath.Join(outDir, "ten_"+v+"_amd64.deb") }

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(host, url string) (int, string, error) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitRouted polls until ten answers for host with 200.
func waitRouted(t *testing.T, host string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, err := get(host, "http://127.0.0.1:8080/")
		if err == nil && code == 200 {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %v %s", host, code, err, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// viaSocket sends GET / straight to an instance's systemd-held socket, as
// the router would: it answers with ten gone too.
func viaSocket(path, host string) (int, string, error) {
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, _ := http.NewRequest("GET", "http://"+host+"/", nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// viaPort sends a GET to the PORT of unit's environment on 127.0.0.1.
func viaPort(t *testing.T, unit, host string) (int, string, error) {
	port := ""
	for _, kv := range strings.Fields(show(t, unit, "Environment")) {
		if v, ok := strings.CutPrefix(kv, "PORT="); ok {
			port = v
		}
	}
	if port == "" {
		return 0, "", fmt.Errorf("%s has no PORT", unit)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+"/", nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

const config = `[settings]
data_dir = "/var/lib/tenement"
domain = "localhost"

[service.web]
command = "ECHO --mode port"

[service.fast]
command = "ECHO --mode activation"
activation = "socket"

[instances]
web = ["a"]
fast = ["b"]
`

// The path of the package through an administrator's hands.
func TestPackageLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two packages and installs them: not with -short")
	}
	systemtest.Require(t)
	if v1 == "" {
		t.Fatal("no packages built (TestMain builds them with make deb outside the box)")
	}
	if _, err := shTry("dpkg-query", "-W", "ten"); err == nil {
		t.Fatal("the ten package is installed already here; this test needs a host without it")
	}
	passwd0, group0 := readFile(t, "/etc/passwd"), readFile(t, "/etc/group")
	// Container images ship a policy-rc.d that forbids maintainer scripts
	// to start or stop anything (deb-systemd-invoke asks it); this box
	// stands for a server, which has none. The box's root is a copy, so
	// the host's file stays.
	const policy = "/usr/sbin/policy-rc.d"
	if exists(policy) {
		if err := os.Rename(policy, policy+".ten-test"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Rename(policy+".ten-test", policy) })
	}
	if err := os.MkdirAll(filepath.Dir(echoBin), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(echoHost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(echoBin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := shTry("journalctl", "-u", "tenement.service", "--no-pager", "-n", "80")
			t.Logf("journal of tenement.service:\n%s", out)
		}
	})

	// Install: ten starts behind tenement.socket.
	apt(t, "install", deb(v1))
	for _, u := range []string{"tenement.socket", "tenement.service"} {
		if st := show(t, u, "ActiveState"); st != "active" {
			t.Fatalf("%s is %s after install, want active", u, st)
		}
		if st := show(t, u, "UnitFileState"); st != "enabled" {
			t.Errorf("%s is %s after install, want enabled", u, st)
		}
		if got, want := readFile(t, selfunit.PackageUnitDir+"/"+u), selfunit.Files(selfunit.Package)[u]; got != want {
			t.Errorf("%s/%s is not what selfunit renders:\n%s", selfunit.PackageUnitDir, u, got)
		}
	}
	shipped := []string{"/usr/bin/ten", selfunit.PackageShim, "/etc/tenement/tenement.toml", "/var/lib/tenement",
		"/usr/share/man/man1/ten.1.gz", "/usr/share/man/man1/ten-serve.1.gz", "/usr/share/man/man5/tenement.toml.5.gz",
		"/usr/share/bash-completion/completions/ten", "/usr/share/zsh/vendor-completions/_ten",
		"/usr/share/doc/ten/copyright", "/usr/share/doc/ten/changelog.gz"}
	for _, p := range shipped {
		if !exists(p) {
			t.Errorf("%s is not installed", p)
		}
	}
	if out := sh(t, "/usr/bin/ten", "version"); !strings.Contains(out, "ten "+v1+"\n") || !strings.Contains(out, "commit ") {
		t.Errorf("ten version after installing %s:\n%s", v1, out)
	}
	if out := sh(t, "/usr/bin/ten", "doctor"); !regexp.MustCompile(`install\s+on\s+package:`).MatchString(out) {
		t.Errorf("ten doctor does not say ten came from the package:\n%s", out)
	}
	if out, err := shTry("/usr/bin/ten", "install", "-d", "example.com"); err == nil || !strings.Contains(out, "apt-get remove ten") {
		t.Errorf("ten install beside the package: want a refusal with a hint, got %v\n%s", err, out)
	}
	if exists("/etc/systemd/system/tenement.service") {
		t.Errorf("ten install wrote its unit although it refused")
	}

	// Configure, restart, spawn an instance and curl it.
	if err := os.WriteFile("/etc/tenement/tenement.toml", []byte(strings.ReplaceAll(config, "ECHO", echoBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "systemctl", "restart", "tenement.service")
	waitRouted(t, "a.web.localhost")
	sh(t, "/usr/bin/ten", "spawn", "web:c")
	if out := sh(t, "curl", "-sSf", "-H", "Host: c.web.localhost", "http://127.0.0.1:8080/"); !strings.Contains(out, "web:c") && !strings.Contains(out, "c") {
		t.Errorf("curl of the spawned instance web:c: %q", out)
	}
	if out := sh(t, "/usr/bin/ten", "ps"); !strings.Contains(out, "web:c") {
		t.Errorf("ten ps lacks web:c:\n%s", out)
	}
	// A directly run app starts with no process of ten's (ten sends its
	// READY=1), and the packaged ten-shim is what units that need a shim
	// run: ten serve copies it beside its own copy in /run, not all of ten.
	if post := show(t, "tenement-web@c.service", "ExecStartPost"); post != "" {
		t.Errorf("web:c starts a process besides the app: ExecStartPost=%s", post)
	}
	if typ := show(t, "tenement-web@c.service", "Type"); typ != "notify" {
		t.Errorf("web:c: Type=%s, want notify", typ)
	}
	packaged, err1 := os.ReadFile("/usr/libexec/ten/ten-shim")
	copied, err2 := os.ReadFile("/run/tenement/.bin/ten-shim")
	if err1 != nil || err2 != nil || !bytes.Equal(packaged, copied) {
		t.Errorf("ten serve's copy of ten-shim is not the packaged one: %v %v (%d and %d bytes)", err1, err2, len(packaged), len(copied))
	}
	instances := []string{"tenement-web@a.service", "tenement-web@c.service", "tenement-fast@b.service"}
	waitRouted(t, "b.fast.localhost")
	pids := map[string]string{}
	for _, u := range instances {
		pids[u] = show(t, u, "MainPID")
		if pids[u] == "0" {
			t.Fatalf("%s is not running before the upgrade", u)
		}
	}

	// Upgrade under load: 0 failed requests, every instance left running,
	// the socket not restarted, ten restarted.
	tenPID := show(t, "tenement.service", "MainPID")
	sockSince := show(t, "tenement.socket", "ActiveEnterTimestampMonotonic")
	load := startLoad(t, "a.web.localhost")
	time.Sleep(time.Second)
	before := load.ok.Load()
	apt(t, "install", deb(v2))
	during := load.ok.Load() - before
	time.Sleep(time.Second)
	ok, failed, errs := load.stop()
	t.Logf("upgrade %s → %s under load: %d requests answered (%d during the upgrade), %d failed", v1, v2, ok, during, failed)
	if failed > 0 {
		t.Errorf("%d requests failed during the upgrade; first errors: %v", failed, errs)
	}
	if during == 0 {
		t.Errorf("no request was answered during the upgrade: the load did not cover it")
	}
	if out := sh(t, "/usr/bin/ten", "version"); !strings.Contains(out, "ten "+v2+"\n") {
		t.Errorf("ten version after the upgrade:\n%s", out)
	}
	if got := show(t, "tenement.service", "MainPID"); got == tenPID || got == "0" {
		t.Errorf("tenement.service MainPID %s after the upgrade (was %s): ten was not restarted", got, tenPID)
	}
	if got := show(t, "tenement.socket", "ActiveEnterTimestampMonotonic"); got != sockSince {
		t.Errorf("tenement.socket was restarted by the upgrade (active since %s, was %s): it must hold the port throughout", got, sockSince)
	}
	for _, u := range instances {
		if got := show(t, u, "MainPID"); got != pids[u] {
			t.Errorf("%s: MainPID %s after the upgrade, was %s: the upgrade touched an instance", u, got, pids[u])
		}
	}

	// Remove: ten stops; instances and data stay and keep answering, even
	// from sleep (systemd wakes them; the shim is ten's copy in /run).
	hadPins := exists("/sys/fs/bpf/tenement")
	apt(t, "remove", "ten")
	if st := show(t, "tenement.service", "ActiveState"); st == "active" {
		t.Errorf("tenement.service still active after remove")
	}
	for _, p := range []string{"/usr/bin/ten", selfunit.PackageShim, selfunit.PackageUnitDir + "/tenement.service", selfunit.PackageUnitDir + "/tenement.socket"} {
		if exists(p) {
			t.Errorf("%s is left after remove", p)
		}
	}
	for _, p := range []string{"/etc/tenement/tenement.toml", "/var/lib/tenement/api_token"} {
		if !exists(p) {
			t.Errorf("%s is gone after remove; remove keeps configuration and data", p)
		}
	}
	for _, u := range instances {
		if got := show(t, u, "MainPID"); got != pids[u] {
			t.Errorf("%s: MainPID %s after remove, was %s", u, got, pids[u])
		}
	}
	// A PORT app runs as its service's main process and answers on its own
	// address; an activated app answers on the systemd socket it took.
	if code, body, err := viaPort(t, "tenement-web@a.service", "a.web.localhost"); err != nil || code != 200 {
		t.Errorf("web:a on its own PORT after remove: %d %v %s", code, err, body)
	}
	if code, body, err := viaSocket("/run/tenement/fast/b.sock", "b.fast.localhost"); err != nil || code != 200 {
		t.Errorf("instance socket /run/tenement/fast/b.sock after remove: %d %v %s", code, err, body)
	}
	// A sleeping instance still wakes on a connection to its socket.
	sh(t, "systemctl", "stop", "tenement-web@c.service")
	if c, err := net.Dial("unix", "/run/tenement/web/c.sock"); err != nil {
		t.Errorf("web:c's socket after remove: %v", err)
	} else {
		c.Close()
	}
	var code int
	var body string
	err = nil
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if code, body, err = viaPort(t, "tenement-web@c.service", "c.web.localhost"); err == nil && code == 200 {
			break
		}
	}
	if err != nil || code != 200 {
		t.Errorf("waking web:c through its socket after remove: %d %v %s", code, err, body)
	}

	// Purge: nothing of ten is left.
	apt(t, "purge", "ten")
	if _, err := shTry("dpkg-query", "-W", "ten"); err == nil {
		if out, _ := shTry("dpkg-query", "-W", "-f", "${Status}", "ten"); !strings.Contains(out, "not-installed") {
			t.Errorf("dpkg still knows ten after purge: %s", out)
		}
	}
	if out, _ := shTry("systemctl", "list-units", "--all", "--plain", "--no-legend", "tenement*", "*-tenement-*"); strings.TrimSpace(out) != "" {
		t.Errorf("units of ten left after purge:\n%s", out)
	}
	// list-unit-files exits 1 when no file matches.
	if out, _ := shTry("systemctl", "list-unit-files", "--plain", "--no-legend", "tenement*"); strings.TrimSpace(out) != "" && !strings.Contains(out, "0 unit files") {
		t.Errorf("unit files of ten left after purge:\n%s", out)
	}
	left := []string{"/usr/bin/ten", "/etc/tenement", "/var/lib/tenement", "/var/lib/private/tenement",
		"/run/tenement", "/run/tenement-app", "/run/tenement-sandbox", "/sys/fs/bpf/tenement",
		"/usr/share/doc/ten", "/usr/lib/systemd/system/tenement.service", "/usr/lib/systemd/system/tenement.socket",
		"/etc/systemd/system/sockets.target.wants/tenement.socket", "/etc/systemd/system/multi-user.target.wants/tenement.service",
		"/var/lib/systemd/deb-systemd-helper-enabled/tenement.socket.dsh-also", "/var/lib/systemd/deb-systemd-helper-enabled/tenement.service.dsh-also",
		"/var/lib/systemd/deb-systemd-helper-masked/tenement.socket", "/var/lib/systemd/deb-systemd-helper-masked/tenement.service",
		"/var/lib/dpkg/info/ten.list"}
	left = append(left, shipped...)
	for _, p := range left {
		if exists(p) {
			t.Errorf("%s is left after purge", p)
		}
	}
	if ebpf.Supported() == nil && !hadPins {
		t.Errorf("no BPF pins in /sys/fs/bpf/tenement before purge although BPF works here: the purge check of the pins proves nothing")
	}
	if got := readFile(t, "/etc/passwd"); got != passwd0 {
		t.Errorf("/etc/passwd changed between install and purge")
	}
	if got := readFile(t, "/etc/group"); got != group0 {
		t.Errorf("/etc/group changed between install and purge")
	}
	if procs := tenProcesses(); len(procs) > 0 {
		t.Errorf("processes of ten left after purge: %v", procs)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tenProcesses lists processes running a ten binary or the test app.
func tenProcesses() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil {
			continue
		}
		if strings.HasSuffix(exe, "/ten") || strings.Contains(exe, "/tenement") || exe == echoBin || strings.HasPrefix(exe, "/usr/bin/ten ") {
			out = append(out, e.Name()+" "+exe)
		}
	}
	return out
}

// load sends requests on keep-alive connections (POSTs, which Go's client
// does not retry, so a request lost to a closed connection counts as
// failed) and runs wrk beside them where it is installed.
type load struct {
	t        *testing.T
	stopc    chan struct{}
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	mu       sync.Mutex
	errs     []string
	wrk      *exec.Cmd
	wrkOut   bytes.Buffer
}

func startLoad(t *testing.T, host string) *load {
	l := &load{t: t, stopc: make(chan struct{})}
	for w := 0; w < 8; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
			for {
				select {
				case <-l.stopc:
					return
				default:
				}
				req, _ := http.NewRequest("POST", "http://127.0.0.1:8080/", strings.NewReader("x"))
				req.Host = host
				resp, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					l.fail.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	if p, err := exec.LookPath("wrk"); err == nil {
		l.wrk = exec.Command(p, "-t2", "-c16", "-d600s", "-H", "Host: "+host, "http://127.0.0.1:8080/")
		l.wrk.Stdout, l.wrk.Stderr = &l.wrkOut, &l.wrkOut
		if err := l.wrk.Start(); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Log("wrk is not installed: the Go keep-alive load alone counts failures")
	}
	return l
}

// stop ends the load and returns the answered and failed requests (wrk's
// socket errors and non-2xx answers count as failed) and the first errors.
func (l *load) stop() (ok, failed int64, errs []string) {
	close(l.stopc)
	l.wg.Wait()
	if l.wrk != nil {
		// SIGINT makes wrk print its summary.
		l.wrk.Process.Signal(os.Interrupt)
		l.wrk.Wait()
		out := l.wrkOut.String()
		l.t.Logf("wrk during the upgrade:\n%s", out)
		if m := regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`).FindStringSubmatch(out); m != nil {
			for _, n := range m[1:] {
				v, _ := strconv.Atoi(n)
				l.fail.Add(int64(v))
			}
			l.errs = append(l.errs, "wrk: "+m[0])
		}
		if m := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindStringSubmatch(out); m != nil {
			v, _ := strconv.Atoi(m[1])
			l.fail.Add(int64(v))
			l.errs = append(l.errs, "wrk: "+m[0])
		}
		if !strings.Contains(out, "requests in") {
			l.t.Errorf("wrk printed no summary")
		}
	}
	return l.ok.Load(), l.fail.Load(), l.errs
}
