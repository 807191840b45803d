package systemd

import (
	"context"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// unitPathPrefix is where systemd puts its unit objects on the bus.
const unitPathPrefix = "/org/freedesktop/systemd1/unit"

// subscribe delivers systemd's PropertiesChanged signals about units to
// raw, over a bus connection of its own that is closed when ctx ends. When
// raw is full the update is dropped and an error saying "update channel is
// full" sent to errs, if it has room, as go-systemd does (pump reads it as a
// loss and resynchronises).
//
// It stands in for go-systemd's SetPropertiesSubscriber, whose signal
// goroutine reads the subscriber without taking its lock
// (coreos/go-systemd#519), a data race in every ten serve.
func (m *Manager) subscribe(ctx context.Context, raw chan<- *sd.PropertiesUpdate, errs chan<- error) error {
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		return err
	}
	// Only the Unit interface's changes (arg0): the bus then does not
	// deliver the Service, Socket and Slice interfaces' as well, which ten
	// would read only to drop (three to four signals more per change).
	err = conn.AddMatchSignal(dbus.WithMatchInterface("org.freedesktop.DBus.Properties"),
		dbus.WithMatchMember("PropertiesChanged"), dbus.WithMatchPathNamespace(unitPathPrefix),
		dbus.WithMatchArg(0, "org.freedesktop.systemd1.Unit"))
	if err == nil {
		err = conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
			CallWithContext(ctx, "org.freedesktop.systemd1.Manager.Subscribe", 0).Store()
	}
	if err != nil {
		conn.Close()
		return err
	}
	sigs := make(chan *dbus.Signal, cap(raw))
	conn.Signal(sigs)
	go func() {
		<-ctx.Done()
		conn.Close() // closes sigs
	}()
	go func() {
		for s := range sigs {
			u, ok := propertiesUpdate(s)
			if !ok {
				continue
			}
			select {
			case raw <- u:
			default:
				select {
				case errs <- fmt.Errorf("update channel is full: dropped an update of %s", u.UnitName):
				default:
				}
			}
		}
	}()
	return nil
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
	return &sd.PropertiesUpdate{UnitName: unitFromPath(s.Path), Changed: changed}, true
}

// unitFromPath reverses systemd's escaping of a unit name into an object
// path (sd_bus_path_encode: every byte but [A-Za-z0-9] becomes _xx).
func unitFromPath(p dbus.ObjectPath) string {
	s := path.Base(string(p))
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+2 < len(s) {
			if c, err := hex.DecodeString(s[i+1 : i+3]); err == nil {
				b.WriteByte(c[0])
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
