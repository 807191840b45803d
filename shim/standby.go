package shim

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StandbyVerbs are the first arguments of a standby waiter's command line
// (`ten-shim standby`, `ten shim-standby`): ten tells a service that stands
// by from one whose app runs by its main process's command line.
var StandbyVerbs = []string{"standby", "shim-standby"}

// IsStandby reports whether argv is a standby waiter's command line.
func IsStandby(argv []string) bool {
	return len(argv) > 1 && slices.Contains(StandbyVerbs, argv[1])
}

// StandbyOptions is what Standby needs besides Options.
type StandbyOptions struct {
	// Fds is how many systemd sockets the service has (fds 3 on): a
	// connection queued on any of them starts the app.
	Fds int
	// Identifier, when set, gives the app journal streams of its own
	// (stdout at priority info, stderr at err), as systemd-cat does.
	Identifier string
	// Extend, when > 0, is the service's start timeout (a Type=notify
	// service that stays "activating" while it stands by): the waiter
	// extends it (EXTEND_TIMEOUT_USEC) while it waits, and once more when
	// it starts the app, which then has Extend to become ready.
	Extend time.Duration
}

// Standby is the main process of a service that can be started ahead of
// its first request, sandbox and all: it opens the app's journal streams,
// then waits until a connection is queued on one of the systemd sockets
// (at once when systemd started the service for one) and becomes the app
// (execve: same PID, same sandbox, the sockets still at fds 3 on). While it
// waits the service costs a sleeping process and no CPU; a wake then costs
// the app's own start, not systemd's setup of the service. It does not
// return; it exits 127 when it cannot start the app.
func Standby(o Options, so StandbyOptions) {
	log := o.Log
	path := appPath(o, "standby")
	streams, err := appStreams(JournalStdout, so.Identifier)
	if err != nil {
		// Without journald the app keeps the service's output.
		log.Warn("standby: app output stays with the service's", "instance", o.Instance, "err", err)
	}
	if err := awaitConnection(so); err != nil {
		log.Error("standby", "instance", o.Instance, "err", err)
		os.Exit(1)
	}
	if so.Extend > 0 {
		_ = notify("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(so.Extend.Microseconds(), 10) + "\nSTATUS=starting the app\n")
	}
	useStreams(streams)
	if o.Socket != "" {
		_ = os.Remove(o.Socket) // a stale file from a killed app would block its bind
	}
	err = syscall.Exec(path, o.Argv, os.Environ())
	log.Error("standby", "instance", o.Instance, "err", fmt.Errorf("instance %s: exec %s: %w", o.Instance, path, err))
	os.Exit(127)
}

// awaitConnection returns once a connection is queued on one of the
// systemd sockets (fds 3 to 3+so.Fds-1), extending the start timeout
// meanwhile when so.Extend is set.
func awaitConnection(so StandbyOptions) error {
	if so.Fds <= 0 {
		return nil // nothing to wait on: start the app
	}
	fds := make([]unix.PollFd, so.Fds)
	for i := range fds {
		fds[i] = unix.PollFd{Fd: int32(3 + i), Events: unix.POLLIN}
	}
	timeout := -1
	if so.Extend > 0 {
		// Well within the timeout, so that one late wake-up of a busy
		// machine does not let it pass.
		timeout = int((so.Extend / 3).Milliseconds())
		if timeout < 100 {
			timeout = 100
		}
	}
	first := true
	for {
		wait := timeout
		if first {
			wait = 0 // started for a connection: no status to say
		}
		n, err := unix.Poll(fds, wait)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("wait for a connection: %w", err)
		}
		for _, f := range fds {
			if f.Revents&(unix.POLLNVAL) != 0 {
				return fmt.Errorf("wait for a connection: fd %d is not a socket systemd passed", f.Fd)
			}
		}
		if n > 0 {
			return nil
		}
		if first {
			first = false
			_ = notify("STATUS=standing by\n")
			continue
		}
		if so.Extend > 0 {
			_ = notify("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(so.Extend.Microseconds(), 10) + "\n")
		}
	}
}

// notify sends msg to systemd ($NOTIFY_SOCKET); without it, nothing.
func notify(msg string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(msg))
	return err
}
