package shim

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCatHelper is `ten-shim cat` when the test binary runs as one
// (TEN_CAT_HELPER=1; see TestCat), with journald's socket at
// TEN_CAT_JOURNAL.
func TestCatHelper(t *testing.T) {
	if os.Getenv("TEN_CAT_HELPER") != "1" {
		return // only cat when TestCat runs it as one
	}
	argv := strings.Fields(os.Getenv("TEN_CAT_ARGV"))
	Cat(Options{Instance: "web:a", Argv: argv, Log: Log()}, "myapp", os.Getenv("TEN_CAT_JOURNAL"))
}

// runCat runs the test binary as `ten-shim cat` of argv with the socket at
// journal as journald and a pipe at fd 3 (as systemd's socket would be);
// it returns the process's stdout and stderr and its PID.
func runCat(t *testing.T, journal, argv string) (stdout, stderr string, pid int, err error) {
	t.Helper()
	r, w, perr := os.Pipe()
	if perr != nil {
		t.Fatal(perr)
	}
	defer r.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCatHelper$")
	cmd.Env = append(os.Environ(), "TEN_CAT_HELPER=1", "TEN_CAT_JOURNAL="+journal, "TEN_CAT_ARGV="+argv)
	cmd.ExtraFiles = []*os.File{w}
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	err = cmd.Wait()
	return out.String(), errb.String(), cmd.Process.Pid, err
}

// TestCat: `ten-shim cat` connects the app's stdout and stderr to journald
// as two streams under the app's identifier (info and err, level prefixes
// on) and becomes the app: same PID, fd 3 (the systemd socket) still open.
// Without journald the app still starts, on the output it was given; a
// missing app is an error naming the instance and the command, exit 127.
func TestCat(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stdout")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []string, 2)
	go func() {
		for i := 0; i < 2; i++ {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				var lines []string
				s := bufio.NewScanner(c)
				for s.Scan() {
					lines = append(lines, s.Text())
				}
				got <- lines
			}()
		}
	}()
	app := "/bin/sh -c echo${IFS}pid$$;test${IFS}-e${IFS}/proc/self/fd/3&&echo${IFS}fd3;echo${IFS}oops>&2"
	stdout, stderr, pid, err := runCat(t, path, app)
	if err != nil {
		t.Fatalf("cat: %v; stderr %s", err, stderr)
	}
	if stdout != "" || stderr != "" {
		t.Errorf("output left on the service's streams: %q %q", stdout, stderr)
	}
	streams := map[string][]string{}
	for i := 0; i < 2; i++ {
		select {
		case lines := <-got:
			if len(lines) < 7 {
				t.Fatalf("stream without a whole header: %q", lines)
			}
			streams[lines[2]] = lines
		case <-time.After(10 * time.Second):
			t.Fatal("no second journal stream")
		}
	}
	wantOut := []string{"myapp", "", "6", "1", "0", "0", "0", "pid" + strconv.Itoa(pid), "fd3"}
	if g := strings.Join(streams["6"], "|"); g != strings.Join(wantOut, "|") {
		t.Errorf("stdout stream %q, want %q (the app is cat's own PID, fd 3 kept)", g, strings.Join(wantOut, "|"))
	}
	wantErr := []string{"myapp", "", "3", "1", "0", "0", "0", "oops"}
	if g := strings.Join(streams["3"], "|"); g != strings.Join(wantErr, "|") {
		t.Errorf("stderr stream %q, want %q", g, strings.Join(wantErr, "|"))
	}

	// No journald: the app runs on the output it was given.
	stdout, stderr, _, err = runCat(t, filepath.Join(dir, "none"), "/bin/sh -c echo${IFS}out;echo${IFS}oops>&2")
	if err != nil || stdout != "out\n" || !strings.Contains(stderr, "oops") || !strings.Contains(stderr, "app output stays") {
		t.Errorf("without journald: err %v, stdout %q, stderr %q", err, stdout, stderr)
	}

	// A missing app.
	_, stderr, _, err = runCat(t, path, "/nonexistent/app --x")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 127 || !strings.Contains(stderr, "instance web:a: start /nonexistent/app") {
		t.Errorf("missing app: err %v, stderr %q", err, stderr)
	}
}
