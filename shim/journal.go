package shim

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// JournalStdout is journald's stream socket (what systemd-cat and
// sd_journal_stream_fd connect to).
const JournalStdout = "/run/systemd/journal/stdout"

// Journal priorities of the app's two streams: stdout lines are info,
// stderr lines err, so `ten logs --level` can tell them apart (journald
// cannot tell a service's stdout from its stderr otherwise: systemd hands
// both the same stream).
const (
	PriorityInfo = 6
	PriorityErr  = 3
)

// JournalStream opens a stream to journald whose lines are logged with
// identifier and priority, as sd_journal_stream_fd does; journald takes the
// unit from the caller's cgroup. The shim gives the app one for stdout and
// one for stderr itself, which spares an exec of systemd-cat at every wake.
// It makes plain system calls (a blocking socket, close-on-exec, never
// registered with Go's poller): the file is for the app to inherit, and
// `ten-shim cat` pays for it at every start.
func JournalStream(path, identifier string, priority int) (*os.File, error) {
	fd, err := streamSocket()
	if err != nil {
		return nil, fmt.Errorf("journal stream %s: %w", path, err)
	}
	fail := func(err error) (*os.File, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("journal stream %s: %w", path, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return fail(err)
	}
	_ = unix.Shutdown(fd, unix.SHUT_RD)
	// identifier, unit id (empty: from the cgroup), priority, level prefix
	// (on, as for any service and under systemd-cat: a line starting "<N>"
	// is logged at priority N), forward to syslog, to kmsg, to console.
	hdr := identifier + "\n\n" + strconv.Itoa(priority) + "\n1\n0\n0\n0\n"
	for b := []byte(hdr); len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fail(err)
		}
		b = b[n:]
	}
	return os.NewFile(uintptr(fd), "journal-stream"), nil
}
