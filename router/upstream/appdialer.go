package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tenhq/ten/netns"
)

// errNoNamespace: the app's network namespace has no process (yet).
var errNoNamespace = errors.New("the instance's network namespace has no process yet")

// AppDialer connects to a directly run app (Backend.AppSocket, AppPort):
// to its own SOCKET_PATH or 127.0.0.1:PORT while it listens, and, while it
// does not (asleep, or starting), wakes it by a connection to the
// systemd-held socket and polls the app's address until it listens or ctx
// ends (the router's startup_timeout). No process relays the bytes.
type AppDialer struct {
	wake string // the systemd-held socket
	sock string
	tcp  string
	// netns, when set, gives the network namespace to dial tcp in (a
	// /proc/PID/ns/net path; "" while the service runs no process).
	netns func() string
	// last is which address answered last (1 unix, 2 tcp), tried first,
	// and the only one a poll tries once known: each failed dial costs a
	// socket, a connect and a close.
	last atomic.Int32
	// One poll at a time (waitUp): the router's waking requests and ten's
	// readiness watch share it. polling is closed when the poll in
	// progress ends; hurry counts waiting requests, which keep the poll's
	// delay short.
	mu      sync.Mutex
	polling chan struct{}
	hurry   atomic.Int32
	// owner, when set, checks the cgroup of whoever answers on
	// 127.0.0.1:PORT (SetOwner).
	owner func(peerCgroup uint64) error
	// ownerErr is the last answer owner refused, for the error of a wait
	// that ends without the app.
	ownerErr atomic.Pointer[error]
	// mark is the SO_MARK of the TCP connections to the app, and tcpDialer
	// their dialer, which sets it (SetMark).
	mark      int
	tcpDialer net.Dialer
}

// SetMark makes the dialer put SO_MARK mark on its TCP connections to the
// app (0: none), before they connect: the accounting programs do not take
// their packets for the instance's activity (acct.PeerMark), so that a
// health probe or a kept-alive idle connection does not keep it awake.
// Setting a mark needs CAP_NET_ADMIN; without it the connections go
// unmarked. Call it before the first dial.
func (d *AppDialer) SetMark(mark int) {
	d.mark = mark
	d.tcpDialer = net.Dialer{}
	if mark != 0 {
		d.tcpDialer.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { setMark(int(fd), mark) })
		}
	}
}

// SetOwner makes the dialer take a connection to 127.0.0.1:PORT only when
// check accepts the cgroup of the socket that answered (PeerCgroup): the
// app's PORT is on the host's loopback, where any process, another
// tenant's included, can bind it while the app sleeps or before it starts,
// and would otherwise get the instance's requests. Call it before the
// first dial. It does not apply in a network namespace of the instance's
// own (netns), which only the instance's processes are in.
func (d *AppDialer) SetOwner(check func(peerCgroup uint64) error) { d.owner = check }

// Refused is why the last answer on PORT was not taken for the app's
// (SetOwner), or nil when none was refused since the app last answered.
func (d *AppDialer) Refused() error {
	if e := d.ownerErr.Load(); e != nil {
		return *e
	}
	return nil
}

// waitErr is err (a wait for the app that ended) with the reason the last
// answer on PORT was refused, if one was.
func (d *AppDialer) waitErr(err error) error {
	if e := d.ownerErr.Load(); e != nil {
		return fmt.Errorf("%w; %v", err, *e)
	}
	return err
}

// checkOwner closes c and returns why when its other end is not the app's.
func (d *AppDialer) checkOwner(c net.Conn) error {
	id, err := PeerCgroup(c)
	if err == nil {
		err = d.owner(id)
	}
	if err != nil {
		c.Close()
		d.ownerErr.Store(&err)
	}
	return err
}

// hurryMax is the longest delay between two tries of a poll while a
// request waits for the app.
const hurryMax = 2 * time.Millisecond

