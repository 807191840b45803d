package systemd

import (
	"context"
	"fmt"
	"math"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/units"
)

// CapTenants sets TasksMax (processes and threads) and MemoryMax (bytes)
// of units.RootSlice, for all instances together, for as long as systemd runs
// (a runtime drop-in, as `systemctl set-property --runtime` makes); 0
// lifts a cap.
func (m *Manager) CapTenants(ctx context.Context, tasks, memory uint64) error {
	inf := func(v uint64) uint64 {
		if v == 0 {
			return math.MaxUint64 // "infinity"
		}
		return v
	}
	props := []sd.Property{
		{Name: "TasksMax", Value: dbus.MakeVariant(inf(tasks))},
		{Name: "MemoryMax", Value: dbus.MakeVariant(inf(memory))},
	}
	if err := m.conn.SetUnitPropertiesContext(ctx, units.RootSlice, true, props...); err != nil {
		return fmt.Errorf("set TasksMax and MemoryMax of %s: %w", units.RootSlice, err)
	}
	return nil
}
