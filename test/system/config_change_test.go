package system

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestServiceRemovedFromConfig: the operator removes a service from
// tenement.toml (or renames it) and restarts ten while an instance of it
// runs. ten keeps the instance (it never stops what it was not asked to),
// says so at start, and answers its requests 503 at once saying why — not
// after request_timeout, which is what waiting on a systemd socket whose app
// never takes a connection costs. `ten restart` of it is refused with the
// reason (systemd would fail the start for ever: nothing marks the app
// ready), and `ten stop` removes it with its data_dir bind mount.
func TestServiceRemovedFromConfig(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode port"

[service.old]
command = "ECHO --mode port"

[instances]
api = ["one"]
old = ["a"]
`)
	s.mustGet("a.old.localhost", "/")
	pid := mainPID(t, "old:a")
	s.kill()
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.NewReplacer("[service.old]\ncommand = \""+echoBin+" --mode port\"\n", "", "old = [\"a\"]\n", "").Replace(string(cfg)))
	if strings.Contains(string(cfg), "old") {
		t.Fatalf("config still names old:\n%s", cfg)
	}
	if err := os.WriteFile(s.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	if !strings.Contains(s.log.String(), "instance of a service the config does not declare") || !strings.Contains(s.log.String(), "instance=old:a") {
		t.Errorf("ten serve did not say that old:a's service is gone:\n%s", s.log.String())
	}
	start := time.Now()
	code, body, err := s.get("a.old.localhost", "/")
	if err != nil || code != 503 || !strings.Contains(body, `service "old" is no longer declared`) {
		t.Errorf("request for old:a: %d %v %q", code, err, body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("request for old:a answered after %v, not at once", d)
	}
	s.mustGet("one.api.localhost", "/")
	if p := mainPID(t, "old:a"); p != pid {
		t.Errorf("old:a's app changed: pid %d -> %d", pid, p)
	}
	if out, err := s.ten("restart", "old:a"); err == nil || !strings.Contains(out, "no longer declares") {
		t.Errorf("restart old:a: %v\n%s", err, out)
	}
	s.mustTen("stop", "old:a")
	out, _ := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", "--type=mount").Output()
	if strings.Contains(string(out), "tenement-old-a") {
		t.Errorf("old:a's data_dir bind is still mounted after ten stop:\n%s", out)
	}
	for _, u := range tenUnits(t) {
		if strings.Contains(u, "tenement-old") {
			t.Errorf("unit %s left after ten stop old:a", u)
		}
	}
}

// TestSocketDirChangeRefused: settings.socket_dir changed while instances
// exist. The router would dial every one of them where the new socket_dir
// says, where nothing listens (502 for all); ten serve refuses to start
// instead, naming the key and a socket unit, and with the old value back
// the instances answer as before.
func TestSocketDirChangeRefused(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode port"

[instances]
api = ["one"]
`)
	s.mustGet("one.api.localhost", "/")
	s.kill()
	orig, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(orig), "[settings]\n", "[settings]\nsocket_dir = \"/run/tenement-moved\"\n", 1)
	if err := os.WriteFile(s.config, []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := withTimeout(30 * time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tenBin, "serve", "--config", s.config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "settings.socket_dir") || !strings.Contains(string(out), "tenement-api@one.socket") {
		t.Errorf("ten serve with another socket_dir: %v\n%s", err, out)
	}
	if err := os.WriteFile(s.config, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	s.mustGet("one.api.localhost", "/")
}
