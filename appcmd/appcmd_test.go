package appcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenhq/ten/config"
)

func TestResolveRelativeAndReach(t *testing.T) {
	dir := t.TempDir() // under /tmp (or TMPDIR), mode 0700
	app := filepath.Join(dir, "app")
	if err := os.Mkdir(app, 0o700); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(app, "run.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	proc := &config.Service{Name: "api", Isolation: config.IsolationProcess}
	ns := &config.Service{Name: "api", Isolation: config.IsolationNamespace}
	got, err := Resolve("./run.sh", app, proc)
	if err != nil || got != script {
		t.Fatalf("process: %q %v", got, err)
	}
	if !within(app, "/tmp") {
		t.Skip("TMPDIR is not under /tmp: the bound-directory rule is not exercised")
	}
	if _, err := Resolve("./run.sh", app, ns); err == nil || !strings.Contains(err.Error(), "cannot enter "+app+" (mode 0700): chmod o+x "+app) {
		t.Errorf("0700 workdir: %v", err)
	}
	os.Chmod(app, 0o755)
	if _, err := Resolve("./run.sh", app, ns); err == nil || !strings.Contains(err.Error(), "cannot read and execute (a script) it (mode 0700): chmod o+rx "+script) {
		t.Errorf("0700 script: %v", err)
	}
	os.Chmod(script, 0o755)
	// The test's own temp dir above app stays 0700: it is not on the way
	// inside the unit, whose /tmp is its own with app bound in.
	if got, err := Resolve("./run.sh", app, ns); err != nil || got != script {
		t.Errorf("readable: %q %v", got, err)
	}
	if _, err := Resolve("./missing.sh", app, proc); err == nil {
		t.Error("missing command accepted")
	}
	if _, err := Resolve("/bin/sh", "/root", ns); err == nil || !strings.Contains(err.Error(), "ProtectHome") {
		t.Errorf("under /root: %v", err)
	}
}
