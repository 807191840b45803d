// Package systemtest lets a package's system tests run against a real
// systemd wherever they run: against PID 1 on a normal systemd host, and
// elsewhere (a container, a CI VM) inside a private systemd that Main boots
// with internal/box.
//
// A system-test package calls Main from its TestMain and Require at the top
// of each test that needs systemd:
//
//	func TestMain(m *testing.M) { systemtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		systemtest.Require(t)
//		...
//	}
//
// Where no systemd can be had (not root, systemd or dbus not installed), the
// tests skip with the reason, unless TEN_REQUIRE_SYSTEM=1 (set in CI), which
// turns that into a failure. A box that should boot but does not is always a
// failure: a skip must not hide a regression.
package systemtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tenhq/ten/internal/box"
)

// EnvRequire names the variable that, set to 1, makes a missing systemd fail
// the tests instead of skipping them.
const EnvRequire = "TEN_REQUIRE_SYSTEM"

// EnvConsole names the variable that, set to 1, copies the private
// systemd's console output to stderr.
const EnvConsole = "TEN_BOX_CONSOLE"

// Main runs the test binary's tests against a real systemd and exits. Where
// systemd is PID 1, or inside a box, it runs them here. Otherwise it boots a
// box with the module root (the first directory above the working directory
// holding go.mod) and the test binary's directory bound read-write, runs the
// same binary with the same arguments inside it, streams its output, and
// exits with its status once the box is gone.
func Main(m *testing.M) {
	os.Exit(run(m))
}

// Available reports whether systemd can be reached from here: it is PID 1,
// or this process runs inside a box.
func Available() bool {
	return os.Getenv(box.EnvInside) != "" || box.SystemdIsPID1()
}

// Require skips the test, or fails it under TEN_REQUIRE_SYSTEM=1, when no
// systemd is reachable (see Main).
func Require(tb testing.TB) {
	tb.Helper()
	if Available() {
		return
	}
	msg := "no systemd: it is not PID 1 and this is not a box (does TestMain call systemtest.Main?)"
	if err := box.Reason(); err != nil {
		msg = "no systemd: " + err.Error()
	}
	if required() {
		tb.Fatal(msg + " (" + EnvRequire + "=1)")
	}
	tb.Skip(msg)
}

func required() bool { return os.Getenv(EnvRequire) == "1" }

func run(m *testing.M) int {
	if Available() {
		return m.Run()
	}
	if err := box.Reason(); err != nil {
		if required() {
			fmt.Fprintf(os.Stderr, "systemtest: FAIL: no systemd for the system tests: %v (%s=1)\n", err, EnvRequire)
			return 1
		}
		fmt.Printf("systemtest: SKIP: no systemd for the system tests: %v\n", err)
		return 0
	}
	code, err := runInBox()
	if err != nil {
		fmt.Fprintf(os.Stderr, "systemtest: FAIL: %v\n", err)
		return 1
	}
	return code
}

// runInBox boots a box, re-runs this test binary in it and returns its exit
// status; the box is closed before it returns.
func runInBox() (int, error) {
	root, err := moduleRoot()
	if err != nil {
		return 0, err
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	// go test writes its test log and coverage next to the binary, in a
	// directory of its own under /tmp, which the box would otherwise hide.
	rw := []string{root}
	if d := filepath.Dir(exe); !within(d, root) {
		rw = append(rw, d)
	}
	opts := box.Options{
		Name: "ten-test",
		RW:   rw,
		Log:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if os.Getenv(EnvConsole) == "1" {
		opts.Stdout, opts.Stderr = os.Stderr, os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	b, err := box.Boot(ctx, opts)
	stop()
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := b.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "systemtest: %v\n", err)
		}
	}()

	cmd := b.Command(context.Background(), exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// go test sends SIGQUIT for a stack dump when a test hangs; pass every
	// such signal on (the box's exec stage forwards it to the tests).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("run the tests in the box: %w", err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 0, fmt.Errorf("tests in the box killed by %v after %v", ws.Signal(), time.Since(start).Round(time.Millisecond))
		}
		return ee.ExitCode(), nil
	case err != nil:
		return 0, fmt.Errorf("run the tests in the box: %w", err)
	}
	return 0, nil
}

// moduleRoot finds the first directory above the working directory that
// holds go.mod.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("systemtest: no go.mod above the working directory")
		}
		d = p
	}
}

func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
