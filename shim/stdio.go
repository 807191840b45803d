package shim

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// Stdio gives the app two journal streams of its own, stdout at priority
// info and stderr at err, both under identifier, and then becomes the app
// (exec: same PID, so LISTEN_PID and the sockets systemd passed stay the
// app's). It is what `systemd-cat --stderr-priority=err` does in front of
// a socket-activated app, without loading libsystemd at every wake.
// Without journald the app keeps the output it inherited. It does not
// return: a command that cannot be run exits 127 with the reason on stderr.
func Stdio(identifier string, argv []string) {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "ten-shim stdio: no app command after --")
		os.Exit(2)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "ten-shim stdio: start %s: %v\n", argv[0], err)
		os.Exit(127)
	}
	if identifier != "" {
		for _, s := range []struct {
			fd       int
			priority int
		}{{1, PriorityInfo}, {2, PriorityErr}} {
			f, err := JournalStream(JournalStdout, identifier, s.priority)
			if err != nil {
				fmt.Fprintf(os.Stderr, "ten-shim stdio: fd %d stays as it was: %v\n", s.fd, err)
				continue
			}
			// Dup3 without O_CLOEXEC: the app inherits the stream.
			if err := unix.Dup3(int(f.Fd()), s.fd, 0); err != nil {
				fmt.Fprintf(os.Stderr, "ten-shim stdio: fd %d stays as it was: %v\n", s.fd, err)
			}
			f.Close()
		}
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "ten-shim stdio: exec %s: %v\n", path, err)
	os.Exit(127)
}
