package bpftest

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
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RequireRoot skips or fails a test not run as root. Privileged tests load
// real programs into the running kernel. They need
// root; without it they skip, unless TEN_REQUIRE_SYSTEM is set (CI), where
// a skip could hide a regression and they fail instead. `make test-unit`
// (TEN_UNIT_ONLY) skips them even as root.
func RequireRoot(tb testing.TB) {
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

// Logger logs to the test's log.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// NetNS is a network namespace created for one test, with lo up. It lives as
// long as the test holds its file.
type NetNS struct{ f *os.File }

// NewNetNS creates a network namespace for the test.
func NewNetNS(tb testing.TB) *NetNS {
	tb.Helper()
	RequireRoot(tb)
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
	return &NetNS{r.f}
}

// Path names the namespace for LoadDispatcher.
func (n *NetNS) Path() string { return fmt.Sprintf("/proc/self/fd/%d", n.f.Fd()) }

// Enter moves the calling goroutine into the namespace for the rest of its
// life. Sockets created and processes started by it live in the namespace;
// call it first in a test or benchmark function.
func (n *NetNS) Enter(tb testing.TB) {
	tb.Helper()
	runtime.LockOSThread() // never unlocked, see NewNetNS
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

// NewBPFFS mounts a fresh bpf filesystem for the calling goroutine only: it
// moves the goroutine's thread into a private mount namespace first, so the
// host's mounts are never touched. Pin paths are valid on this goroutine.
func NewBPFFS(tb testing.TB) string {
	tb.Helper()
	PrivateMounts(tb)
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

// PrivateMounts moves the calling goroutine's thread into a mount namespace
// of its own, with propagation to the host's mounts cut.
func PrivateMounts(tb testing.TB) {
	tb.Helper()
	RequireRoot(tb)
	runtime.LockOSThread() // never unlocked, see NewNetNS
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		tb.Fatalf("unshare mount namespace: %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		tb.Fatalf("make mounts private: %v", err)
	}
}

// NewCgroup creates a cgroup v2 subtree for the test under root (the
// cgroup2 mount: ebpf.CgroupV2Root) with the given children, and removes it after the
// test. It returns the paths of the children, or of the subtree without any.
func NewCgroup(tb testing.TB, root string, children ...string) []string {
	tb.Helper()
	RequireRoot(tb)
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

// Main is the TestMain of a package using StartHelper: in a helper process
// it runs the helper, otherwise the tests.
func Main(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintf(os.Stderr, "helper %s: %v\n", mode, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// StartHelper re-executes the test binary as a helper process in the given
// cgroup ("" = the test's own) and the calling thread's namespaces. It
// returns the first line the helper prints, its address.
func StartHelper(tb testing.TB, mode, cgroup string, env []string, files ...*os.File) (*exec.Cmd, string) {
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
//	        connection there and Exchange TEN_HELPER_BYTES bytes; print the
//	        listen address, then echo every connection.
//	hold:   listen on 127.0.0.1:0 (plain TCP), print the address, accept
//	        nothing.
//	dialecho: connect to TEN_HELPER_DIAL (a connection the app opens
//	        itself), print its local address, then echo what comes on it.
//	accept: echo the connections of the listener passed as fd 3.
//	spawn:  listen on 127.0.0.1:0 and start an `accept` helper in the cgroup
//	        TEN_HELPER_CGROUP with that listener, the way systemd hands a
//	        socket to a socket-activated service; print the address.
//	bind:   try to bind each TCP address of TEN_HELPER_BIND (space
//	        separated) and close it again; print one line with "ok" or the
//	        error's errno name for each, in order.
func runHelper(mode string) error {
	switch mode {
	case "bind":
		var out []string
		var lc net.ListenConfig
		lc.SetMultipathTCP(false) // one bind(2) per address
		for _, a := range strings.Fields(os.Getenv("TEN_HELPER_BIND")) {
			ln, err := lc.Listen(context.Background(), "tcp", a)
			var errno unix.Errno
			switch {
			case err == nil:
				ln.Close()
				out = append(out, "ok")
			case errors.As(err, &errno):
				out = append(out, unix.ErrnoName(errno))
			default:
				out = append(out, err.Error())
			}
		}
		fmt.Println(strings.Join(out, " "))
		select {}
	case "echo":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		if addr := os.Getenv("TEN_HELPER_DIAL"); addr != "" {
			var n int
			fmt.Sscan(os.Getenv("TEN_HELPER_BYTES"), &n)
			if err := Exchange(addr, n); err != nil {
				return err
			}
		}
		fmt.Println(ln.Addr())
		return echoLoop(ln)
	case "dialecho":
		c, err := net.Dial("tcp", os.Getenv("TEN_HELPER_DIAL"))
		if err != nil {
			return err
		}
		fmt.Println(c.LocalAddr())
		_, err = io.Copy(c, c)
		return err
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

// Exchange connects to an echo server and sends and reads back n bytes.
func Exchange(addr string, n int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return RoundTrip(c, make([]byte, n), make([]byte, n))
}

// RoundTrip writes out and reads len(in) bytes back.
func RoundTrip(c net.Conn, out, in []byte) error {
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

// EchoServer runs an echo server on ln until the test ends.
func EchoServer(tb testing.TB, ln net.Listener) {
	tb.Cleanup(func() { ln.Close() })
	go echoLoop(ln)
}

// ListenTCP listens with plain TCP: Go would use MPTCP, which the kernel
// does not put in a sockmap (systemd's sockets are plain TCP).
func ListenTCP(tb testing.TB, addr string) *net.TCPListener {
	tb.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// LandsOn dials addr and checks the connection is accepted on ln with the
// client's own address as the peer and addr as the local address.
func LandsOn(tb testing.TB, addr string, ln *net.TCPListener) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	ln.SetDeadline(time.Now().Add(time.Second))
	s, err := ln.Accept()
	if err != nil {
		tb.Fatalf("dial %s: not accepted on %s: %v", addr, ln.Addr(), err)
	}
	defer s.Close()
	if got, want := s.RemoteAddr().String(), c.LocalAddr().String(); got != want {
		tb.Errorf("dial %s: server sees peer %s, client is %s", addr, got, want)
	}
	if got := s.LocalAddr().String(); got != addr {
		tb.Errorf("dial %s: server sees local address %s", addr, got)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		tb.Error(err)
	}
	if _, err := s.Read(make([]byte, 1)); err != nil {
		tb.Error(err)
	}
}

// Refused dials addr and checks the connection is refused.
func Refused(tb testing.TB, addr string) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		tb.Fatalf("dial %s: connected, want Refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		tb.Fatalf("dial %s: %v, want connection Refused", addr, err)
	}
}
