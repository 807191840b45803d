package netns

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// Of is the path of process pid's network namespace.
func Of(pid int) string { return fmt.Sprintf("/proc/%d/ns/net", pid) }

// Dial connects to addr (network "tcp" or "unix"; an abstract or path unix
// socket is not namespaced by the network namespace but is allowed) from
// inside the network namespace at path (a /proc/PID/ns/net or a bind mount
// of one). Only the connecting goroutine's thread enters the namespace, and
// only for the dial; a thread that cannot return to ten's own namespace is
// never reused (it ends with the goroutine that locked it).
func Dial(ctx context.Context, path, network, addr string) (net.Conn, error) {
	return DialWith(ctx, &net.Dialer{}, path, network, addr)
}

// DialWith is Dial with d's settings (its Control, to set socket options).
func DialWith(ctx context.Context, d *net.Dialer, path, network, addr string) (net.Conn, error) {
	ns, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer unix.Close(ns)
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		// A goroutine of its own: if the thread cannot go back, it dies
		// with this goroutine (still locked), and the caller's thread is
		// untouched.
		runtime.LockOSThread()
		own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, fmt.Errorf("own network namespace: %w", err)}
			return
		}
		defer unix.Close(own)
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, fmt.Errorf("enter network namespace %s: %w", path, err)}
			return
		}
		c, err := d.DialContext(ctx, network, addr)
		if unix.Setns(own, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}
