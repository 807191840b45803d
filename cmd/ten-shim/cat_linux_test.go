//go:build linux && cgo

package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain: where a test runs this binary as `ten-shim cat` and the fast
// path leaves it to Go, the binary ends here (it is a test binary, not
// ten-shim) instead of running the tests again.
func TestMain(m *testing.M) {
	if os.Getenv("TEN_CAT_HELPER") == "1" {
		os.Stderr.WriteString("declined by the fast path\n")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// journal is a stand-in for journald's stream socket: it records the
// header and lines of every stream opened to it.
type journal struct {
	path    string
	mu      sync.Mutex
	streams []string
	wg      sync.WaitGroup
}

func newJournal(t *testing.T) *journal {
	t.Helper()
	j := &journal{path: filepath.Join(t.TempDir(), "stdout")}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: j.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			j.wg.Add(1)
			go func() {
				defer j.wg.Done()
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				var b bytes.Buffer
				s := bufio.NewScanner(c)
				for s.Scan() {
					b.WriteString(s.Text() + "|")
				}
				j.mu.Lock()
				j.streams = append(j.streams, b.String())
				j.mu.Unlock()
			}()
		}
	}()
	return j
}

// wait returns the streams once n have ended (or after 10 s).
func (j *journal) wait(n int) []string {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		j.mu.Lock()
		got := append([]string(nil), j.streams...)
		j.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.streams...)
}

// runTestBinaryAsCat runs this test binary (which carries cat_linux.c's
// constructor, as ten-shim does) with args, GODEBUG=inittrace=1 (a Go
// runtime that starts says so on stderr), env added, and a pipe at fd 3 as
// systemd's socket would be.
func runTestBinaryAsCat(t *testing.T, env []string, args ...string) (stdout, stderr string, pid int) {
	t.Helper()
	return runAsCat(t, []string{os.Args[0]}, env, args...)
}

// runAsCat is runTestBinaryAsCat for the program argv0 (a binary, or a
// runner and a binary).
func runAsCat(t *testing.T, argv0 []string, env []string, args ...string) (stdout, stderr string, pid int) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(argv0[0], append(argv0[1:], args...)...)
	cmd.Env = append(append(os.Environ(), "GODEBUG=inittrace=1", "TEN_CAT_MARK=kept", "TEN_CAT_HELPER=1"), env...)
	cmd.ExtraFiles = []*os.File{w}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not end", args)
	}
	return out.String(), errb.String(), cmd.Process.Pid
}

// script writes an executable shell script at dir/name.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCatFastPath: for the command line ten writes into a unit, the C
// constructor gives the app its two journal streams (the same headers as
// shim.JournalStream: identifier, priority 6 for stdout and 3 for stderr,
// level prefixes on) and execs it before Go's runtime starts: no line of
// GODEBUG=inittrace, the same PID, fd 3 and the environment kept, the
// app found in PATH as exec.LookPath finds it.
//
// TEN_CAT_BIN names another ten-shim to check the same way (run through
// TEN_CAT_RUNNER, such as qemu-aarch64, when set): CI checks the Debian
// package's ten-shim of each architecture with it.
func TestCatFastPath(t *testing.T) {
	targets := map[string][]string{"test binary": {os.Args[0]}}
	if bin := os.Getenv("TEN_CAT_BIN"); bin != "" {
		targets[bin] = append(strings.Fields(os.Getenv("TEN_CAT_RUNNER")), bin)
	}
	for name, argv0 := range targets {
		t.Run(name, func(t *testing.T) { testCatFastPath(t, argv0) })
	}
}

