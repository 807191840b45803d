package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/units"
)

type fakeSource []Instance

func (f fakeSource) Instances() []Instance { return f }

func (f fakeSource) Usage(_ context.Context, in Instance) (uint64, uint64, error) {
	if in.Inst.ID == "broken" {
		return 0, 0, errors.New("no reply")
	}
	return 1 << 20, 2e9, nil
}

// Sleepers cost no usage read; a running instance has memory and CPU; a
// failed read is counted, not fatal; quota series only with a quota.
func TestStateCollector(t *testing.T) {
	src := fakeSource{
		{Inst: units.Instance{Service: "api", ID: "a"}, State: apitype.StateRunning, Health: apitype.HealthHealthy, Weight: 100, Routed: true, OOMKills: 2, StorageUsed: 5, StorageQuota: 10},
		{Inst: units.Instance{Service: "api", ID: "b"}, State: apitype.StateSleeping, Health: apitype.HealthSleeping, Routed: true},
		{Inst: units.Instance{Service: "api", ID: "broken"}, State: apitype.StateRunning, Health: apitype.HealthUnknown},
	}
	want := `
# HELP ten_instance_memory_bytes Memory of a running or frozen instance's cgroup (systemd MemoryCurrent).
# TYPE ten_instance_memory_bytes gauge
ten_instance_memory_bytes{instance="api:a"} 1.048576e+06
# HELP ten_instance_storage_quota_bytes The instance's storage_quota_mb in bytes.
# TYPE ten_instance_storage_quota_bytes gauge
ten_instance_storage_quota_bytes{instance="api:a"} 10
# HELP ten_instances Instances by state as ten ps shows it (running, frozen, starting, sleeping, failed).
# TYPE ten_instances gauge
ten_instances{state="failed"} 0
ten_instances{state="frozen"} 0
ten_instances{state="running"} 2
ten_instances{state="sleeping"} 1
ten_instances{state="starting"} 0
# HELP ten_metrics_systemd_errors_total Failed reads of systemd state while collecting metrics.
# TYPE ten_metrics_systemd_errors_total counter
ten_metrics_systemd_errors_total 1
`
	c := NewStateCollector(src)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "ten_instances", "ten_instance_memory_bytes", "ten_instance_storage_quota_bytes", "ten_metrics_systemd_errors_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "ten_instance_weight"); n != 2 {
		t.Errorf("%d weight series, want 2 (routed only)", n)
	}
	if n := testutil.CollectAndCount(c, "ten_instance_health"); n != 3*len(apitype.HealthStates) {
		t.Errorf("%d health series, want %d", n, 3*len(apitype.HealthStates))
	}
}
