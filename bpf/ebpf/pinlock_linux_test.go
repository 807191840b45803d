package ebpf

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

// A second holder of the same pin directory is refused at once, told who
// holds it; after Unlock the directory can be locked again.
func TestLockPins(t *testing.T) {
	dir := t.TempDir()
	l, err := LockPins(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockPins(dir)
	var held *PinsHeldError
	if !errors.As(err, &held) {
		t.Fatalf("second lock: %v, want a PinsHeldError", err)
	}
	if held.PID != os.Getpid() || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second lock: %v (pid %d), want it to name pid %d and %s", err, held.PID, os.Getpid(), dir)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := LockPins(dir)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	l2.Unlock()
}
