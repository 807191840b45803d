package box

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// requireBoot skips when this machine cannot boot a box, or fails under
// TEN_REQUIRE_SYSTEM=1 (CI), where that would hide a regression.
func requireBoot(t *testing.T) {
	t.Helper()
	if err := Reason(); err != nil {
		if os.Getenv("TEN_REQUIRE_SYSTEM") == "1" {
			t.Fatalf("cannot boot a box: %v (TEN_REQUIRE_SYSTEM=1)", err)
		}
		t.Skipf("cannot boot a box: %v", err)
	}
}

// inBox runs a command in the box and returns its trimmed stdout; stderr
// goes into the failure message.
func inBox(t *testing.T, b *Box, name string, args ...string) string {
	t.Helper()
	out, err := tryInBox(t, b, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryInBox(t *testing.T, b *Box, name string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := b.Command(t.Context(), name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// boxMounts lists the host mount table's lines that a box could have left.
func boxMounts(t *testing.T) []string {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(mi)) {
		if strings.Contains(line, "ten-box") || strings.Contains(line, " overlay ") {
			out = append(out, line)
		}
	}
	return out
}

func TestBoot(t *testing.T) {
	requireBoot(t)
	mountsBefore := boxMounts(t)
	shared := t.TempDir()
	var console bytes.Buffer
	start := time.Now()
	b, err := Boot(t.Context(), Options{
		Name:   "box-test",
		RW:     []string{shared},
		Log:    slog.New(slog.NewTextHandler(t.Output(), nil)),
		Stdout: &console,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booted in %v", time.Since(start).Round(time.Millisecond))
	closed := false
	defer func() {
		if !closed {
			b.Close()
		}
	}()
	pid, cgroups := b.PID(), b.cgroups

	t.Run("running", func(t *testing.T) {
		if got := inBox(t, b, "systemctl", "is-system-running"); got != "running" {
			failed, _ := tryInBox(t, b, "systemctl", "--failed", "--no-legend")
			t.Fatalf("is-system-running = %q, want running; failed: %s", got, failed)
		}
		// The process list holds the command itself, under /ten-box-exec,
		// and nothing systemd cannot read.
		var stdout, stderr bytes.Buffer
		cmd := b.Command(t.Context(), "systemctl", "status", "--no-pager")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 || !strings.Contains(stdout.String(), "─ten-box-exec") {
			t.Errorf("systemctl status: %v\n%s%s", err, stdout.String(), stderr.String())
		}
		if got := inBox(t, b, "hostname"); got != "box-test" {
			t.Errorf("hostname = %q", got)
		}
		if got := inBox(t, b, "cat", "/proc/1/comm"); got != "systemd" {
			t.Errorf("PID 1 = %q", got)
		}
	})

	t.Run("transient service", func(t *testing.T) {
		inBox(t, b, "systemd-run", "--quiet", "--unit=probe", "sleep", "100")
		if got := inBox(t, b, "systemctl", "is-active", "probe"); got != "active" {
			t.Fatalf("probe is %q", got)
		}
		if got := inBox(t, b, "systemctl", "show", "-P", "ControlGroup", "probe"); got != "/system.slice/probe.service" {
			t.Errorf("ControlGroup = %q", got)
		}
	})

	t.Run("journal", func(t *testing.T) {
		inBox(t, b, "systemd-run", "--quiet", "--wait", "--unit=logprobe", "echo", "hello-journal")
		deadline := time.Now().Add(3 * time.Second)
		for {
			out, _ := tryInBox(t, b, "journalctl", "--no-pager", "-o", "cat", "-u", "logprobe")
			if strings.Contains(out, "hello-journal") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("journal of logprobe:\n%s", out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("MemoryMax", func(t *testing.T) {
		inBox(t, b, "systemd-run", "--quiet", "--unit=memprobe", "-p", "MemoryMax=32M", "sleep", "100")
		if got := inBox(t, b, "systemctl", "show", "-P", "MemoryMax", "memprobe"); got != "33554432" {
			t.Errorf("MemoryMax = %q", got)
		}
		// Hybrid hosts enforce it in the v1 memory controller.
		limit := "/sys/fs/cgroup/memory/system.slice/memprobe.service/memory.limit_in_bytes"
		if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
			limit = "/sys/fs/cgroup/system.slice/memprobe.service/memory.max"
		}
		if got := inBox(t, b, "cat", limit); got != "33554432" {
			t.Errorf("%s = %q", limit, got)
		}
		// Enforced: tail holds a line with no end in memory and is killed.
		_, err := tryInBox(t, b, "systemd-run", "--quiet", "--wait", "--unit=oomprobe", "-p", "MemoryMax=16M",
			"sh", "-c", "head -c 256M /dev/zero | tail")
		if err == nil {
			t.Error("256M in a 16M service: no kill")
		}
		inBox(t, b, "systemctl", "reset-failed")
	})

	t.Run("network namespace", func(t *testing.T) {
		links := inBox(t, b, "ip", "-o", "link", "show")
		if n := len(strings.Split(links, "\n")); n != 1 || !strings.HasPrefix(links, "1: lo: <LOOPBACK,UP") {
			t.Errorf("links in the box:\n%s", links)
		}
		host, _ := os.ReadDir("/sys/class/net")
		inside := inBox(t, b, "ls", "/sys/class/net")
		for _, e := range host {
			if e.Name() != "lo" && strings.Contains(" "+strings.ReplaceAll(inside, "\n", " ")+" ", " "+e.Name()+" ") {
				t.Errorf("host interface %s visible in the box", e.Name())
			}
		}
	})

	t.Run("Listen and Dial", func(t *testing.T) {
		ln, err := b.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("hello from the host process\n"))
				c.Close()
			}
		}()
		addr := ln.Addr().(*net.TCPAddr)
		// A program in the box reaches the listener...
		got := inBox(t, b, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; cat <&3", addr.Port))
		if got != "hello from the host process" {
			t.Errorf("in the box: %q", got)
		}
		// ...and so does Dial.
		c, err := b.Dial(t.Context(), "tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if line != "hello from the host process\n" {
			t.Errorf("Dial: %q", line)
		}
	})

	t.Run("files", func(t *testing.T) {
		name := fmt.Sprintf("ten-box-test-%d", time.Now().UnixNano())
		inBox(t, b, "sh", "-c", "echo inside > /tmp/"+name+" && echo inside > /etc/"+name)
		for _, p := range []string{"/tmp/" + name, "/etc/" + name} {
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s written in the box appears on the host (%v)", p, err)
			}
		}
		// The RW directory is shared, at the same path, and is the working
		// directory when the caller's is.
		cmd := b.Command(t.Context(), "sh", "-c", `pwd; echo "$TEN_BOX_TEST_VAR $TEN_BOX" > shared`)
		cmd.Dir = shared
		cmd.Env = append(os.Environ(), "TEN_BOX_TEST_VAR=passed")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != shared {
			t.Errorf("pwd in RW dir: %q, %v", out, err)
		}
		if got, _ := os.ReadFile(filepath.Join(shared, "shared")); string(got) != "passed box-test\n" {
			t.Errorf("shared file = %q", got)
		}
		if got := boxMounts(t); !slices.Equal(got, mountsBefore) {
			t.Errorf("host mount table changed:\n%s", got)
		}
	})

	t.Run("exit status and cancel", func(t *testing.T) {
		err := b.Command(t.Context(), "sh", "-c", "exit 7").Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Errorf("exit 7: %v", err)
		}
		if err := b.Command(t.Context(), "no-such-command-ten").Run(); !errors.As(err, &ee) || ee.ExitCode() != 127 {
			t.Errorf("missing command: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cmd := b.Command(ctx, "sleep", "1234")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Cancel once the command runs inside: a cancel that reaches the
		// host-side stage before it handles signals (a slow start, as under
		// -race on a loaded machine) kills the stage by the signal itself.
		started := time.Now().Add(30 * time.Second)
		for {
			if out, _ := tryInBox(t, b, "pgrep", "-f", "sleep 1234"); out != "" {
				break
			}
			if time.Now().After(started) {
				t.Fatal("sleep 1234 did not start in the box within 30s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("cancelled command: %v, want killed", err)
		}
		// The command inside dies with its host-side parent.
		deadline := time.Now().Add(2 * time.Second)
		for {
			out, _ := tryInBox(t, b, "pgrep", "-f", "sleep 1234")
			if out == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sleep 1234 outlived its cancelled command: %s", out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	closeStart := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	t.Logf("closed in %v", time.Since(closeStart).Round(time.Millisecond))
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("box PID 1 (%d) still exists: %v", pid, err)
	}
	for _, cg := range cgroups {
		if _, err := os.Stat(cg.Dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s remains: %v", cg.Dir, err)
		}
	}
	id := filepath.Base(cgroups[0].Dir)
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		if c, err := os.ReadFile(p); err == nil && strings.Contains(string(c), id) {
			t.Errorf("process %s still in the box's cgroups", filepath.Dir(p))
		}
	}
	if got := boxMounts(t); !slices.Equal(got, mountsBefore) {
		t.Errorf("host mount table changed:\n%s", got)
	}
	if t.Failed() {
		t.Logf("console:\n%s", console.String())
	}
}

// TestParallel boots boxes side by side, as go test ./... does with system
// test packages: each gets its own cgroups, host name and network.
func TestParallel(t *testing.T) {
	requireBoot(t)
	const n = 3
	errs := make(chan error, n)
	for i := range n {
		go func() {
			name := fmt.Sprintf("par-%d", i)
			b, err := Boot(t.Context(), Options{Name: name})
			if err != nil {
				errs <- err
				return
			}
			defer b.Close()
			out, err := b.Command(t.Context(), "sh", "-c", "hostname; systemctl is-system-running").CombinedOutput()
			if err != nil || string(out) != name+"\nrunning\n" {
				errs <- fmt.Errorf("%s: %q, %v", name, out, err)
				return
			}
			errs <- b.Close()
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
