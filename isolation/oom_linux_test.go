package isolation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A watch ends when its context does, though no event ever comes (before,
// it blocked in read(2) on the eventfd until the cgroup went away).
func TestWaitEventsCancel(t *testing.T) {
	efd := testEventfd(t)
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan struct{}, 4)
	done := make(chan error, 1)
	go func() {
		done <- waitEvents(ctx, efd, func(uint64) time.Duration { events <- struct{}{}; return -1 })
	}()
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	if _, err := unix.Write(efd, one); err != nil {
		t.Fatal(err)
	}
	select {
	case <-events:
	case <-time.After(10 * time.Second):
		t.Fatal("the event was not delivered")
	}
	cancel()
	waitDone(t, done, "the watch did not end with its context")
}

// testEventfd returns a non-blocking eventfd closed with the test.
func testEventfd(t *testing.T) int {
	t.Helper()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(efd) })
	return efd
}

// waitDone waits for waitEvents' result on done and fails the test with
// what when it takes over 10 s.
func waitDone(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal(what)
	}
}

// Once onCount asks for a bounded wait, waitEvents returns when it passes
// with no event, and hands over the whole count of a read.
func TestWaitEventsSettle(t *testing.T) {
	efd := testEventfd(t)
	for i := 0; i < 3; i++ {
		if _, err := unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	done := make(chan error, 1)
	go func() {
		done <- waitEvents(context.Background(), efd, func(n uint64) time.Duration {
			got = append(got, n)
			return 50 * time.Millisecond
		})
	}()
	waitDone(t, done, "the bounded wait did not end")
	if len(got) != 1 || got[0] != 3 {
		t.Fatalf("counts read %v, want [3]", got)
	}
}

// oomChildEnv makes the test binary, run again by TestOOMEventsReadLate,
// the process that runs out of memory in the test's cgroup.
const oomChildEnv = "TEN_TEST_OOM_CHILD"

// TestOOMEventsReadLate puts a process in a memory cgroup (cgroup v1) of
// its own, lets the kernel OOM-kill it, removes the cgroup and makes a new
// one at the same path (as systemd does when it restarts a service), and
// only then reads the watch's events, as a goroutine scheduled late on a
// busy machine would: the OOM kill counts once, the removal not at all.
// (Before, events read after the cgroup was gone were all dropped, and ps
// said "signal SIGKILL" for an OOM kill.) On a host with no v1 memory
// controller there is nothing to watch, and registerOOM must say so.
func TestOOMEventsReadLate(t *testing.T) {
	if os.Getenv(oomChildEnv) != "" {
		oomChild()
		return
	}
	if os.Geteuid() != 0 {
		if os.Getenv("TEN_REQUIRE_SYSTEM") != "" {
			t.Fatal("needs root (TEN_REQUIRE_SYSTEM is set)")
		}
		t.Skip("needs root")
	}
	root := "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(root, "memory.oom_control")); err != nil {
		// cgroup v2 only: systemd reports OOM kills itself.
		ev, err := registerOOM("/sys/fs/cgroup")
		if ev != nil || err != nil {
			t.Fatalf("registerOOM on cgroup v2: %v, %v; want nothing to watch", ev, err)
		}
		return
	}
	dir := filepath.Join(root, fmt.Sprintf("ten-oom-test-%d", os.Getpid()))
	mkCgroup := func() {
		t.Helper()
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for file, v := range map[string]string{"memory.limit_in_bytes": "33554432", "memory.swappiness": "0"} {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
		}
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	mkCgroup()
	ev, err := registerOOM(dir)
	if err != nil || ev == nil {
		t.Fatalf("registerOOM %s: %v, %v", dir, ev, err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestOOMEventsReadLate$")
	cmd.Env = append(os.Environ(), oomChildEnv+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprint(cmd.Process.Pid)), 0); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("move the child into %s: %v", dir, err)
	}
	_, _ = in.Write([]byte{1})
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child in a 32 MiB cgroup ended with %v, want killed by the OOM killer", err)
	}
	// The systemd-like restart: the old cgroup goes, a new one comes at
	// its path; no event has been read yet.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	mkCgroup()

	kills := 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ev.follow(ctx, 500*time.Millisecond, func() { kills++ }); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("the watch did not end once its cgroup was gone")
	}
	if kills != 1 {
		t.Fatalf("read late, one OOM kill and the cgroup's removal counted %d OOM kills, want 1", kills)
	}

	// The successor, removed with no OOM: nothing.
	ev, err = registerOOM(dir)
	if err != nil || ev == nil {
		t.Fatalf("registerOOM %s: %v, %v", dir, ev, err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	kills = 0
	if err := ev.follow(ctx, 500*time.Millisecond, func() { kills++ }); err != nil {
		t.Fatal(err)
	}
	if kills != 0 {
		t.Fatalf("a cgroup removed with no OOM counted %d OOM kills", kills)
	}
}

// oomChild waits for a byte on stdin (it has been moved into the cgroup by
// then) and touches memory until the kernel kills it.
func oomChild() {
	var b [1]byte
	_, _ = os.Stdin.Read(b[:])
	var hold [][]byte
	for i := 0; i < 64; i++ {
		m := make([]byte, 8<<20)
		for j := 0; j < len(m); j += 4096 {
			m[j] = 1
		}
		hold = append(hold, m)
	}
	fmt.Println(len(hold))
	os.Exit(0)
}
