package api

import (
	"testing"

	"github.com/tenhq/ten/apitype"
)

// The summary counts what the rows hold; an instance with no requests has
// zeros, not a division by zero.
func TestTelemetry(t *testing.T) {
	rows := []apitype.Row{
		{Instance: "api:prod", State: apitype.StateRunning, Health: apitype.HealthHealthy, UptimeSecs: 7, IdleSec: 1.6, Restarts: 2, Weight: 100, StorageBytes: 5, StorageQuotaBytes: 10},
		{Instance: "api:dev", State: apitype.StateSleeping, Health: apitype.HealthSleeping},
	}
	tel := telemetry(rows, map[string]apitype.RequestStats{"api:prod": {Requests: 4, DurationSum: 0.010, P99: 0.0049}})
	if s := tel.Summary; s.TotalInstances != 2 || s.HealthyInstances != 1 || s.TotalRequests != 4 {
		t.Errorf("summary %+v", s)
	}
	p := tel.Instances[0]
	if p.ID != "api:prod" || p.Process != "api" || p.Instance != "prod" || p.RequestsTotal != 4 || p.RequestDurationAvgMs != 2.5 || p.RequestDurationP99Ms != 4.9 ||
		p.IdleSecs != 1 || p.UptimeSecs != 7 || p.Restarts != 2 || p.StorageQuotaBytes != 10 {
		t.Errorf("api:prod %+v", p)
	}
	if d := tel.Instances[1]; d.RequestsTotal != 0 || d.RequestDurationAvgMs != 0 || d.Health != apitype.HealthSleeping {
		t.Errorf("api:dev %+v", d)
	}
	if empty := telemetry(nil, nil); empty.Instances == nil || empty.Summary.TotalInstances != 0 {
		t.Errorf("no instances: %+v (instances must be [] in JSON)", empty)
	}
}
