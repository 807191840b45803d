package box

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tenhq/ten/internal/box/cgroups"
)

// The stages are re-executions of the current binary, recognised by argv[0]
// (not by the environment, which a caller of Box.Command may replace) and
// configured by JSON in argv[1].
const (
	// stageInit becomes PID 1 of the new namespaces: it waits until the
	// parent has put it in the box's cgroups, unshares the cgroup namespace,
	// builds the root file system, pivots into it and execs systemd.
	stageInit = "ten-box-stage-init"
	// stageExec joins a box's cgroups and namespaces and runs one command
	// there (Box.Command).
	stageExec = "ten-box-stage-exec"
	// stageLeash runs inside the box as the child of stageExec: it asks for
	// SIGKILL when that parent dies, then execs the command. Go's own
	// SysProcAttr.Pdeathsig cannot be used across PID namespaces: the child
	// sees getppid() == 0, takes its parent for dead and kills itself.
	stageLeash = "ten-box-stage-leash"
)

// Inherited descriptors of stageInit.
const (
	fdRelease = 3 // read end; EOF once the parent has placed the process in the cgroups
	fdError   = 4 // write end, close-on-exec; a message here means setup failed
)

type initConfig struct {
	Name    string
	Systemd string
	RW      []string
	Console string // host pty slave to bind on /dev/console
}

type execConfig struct {
	Name    string
	PID     int
	Cgroups []cgroups.Cgroup
}

func init() { MaybeStage() }

// MaybeStage runs one of the package's internal stages when the current
// process is a re-execution of the binary made by Boot or Box.Command, and
// then exits; otherwise it returns at once.
//
// The package's init function calls it, so importing box is enough for any
// binary (a command, a test binary) to boot boxes and run commands in them.
// It is exported so that a main or TestMain can call it first and make that
// dependency visible; calling it more than once is harmless.
func MaybeStage() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[0] {
	case stageInit:
		os.Exit(runInit(os.Args[1]))
	case stageExec:
		os.Exit(runExec(os.Args[1], os.Args[2:]))
	case stageLeash:
		os.Exit(runLeash(os.Args[1], os.Args[2:]))
	}
}

// runInit is PID 1 of the box until it execs systemd. It only returns on
// failure, after writing the reason to fdError.
func runInit(arg string) int {
	errPipe := os.NewFile(fdError, "error")
	_, _ = unix.FcntlInt(fdError, unix.F_SETFD, unix.FD_CLOEXEC)
	fail := func(err error) int {
		fmt.Fprintf(errPipe, "%v", err)
		return 1
	}
	var cfg initConfig
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
		return fail(fmt.Errorf("init stage: %w", err))
	}
	// Namespaces unshared below, and the bounding set, belong to this
	// thread; the exec at the end must happen on it.
	runtime.LockOSThread()
	if _, err := io.Copy(io.Discard, os.NewFile(fdRelease, "release")); err != nil {
		return fail(fmt.Errorf("init stage: wait for cgroups: %w", err))
	}
	_ = unix.Close(fdRelease)
	// The parent has moved us into the box's cgroups: unsharing now roots
	// the cgroup namespace there.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fail(fmt.Errorf("unshare cgroup namespace: %w", err))
	}
	unix.Umask(0)
	if err := setupRoot(cfg); err != nil {
		return fail(err)
	}
	unix.Umask(0o022)
	if err := unix.Sethostname([]byte(cfg.Name)); err != nil {
		return fail(fmt.Errorf("sethostname: %w", err))
	}
	if err := loopbackUp(); err != nil {
		return fail(err)
	}
	if err := dropBounding(); err != nil {
		return fail(err)
	}
	// As on a systemd host, PID 1 may hand services up to fs.nr_open files
	// (it keeps the limit it starts with in a container); this process's
	// limit only.
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n})
		}
	}
	env := []string{"container=ten-box"}
	argv := []string{cfg.Systemd, "--unit=" + bootTarget}
	err := unix.Exec(cfg.Systemd, argv, env)
	return fail(fmt.Errorf("exec %s: %w", cfg.Systemd, err))
}

