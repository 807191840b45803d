package system

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenhq/ten/internal/box"
)

// TestCaddyInFront: a tenement user's `ten install --caddy` and
// `ten caddy --systemd` put Caddy (the distribution's package) in front of
// ten: the Caddyfile is checked with caddy adapt and written where
// caddy.service reads it, caddy.service is enabled and runs, and HTTPS for
// an instance's host reaches that instance through Caddy and ten. A
// Caddyfile this Caddy cannot load (a DNS provider it has no module for)
// and a file caddy.service does not read are refused and change nothing.
func TestCaddyInFront(t *testing.T) {
	install(t)
	if _, err := exec.LookPath("caddy"); err != nil {
		t.Fatal("caddy is not installed (apt-get install caddy; .ci/run installs it)")
	}
	// caddy.service reads a Caddyfile of this test's, and keeps its data
	// (its local CA) beside it: a drop-in in /run, so that the test writes
	// nothing under /etc or /var even where systemd is the host's PID 1.
	// Not under /tmp: caddy.service has PrivateTmp.
	dir := "/run/ten-test/caddy"
	caddyfile := filepath.Join(dir, "Caddyfile")
	dropin := "/run/systemd/system/caddy.service.d/ten-test.conf"
	for _, d := range []string{dir, filepath.Dir(dropin)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(dir, caddyUID(t), -1)
	conf := fmt.Sprintf(`[Service]
Environment=XDG_DATA_HOME=%[1]s XDG_CONFIG_HOME=%[1]s
ExecStart=
ExecStart=/usr/bin/caddy run --environ --config %[2]s
ExecReload=
ExecReload=/usr/bin/caddy reload --config %[2]s --force
`, dir, caddyfile)
	if err := os.WriteFile(dropin, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	systemctl(t, "daemon-reload")
	if show(t, "caddy.service", "LoadState") == "masked" {
		// A box masks the units the host enables (the caddy package
		// enables caddy.service); unmasking it changes the box's /etc only.
		if os.Getenv(box.EnvInside) == "" {
			t.Fatal("caddy.service is masked on this host")
		}
		systemctl(t, "unmask", "caddy.service")
	}
	t.Cleanup(func() {
		exec.Command("systemctl", "stop", "caddy.service").Run()
		exec.Command("systemctl", "disable", "--runtime", "caddy.service").Run()
		os.Remove(dropin)
		exec.Command("systemctl", "daemon-reload").Run()
		os.RemoveAll(dir)
	})

	_, cfg, _ := writeConfig(t, `trusted_proxies = ["127.0.0.1", "::1"]

[service.web]
command = "ECHO --mode activation"
activation = "socket"

[instances]
web = ["a"]
`)
	port := freePort(t)
	bin := filepath.Join(binDir, "installed-caddy", "ten")
	t.Cleanup(func() {
		exec.Command(tenBin, "uninstall", "--runtime").Run()
		removeAllUnits(t)
		os.RemoveAll(filepath.Dir(bin))
	})
	out, err := exec.Command(tenBin, "install", "--runtime", "--caddy", "-d", "localhost", "-p", fmt.Sprint(port), "--address", "127.0.0.1", "--binary", bin, "-c", cfg).CombinedOutput()
	if err != nil {
		j, _ := exec.Command("journalctl", "-u", "caddy.service", "--no-pager", "-n", "30").CombinedOutput()
		t.Fatalf("ten install --caddy: %v\n%s\n%s", err, out, j)
	}
	if strings.Contains(string(out), "hint:") {
		t.Errorf("ten install --caddy hinted with loopback in trusted_proxies:\n%s", out)
	}
	if !strings.Contains(string(out), "wrote "+caddyfile) {
		t.Errorf("ten install --caddy did not write the Caddyfile caddy.service reads (%s):\n%s", caddyfile, out)
	}
	for _, u := range []string{"tenement.socket", "caddy.service"} {
		if got := show(t, u, "ActiveState"); got != "active" {
			t.Fatalf("%s is %q after ten install --caddy:\n%s", u, got, out)
		}
	}
	// enabled-runtime, or enabled where the package enabled it already.
	if got := show(t, "caddy.service", "UnitFileState"); !strings.HasPrefix(got, "enabled") {
		t.Errorf("caddy.service UnitFileState %q, want enabled-runtime", got)
	}
	written, _ := os.ReadFile(caddyfile)
	want := fmt.Sprintf("web.localhost, *.web.localhost {\n\treverse_proxy localhost:%d\n}", port)
	if !strings.Contains(string(written), want) {
		t.Fatalf("Caddyfile lacks %q:\n%s", want, written)
	}
	httpsGet(t, "a.web.localhost", "through Caddy after ten install --caddy")
	// Caddy is a trusted proxy: the app sees the scheme and host the
	// client used, and the client's address first.
	var info struct {
		XFF  string `json:"x_forwarded_for"`
		XFH  string `json:"x_forwarded_host"`
		XFP  string `json:"x_forwarded_proto"`
		Inst string `json:"instance"`
	}
	if err := json.Unmarshal([]byte(httpsGetPath(t, "a.web.localhost", "/info", "X-Forwarded-Proto")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Inst != "web:a" || info.XFP != "https" || info.XFH != "a.web.localhost" || info.XFF != "127.0.0.1, 127.0.0.1" {
		t.Errorf("behind Caddy with trusted_proxies the app saw %+v, want web:a, https, a.web.localhost, 127.0.0.1 (the client), 127.0.0.1 (Caddy)", info)
	}

	// Without trusted_proxies, ten caddy says what the apps would miss.
	_, bare, _ := writeConfig(t, "[service.web]\ncommand = \"ECHO\"\n")
	cmd := exec.Command(tenBin, "caddy", "-d", "localhost", "-c", bare)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if text, err := cmd.Output(); err != nil || !strings.Contains(string(text), "*.web.localhost") || !strings.Contains(stderr.String(), `trusted_proxies = ["127.0.0.1", "::1"]`) {
		t.Errorf("ten caddy without trusted_proxies: %v\nstdout:\n%s\nstderr:\n%s", err, text, stderr.String())
	}

	// A DNS provider Debian's Caddy has no module for: refused by caddy
	// adapt before anything is written or reloaded.
	out, err = exec.Command(tenBin, "caddy", "--systemd", "--runtime", "-d", "localhost", "-p", fmt.Sprint(port), "--dns-provider", "cloudflare", "-c", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unchanged") || !strings.Contains(string(out), "DNS provider") {
		t.Errorf("ten caddy --systemd --dns-provider cloudflare with a Caddy without the module: %v\n%s", err, out)
	}
	// A file caddy.service does not read.
	out, err = exec.Command(tenBin, "caddy", "--systemd", "--runtime", "-d", "localhost", "-p", fmt.Sprint(port), "-o", filepath.Join(dir, "Other"), "-c", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "caddy.service reads "+caddyfile) {
		t.Errorf("ten caddy --systemd -o ANOTHER: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "Other")); err == nil {
		t.Errorf("ten caddy --systemd -o ANOTHER wrote it")
	}
	if now, _ := os.ReadFile(caddyfile); string(now) != string(written) {
		t.Errorf("a refused ten caddy --systemd changed %s:\n%s", caddyfile, now)
	}
	httpsGet(t, "a.web.localhost", "through Caddy after the refused changes")

	// ten caddy --systemd with an email: written, reloaded, still routed.
	out, err = exec.Command(tenBin, "caddy", "--systemd", "--runtime", "-d", "localhost", "-p", fmt.Sprint(port), "--email", "ops@example.com", "-c", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "reloaded caddy.service") {
		t.Fatalf("ten caddy --systemd: %v\n%s", err, out)
	}
	if now, _ := os.ReadFile(caddyfile); !strings.Contains(string(now), "email ops@example.com") {
		t.Errorf("ten caddy --systemd --email: Caddyfile\n%s", now)
	}
	httpsGet(t, "a.web.localhost", "through Caddy after ten caddy --systemd")
}

// caddyUID is the uid of the caddy package's user.
func caddyUID(t *testing.T) int {
	out, err := exec.Command("id", "-u", "caddy").Output()
	if err != nil {
		t.Fatalf("no caddy user (the caddy package makes it): %v", err)
	}
	var uid int
	fmt.Sscan(strings.TrimSpace(string(out)), &uid)
	return uid
}

func systemctl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("systemctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("systemctl %s: %v %s", strings.Join(args, " "), err, out)
	}
}

// httpsGet asks Caddy on 127.0.0.1:443 for https://host/ until it answers
// 200 (Caddy issues its local certificates in the background at its
// start).
func httpsGet(t *testing.T, host, what string) {
	t.Helper()
	httpsGetPath(t, host, "/", what)
}

// httpsGetPath is httpsGet for path; it returns the body.
func httpsGetPath(t *testing.T, host, path, what string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // Caddy's local CA
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:443")
		},
	}}
	defer c.CloseIdleConnections()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := c.Get("https://" + host + path)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		if resp.StatusCode == 200 && resp.TLS != nil {
			return string(body)
		}
	}
	j, _ := exec.Command("journalctl", "-u", "caddy.service", "--no-pager", "-n", "30").CombinedOutput()
	t.Fatalf("%s: https://%s%s never answered 200; last: %s\n%s", what, host, path, last, j)
	return ""
}
