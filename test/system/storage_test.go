package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// GET /api/instances/{id}/storage: bytes in the instance's data directory
// ({data_dir}/{name}/{id}: the harness sets data_dir) against storage_quota_mb.
func TestStorageEndpoint(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"

[service.free]
command = "ECHO --mode activation"
activation = "socket"
isolation = "process"

[instances]
api = ["prod"]
free = ["prod"]
`)
	s.mustGet("prod.api.localhost", "/write?name=blob&bytes=1048576")
	s.mustGet("prod.free.localhost", "/write?name=blob&bytes=4096")
	var st struct {
		Instance   string  `json:"instance"`
		Path       string  `json:"path"`
		Bytes      int64   `json:"bytes"`
		DiskBytes  int64   `json:"disk_bytes"`
		Files      int64   `json:"files"`
		QuotaBytes int64   `json:"quota_bytes"`
		UsageRatio float64 `json:"usage_ratio"`
	}
	code, body, _ := s.apiCall("GET", "/api/instances/api:prod/storage", s.adminToken(), "")
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("storage: %d %s", code, body)
	}
	if st.Instance != "api:prod" || st.Path != filepath.Join(s.dir, "data", "api", "prod") || st.Bytes < 1<<20 || st.Bytes > 1<<20+64<<10 || st.Files != 1 || st.QuotaBytes != 0 {
		t.Errorf("storage api:prod: %+v", st)
	}
	// tenement's names: used_bytes, and usage_percent null without a quota.
	if !strings.Contains(body, fmt.Sprintf(`"used_bytes":%d`, st.Bytes)) || !strings.Contains(body, `"usage_percent":null`) {
		t.Errorf("storage api:prod in tenement's names: %s", body)
	}
	code, body, _ = s.apiCall("GET", "/api/instances/free:prod/storage", s.adminToken(), "")
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Path != filepath.Join(s.dir, "data", "free", "prod") || st.Bytes != 4096 {
		t.Errorf("storage free:prod: %d %s", code, body)
	}
	code, body, _ = s.apiCall("GET", "/api/instances/api:nothere/storage", s.adminToken(), "")
	if code != 404 || !strings.Contains(errorOf(t, "unknown instance", body), "no such instance") {
		t.Errorf("storage of an unknown instance: %d %s", code, body)
	}
}

// storage_quota_mb is reported with the usage ratio (the quota itself is
// enforced by the mount ten makes; this checks the numbers the API gives).
func TestStorageQuotaReported(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"
storage_quota_mb = 8

[instances]
api = ["prod"]
`)
	s.mustGet("prod.api.localhost", "/write?name=blob&bytes=2097152")
	var st struct {
		Bytes      int64   `json:"bytes"`
		QuotaBytes int64   `json:"quota_bytes"`
		UsageRatio float64 `json:"usage_ratio"`
		// tenement's names
		UsedBytes    int64    `json:"used_bytes"`
		UsagePercent *float64 `json:"usage_percent"`
	}
	code, body, _ := s.apiCall("GET", "/api/instances/api:prod/storage", s.adminToken(), "")
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("storage: %d %s", code, body)
	}
	if st.QuotaBytes != 8<<20 || st.Bytes < 2<<20 || st.UsageRatio < 0.25 || st.UsageRatio > 0.3 ||
		st.UsedBytes != st.Bytes || st.UsagePercent == nil || *st.UsagePercent < 25 || *st.UsagePercent > 30 {
		t.Errorf("storage with quota: %+v %s", st, body)
	}
}

