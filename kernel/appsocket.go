package kernel

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/l4"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// AppSocket steers an instance's L4 connections to its app's own listening
// socket on port (an app that binds PORT itself, units.AppListens), once
// the service is active (a shim-mode unit is Type=notify: active once the
// app listens). The app then sees the client's own address, and no relay
// copies the bytes. The systemd-held socket stays registered behind it: it
// takes the connections that arrive while the app sleeps or starts (they
// wake it; the service's relay serves them), and takes over by itself when
// the app's socket closes (the kernel drops it from the map). Once the app's
// socket is registered, the relay is told to hand off and exit (handOff). It does nothing for an
// instance without L4 addresses or without BPF; what fails is logged (the
// shim keeps relaying).
func (w *Wiring) AppSocket(inst units.Instance, port int) {
	if w.disp == nil || port <= 0 || port > 65535 {
		return
	}
	w.mu.Lock()
	li := w.inst[inst]
	ok := li != nil && li.up && len(li.listen) > 0
	w.mu.Unlock()
	if !ok {
		return
	}
	procs := filepath.Join(systemd.ServiceDir(w.cgroups, inst), "cgroup.procs")
	// The unit turns active once the app accepts on PORT, but a forking
	// app's listener may sit in a child the main process starts: look a
	// few times before giving up (the shim relays meanwhile).
	var err error
	for try := 0; try < 5; try++ {
		if try > 0 {
			time.Sleep(time.Duration(try) * 20 * time.Millisecond)
		}
		var f *os.File
		f, err = ebpf.FindPortListener(readPids(procs), uint16(port))
		if err != nil {
			continue
		}
		err = w.disp.RegisterAppSocket(l4.Label(inst), f)
		f.Close()
		if err == nil {
			w.log.Debug("L4 dispatch: app socket registered", "instance", inst.String(), "port", port)
			if n, err := handOff(procs); err != nil {
				w.log.Warn("L4 dispatch: the relay keeps relaying", "instance", inst.String(), "err", err)
			} else if n > 0 {
				w.log.Debug("L4 dispatch: relay handed off", "instance", inst.String())
			}
			return
		}
		break
	}
	w.log.Warn("L4 dispatch: app's own socket not found; its L4 clients go through the shim", "instance", inst.String(), "port", port, "err", err)
}

// readPids reads a cgroup.procs file; nil when it cannot.
func readPids(path string) []int {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() && len(pids) < 4096 {
		if pid, err := strconv.Atoi(sc.Text()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}
