package systemd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/systemd/wire"
	"github.com/tenhq/ten/units"
)

// privateConn is ten's connection to systemd's PrivateSocket: it carries
// the signals ten follows (read by package wire) and the calls of an
// instance's removal (StopUnit, ResetFailedUnit), as systemctl makes them
// as root: straight to systemd, with no bus daemon between and no D-Bus
// library marshalling. The calls answer on the same connection in order,
// so a job's JobRemoved always comes after the answer that named the job.
type privateConn struct {
	c  net.Conn
	rd *wire.Reader

	wmu sync.Mutex // one call written at a time
	buf []byte

	mu     sync.Mutex
	serial uint32
	calls  map[uint32]*privateCall
	jobs   map[string]chan<- string
	closed error
}

type privateCall struct {
	answer chan wire.Event
	// job, for a call that makes a job, gets its result; it is
	// registered when the answer is read, before a JobRemoved can be.
	job chan<- string
}

// errPrivateClosed is the answer of a call whose connection broke.
var errPrivateClosed = errors.New("systemd's private connection closed")

func dialPrivate(ctx context.Context) (*privateConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", PrivateSocket)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(c, 64<<10)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wire.Auth(c, br, os.Getuid()); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", PrivateSocket, err)
	}
	c.SetDeadline(time.Time{})
	return newPrivateConn(c, br), nil
}

// newPrivateConn wraps an authenticated connection, br reading from it.
func newPrivateConn(c net.Conn, br *bufio.Reader) *privateConn {
	keep := func(unit string) bool { return strings.HasPrefix(unit, units.Prefix) }
	return &privateConn{c: c, rd: wire.NewReader(br, keep, wanted), calls: map[uint32]*privateCall{}, jobs: map[string]chan<- string{}}
}

// call sends a Manager method call with string arguments and waits for its
// answer; an error answer is a dbus.Error, as godbus gives it.
func (pc *privateConn) call(ctx context.Context, member string, job chan<- string, args ...string) (wire.Event, error) {
	c := &privateCall{answer: make(chan wire.Event, 1), job: job}
	pc.mu.Lock()
	if pc.closed != nil {
		pc.mu.Unlock()
		return wire.Event{}, pc.closed
	}
	pc.serial++
	if pc.serial == 0 {
		pc.serial = 1
	}
	serial := pc.serial
	pc.calls[serial] = c
	pc.mu.Unlock()
	forget := func() {
		pc.mu.Lock()
		delete(pc.calls, serial)
		pc.mu.Unlock()
	}
	pc.wmu.Lock()
	pc.buf = wire.AppendCall(pc.buf[:0], serial, member, args...)
	pc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := pc.c.Write(pc.buf)
	pc.wmu.Unlock()
	if err != nil {
		forget()
		return wire.Event{}, fmt.Errorf("%s: %w", member, err)
	}
	select {
	case ev := <-c.answer:
		if ev.Kind == wire.KindError {
			if ev.ErrorName == "" { // close: the answer will not come
				pc.mu.Lock()
				closed := pc.closed
				pc.mu.Unlock()
				return ev, fmt.Errorf("%s: %w", member, closed)
			}
			return ev, dbus.Error{Name: ev.ErrorName, Body: []any{ev.Arg}}
		}
		return ev, nil
	case <-ctx.Done():
		forget()
		return wire.Event{}, ctx.Err()
	}
}

// StopUnitContext is go-systemd's StopUnitContext over this connection.
func (pc *privateConn) StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	_, err := pc.call(ctx, "StopUnit", ch, name, mode)
	return 0, err
}

// ResetFailedUnitContext is go-systemd's ResetFailedUnitContext over this
// connection.
func (pc *privateConn) ResetFailedUnitContext(ctx context.Context, name string) error {
	_, err := pc.call(ctx, "ResetFailedUnit", nil, name)
	return err
}

// readLoop reads the connection until it fails, handing changes to h and
// answers and job results to the calls waiting for them.
func (pc *privateConn) readLoop(h signalFilter) error {
	for {
		ev, err := pc.rd.NextEvent()
		if err != nil {
			return err
		}
		switch ev.Kind {
		case wire.KindChange:
			h.deliver(&sd.PropertiesUpdate{UnitName: ev.Unit, Changed: ev.Changed})
		case wire.KindReturn, wire.KindError:
			pc.answered(ev)
		case wire.KindJobRemoved:
			pc.jobRemoved(ev)
		}
	}
}

// answered hands an answer to its call (registering the call's job first).
func (pc *privateConn) answered(ev wire.Event) {
	pc.mu.Lock()
	c := pc.calls[ev.ReplySerial]
	delete(pc.calls, ev.ReplySerial)
	if c != nil && c.job != nil && ev.Kind == wire.KindReturn && ev.Arg != "" {
		pc.jobs[ev.Arg] = c.job
	}
	pc.mu.Unlock()
	if c != nil {
		c.answer <- ev
	}
}

// jobRemoved hands a job's result to whoever waits for it.
func (pc *privateConn) jobRemoved(ev wire.Event) {
	pc.mu.Lock()
	ch := pc.jobs[ev.Arg]
	delete(pc.jobs, ev.Arg)
	pc.mu.Unlock()
	if ch != nil {
		select {
		case ch <- ev.Result:
		default:
		}
	}
}

// close fails every call and job in flight: their answers will not come.
func (pc *privateConn) close(why error) {
	pc.c.Close()
	pc.mu.Lock()
	if pc.closed == nil {
		pc.closed = fmt.Errorf("%w: %v", errPrivateClosed, why)
	}
	calls, jobs := pc.calls, pc.jobs
	pc.calls, pc.jobs = map[uint32]*privateCall{}, map[string]chan<- string{}
	pc.mu.Unlock()
	for _, c := range calls {
		c.answer <- wire.Event{Kind: wire.KindError, Arg: pc.closed.Error()}
	}
	for _, ch := range jobs {
		select {
		case ch <- "connection lost":
		default:
		}
	}
}

// unitCalls are the calls of a removal, which go over the private
// connection while it is up and over the bus otherwise.
type unitCalls interface {
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	ResetFailedUnitContext(ctx context.Context, name string) error
}

func (m *Manager) calls() unitCalls {
	if pc := m.priv.Load(); pc != nil {
		return pc
	}
	return m.conn
}