// A tenant's tree of many files costs ten one walk, however many requests
// ask for its storage at once: before the bound, 300,000 files and 20
// requests at once cost 16 s of CPU and 1.2 GiB.
func TestStorageMeasureBounded(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"

[instances]
api = ["acme", "other"]
`)
	_, acme := s.newToken("--tenant", "acme")
	if code, _, _ := s.apiCall("GET", "/api/instances", acme, ""); code != 200 {
		t.Fatalf("acme's token: %d", code)
	}
	const n = 100000
	for _, host := range []string{"acme.api.localhost", "other.api.localhost"} {
		if body := s.mustGet(host, fmt.Sprintf("/files?n=%d", n)); !strings.Contains(body, "made") {
			t.Fatalf("files: %q", body)
		}
	}
	pid := s.cmd.Process.Pid
	measure := func(inst, token string, times int) time.Duration {
		cpu0 := cpuTime(t, pid)
		var wg sync.WaitGroup
		for range times {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, body, _ := s.apiCall("GET", "/api/instances/"+inst+"/storage", token, "")
				var st struct{ Files int64 }
				if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Files != n {
					t.Errorf("storage of %s: %d %s", inst, code, body)
				}
			}()
		}
		wg.Wait()
		return cpuTime(t, pid) - cpu0
	}
	one := measure("api:other", s.adminToken(), 1)
	rss0 := rssBytes(t, pid)
	stop := rssWatch(t, pid)
	twenty := measure("api:acme", acme, 20)
	peak := stop()
	t.Logf("measures of %d files: one took %s of ten's CPU, 20 at once %s; ten RSS %d MiB before, peak %d MiB", n, one, twenty, rss0>>20, peak>>20)
	if twenty > 4*one+time.Second {
		t.Errorf("20 measures of one tree at once cost %s of CPU, one %s: they walked it each", twenty, one)
	}
	if peak-rss0 > 64<<20 {
		t.Errorf("ten's RSS grew by %d MiB for 20 measures of one tree", (peak-rss0)>>20)
	}
}

// cpuTime is the user and system CPU time a process has used.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis: utime is the 12th,
	// stime the 13th, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// TestDataDirDroppedReleasesBind: an instance made while data_dir was set
// has its data bind-mounted over its state directory. After data_dir is
// taken out of the config and ten restarted, `ten stop` still removes that
// bind (it was left mounted, the mount unit active, for as long as systemd
// ran).
func TestDataDirDroppedReleasesBind(t *testing.T) {
	const body = `
[service.web]
command = "ECHO"
args = ["--mode", "port"]

[instances]
web = ["a"]
`
	s := startTen(t, body)
	const mount = "var-lib-private-tenement-web-a.mount"
	if got := show(t, mount, "ActiveState"); got != "active" {
		t.Fatalf("%s with data_dir set: %s, want active", mount, got)
	}
	s.mustGet("a.web.localhost", "/")

	s.kill()
	cfg := fmt.Sprintf("[settings]\nlisten = %q\n%s", s.addr, strings.ReplaceAll(body, "ECHO", echoBin))
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	// ten's own files are in ./tenement-data now (no data_dir).
	out, err := exec.Command(tenBin, "--server", "http://"+s.addr, "--data-dir", filepath.Join(s.dir, "tenement-data"), "stop", "web:a").CombinedOutput()
	if err != nil {
		t.Fatalf("ten stop web:a: %v\n%s", err, out)
	}
	if got := show(t, mount, "ActiveState"); got == "active" {
		t.Errorf("%s after ten stop with data_dir dropped from the config: still %s", mount, got)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "data", "web", "a")); err != nil {
		t.Errorf("the instance's data in the old data_dir: %v", err)
	}
}

// A spawn its client gives up on (a disconnect, a timeout) while the app
// starts is undone whole: the units go, and so does the data_dir bind,
// which the clean-up used to try with the request's ended context and
// leave mounted.
func TestAbandonedSpawnReleasesBind(t *testing.T) {
	s := startTen(t, `
[service.slow]
command = "/bin/sleep 600"
startup_timeout = 60
`)
	const mount = "var-lib-private-tenement-slow-a.mount"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+s.addr+"/api/instances/spawn", strings.NewReader(`{"instance":"slow:a"}`))
	req.Header.Set("Authorization", "Bearer "+s.adminToken())
	req.Header.Set("Content-Type", "application/json")
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			err = fmt.Errorf("answered %d before the app listened: %s", resp.StatusCode, b)
		}
		done <- err
	}()
	// The spawn waits for an app that never listens, its data bound in.
	for deadline := time.Now().Add(10 * time.Second); show(t, mount, "ActiveState") != "active"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not active while slow:a starts", mount)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the abandoned spawn: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		unit, bind := show(t, "tenement-slow@a.service", "LoadState"), show(t, mount, "ActiveState")
		if unit == "not-found" && bind != "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after the client gave up: tenement-slow@a.service %s, %s %s (want not-found, not active)", unit, mount, bind)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := s.mustTen("ps", "--all"); strings.Contains(out, "slow:a") {
		t.Errorf("ten ps --all lists the abandoned spawn:\n%s", out)
	}
}
