package systemd

import (
	"context"
	"fmt"
	"math"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// TenantSlice is the slice every instance's units live in
// (tenement-SERVICE.slice and below).
const TenantSlice = "tenement.slice"

// CapTenantTasks sets TasksMax of TenantSlice, the processes and threads
// of all instances together, for as long as systemd runs (a runtime
// drop-in, as `systemctl set-property --runtime` makes); 0 lifts the cap.
func (m *Manager) CapTenantTasks(ctx context.Context, n uint64) error {
	v := n
	if n == 0 {
		v = math.MaxUint64 // "infinity"
	}
	if err := m.conn.SetUnitPropertiesContext(ctx, TenantSlice, true, sd.Property{Name: "TasksMax", Value: dbus.MakeVariant(v)}); err != nil {
		return fmt.Errorf("set TasksMax of %s: %w", TenantSlice, err)
	}
	return nil
}
