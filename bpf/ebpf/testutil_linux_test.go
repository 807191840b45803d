package ebpf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Privileged tests load real programs into the running kernel. They need
// root; without it they skip, unless TEN_REQUIRE_SYSTEM is set (CI), where
// a skip could hide a regression and they fail instead. `make test-unit`
// (TEN_UNIT_ONLY) skips them even as root.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Getenv("TEN_UNIT_ONLY") != "" {
		tb.Skip("privileged test; TEN_UNIT_ONLY is set")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("TEN_REQUIRE_SYSTEM") != "" {
		tb.Fatal("needs root, and TEN_REQUIRE_SYSTEM is set")
	}
	tb.Skip("needs root (set TEN_REQUIRE_SYSTEM=1 to fail instead of skipping)")
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// netNS is a network namespace created for one test, with lo up. It lives as
// long as the test holds its file.
type netNS struct{ f *os.File }

func newNetNS(tb testing.TB) *netNS {
	tb.Helper()
	requireRoot(tb)
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result)
	go func() {
		// Never unlocked: the thread leaves the host's namespace for good and
		// the runtime ends it with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("unshare netns: %w", err)}
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		if err == nil {
			err = linkUp("lo")
		}
		ch <- result{f, err}
	}()
	r := <-ch
	if r.err != nil {
		tb.Fatal(r.err)
	}
	tb.Cleanup(func() { r.f.Close() })
	return &netNS{r.f}
}

// path names the namespace for LoadDispatcher.
func (n *netNS) path() string { return fmt.Sprintf("/proc/self/fd/%d", n.f.Fd()) }

// enter moves the calling goroutine into the namespace for the rest of its
// life. Sockets created and processes started by it live in the namespace;
// call it first in a test or benchmark function.
func (n *netNS) enter(tb testing.TB) {
	tb.Helper()
	runtime.LockOSThread() // never unlocked, see newNetNS
	if err := unix.Setns(int(n.f.Fd()), unix.CLONE_NEWNET); err != nil {
		tb.Fatalf("setns: %v", err)
	}
}

func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get %s flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// newBPFFS mounts a fresh bpf filesystem for the calling goroutine only: it
// moves the goroutine's thread into a private mount namespace first, so the
// host's mounts are never touched. Pin paths are valid on this goroutine.
func newBPFFS(tb testing.TB) string {
	tb.Helper()
	privateMounts(tb)
	dir := tb.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		tb.Fatalf("mount bpffs: %v", err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount bpffs: %v", err)
		}
	})
	return dir
}

// privateMounts moves the calling goroutine's thread into a mount namespace
// of its own, with propagation to the host's mounts cut.
func privateMounts(tb testing.TB) {
	tb.Helper()
	requireRoot(tb)
	runtime.LockOSThread() // never unlocked, see newNetNS
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		tb.Fatalf("unshare mount namespace: %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		tb.Fatalf("make mounts private: %v", err)
	}
}

// newCgroup creates a cgroup v2 subtree for the test (on hybrid hosts under
// /sys/fs/cgroup/unified) with the given children, and removes it after the
// test. It returns the paths of the children, or of the subtree without any.
func newCgroup(tb testing.TB, children ...string) []string {
	tb.Helper()
	requireRoot(tb)
	root, err := CgroupV2Root()
	if err != nil {
		tb.Fatal(err)
	}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(tb.Name())
	top := filepath.Join(root, fmt.Sprintf("ten-test-%d-%s", os.Getpid(), name))
	if err := os.Mkdir(top, 0o755); err != nil {
		tb.Fatal(err)
	}
	paths := []string{top}
	if len(children) > 0 {
		paths = paths[:0]
	}
	for _, c := range children {
		p := filepath.Join(top, c)
		if err := os.MkdirAll(p, 0o755); err != nil {
			tb.Fatal(err)
		}
		paths = append(paths, p)
	}
	tb.Cleanup(func() { removeCgroup(tb, top) })
	return paths
}

// removeCgroup removes a cgroup subtree, deepest first. Processes must be
// gone; the kernel takes a moment to notice that after they are reaped.
func removeCgroup(tb testing.TB, top string) {
	var dirs []string
	filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		for range 100 {
			if err = unix.Rmdir(dirs[i]); err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			tb.Errorf("remove cgroup %s: %v", dirs[i], err)
		}
	}
}

// helperEnv selects the helper mode when the test binary re-executes itself.
const helperEnv = "TEN_EBPF_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintf(os.Stderr, "helper %s: %v\n", mode, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startHelper re-executes the test binary as a helper process in the given
// cgroup ("" = the test's own) and the calling thread's namespaces. It
// returns the first line the helper prints, its address.
func startHelper(tb testing.TB, mode, cgroup string, env []string, files ...*os.File) (*exec.Cmd, string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, helperEnv+"="+mode)...)
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = files
	if cgroup != "" {
		cg, err := os.Open(cgroup)
		if err != nil {
			tb.Fatal(err)
		}
		defer cg.Close()
		cmd.SysProcAttr = &unix.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start helper %s: %v", mode, err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		tb.Fatalf("helper %s: read address: %v", mode, err)
	}
	return cmd, strings.TrimSpace(line)
}

// runHelper is the body of a helper process. Modes:
//
//	echo:   listen on 127.0.0.1:0; with TEN_HELPER_DIAL, first open a
//	        connection there and exchange TEN_HELPER_BYTES bytes; print the
//	        listen address, then echo every connection.
//	hold:   listen on 127.0.0.1:0 (plain TCP), print the address, accept
//	        nothing.
//	accept: echo the connections of the listener passed as fd 3.
//	spawn:  listen on 127.0.0.1:0 and start an `accept` helper in the cgroup
//	        TEN_HELPER_CGROUP with that listener, the way systemd hands a
//	        socket to a socket-activated service; print the address.
func runHelper(mode string) error {
	switch mode {
	case "echo":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		if addr := os.Getenv("TEN_HELPER_DIAL"); addr != "" {
			var n int
			fmt.Sscan(os.Getenv("TEN_HELPER_BYTES"), &n)
			if err := exchange(addr, n); err != nil {
				return err
			}
		}
		fmt.Println(ln.Addr())
		return echoLoop(ln)
	case "hold":
		// Plain TCP, as systemd's sockets: Go would listen with MPTCP.
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		fmt.Println(ln.Addr())
		select {}
	case "accept":
		ln, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			return err
		}
		return echoLoop(ln)
	case "spawn":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			return err
		}
		cg, err := os.Open(os.Getenv("TEN_HELPER_CGROUP"))
		if err != nil {
			return err
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=accept")
		cmd.Stderr = os.Stderr
		cmd.ExtraFiles = []*os.File{f}
		cmd.SysProcAttr = &unix.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd()), Pdeathsig: unix.SIGKILL}
		if err := cmd.Start(); err != nil {
			return err
		}
		f.Close()
		ln.Close() // the child holds the listener now, as a service does
		fmt.Println(ln.Addr())
		return cmd.Wait()
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// exchange connects to an echo server and sends and reads back n bytes.
func exchange(addr string, n int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, make([]byte, n), make([]byte, n))
}

// roundTrip writes out and reads len(in) bytes back.
func roundTrip(c net.Conn, out, in []byte) error {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		errc <- err
	}()
	if _, err := io.ReadFull(c, in); err != nil {
		return err
	}
	return <-errc
}

func echoLoop(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// echoServer runs an echo server on ln until the test ends.
func echoServer(tb testing.TB, ln net.Listener) {
	tb.Cleanup(func() { ln.Close() })
	go echoLoop(ln)
}
