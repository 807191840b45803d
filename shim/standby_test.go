package shim

import (
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

// TestStandbyHelper is the standby waiter when the test binary runs as one
// (TEN_STANDBY_HELPER=1; see TestStandbyWaits): Standby with the socket
// passed at fd 3, exec'ing what follows in its arguments.
func TestStandbyHelper(t *testing.T) {
	if os.Getenv("TEN_STANDBY_HELPER") != "1" {
		return // only a waiter when TestStandbyWaits runs it as one
	}
	extend, _ := time.ParseDuration(os.Getenv("TEN_STANDBY_EXTEND"))
	argv := strings.Fields(os.Getenv("TEN_STANDBY_ARGV"))
	Standby(Options{Instance: "web:a", Argv: argv, Log: Log()}, StandbyOptions{Fds: 1, Extend: extend})
}

// startWaiter runs the test binary as a standby waiter on l's socket (fd 3),
// the app being a shell that prints its PID and whether fd 3 is open; extend
// and notify set its start timeout and $NOTIFY_SOCKET.
func startWaiter(t *testing.T, l *net.UnixListener, extend, notify string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStandbyHelper$")
	cmd.Env = append(os.Environ(), "TEN_STANDBY_HELPER=1", "TEN_STANDBY_EXTEND="+extend, "NOTIFY_SOCKET="+notify,
		"TEN_STANDBY_ARGV=/bin/sh -c echo${IFS}app$$;test${IFS}-e${IFS}/proc/self/fd/3&&echo${IFS}fd3")
	cmd.ExtraFiles = []*os.File{f}
	out := &lockedBuffer{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, out
}

// lockedBuffer is a bytes.Buffer that exec's copier and the test may use at
// once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStandbyWaits: the waiter does not start the app until a connection is
// queued on the systemd socket; then it becomes the app (same PID), which
// still has the socket at fd 3. While it waits it extends the service's
// start timeout on $NOTIFY_SOCKET, and once more as it starts the app.
// Started with a connection already queued, it execs at once.
func TestStandbyWaits(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "wake.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	nsock := filepath.Join(dir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	cmd, out := startWaiter(t, l, "300ms", nsock)

	// It waits: says so, extends the timeout (every 100 ms here), no app.
	var msgs []string
	buf := make([]byte, 256)
	notify.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(msgs) < 3 {
		n, err := notify.Read(buf)
		if err != nil {
			t.Fatalf("notifications %q: %v", msgs, err)
		}
		msgs = append(msgs, string(buf[:n]))
	}
	if msgs[0] != "STATUS=standing by\n" || !strings.HasPrefix(msgs[1], "EXTEND_TIMEOUT_USEC=300000") {
		t.Errorf("notifications while standing by: %q", msgs)
	}
	if out.String() != "" {
		t.Fatalf("the app ran with no connection: %q", out.String())
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("the waiter exited with no connection: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("app: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exec 10 s after a connection")
	}
	want := "app" + strconv.Itoa(cmd.Process.Pid) + "\nfd3\n"
	if out.String() != want {
		t.Errorf("the app printed %q, want %q (the waiter's PID, the socket at fd 3)", out.String(), want)
	}

	// A connection already queued: no waiting, no notification.
	c2, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	cmd, out = startWaiter(t, l, "", nsock)
	if err := cmd.Wait(); err != nil || !strings.HasPrefix(out.String(), "app") {
		t.Errorf("started with a queued connection: %v %q", err, out.String())
	}
}
