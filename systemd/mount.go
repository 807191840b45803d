package systemd

import (
	"context"
	"fmt"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/coreos/go-systemd/v22/unit"
	"github.com/godbus/dbus/v5"
)

// MountUnit is the name of the mount unit for path (systemd-escape --path).
func MountUnit(path string) string { return unit.UnitNamePathEscape(path) + ".mount" }

// Mount makes a transient mount unit that mounts what (a file system image
// with "loop" in options) on where, and waits until it is mounted. A mount
// unit that is active already is left alone, so that ten can call this
// again after its own restart.
func (m *Manager) Mount(ctx context.Context, what, where, fstype, options, description string) error {
	name := MountUnit(where)
	if st, err := m.conn.GetUnitPropertyContext(ctx, name, "ActiveState"); err == nil {
		if v, _ := st.Value.Value().(string); v == "active" {
			return nil
		}
		_ = m.conn.ResetFailedUnitContext(ctx, name)
	}
	props := []sd.Property{
		{Name: "Description", Value: dbus.MakeVariant(description)},
		{Name: "What", Value: dbus.MakeVariant(what)},
		{Name: "Where", Value: dbus.MakeVariant(where)},
		{Name: "Type", Value: dbus.MakeVariant(fstype)},
		{Name: "Options", Value: dbus.MakeVariant(options)},
		{Name: "DirectoryMode", Value: dbus.MakeVariant(uint32(0o700))},
	}
	return m.wait(ctx, name, "mount", func(ch chan<- string) (int, error) {
		return m.conn.StartTransientUnitContext(ctx, name, "fail", props, ch)
	})
}

// Unmount stops the mount unit of where; a transient one then vanishes.
func (m *Manager) Unmount(ctx context.Context, where string) error {
	name := MountUnit(where)
	err := m.wait(ctx, name, "unmount", func(ch chan<- string) (int, error) {
		return m.conn.StopUnitContext(ctx, name, "replace", ch)
	})
	_ = m.conn.ResetFailedUnitContext(ctx, name)
	if err != nil && !isNoSuchUnit(err) {
		return err
	}
	return nil
}

// Exit is how the service's main process last ended.
type Exit struct {
	// Code is systemd's ExecMainCode: 1 exited, 2 killed, 3 dumped core.
	Code int32
	// Status is the exit status or the signal number.
	Status int32
	// Result is the service's Result ("signal", "exit-code", "oom-kill").
	Result string
	// At is ExecMainExitTimestampMonotonic: which exit this is.
	At uint64
}

// LastExit reads ExecMainCode and ExecMainStatus of the instance's service.
func (m *Manager) LastExit(ctx context.Context, service string) (Exit, error) {
	props, err := m.conn.GetUnitTypePropertiesContext(ctx, service, "Service")
	if err != nil {
		return Exit{}, fmt.Errorf("read %s: %w", service, err)
	}
	e := Exit{Code: toInt32(props["ExecMainCode"]), Status: toInt32(props["ExecMainStatus"])}
	e.Result, _ = props["Result"].(string)
	e.At, _ = props["ExecMainExitTimestampMonotonic"].(uint64)
	return e, nil
}

func toInt32(v any) int32 {
	switch n := v.(type) {
	case int32:
		return n
	case int64:
		return int32(n)
	case uint32:
		return int32(n)
	case int:
		return int32(n)
	case dbus.Variant:
		return toInt32(n.Value())
	}
	return 0
}
