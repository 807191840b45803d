package metrics

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/dashboard"
	"github.com/tenhq/ten/units"
)

// GET /metrics serves tenement's names beside ten's, derived from ten's
// own counters: requests and restarts summed per instance, durations in
// ms, instances up, storage and its ratio. The output passes promlint.
func TestTenementNames(t *testing.T) {
	reg := Registry()
	m := NewInstances(dashboard.NewHistory())
	reg.MustRegister(m.Collectors()...)
	reg.MustRegister(NewStateCollector(fakeSource{
		{Inst: units.Instance{Service: "api", ID: "prod"}, State: apitype.StateRunning, Health: apitype.HealthHealthy, StorageUsed: 25, StorageQuota: 100},
		{Inst: units.Instance{Service: "api", ID: "dev"}, State: apitype.StateSleeping, Health: apitype.HealthSleeping},
		{Inst: units.Instance{Service: "web", ID: "x"}, State: apitype.StateRunning, Health: apitype.HealthHealthy},
	}))
	prod := units.Instance{Service: "api", ID: "prod"}
	m.ObserveRequest(prod, 200, 3*time.Millisecond)
	m.ObserveRequest(prod, 200, 3*time.Millisecond)
	m.ObserveRequest(prod, 404, 20*time.Millisecond)
	m.Restarted(prod, apitype.RestartCrash)
	m.Restarted(prod, apitype.RestartHealth)

	rec := httptest.NewRecorder()
	Handler(reg, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{
		"# TYPE tenement_requests_total counter",
		`tenement_requests_total{instance="prod",process="api"} 3`,
		"# TYPE tenement_request_duration_ms histogram",
		`tenement_request_duration_ms_bucket{instance="prod",process="api",le="5"} 2`,
		`tenement_request_duration_ms_bucket{instance="prod",process="api",le="25"} 3`,
		`tenement_request_duration_ms_bucket{instance="prod",process="api",le="+Inf"} 3`,
		`tenement_request_duration_ms_count{instance="prod",process="api"} 3`,
		"tenement_instances_up 2",
		`tenement_instance_restarts_total{id="prod",process="api"} 2`,
		`tenement_instance_storage_bytes{instance="prod",process="api"} 25`,
		`tenement_instance_storage_quota_bytes{instance="prod",process="api"} 100`,
		`tenement_instance_storage_usage_ratio{instance="prod",process="api"} 0.25`,
		`ten_requests_total{code="2xx",instance="api:prod"} 2`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("no line %q in\n%s", want, grep(text, "tenement_"))
		}
	}
	if !strings.Contains(text, `tenement_request_duration_ms_sum{instance="prod",process="api"} 26`) {
		t.Errorf("duration sum in ms:\n%s", grep(text, "tenement_request_duration_ms_sum"))
	}
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		// tenement's own name, kept as it is for its users' dashboards.
		if p.Metric == "tenement_request_duration_ms" && strings.Contains(p.Text, "abbreviated units") {
			continue
		}
		if strings.HasPrefix(p.Metric, "tenement_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

// Without any instance tenement_instances_up is 0, as tenement serves it.
func TestTenementNamesEmpty(t *testing.T) {
	reg := Registry()
	rec := httptest.NewRecorder()
	Handler(reg, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "\ntenement_instances_up 0\n") {
		t.Errorf("no tenement_instances_up 0:\n%s", grep(string(body), "tenement"))
	}
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The p99 estimate interpolates within its bucket as histogram_quantile
// does; RequestStats sums over code.
func TestRequestStats(t *testing.T) {
	m := NewInstances(dashboard.NewHistory())
	inst := units.Instance{Service: "api", ID: "prod"}
	for range 99 {
		m.ObserveRequest(inst, 200, 2*time.Millisecond) // bucket (1, 2.5] ms
	}
	m.ObserveRequest(inst, 500, 20*time.Millisecond) // bucket (10, 25] ms
	st := m.RequestStats()["api:prod"]
	if st.Requests != 100 {
		t.Errorf("requests %d, want 100", st.Requests)
	}
	if want := 99*0.002 + 0.020; st.DurationSum < want-1e-9 || st.DurationSum > want+1e-9 {
		t.Errorf("duration sum %v, want %v", st.DurationSum, want)
	}
	// 99 of 100 at or under 2.5 ms: the 99th is the bucket's upper end.
	if st.P99 < 0.0024 || st.P99 > 0.0025 {
		t.Errorf("p99 %v, want 2.5 ms", st.P99)
	}
	if len(m.RequestStats()) != 1 {
		t.Errorf("stats of instances without requests: %v", m.RequestStats())
	}
}
