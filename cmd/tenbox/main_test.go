package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tenhq/ten/internal/box"
)

// buildTenbox builds the command as a user runs it, or skips (fails under
// TEN_REQUIRE_SYSTEM=1) where no box can boot.
func buildTenbox(t *testing.T) string {
	t.Helper()
	if err := box.Reason(); err != nil {
		if os.Getenv("TEN_REQUIRE_SYSTEM") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	bin := filepath.Join(t.TempDir(), "tenbox")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestRun(t *testing.T) {
	bin := buildTenbox(t)
	out, err := exec.Command(bin, "run", "--", "systemctl", "is-system-running").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "running" {
		t.Errorf("is-system-running: %q, %v", out, err)
	}
	err = exec.Command(bin, "run", "--", "sh", "-c", "exit 3").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("exit 3: %v", err)
	}
	// The working directory is shared with --rw.
	dir := t.TempDir()
	cmd := exec.Command(bin, "run", "--rw", dir, "--", "sh", "-c", "echo made-in-box > file")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "file")); string(b) != "made-in-box\n" {
		t.Errorf("file = %q", b)
	}
}

// TestPublishAndSIGTERM serves a port inside the box, reaches it from the
// host through --publish, then stops tenbox with SIGTERM: the command gets
// it, tenbox exits with its status, and the box is gone.
func TestPublishAndSIGTERM(t *testing.T) {
	bin := buildTenbox(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "run", "--publish", fmt.Sprintf("%d:7777", port), "--",
		"systemd-socket-activate", "-l", "127.0.0.1:7777", "--inetd", "-a", "cat")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var line string
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			fmt.Fprintln(c, "ping")
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ = bufio.NewReader(c).ReadString('\n')
			c.Close()
			if line == "ping\n" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no echo through --publish (%q, %v); stderr:\n%s", line, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Errorf("after SIGTERM: %v, want exit status 143; stderr:\n%s", err, stderr.String())
	}
	// Its cgroups are named ten-box.NAME.PIDNS.PID.N.
	mark := fmt.Sprintf(".%d.", cmd.Process.Pid)
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/ten-box.tenbox.*")
	v2, _ := filepath.Glob("/sys/fs/cgroup/ten-box.tenbox.*")
	for _, d := range append(dirs, v2...) {
		if strings.Contains(filepath.Base(d), mark) {
			t.Errorf("cgroup %s remains", d)
		}
	}
}
