package box

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tenhq/ten/internal/box/cgroups"
)

// systemdPath is where Debian installs systemd (package systemd).
const systemdPath = "/lib/systemd/systemd"

// Box is a running private systemd. Close it.
type Box struct {
	name    string
	log     *slog.Logger
	cmd     *exec.Cmd
	pid     int
	cgroups []cgroups.Cgroup // the box's root cgroup in every hierarchy
	console *tail
	// The box's /dev/console is a pseudo-terminal of the host's, since
	// systemd only logs to a terminal. Its output goes to Options.Stdout;
	// holding the slave open keeps reads from failing while systemd reopens
	// the console.
	ptyMaster, ptySlave *os.File
	consoleDone         chan struct{}

	done    chan struct{} // closed once PID 1 has been reaped
	waitErr error

	closeOnce sync.Once
	closeErr  error
}

var boxSeq atomic.Int64

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$`)

// Boot starts a box and returns once systemd inside reports the system
// running (`systemctl is-system-running --wait`). A degraded system is
// returned too, with the failed units logged as a warning. ctx bounds the
// boot only; the box lives until Close.
func Boot(ctx context.Context, opts Options) (_ *Box, err error) {
	if err := Reason(); err != nil {
		return nil, err
	}
	start := time.Now()
	name := opts.Name
	if name == "" {
		name = defaultName
	}
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("box: name %q: want letters, digits and dashes, at most 63", name)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := opts.BootTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	rw, err := resolveRW(opts.RW)
	if err != nil {
		return nil, err
	}
	hs, err := cgroups.FindHierarchies()
	if err != nil {
		return nil, fmt.Errorf("box: %w", err)
	}
	cgroups.RemoveStale(hs)
	id := cgroups.BoxID(name, boxSeq.Add(1))
	cgs, err := cgroups.Make(hs, id)
	if err != nil {
		return nil, fmt.Errorf("box: %w", err)
	}
	b := &Box{
		name:    name,
		log:     log,
		cgroups: cgs,
		console: &tail{max: 64 << 10},
		done:    make(chan struct{}),
	}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()

	b.ptyMaster, b.ptySlave, err = openPTY()
	if err != nil {
		return nil, fmt.Errorf("box: console: %w", err)
	}
	// The console and PID 1's stdout and stderr are copied by goroutines of
	// their own; the caller's writers need not be safe for that.
	var mu sync.Mutex
	stdout := io.MultiWriter(&lockedWriter{mu: &mu, w: orDiscard(opts.Stdout)}, b.console)
	stderr := io.MultiWriter(&lockedWriter{mu: &mu, w: orDiscard(opts.Stderr)}, b.console)
	b.consoleDone = make(chan struct{})
	go func() {
		defer close(b.consoleDone)
		_, _ = io.Copy(stdout, b.ptyMaster)
	}()

	cfg, _ := json.Marshal(initConfig{Name: name, Systemd: systemdPath, RW: rw, Console: b.ptySlave.Name()})
	relR, relW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("box: %w", err)
	}
	defer relW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		relR.Close()
		return nil, fmt.Errorf("box: %w", err)
	}
	defer errR.Close()
	b.cmd = &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{stageInit, string(cfg)},
		Env:        []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Stdout:     stdout,
		Stderr:     stderr,
		ExtraFiles: []*os.File{relR, errW}, // fdRelease, fdError
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS |
				syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET,
			// Out of the caller's session: a terminal's ^C must not reach
			// systemd, which takes SIGINT for ctrl-alt-del.
			Setsid:    true,
			Pdeathsig: syscall.SIGKILL,
		},
		WaitDelay: 2 * time.Second,
	}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked dies, not the
		// process; a locked thread lives as long as this goroutine.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := b.cmd.Start(); err != nil {
			started <- err
			close(b.done)
			return
		}
		started <- nil
		b.waitErr = b.cmd.Wait()
		close(b.done)
	}()
	if err := <-started; err != nil {
		relR.Close()
		errW.Close()
		return nil, fmt.Errorf("box: start: %w", err)
	}
	relR.Close()
	errW.Close()
	b.pid = b.cmd.Process.Pid
	var roots []string
	for _, cg := range cgs {
		roots = append(roots, cg.Dir)
	}
	if err := cgroups.Join(roots, b.pid); err != nil {
		return nil, fmt.Errorf("box: %w", err)
	}
	relW.Close() // release the init stage

	setupErr := make(chan []byte, 1)
	go func() {
		msg, _ := io.ReadAll(errR) // EOF at systemd's exec (close-on-exec) or at exit
		setupErr <- msg
	}()
	select {
	case msg := <-setupErr:
		if len(msg) > 0 {
			return nil, fmt.Errorf("box: set up: %s", msg)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("box: set up: %w", ctx.Err())
	}
	log.Debug("box: systemd started", "pid", b.pid, "cgroup", id, "after", time.Since(start))

	if err := b.waitRunning(ctx); err != nil {
		return nil, err
	}
	log.Info("box: booted", "name", name, "pid", b.pid, "after", time.Since(start).Round(time.Millisecond))
	return b, nil
}

// waitRunning waits for systemd's private socket, then for the end of the
// boot transaction.
func (b *Box) waitRunning(ctx context.Context) error {
	sock := fmt.Sprintf("/proc/%d/root/run/systemd/private", b.pid)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-b.done:
			return b.bootError(fmt.Errorf("systemd exited: %v", b.waitErr))
		case <-ctx.Done():
			return b.bootError(fmt.Errorf("no systemd socket: %w", ctx.Err()))
		case <-time.After(5 * time.Millisecond):
		}
	}
	var stderr bytes.Buffer
	cmd := b.Command(ctx, "systemctl", "is-system-running", "--wait")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	state := strings.TrimSpace(string(out))
	if err != nil && stderr.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	switch {
	case state == "running":
		return nil
	case state == "degraded":
		failed, _ := b.Command(ctx, "systemctl", "list-units", "--failed", "--plain", "--no-legend").Output()
		b.log.Warn("box: degraded boot", "failed", strings.TrimSpace(string(failed)))
		return nil
	case ctx.Err() != nil:
		return b.bootError(fmt.Errorf("systemd is %q: %w", state, ctx.Err()))
	default:
		return b.bootError(fmt.Errorf("systemd is %q: %v", state, err))
	}
}

func (b *Box) bootError(err error) error {
	if c := b.console.String(); c != "" {
		return fmt.Errorf("box: boot: %w; console:\n%s", err, c)
	}
	return fmt.Errorf("box: boot: %w", err)
}

// PID returns the host PID of the box's systemd (PID 1 inside).
func (b *Box) PID() int { return b.pid }

// Name returns the box's name, which is also its host name.
func (b *Box) Name() string { return b.name }

// Command returns a command that runs name with args inside the box: in all
// of its namespaces, in its cgroup tree (the leaf /ten-box-exec, so that
// systemd inside sees a process of its own), in the caller's working
// directory when that is visible inside (an Options.RW path) and in / when
// not. The environment passes through, with EnvInside set; stdin, stdout and
// stderr are the returned Cmd's. The command joins the box when it starts,
// through a re-execution of the current binary that stays its parent on the
// host side; signals sent to that process are forwarded (^C and ^\ from a
// terminal reach the command directly), and it exits as the command does.
// When ctx is done the command is killed (SIGKILL) inside the box; Cancel
// and WaitDelay are set to do that and may be replaced.
func (b *Box) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cfg, _ := json.Marshal(execConfig{Name: b.name, PID: b.pid, Cgroups: b.cgroups})
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = append([]string{stageExec, string(cfg), name}, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(sigCancel) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Close stops the box: SIGKILL to its PID 1 ends every process of its PID
// namespace, then its cgroup trees are removed. Nothing of the box remains.
// Close may be called more than once.
func (b *Box) Close() error {
	b.closeOnce.Do(func() {
		if b.cmd != nil && b.cmd.Process != nil {
			_ = b.cmd.Process.Kill()
			<-b.done
		}
		if b.ptySlave != nil {
			b.ptySlave.Close()
			select {
			case <-b.consoleDone:
			case <-time.After(time.Second):
			}
			b.ptyMaster.Close()
		}
		if err := cgroups.Remove(b.cgroups, 10*time.Second); err != nil {
			b.closeErr = fmt.Errorf("box: close: %w", err)
		}
	})
	return b.closeErr
}

// Console returns the last part of systemd's console output.
func (b *Box) Console() string { return b.console.String() }

// openPTY opens a pseudo-terminal pair in raw mode (no \r added).
func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	t, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err == nil {
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
		err = unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, t)
	}
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("raw mode: %w", err)
	}
	return m, s, nil
}

func resolveRW(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("box: rw %s: %w", p, err)
		}
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil, fmt.Errorf("box: rw %s: %w", p, err)
		}
		if real == "/" {
			return nil, fmt.Errorf("box: rw %s: the root cannot be bound read-write", p)
		}
		out = append(out, real)
	}
	return out, nil
}

// SystemdIsPID1 reports whether systemd manages this machine (or this box):
// /run/systemd/system exists and PID 1 is systemd.
func SystemdIsPID1() bool {
	fi, err := os.Stat("/run/systemd/system")
	if err != nil || !fi.IsDir() {
		return false
	}
	comm, err := os.ReadFile("/proc/1/comm")
	return err == nil && strings.TrimSpace(string(comm)) == "systemd"
}

// Reason says why Boot cannot work here, or returns nil if it can.
func Reason() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("box: booting systemd needs root (running as uid %d)", os.Geteuid())
	}
	if v := os.Getenv(EnvInside); v != "" {
		return fmt.Errorf("box: already inside box %s", v)
	}
	if fi, err := os.Stat(systemdPath); err != nil || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("box: no %s (Debian package systemd)", systemdPath)
	}
	// dbus.service comes with the Debian package dbus, which the CI script
	// installs next to systemd and iproute2; systemctl and systemd-run work
	// without it, but go-systemd's D-Bus calls, like ten's, need the bus.
	if !exists("/usr/bin/dbus-daemon") ||
		!(exists("/lib/systemd/system/dbus.service") || exists("/usr/lib/systemd/system/dbus.service")) {
		return errors.New("box: no D-Bus system bus (Debian package dbus)")
	}
	if _, err := cgroups.FindHierarchies(); err != nil {
		return fmt.Errorf("box: %w", err)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// lockedWriter serialises writes to w under mu, which several lockedWriters
// may share (Stdout and Stderr are often the same writer).
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = bytes.Clone(t.buf[over:])
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
