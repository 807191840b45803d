package systemd

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// NotifySocket is the service manager's notification socket, where
// services send READY=1 (sd_notify).
const NotifySocket = "/run/systemd/notify"

// NotifyReady tells systemd that the service whose process pid is ready
// (READY=1), on that process's behalf, as `systemd-notify --pid=PID --ready`
// does: ten is root, so it may send pid in the message's credentials, and
// systemd takes it as the service's own notification (the unit needs
// Type=notify and NotifyAccess=all). It is how a directly run app's service
// turns active once ten has seen the app listen, with no waiter process in
// the unit.
func NotifyReady(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("notify %s: no process (pid %d)", NotifySocket, pid)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("notify %s: %w", NotifySocket, err)
	}
	defer unix.Close(fd)
	creds := unix.UnixCredentials(&unix.Ucred{Pid: int32(pid), Uid: uint32(unix.Geteuid()), Gid: uint32(unix.Getegid())})
	if err := unix.Sendmsg(fd, []byte("READY=1"), creds, &unix.SockaddrUnix{Name: NotifySocket}, 0); err != nil {
		return fmt.Errorf("notify %s for pid %d: %w", NotifySocket, pid, err)
	}
	return nil
}
