package shim

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// Cat is `ten-shim cat`: the app's own journal streams, then the app. It
// does what `systemd-cat --stderr-priority=err` did in front of a directly
// run app (stdout logged at info, stderr at err, under identifier) and then
// becomes the app (execve: same PID, the systemd sockets and LISTEN_* kept),
// at a fraction of systemd-cat's cost per start: systemd-cat loads
// libsystemd-shared and its dozen libraries at every wake. Without journald
// the app keeps this process's output (one priority). It does not return;
// it exits 127 when it cannot start the app. journal is journald's stream
// socket, JournalStdout but in tests.
func Cat(o Options, identifier, journal string) {
	log := o.Log
	path := appPath(o, "cat")
	streams, err := appStreams(journal, identifier)
	if err != nil {
		log.Warn("cat: app output stays with the service's", "instance", o.Instance, "err", err)
	}
	useStreams(streams)
	err = syscall.Exec(path, o.Argv, os.Environ())
	log.Error("cat", "instance", o.Instance, "err", fmt.Errorf("instance %s: exec %s: %w", o.Instance, path, err))
	os.Exit(127)
}

// appStreams opens the app's two streams to journal under identifier: stdout
// at PriorityInfo, stderr at PriorityErr. Both or neither: on an error the
// one opened is closed.
func appStreams(journal, identifier string) ([2]*os.File, error) {
	var streams [2]*os.File
	if identifier == "" {
		return streams, nil
	}
	for i, prio := range []int{PriorityInfo, PriorityErr} {
		f, err := JournalStream(journal, identifier, prio)
		if err != nil {
			if streams[0] != nil {
				streams[0].Close()
			}
			return [2]*os.File{}, err
		}
		streams[i] = f
	}
	return streams, nil
}

// useStreams makes streams (from appStreams) this process's stdout and
// stderr, for the app it execs next; a pair not opened changes nothing.
func useStreams(streams [2]*os.File) {
	if streams[0] == nil || streams[1] == nil {
		return
	}
	_ = unix.Dup2(int(streams[0].Fd()), 1)
	_ = unix.Dup2(int(streams[1].Fd()), 2)
}

// appPath is the executable of the app o.Argv names, looked up in PATH. A
// missing command (exit 2) or app (exit 127) ends the process with an
// error that names the instance; verb says which part of ten-shim it was.
func appPath(o Options, verb string) string {
	if len(o.Argv) == 0 {
		o.Log.Error(verb+": no app command", "instance", o.Instance)
		os.Exit(2)
	}
	path, err := exec.LookPath(o.Argv[0])
	if err != nil {
		o.Log.Error(verb, "instance", o.Instance, "err", fmt.Errorf("instance %s: start %s: %w", o.Instance, o.Argv[0], err))
		os.Exit(127)
	}
	return path
}
