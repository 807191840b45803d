package kernel

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tenhq/ten/shim"
)

// handOff tells an L4 service's relay process (shim.Relay, started by the
// launcher of a units.Launched service) that its L4 connections now reach
// the app's own socket: the relay takes what is queued, finishes what it
// relays and exits, so nothing of ten stays beside the app. pids are the
// service cgroup's processes. A relay that has not yet set up its handler
// (it starts beside the app) is asked again shortly; one that never does
// is left relaying. Returns how many relays were told.
func handOff(procs string) (int, error) {
	var lastErr error
	for try := 0; try < 20; try++ {
		if try > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		told, waiting := 0, 0
		for _, pid := range readPids(procs) {
			if !isRelay(pid) {
				continue
			}
			if !catches(pid, shim.HandOffSignal) {
				waiting++
				continue
			}
			if err := signalPid(pid, shim.HandOffSignal); err != nil {
				lastErr = fmt.Errorf("relay pid %d: %w", pid, err)
				continue
			}
			told++
		}
		if waiting == 0 {
			return told, lastErr
		}
	}
	return 0, fmt.Errorf("the relay did not get ready for its hand-off in 1 s")
}

// isRelay reports whether pid's command line is a relay's: its first
// argument one of shim.RelayVerbs. A tenant's process that dresses up as one
// is in the tenant's own service: the signal reaches only its own.
func isRelay(pid int) bool {
	b, err := readSmall("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := bytes.Split(b, []byte{0})
	if len(args) < 2 {
		return false
	}
	for _, v := range shim.RelayVerbs {
		if string(args[1]) == v {
			return true
		}
	}
	return false
}

// catches reports whether pid has a handler for sig (SigCgt in its status):
// a relay starts with shim.HandOffSignal ignored and has one only once it
// listens for it.
func catches(pid int, sig unix.Signal) bool {
	b, err := readSmall("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// signalPid sends sig through a pidfd, so a pid reused since it was read
// is never signalled.
func signalPid(pid int, sig unix.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

// readSmall reads up to 8 KiB of a /proc file.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 8192)
	n, err := f.Read(b)
	if n > 0 {
		return b[:n], nil
	}
	return nil, err
}