func testCatFastPath(t *testing.T, argv0 []string) {
	j := newJournal(t)
	bin := t.TempDir()
	// A directory and a file without an execute bit named like the app,
	// earlier in PATH, are passed over, as exec.LookPath passes them.
	early, late := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(early, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "app"), []byte("#!/bin/sh\necho wrong\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script(t, late, "app", `echo "out $$ $TEN_CAT_MARK $1"; echo "err $$" >&2; [ -e /proc/$$/fd/3 ] && echo fd3`)
	path := "PATH=" + early + ":" + bin + ":" + late + ":" + os.Getenv("PATH")
	stdout, stderr, pid := runAsCat(t, argv0, []string{path},
		"cat", "--instance=web:a", "--identifier=myapp", "--journal="+j.path, "--", "app", "arg1")
	if stdout != "" || stderr != "" {
		t.Fatalf("the app's output stayed with the process (or Go's runtime started): stdout %q stderr %q", stdout, stderr)
	}
	streams := j.wait(2)
	want := map[string]bool{
		"myapp||6|1|0|0|0|out " + strconv.Itoa(pid) + " kept arg1|fd3|": true,
		"myapp||3|1|0|0|0|err " + strconv.Itoa(pid) + "|":               true,
	}
	if len(streams) != 2 || !want[streams[0]] || !want[streams[1]] || streams[0] == streams[1] {
		t.Fatalf("journal streams %q, want %v", streams, want)
	}

	// An absolute path is taken as it is.
	abs := script(t, t.TempDir(), "abs", `echo "abs $$"`)
	stdout, stderr, pid = runAsCat(t, argv0, nil,
		"cat", "--instance=web:a", "--identifier=myapp", "--journal="+j.path, "--", abs)
	if stdout != "" || stderr != "" {
		t.Fatalf("absolute path: stdout %q stderr %q", stdout, stderr)
	}
	streams = j.wait(4)
	if len(streams) != 4 || !strings.Contains(strings.Join(streams[2:], ""), "myapp||6|1|0|0|0|abs "+strconv.Itoa(pid)+"|") {
		t.Fatalf("absolute path: journal streams %q", streams)
	}
}

// TestCatFastPathDeclines: anything but the exact command line and a clean
// run leaves the process as it was for Go's code of `ten-shim cat`
// (shim.Cat), which reports what went wrong: Go's runtime starts (here the
// test binary's) on the original stdout and stderr, and no stream is left
// open to the journal.
func TestCatFastPathDeclines(t *testing.T) {
	j := newJournal(t)
	app := script(t, t.TempDir(), "app", "echo ran")
	noexec := filepath.Join(t.TempDir(), "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\necho ran\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := t.TempDir()
	script(t, rel, "relapp", "echo ran")
	cases := map[string]struct {
		env  []string
		args []string
	}{
		"no journald":               {nil, []string{"cat", "--instance=web:a", "--identifier=myapp", "--journal=" + filepath.Join(t.TempDir(), "none"), "--", app}},
		"missing app":               {nil, []string{"cat", "--instance=web:a", "--identifier=myapp", "--journal=" + j.path, "--", "no-such-app-here"}},
		"not executable":            {nil, []string{"cat", "--instance=web:a", "--identifier=myapp", "--journal=" + j.path, "--", noexec}},
		"relative PATH entry first": {[]string{"PATH=relbin:" + rel}, []string{"cat", "--instance=web:a", "--identifier=myapp", "--journal=" + j.path, "--", "relapp"}},
		"empty identifier":          {nil, []string{"cat", "--instance=web:a", "--identifier=", "--journal=" + j.path, "--", app}},
		"flags in another order":    {nil, []string{"cat", "--identifier=myapp", "--instance=web:a", "--journal=" + j.path, "--", app}},
		"no app":                    {nil, []string{"cat", "--instance=web:a", "--identifier=myapp", "--journal=" + j.path, "--"}},
		"another verb":              {nil, []string{"standby", "--instance=web:a", "--identifier=myapp", "--journal=" + j.path, "--", app}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			stdout, stderr, _ := runTestBinaryAsCat(t, c.env, c.args...)
			if !strings.Contains(stderr, "init runtime @") || !strings.Contains(stderr, "declined by the fast path") || strings.Contains(stdout, "ran") {
				t.Fatalf("the fast path did not leave it to Go: stdout %q stderr %q", stdout, stderr)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	j.mu.Lock()
	defer j.mu.Unlock()
	if streams := j.streams; len(streams) != 0 {
		t.Fatalf("a declined fast path left streams behind: %q", streams)
	}
}