// NewAppDialer dials the app at sock (a unix socket path, or none) and
// 127.0.0.1:port (port > 0), waking it by a connection to wake.
//
// netns, when not nil, gives the network namespace the app's 127.0.0.1 is
// in (an instance with network = "none"): the dialer connects to PORT there.
func NewAppDialer(wake, sock string, port int, netns func() string) *AppDialer {
	d := &AppDialer{wake: wake, sock: sock, netns: netns}
	if port > 0 {
		d.tcp = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	return d
}

// OnHostPort returns 127.0.0.1:PORT when the app last answered there, on
// the host's loopback (not in a namespace of its own): where a local client
// reaches it directly. It is "" otherwise, and before the app first answered.
func (d *AppDialer) OnHostPort() string {
	if d.netns != nil || d.last.Load() != 2 {
		return ""
	}
	return d.tcp
}

// Locate connects to the app once (and closes the connection at once) when
// it has not answered the dialer yet, without waking it, and returns
// OnHostPort: a spawn's answer says where the app listens.
func (d *AppDialer) Locate(ctx context.Context) string {
	if d.last.Load() == 0 {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if c, err := d.try(ctx, false); err == nil {
			c.Close()
		}
	}
	return d.OnHostPort()
}

// try dials the app's addresses, the one that answered last first; with
// onlyLast, only that one once known, and with raw system calls (probe): a
// poll.
func (d *AppDialer) try(ctx context.Context, onlyLast bool) (net.Conn, error) {
	var nd net.Dialer
	order := [2]int32{1, 2}
	switch last := d.last.Load(); {
	case onlyLast && last != 0:
		order = [2]int32{last, 0}
	case last == 2:
		order = [2]int32{2, 1}
	}
	var first error
	for _, w := range order {
		var c net.Conn
		var err error
		switch {
		case w == 1 && d.sock != "" && onlyLast:
			c, err = probe("unix", d.sock, 0)
		case w == 1 && d.sock != "":
			c, err = nd.DialContext(ctx, "unix", d.sock)
		case w == 2 && d.tcp != "" && d.netns != nil:
			if ns := d.netns(); ns != "" {
				c, err = netns.DialWith(ctx, &d.tcpDialer, ns, "tcp", d.tcp)
			} else {
				err = errNoNamespace
			}
		case w == 2 && d.tcp != "" && onlyLast:
			c, err = probe("tcp4", d.tcp, d.mark)
		case w == 2 && d.tcp != "":
			c, err = d.tcpDialer.DialContext(ctx, "tcp", d.tcp)
		default:
			continue
		}
		if err == nil && w == 2 && d.owner != nil && d.netns == nil {
			err = d.checkOwner(c)
		}
		if err == nil {
			d.last.Store(w)
			if d.owner != nil {
				d.ownerErr.Store(nil)
			}
			return c, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// DialContext returns a connection to the app, waking it first if needed.
func (d *AppDialer) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	if c, err := d.try(ctx, false); err == nil {
		return c, nil
	}
	// Not listening. A connection to the systemd socket starts the service
	// (it is never accepted; the socket unit flushes it when the service
	// stops) or, when the service stands by, has its waiter exec the app.
	if err := d.Wake(ctx); err != nil {
		return nil, err
	}
	// A small app listens within a few ms: poll often at first.
	d.hurry.Add(1)
	defer d.hurry.Add(-1)
	return d.waitUp(ctx, 200*time.Microsecond, hurryMax, 4, nil)
}

// Wake connects to the systemd-held socket and closes the connection: the
// service starts if it sleeps, and its standby waiter (shim.Standby), if it
// waits, execs the app. A full backlog means wakes are pending already.
func (d *AppDialer) Wake(ctx context.Context) error {
	var nd net.Dialer
	w, err := nd.DialContext(ctx, "unix", d.wake)
	if err == nil {
		w.Close()
	} else if !errors.Is(err, syscall.EAGAIN) {
		return fmt.Errorf("wake: %w", err)
	}
	return nil
}

// waitUp returns a connection to the app once it listens, or ctx's error.
// One caller at a time polls (poll); the others wait for its poll to end
// and then try once themselves, so that a wake costs one series of failed
// dials, not one per waiting request and watch.
func (d *AppDialer) waitUp(ctx context.Context, first, max time.Duration, grow time.Duration, each func()) (net.Conn, error) {
	for {
		d.mu.Lock()
		ch := d.polling
		if ch == nil {
			ch = make(chan struct{})
			d.polling = ch
			d.mu.Unlock()
			c, err := d.poll(ctx, first, max, grow, each)
			d.mu.Lock()
			d.polling = nil
			d.mu.Unlock()
			close(ch)
			return c, err
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, d.waitErr(ctx.Err())
		case <-ch:
		}
		if each != nil {
			each()
		}
		if c, err := d.try(ctx, true); err == nil {
			return c, nil
		}
		// The poller gave up (its own ctx ended): poll, or wait for
		// the next poller.
	}
}

// poll tries the app's addresses every delay, first after first, the delay
// growing by a 1/grow share up to max (hurryMax while a request waits),
// until one accepts or ctx ends; each, when set, runs before every try.
func (d *AppDialer) poll(ctx context.Context, first, max time.Duration, grow time.Duration, each func()) (net.Conn, error) {
	delay := first
	for {
		if d.hurry.Load() > 0 && delay > hurryMax {
			delay = hurryMax
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, d.waitErr(ctx.Err())
		case <-t.C:
		}
		if each != nil {
			each()
		}
		if c, err := d.try(ctx, true); err == nil {
			return c, nil
		}
		if delay < max {
			delay += delay / grow
		}
	}
}

// WaitListening polls the app's addresses until one accepts a connection
// or ctx ends. It polls often at first (a small app listens within
// milliseconds) and then less often, up to every 20 ms: it tells ten when
// the app is ready, while a request that waits for the app polls on its own
// (DialContext). With wake it also wakes the app (Wake) until one wake
// connects: a service started without a connection (ten spawn, a restart)
// has its standby waiter wait for one; the socket may not exist yet when
// the watch begins.
func (d *AppDialer) WaitListening(ctx context.Context, wake bool) error {
	woken := !wake
	each := func() {
		if !woken {
			woken = d.Wake(ctx) == nil
		}
	}
	each()
	c, err := d.try(ctx, false)
	if err != nil {
		c, err = d.waitUp(ctx, time.Millisecond, 20*time.Millisecond, 2, each)
	}
	if err != nil {
		return err
	}
	c.Close()
	return nil
}
