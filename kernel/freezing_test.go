package kernel

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// records is an in-memory Records.
type records map[string]time.Time

func (r records) FrozenRecords() map[string]time.Time {
	out := map[string]time.Time{}
	for k, v := range r {
		out[k] = v
	}
	return out
}
func (r records) FrozenSince(name string) (time.Time, bool) { t, ok := r[name]; return t, ok }
func (r records) RecordFrozen(name string, since time.Time) error {
	r[name] = since
	return nil
}
func (r records) ForgetFrozen(name string) error { delete(r, name); return nil }

// On a host that cannot freeze, Freezing says why, refuses to freeze (the
// reaper then stops the instance), and touches no record.
func TestFreezingUnsupported(t *testing.T) {
	rec := records{}
	reg := prometheus.NewRegistry()
	f := NewFreezing(FreezeOptions{Unsupported: errors.New("no cgroup freezer"), Wiring: proxyOnly(t), Records: rec, Metrics: reg})
	if f.On() {
		t.Fatal("On without a freezer")
	}
	if ft := f.Feature(); ft.On || !strings.Contains(ft.Detail, "no cgroup freezer") || !strings.Contains(ft.Detail, "stopped instead") {
		t.Errorf("Feature() = %+v", ft)
	}
	inst := units.Instance{Service: "api", ID: "a"}
	if err := f.Freeze(context.Background(), inst); !errors.Is(err, systemd.ErrFreezeUnsupported) {
		t.Errorf("Freeze = %v, want ErrFreezeUnsupported", err)
	}
	if err := f.Thaw(context.Background(), inst, "http"); !errors.Is(err, systemd.ErrFreezeUnsupported) {
		t.Errorf("Thaw = %v, want ErrFreezeUnsupported", err)
	}
	if len(rec) != 0 {
		t.Errorf("records after a refused freeze: %v", rec)
	}
	if _, ok := f.MemoryOf(inst); ok {
		t.Error("MemoryOf without a freezer")
	}
	f.Restore() // nothing to restore, and no router needed
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		// A counter vector with no series gathers nothing.
		t.Errorf("metrics: %v %v", mfs, err)
	}
}

// A service that stopped is not frozen: its record goes, others stay.
func TestFreezingStopped(t *testing.T) {
	since := time.Now()
	rec := records{"api:a": since, "api:b": since}
	f := NewFreezing(FreezeOptions{Wiring: proxyOnly(t), Records: rec})
	f.Stopped(units.Instance{Service: "api", ID: "a"})
	f.Stopped(units.Instance{Service: "api", ID: "c"})
	if _, ok := rec["api:a"]; ok {
		t.Error("record of a stopped instance kept")
	}
	if _, ok := rec["api:b"]; !ok {
		t.Error("record of another instance dropped")
	}
}