// droppedCaps leave the box's bounding set: loading kernel modules and
// setting the clock would change the host, MAC policy and raw I/O have no
// place in a test.
var droppedCaps = []uintptr{
	unix.CAP_SYS_MODULE, unix.CAP_SYS_TIME, unix.CAP_WAKE_ALARM, unix.CAP_MAC_ADMIN,
	unix.CAP_MAC_OVERRIDE, unix.CAP_SYS_RAWIO, unix.CAP_BLOCK_SUSPEND,
}

func dropBounding() error {
	for _, c := range droppedCaps {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// namespaces a command joins, in order; mnt last, since joining it changes
// what /proc/PID/ns resolves to.
var namespaces = []string{"cgroup", "ipc", "uts", "net", "pid", "mnt"}

// runExec joins the box and runs argv there as a child, forwarding signals,
// and returns its exit status (re-raising the signal that killed it).
func runExec(arg string, argv []string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "ten-box: %v\n", err)
		return 125
	}
	var cfg execConfig
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
		return fail(fmt.Errorf("exec stage: %w", err))
	}
	if len(argv) == 0 {
		return fail(errors.New("exec stage: no command"))
	}
	cwd, err := os.Getwd()
	if err != nil {
		cwd = "/"
	}
	runtime.LockOSThread() // never unlocked: the thread carries the namespaces
	// Go's threads share one fs_struct; joining a mount namespace needs our own.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fail(fmt.Errorf("unshare fs: %w", err))
	}
	fds := make([]int, len(namespaces))
	for i, ns := range namespaces {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", cfg.PID, ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("box %s is gone: %w", cfg.Name, err))
		}
		fds[i] = fd
	}
	for i, fd := range fds {
		if err := unix.Setns(fd, 0); err != nil {
			return fail(fmt.Errorf("join %s namespace: %w", namespaces[i], err))
		}
		unix.Close(fd)
	}
	// The checkout is bound at its host path; elsewhere fall back to /.
	if err := unix.Chdir(cwd); err != nil {
		_ = unix.Chdir("/")
	}
	if err := dropBounding(); err != nil {
		return fail(err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil && !errors.Is(err, exec.ErrDot) {
		fmt.Fprintf(os.Stderr, "ten-box: %v\n", err)
		return 127
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, EnvInside+"=") })
	// One byte on this pipe releases the leash; its end if we die.
	leashR, leashW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer leashW.Close()
	cmd := &exec.Cmd{
		// Our binary, whether or not the box can see its path.
		Path:       "/proc/self/exe",
		Args:       append([]string{stageLeash, path}, argv...),
		Env:        append(env, EnvInside+"="+cfg.Name),
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{leashR},
	}
	sigs := make(chan os.Signal, 16)
	forward := []os.Signal{unix.SIGTERM, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGINT, unix.SIGQUIT}
	signal.Notify(sigs, append(forward, sigCancel)...)
	// A terminal sends ^C and ^\ to the whole foreground process group, the
	// child included; forwarding them too would deliver them twice.
	tty := isTerminal(0)
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start %s: %w", argv[0], err))
	}
	leashR.Close()
	// Only the command joins the box's cgroups, not this process: systemd
	// inside reads PIDs from them, and ours does not exist in its PID
	// namespace (cgroup v2 lists it as 0, which systemd takes for an I/O
	// error). Another goroutine does it, on a thread still in the host's
	// mount namespace where the host's /sys/fs/cgroup is.
	joined := make(chan error, 1)
	go func() { joined <- cgroups.JoinExec(cfg.Cgroups, cmd.Process.Pid) }()
	if err := <-joined; err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fail(err)
	}
	if _, err := leashW.Write([]byte{1}); err != nil {
		return fail(fmt.Errorf("release the command: %w", err))
	}
	waited := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				switch {
				case s == sigCancel:
					_ = cmd.Process.Kill()
				case tty && (s == unix.SIGINT || s == unix.SIGQUIT):
				default:
					_ = cmd.Process.Signal(s)
				}
			case <-waited:
				return
			}
		}
	}()
	_ = cmd.Wait()
	close(waited)
	signal.Stop(sigs)
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		sig := ws.Signal()
		signal.Reset(sig)
		_ = unix.Kill(os.Getpid(), sig)
		time.Sleep(100 * time.Millisecond)
		return 128 + int(sig)
	}
	return ws.ExitStatus()
}

