// Package shim is ten's activation shim: it runs as the main process of an
// instance's service, takes the systemd-held listening socket by socket
// activation (LISTEN_FDS), starts an app that only knows PORT or SOCKET_PATH,
// waits until the app listens, and then relays every connection from the
// systemd socket to the app. Connections that arrive while the app starts wait
// in the socket's backlog, so a wake drops nothing.
package shim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tenhq/ten/internal/relay"
)

// Options configure one shim run.
type Options struct {
	Instance       string
	Socket         string // SOCKET_PATH the app may bind
	Port           int    // PORT the app may bind on loopback
	StartupTimeout time.Duration
	Argv           []string
	Log            *slog.Logger
	// Stdout and Stderr, when set, are the app's output (JournalStream);
	// otherwise it shares the shim's.
	Stdout, Stderr *os.File
}

// ErrNoListenFDs means the shim was not started by socket activation.
var ErrNoListenFDs = errors.New("no socket passed by systemd (LISTEN_FDS is not set for this process)")

// Listener returns the sockets passed by systemd socket activation as one
// listener: the router's unix socket (fd 3) and, for a service with L4
// listen addresses, its internal TCP sockets (fd 4 on). The shim relays the
// connections of all of them to the app, so an L4 client reaches a
// PORT-binding app too; the app then sees the shim as the peer. With BPF,
// only the L4 connections that arrive while the app does not listen (those
// that wake it) take this way: once the service is active, ten steers new
// ones to the app's own listening socket, and the app sees the client.
func Listener() (net.Listener, error) {
	ls, err := Listeners()
	if err != nil {
		return nil, err
	}
	if len(ls) == 1 {
		return ls[0], nil
	}
	return newMultiListener(ls), nil
}

// Listeners returns the sockets passed by systemd socket activation one by
// one, in LISTEN_FDS order, and clears LISTEN_* so that children (the app,
// journalctl) do not think the sockets are theirs.
func Listeners() ([]net.Listener, error) {
	pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID"))
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if n < 1 || (pid != 0 && pid != os.Getpid()) {
		return nil, ErrNoListenFDs
	}
	var ls []net.Listener
	for i := 0; i < n; i++ {
		fd := 3 + i
		f := os.NewFile(uintptr(fd), "systemd-socket")
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("use socket fd %d: %w", fd, err)
		}
		ls = append(ls, l)
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	return ls, nil
}

// multiListener accepts from several listeners at once.
type multiListener struct {
	ls    []net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newMultiListener(ls []net.Listener) *multiListener {
	m := &multiListener{ls: ls, conns: make(chan net.Conn), done: make(chan struct{})}
	for _, l := range ls {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					m.Close()
					return
				}
				select {
				case m.conns <- c:
				case <-m.done:
					c.Close()
					return
				}
			}
		}()
	}
	return m
}

func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *multiListener) Close() error {
	m.once.Do(func() {
		close(m.done)
		for _, l := range m.ls {
			l.Close()
		}
	})
	return nil
}

func (m *multiListener) Addr() net.Addr { return m.ls[0].Addr() }

// Exit is how the app ended: its exit code, and the signal that killed it
// (0 when it exited by itself).
type Exit struct {
	Code   int
	Signal syscall.Signal
}

