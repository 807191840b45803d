package isolation

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A watch ends when its context does, though no event ever comes (before,
// it blocked in read(2) on the eventfd until the cgroup went away).
func TestWaitEventsCancel(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan struct{}, 4)
	done := make(chan error, 1)
	go func() { done <- waitEvents(ctx, efd, func() bool { events <- struct{}{}; return true }) }()
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	if _, err := unix.Write(efd, one); err != nil {
		t.Fatal(err)
	}
	select {
	case <-events:
	case <-time.After(10 * time.Second):
		t.Fatal("the event was not delivered")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not end with its context")
	}
}
