package systemd

import (
	"context"

	"github.com/tenhq/ten/units"
)

// RemoveSlice stops the instance's slice (units.Instance.Slice) once its
// units are gone; systemd then unloads it. A slice that is not loaded is no
// error.
func (m *Manager) RemoveSlice(ctx context.Context, inst units.Instance) error {
	err := m.wait(ctx, inst.Slice(), "stop", func(ch chan<- string) (int, error) {
		return m.conn.StopUnitContext(ctx, inst.Slice(), "replace", ch)
	})
	if err != nil && !isNoSuchUnit(err) {
		return err
	}
	return nil
}
