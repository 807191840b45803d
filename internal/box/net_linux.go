package box

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// Dial connects to address in the box's network namespace: to a server
// running inside the box, which the host's network cannot reach. Use a
// numeric address (127.0.0.1:8080); a DNS lookup would run in the host's
// namespace.
func (b *Box) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := b.inNetns(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Listen opens a listener in the box's network namespace, served from the
// calling process: a test can stand in for a server that programs in the
// box connect to. Addresses are as for Dial.
func (b *Box) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := b.inNetns(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// inNetns runs f on a thread of its own that has joined the box's network
// namespace: sockets made there belong to it for good, whatever thread uses
// them later. The thread is never unlocked, so Go ends it with the goroutine
// instead of reusing it in the wrong namespace.
func (b *Box) inNetns(f func() error) error {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", b.pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("box %s: network namespace: %w", b.name, err)
	}
	errc := make(chan error, 1)
	go func() {
		defer unix.Close(fd)
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("box %s: join network namespace: %w", b.name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