// Run starts the app and relays connections until the app exits; it returns
// how the app ended (Code 128+N for a signal N, as a shell reports it).
func Run(ctx context.Context, l net.Listener, o Options) (Exit, error) {
	if len(o.Argv) == 0 {
		return Exit{Code: 1}, errors.New("no app command")
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		// The app is not the unit's main process: its readiness is the
		// shim's to report.
		if strings.HasPrefix(kv, "LISTEN_") || strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			continue
		}
		env = append(env, kv)
	}
	if o.Socket != "" {
		_ = os.Remove(o.Socket) // a stale file from a killed app would block its bind
	}
	cmd := exec.Command(o.Argv[0], o.Argv[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	if o.Stdout != nil {
		cmd.Stdout = o.Stdout
	}
	if o.Stderr != nil {
		cmd.Stderr = o.Stderr
	}
	err := cmd.Start()
	// The app has its copies; the shim's are not needed any more.
	for _, f := range []*os.File{o.Stdout, o.Stderr} {
		if f != nil {
			f.Close()
		}
	}
	if err != nil {
		return Exit{Code: 127}, fmt.Errorf("instance %s: start %s: %w", o.Instance, o.Argv[0], err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()

	dial, err := waitListening(ctx, o, exited)
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return Exit{Code: 1}, err
	}
	o.Log.Info("app is listening; relaying", "instance", o.Instance)
	if err := notifyReady(); err != nil {
		o.Log.Warn("tell systemd the app is ready", "instance", o.Instance, "err", err)
	}
	go func() {
		<-exited
		l.Close()
	}()
	var wg sync.WaitGroup
	for {
		c, err := l.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			forward(c, dial)
		}()
	}
	<-exited
	return exitOf(cmd, waitErr), nil
}

func exitOf(cmd *exec.Cmd, err error) Exit {
	if err == nil {
		return Exit{}
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		if ws.Signaled() {
			return Exit{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
		}
		return Exit{Code: ws.ExitStatus()}
	}
	return Exit{Code: 1}
}

// Wait polls SOCKET_PATH and PORT until the app listens on one of them (the
// waiter a directly run app's unit has as ExecStartPost: the unit stays
// activating until then) and fails after o.StartupTimeout.
//
// A stop while it waits (systemd's SIGTERM, or SIGINT) ends it with success:
// a waiter killed by the signal would make systemd record the stop as a
// failed start.
func Wait(ctx context.Context, o Options) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	_, err := waitListening(ctx, o, nil)
	if err != nil && ctx.Err() != nil {
		o.Log.Info("stopped while waiting for the app to listen", "instance", o.Instance)
		return nil
	}
	return err
}

// waitListening polls both places a PORT/SOCKET_PATH app may listen until one
// accepts, and returns a dialer for it.
func waitListening(ctx context.Context, o Options, exited <-chan struct{}) (func() (net.Conn, error), error) {
	deadline := time.Now().Add(o.StartupTimeout)
	tcp := net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port))
	delay := 200 * time.Microsecond
	for {
		if o.Socket != "" {
			if c, err := net.Dial("unix", o.Socket); err == nil {
				c.Close()
				return func() (net.Conn, error) { return net.Dial("unix", o.Socket) }, nil
			}
		}
		if o.Port > 0 {
			if c, err := net.DialTimeout("tcp", tcp, time.Second); err == nil {
				c.Close()
				return func() (net.Conn, error) { return net.Dial("tcp", tcp) }, nil
			}
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("instance %s: app exited before it listened on SOCKET_PATH=%s or PORT=%d", o.Instance, o.Socket, o.Port)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("instance %s: app did not listen on SOCKET_PATH=%s or PORT=%d within startup_timeout %s", o.Instance, o.Socket, o.Port, o.StartupTimeout)
		}
		// Poll often while a fast app is expected (a small Go app listens
		// within a few ms: a late poll adds straight to the wake), less
		// often later.
		if delay < 2*time.Millisecond {
			delay += delay / 4
		}
	}
}

// notifyReady sends READY=1 to systemd ($NOTIFY_SOCKET, Type=notify):
// the unit turns active only now that the app listens. Without
// NOTIFY_SOCKET (a Type=exec unit of an older ten) it does nothing.
func notifyReady() error {
	return notify("READY=1\nSTATUS=app listening\n")
}

// forward relays c to a new connection to the app.
func forward(c net.Conn, dial func() (net.Conn, error)) {
	defer c.Close()
	u, err := dial()
	if err != nil {
		return
	}
	defer u.Close()
	_ = relay.Both(c, u)
}
