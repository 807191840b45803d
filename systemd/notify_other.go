//go:build !linux

package systemd

import "errors"

// NotifySocket is the service manager's notification socket.
const NotifySocket = "/run/systemd/notify"

// NotifyReady needs Linux (SCM_CREDENTIALS on a unix socket).
func NotifyReady(pid int) error {
	return errors.New("notify: systemd runs on Linux only")
}