// sigCancel asks stageExec to SIGKILL its command and then die of SIGKILL
// itself, which is what exec.CommandContext does to a plain command. Killing
// stageExec directly would orphan the command inside the box to the host's
// init, and the box's PID 1 could not finish exiting until that reaped it.
const sigCancel = syscall.Signal(38) // SIGRTMIN+4; Go uses no real-time signals

// runLeash sets SIGKILL as its parent-death signal, waits until its parent
// (stageExec, on the other side of the PID namespace) has put it in the
// box's cgroups, and execs argv[0] at path. If the parent dies first, the
// pipe on fd 3 ends without the byte.
func runLeash(path string, argv []string) int {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "ten-box: %v\n", err)
		return 125
	}
	const fd = 3
	var b [1]byte
	if n, err := unix.Read(fd, b[:]); n != 1 || err != nil {
		return 137
	}
	unix.Close(fd)
	if len(argv) == 0 {
		return 125
	}
	err := unix.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "ten-box: exec %s: %v\n", argv[0], err)
	if errors.Is(err, unix.ENOENT) {
		return 127
	}
	return 126
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// setupRoot builds the box's root file system in this (new, private) mount
// namespace and pivots into it. Nothing here is visible to the host.
func setupRoot(cfg initConfig) error {
	// Nothing we mount may propagate to the host, whatever / is marked as.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	cgMounts := cgroups.ParseMounts(string(mi))
	cgLinks := map[string]string{}
	if ents, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range ents {
			if e.Type()&os.ModeSymlink != 0 {
				if t, err := os.Readlink(filepath.Join("/sys/fs/cgroup", e.Name())); err == nil {
					cgLinks[e.Name()] = t
				}
			}
		}
	}
	// Open the read-write paths before anything covers them (the scratch
	// tmpfs goes on /tmp, where a test binary's directory may live).
	type bind struct {
		path string
		fd   int
		dir  bool
	}
	var binds []bind
	for _, p := range cfg.RW {
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		binds = append(binds, bind{p, fd, st.Mode&unix.S_IFMT == unix.S_IFDIR})
	}
	// Parents before children, so a nested path lands on top.
	slices.SortFunc(binds, func(a, b bind) int { return strings.Compare(a.path, b.path) })

	const scratch = "/tmp"
	if err := mount("tmpfs", scratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return err
	}
	upper, work, root := scratch+"/upper", scratch+"/work", scratch+"/root"
	for _, d := range []string{upper, work, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := writeUpper(upper, cfg.Name); err != nil {
		return fmt.Errorf("write box configuration: %w", err)
	}
	if err := mount("ten-box", root, "overlay", 0, "lowerdir=/,upperdir="+upper+",workdir="+work); err != nil {
		return err
	}

	const nosuidEtc = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	at := func(p string) string { return filepath.Join(root, p) }
	steps := []func() error{
		func() error { return mount("proc", at("/proc"), "proc", nosuidEtc, "") },
		// Sysctls are global but for the network ones, which the box's own
		// network namespace scopes.
		func() error { return bindRO(at("/proc/sys"), at("/proc/sys"), true) },
		func() error { return bindRO(at("/proc/sys/net"), at("/proc/sys/net"), false) },
		func() error {
			if _, err := os.Stat(at("/proc/sysrq-trigger")); err != nil {
				return nil // kernel without magic SysRq
			}
			return bindRO(at("/proc/sysrq-trigger"), at("/proc/sysrq-trigger"), true)
		},
		// A fresh sysfs shows the box's network namespace, not the host's
		// interfaces; read-only, as systemd expects in a container.
		func() error { return mount("sysfs", at("/sys"), "sysfs", nosuidEtc|unix.MS_RDONLY, "") },
		func() error { return setupCgroupFS(at("/sys/fs/cgroup"), cgMounts, cgLinks) },
		// In a container systemd does not mount bpffs; ten needs it.
		func() error {
			if _, err := os.Stat(at("/sys/fs/bpf")); err != nil {
				return nil // kernel without BPF
			}
			return mount("bpf", at("/sys/fs/bpf"), "bpf", nosuidEtc, "mode=0700")
		},
		func() error { return setupDev(at("/dev"), cfg.Console) },
		func() error { return mount("tmpfs", at("/run"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755") },
		func() error { return mount("tmpfs", at("/tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777") },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	for _, b := range binds {
		target := at(b.path)
		if b.dir {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		} else {
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				f.Close()
			}
		}
		if err := mount(fmt.Sprintf("/proc/self/fd/%d", b.fd), target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", b.path, err)
		}
		unix.Close(b.fd)
	}

	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	// The old root is stacked under the new one; detach it (and with it the
	// scratch tmpfs, which the overlay keeps alive).
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// setupCgroupFS gives the box its own tmpfs at /sys/fs/cgroup (otherwise
// systemd remounts the host's read-only) and mounts in it the host's
// hierarchies, laid out as on the host. Under the box's cgroup namespace
// each shows the box's own subtree as its root. systemd would mount them
// itself, but with its own grouping (cpu,cpuacct together): where the host
// mounts them apart, that mount fails and the controller is lost.
func setupCgroupFS(dir string, mounts []cgroups.Mount, links map[string]string) error {
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := mount("tmpfs", dir, "tmpfs", flags, "mode=0755"); err != nil {
		return err
	}
	for _, m := range mounts {
		p := filepath.Join(dir, m.Rel)
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := mount(m.FSType, p, m.FSType, flags, m.Data); err != nil {
			return err
		}
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func mount(src, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(src, target, fstype, flags, data); err != nil {
		if fstype == "" {
			fstype = "bind"
		}
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	return nil
}

// bindRO binds src on target and makes the new mount read-only (ro) or
// read-write.
func bindRO(src, target string, ro bool) error {
	if err := mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if ro {
		flags |= unix.MS_RDONLY
	}
	return mount("", target, "", flags, "")
}

// devNodes are the host devices a box gets, created as nodes of the same
// numbers. The host's /dev/shm, /dev/pts and /dev/mqueue stay out: writes
// there would reach the host.
var devNodes = []string{"null", "zero", "full", "random", "urandom", "tty", "fuse", "net/tun", "loop-control"}

// loopNodes block devices /dev/loopN are made in the box whether or not the
// host has them yet: there is no devtmpfs in the box to add the ones the
// kernel makes on demand (LOOP_CTL_GET_FREE), and mount -o loop (ten's
// storage quota images) opens the number loop-control hands out.
const loopNodes = 64

func setupDev(dev, console string) error {
	if err := mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=0755,size=4m"); err != nil {
		return err
	}
	for _, n := range devNodes {
		var st unix.Stat_t
		if err := unix.Stat("/dev/"+n, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
			continue
		}
		p := filepath.Join(dev, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(st.Rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dev, "loop-control")); err == nil {
		for i := 0; i < loopNodes; i++ {
			p := filepath.Join(dev, fmt.Sprintf("loop%d", i))
			if err := unix.Mknod(p, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(i)))); err != nil {
				return fmt.Errorf("mknod %s: %w", p, err)
			}
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC,
		"newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return err
	}
	if err := mount("tmpfs", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return err
	}
	if err := mount("mqueue", filepath.Join(dev, "mqueue"), "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	links := [][2]string{
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"},
	}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return err
		}
	}
	// systemd logs to /dev/console, and only if it is a terminal: bind the
	// pty the parent reads (resolved in this mount namespace, a copy of the
	// host's, so that the bind is allowed).
	cons := filepath.Join(dev, "console")
	if err := os.WriteFile(cons, nil, 0o600); err != nil {
		return err
	}
	return mount(console, cons, "", unix.MS_BIND, "")
}
