package systemd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/systemd/wire"
)

// unitPathPrefix is where systemd puts its unit objects on the bus.
const unitPathPrefix = wire.UnitPath

// PrivateSocket is systemd's own bus socket, which systemctl uses as root:
// a client there gets every signal systemd sends, with no bus daemon in
// between and no Subscribe.
const PrivateSocket = "/run/systemd/private"

// subscribe delivers systemd's PropertiesChanged signals about ten's units
// to raw, over a connection of its own that is closed when ctx ends. When
// raw is full the update is dropped and an error wrapping errSignalsLost
// sent to errs, if it has room (pump reads it as a loss and
// resynchronises); so is a connection lost, before ten connects again.
//
// It connects to PrivateSocket where it can. On the system bus instead it
// must call Subscribe, and then systemd sends every signal of every unit
// to the bus daemon, which passes on what matches: a systemd-alone
// removal of 1,000 instances took 1.8 s with no subscriber, 2.6 s with one
// on the bus and 2.2 s with one on the private socket. On the private
// socket systemd sends every signal of every unit; package wire reads them
// through a buffer and decodes only the Unit interface's changes of ten's
// units (a general D-Bus reader, decoding each message whole, was over a
// third of ten's CPU while it removed instances). On the bus, the signals
// are filtered in the connection's reader (signalFilter), so the many that
// ten does not read cost no goroutine and no channel.
//
// It stands in for go-systemd's SetPropertiesSubscriber, whose signal
// goroutine reads the subscriber without taking its lock
// (coreos/go-systemd#519), a data race in every ten serve.
func (m *Manager) subscribe(ctx context.Context, raw chan<- *sd.PropertiesUpdate, errs chan<- error) error {
	h := signalFilter{raw: raw, errs: errs}
	c, err := dialPrivate(ctx)
	if err != nil {
		m.log.Debug("systemd signals: private socket refused; using the system bus", "err", err)
		conn, err := m.subscribeBus(ctx, h)
		if err != nil {
			return err
		}
		m.log.Info("following systemd's unit changes", "over", "the system bus")
		go func() {
			<-ctx.Done()
			conn.Close()
		}()
		return nil
	}
	m.log.Info("following systemd's unit changes", "over", PrivateSocket)
	go m.readPrivate(ctx, c, h)
	return nil
}

// wanted are the Unit properties the state cache keeps, with their types.
var wanted = map[string]byte{"ActiveState": 's', "SubState": 's', "ActiveEnterTimestamp": 't', "InactiveEnterTimestamp": 't'}

// readPrivate hands the changes read on c to h until ctx ends. When the
// connection breaks (systemd re-executing closes it), it reports a loss,
// so that the pump resynchronises from a listing, and connects again.
func (m *Manager) readPrivate(ctx context.Context, c *privateConn, h signalFilter) {
	m.priv.Store(c)
	stop := context.AfterFunc(ctx, func() { c.c.Close() })
	for {
		err := c.readLoop(h)
		stop()
		m.priv.CompareAndSwap(c, nil)
		c.close(err)
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("systemd signals: connection lost; connecting again", "socket", PrivateSocket, "err", err)
		h.lost(fmt.Errorf("%w: %v", errSignalsLost, err))
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if c, err = dialPrivate(ctx); err == nil {
				break
			}
			m.log.Debug("systemd signals: connect", "err", err)
		}
		// A change between the loss and now shows in the listing the loss
		// asks for, which the pump makes after this connection is up.
		h.lost(fmt.Errorf("%w: connected again", errSignalsLost))
		m.priv.Store(c)
		stop = context.AfterFunc(ctx, func() { c.c.Close() })
	}
}

// subscribeBus subscribes over the system bus, with a match for the Unit
// interface's changes (arg0): the bus then does not deliver the Service,
// Socket and Slice interfaces' as well.
func (m *Manager) subscribeBus(ctx context.Context, h signalFilter) (*dbus.Conn, error) {
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(ctx), dbus.WithSignalHandler(h))
	if err != nil {
		return nil, err
	}
	err = conn.AddMatchSignal(dbus.WithMatchInterface("org.freedesktop.DBus.Properties"),
		dbus.WithMatchMember("PropertiesChanged"), dbus.WithMatchPathNamespace(unitPathPrefix),
		dbus.WithMatchArg(0, "org.freedesktop.systemd1.Unit"))
	if err == nil {
		err = conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
			CallWithContext(ctx, "org.freedesktop.systemd1.Manager.Subscribe", 0).Store()
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// signalFilter is the connection's signal handler: it runs in the
// connection's reader, keeps the Unit interface's PropertiesChanged and
// never blocks (a full raw is a loss, reported on errs).
type signalFilter struct {
	raw  chan<- *sd.PropertiesUpdate
	errs chan<- error
}

// DeliverSignal implements dbus.SignalHandler.
func (h signalFilter) DeliverSignal(_, _ string, s *dbus.Signal) {
	if u, ok := propertiesUpdate(s); ok {
		h.deliver(u)
	}
}

// errSignalsLost marks a report on errs of changes that may have been
// lost: the pump resynchronises from a listing.
var errSignalsLost = errors.New("signals lost")

func (h signalFilter) deliver(u *sd.PropertiesUpdate) {
	select {
	case h.raw <- u:
	default:
		h.lost(fmt.Errorf("%w: update channel is full: dropped an update of %s", errSignalsLost, u.UnitName))
	}
}

// lost reports a loss on errs, if it has room (one there is enough).
func (h signalFilter) lost(err error) {
	select {
	case h.errs <- err:
	default:
	}
}

// propertiesUpdate turns a PropertiesChanged signal of a unit object into
// the unit's name and changed properties.
func propertiesUpdate(s *dbus.Signal) (*sd.PropertiesUpdate, bool) {
	if s.Name != "org.freedesktop.DBus.Properties.PropertiesChanged" || len(s.Body) < 2 ||
		!strings.HasPrefix(string(s.Path), unitPathPrefix+"/") {
		return nil, false
	}
	if iface, _ := s.Body[0].(string); iface != "org.freedesktop.systemd1.Unit" {
		return nil, false
	}
	changed, ok := s.Body[1].(map[string]dbus.Variant)
	if !ok {
		return nil, false
	}
	return &sd.PropertiesUpdate{UnitName: wire.UnitFromPath(string(s.Path)), Changed: changed}, true
}
