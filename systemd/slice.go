package systemd

import (
	"context"
	"fmt"

	"github.com/tenhq/ten/units"
)

// RemoveSlice stops the instance's slice (units.Instance.Slice), and with
// it every unit still in it; systemd then unloads it. A slice that is not
// loaded is no error. The LegacySlice of an instance made before buckets is
// stopped too where it has a cgroup. The bucket slice stays: other
// instances may be in it, and it goes with the service's slice.
func (m *Manager) RemoveSlice(ctx context.Context, inst units.Instance) error {
	slices := []string{inst.Slice()}
	if legacySliceLoaded(inst) {
		slices = append(slices, inst.LegacySlice())
	}
	return m.stopSlices(ctx, slices)
}

// stopSlices stops each slice, and with it every unit in it; one that is
// not loaded is no error.
func (m *Manager) stopSlices(ctx context.Context, slices []string) error {
	for _, sl := range slices {
		err := m.wait(ctx, sl, "stop", func(ch chan<- string) (int, error) {
			return m.calls().StopUnitContext(ctx, sl, "replace", ch)
		})
		if err != nil && !isNoSuchUnit(err) {
			return err
		}
	}
	return nil
}

// RemoveServiceSlice stops the slice of a service (units.ServiceSlice) when
// systemd has no socket or service unit of any instance of it loaded;
// removed says whether it did. Stopping a slice stops every unit in it, so
// the caller must make sure that no spawn of the service creates units
// meanwhile. A slice that is not loaded is no error.
func (m *Manager) RemoveServiceSlice(ctx context.Context, service string) (removed bool, err error) {
	pats := units.ServicePatterns(service)
	st, err := m.conn.ListUnitsByPatternsContext(ctx, nil, pats)
	if err != nil {
		return false, fmt.Errorf("list units %v: %w", pats, err)
	}
	for _, u := range st {
		if u.LoadState != "not-found" {
			return false, nil
		}
	}
	slice := units.ServiceSlice(service)
	err = m.wait(ctx, slice, "stop", func(ch chan<- string) (int, error) {
		return m.conn.StopUnitContext(ctx, slice, "replace", ch)
	})
	if err != nil && !isNoSuchUnit(err) {
		return false, err
	}
	return true, nil
}
