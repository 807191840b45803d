package shim

import (
	"fmt"
	"net"
	"os"
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
func JournalStream(path, identifier string, priority int) (*os.File, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("journal stream %s: %w", path, err)
	}
	defer c.Close()
	_ = c.CloseRead()
	// identifier, unit id (empty: from the cgroup), priority, level prefix
	// (on, as for any service and under systemd-cat: a line starting "<N>"
	// is logged at priority N), forward to syslog, to kmsg, to console.
	hdr := fmt.Sprintf("%s\n\n%d\n1\n0\n0\n0\n", identifier, priority)
	if _, err := c.Write([]byte(hdr)); err != nil {
		return nil, fmt.Errorf("journal stream %s: %w", path, err)
	}
	f, err := c.File()
	if err != nil {
		return nil, fmt.Errorf("journal stream %s: %w", path, err)
	}
	return f, nil
}
