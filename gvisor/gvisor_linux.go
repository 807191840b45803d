package gvisor

import (
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Exec writes the bundle and replaces the current process with runsc, so
// that the stop signals systemd (or the shim) sends reach runsc, which
// forwards them to the app.
func Exec(o Options) error {
	data, err := Spec(o)
	if err != nil {
		return err
	}
	// State of a run that was killed would make `runsc run` refuse the ID.
	if err := os.RemoveAll(filepath.Join(o.Dir, "runsc")); err != nil {
		return errorf("clean %s: %w", o.Dir, err)
	}
	bundle := filepath.Join(o.Dir, "bundle")
	for _, d := range []string{filepath.Join(o.Dir, "runsc"), bundle} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return errorf("%w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return errorf("write bundle: %w", err)
	}
	args := RunscArgs(o)
	if err := unix.Exec(o.Runsc, args, os.Environ()); err != nil {
		return errorf("exec %s: %w", o.Runsc, err)
	}
	return nil
}

// ListenExec binds a unix socket at path and execs argv with it as fd 3 and
// LISTEN_FDS=1, as systemd socket activation would. It runs inside gVisor.
func ListenExec(path string, argv []string) error {
	if len(argv) == 0 {
		return ErrNoCommand
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return errorf("listen %s: %w", path, err)
	}
	f, err := l.(*net.UnixListener).File()
	if err != nil {
		return errorf("listen %s: %w", path, err)
	}
	if fd := int(f.Fd()); fd == 3 {
		if _, err := unix.FcntlInt(3, unix.F_SETFD, 0); err != nil {
			return errorf("socket fd 3: %w", err)
		}
	} else if err := unix.Dup3(fd, 3, 0); err != nil {
		return errorf("dup socket to fd 3: %w", err)
	}
	env := os.Environ()
	env = append(env, "LISTEN_FDS=1", "LISTEN_PID="+strconv.Itoa(os.Getpid()), "LISTEN_FDNAMES=app")
	bin := argv[0]
	if err := unix.Exec(bin, argv, env); err != nil {
		return errorf("exec %s: %w", bin, err)
	}
	return nil
}
