package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// HandOffSignal is what ten sends an L4 relay (see Relay) once it steers the
// service's L4 connections to the app's own socket: the relay takes what is
// still queued on the systemd sockets, finishes the connections it relays,
// and exits. Launch starts the relay with it ignored, so that the relay has
// a handler for it (SigCgt in /proc/PID/status, which ten reads before it
// signals) only once Relay listens for it: the Go runtime installs its own
// handler for every other signal at start, before main runs, and a signal
// caught there without a listener is dropped. SIGHUP is one the runtime
// leaves ignored when it starts ignored.
const HandOffSignal = syscall.SIGHUP

// RelayVerbs are the first arguments of a relay process's command line
// (`ten-shim relay`, `ten shim-relay`): ten finds the relay among the
// service's processes by them.
var RelayVerbs = []string{"relay", "shim-relay"}

// handOffLinger is how long a relay told to hand off keeps accepting
// before its last look at the queues: a connection whose handshake began
// before ten switched the steering completes into the systemd socket's
// queue one round trip later.
const handOffLinger = 300 * time.Millisecond

// Launch is the main process of a service whose app binds PORT or
// SOCKET_PATH itself and which also has L4 listen addresses: it starts a
// relay process (relayArgv, given the systemd sockets as fds 3 on) for
// the L4 connections that arrive, and wake the service, while the app does
// not listen yet, and then becomes the app (execve), so that the app is the
// service's main process with nothing of ten resident beside it once ten
// has steered the L4 connections to the app's own socket and the relay has
// handed off. It does not return; it exits 127 when it cannot start the app.
func Launch(o Options, relayArgv []string) {
	log := o.Log
	path := appPath(o, "launch")
	pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID"))
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if n > 0 && (pid == 0 || pid == os.Getpid()) {
		files := make([]*os.File, n)
		for i := range files {
			files[i] = os.NewFile(uintptr(3+i), "systemd-socket")
		}
		if err := startRelay(relayArgv, files); err != nil {
			// The app still runs; L4 clients wait until ten steers them to it.
			log.Warn("launch: start the L4 relay", "instance", o.Instance, "err", err)
		}
		// The app does not get the systemd sockets: the relay has them.
		for _, f := range files {
			f.Close()
		}
	}
	if o.Socket != "" {
		_ = os.Remove(o.Socket) // a stale file from a killed app would block its bind
	}
	err := syscall.Exec(path, o.Argv, withoutListenEnv(os.Environ()))
	log.Error("launch", "instance", o.Instance, "err", fmt.Errorf("instance %s: exec %s: %w", o.Instance, path, err))
	os.Exit(127)
}

// startRelay starts the relay process with the systemd sockets files (as
// fds 3 on) and HandOffSignal ignored (see HandOffSignal). The caller's own
// disposition is a handler again when it returns, so that the app it execs
// next starts with the signal's default action.
func startRelay(relayArgv []string, files []*os.File) error {
	cmd := exec.Command(relayArgv[0], relayArgv[1:]...)
	cmd.ExtraFiles = files
	cmd.Env = append(withoutListenEnv(os.Environ()), "LISTEN_FDS="+strconv.Itoa(len(files)))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	signal.Ignore(HandOffSignal) // inherited by the relay across its execve
	err := cmd.Start()
	// A caught signal is reset to its default action by execve; an
	// ignored one would stay ignored in the app.
	signal.Notify(make(chan os.Signal, 1), HandOffSignal)
	return err
}

func withoutListenEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "LISTEN_") {
			out = append(out, kv)
		}
	}
	return out
}

// Relay is the L4 relay a Launch starts: it waits until the app listens
// (o.Socket, o.Port), then relays every connection of the systemd sockets
// (LISTEN_FDS, from fd 3) to the app, until ten tells it to hand off
// (HandOffSignal): then it takes what is queued, closes its copies of the
// sockets, finishes the connections it relays and returns. Connections that
// arrive before the app listens wait in the sockets' backlogs, none dropped.
// It returns an error when the app does not listen within
// o.StartupTimeout (the unit's waiter fails the start then).
func Relay(ctx context.Context, o Options) error {
	handOff := make(chan os.Signal, 1)
	signal.Notify(handOff, HandOffSignal) // first: ten looks for it before it signals
	ls, err := Listeners()
	if err != nil {
		return err
	}
	dial, err := waitListening(ctx, o, nil)
	if err != nil {
		return err
	}
	// The service turns active now (Type=notify, NotifyAccess=all). ten
	// says so too when it runs; the relay's word makes it so while ten is
	// down.
	if err := notifyReady(); err != nil {
		o.Log.Warn("relay: READY=1", "instance", o.Instance, "err", err)
	}
	var wg sync.WaitGroup
	serve := func(c net.Conn) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			forward(c, dial)
		}()
	}
	var accepting sync.WaitGroup
	for _, l := range ls {
		accepting.Add(1)
		go func() {
			defer accepting.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				serve(c)
			}
		}()
	}
	select {
	case <-handOff:
	case <-ctx.Done():
	}
	o.Log.Info("handing L4 connections off to the app", "instance", o.Instance)
	time.Sleep(handOffLinger)
	for _, l := range ls {
		for _, c := range drain(l) {
			serve(c)
		}
		l.Close()
	}
	accepting.Wait() // no serve after this: wg.Wait below sees every relayed connection
	wg.Wait()
	return nil
}

// drain accepts what is queued on l without waiting.
func drain(l net.Listener) []net.Conn {
	sc, ok := l.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var out []net.Conn
	_ = rc.Control(func(fd uintptr) {
		for len(out) < 4096 {
			nfd, _, err := syscall.Accept(int(fd))
			if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ECONNABORTED) {
				continue
			}
			if err != nil {
				return // EAGAIN: the queue is empty (Go's listeners are non-blocking)
			}
			syscall.CloseOnExec(nfd)
			f := os.NewFile(uintptr(nfd), "accepted")
			c, err := net.FileConn(f)
			f.Close()
			if err == nil {
				out = append(out, c)
			}
		}
	})
	return out
}

// Flags are the command-line flags that give a waiter or relay o's
// instance, addresses and startup timeout (the flags of `ten-shim` and
// `ten shim-*`).
func Flags(o Options) []string {
	return []string{"--instance=" + o.Instance, "--socket=" + o.Socket,
		"--port=" + strconv.Itoa(o.Port), "--startup-timeout=" + o.StartupTimeout.String()}
}
