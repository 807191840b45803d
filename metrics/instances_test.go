package metrics

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/dashboard"
	"github.com/tenhq/ten/units"
)

func TestCodeClass(t *testing.T) {
	for code, want := range map[int]string{200: "2xx", 204: "2xx", 301: "3xx", 404: "4xx", 499: "4xx", 503: "5xx", 0: "other", 700: "other"} {
		if got := codeClass(code); got != want {
			t.Errorf("codeClass(%d) = %q, want %q", code, got, want)
		}
	}
}

// The fast path's resolved observer counts into the same series as
// ObserveRequest, makes a series only for classes it saw, and feeds the
// dashboard's history.
func TestRequestObserver(t *testing.T) {
	hist := dashboard.NewHistory()
	m := NewInstances(hist)
	inst := units.Instance{Service: "api", ID: "a"}
	obs := m.RequestObserver(inst)
	for _, code := range []int{200, 204, 404, 200} {
		obs(code, 2*time.Millisecond)
	}
	m.ObserveRequest(inst, 200, time.Millisecond)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("api:a", "2xx")); got != 4 {
		t.Errorf("2xx requests: %v, want 4", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("api:a", "4xx")); got != 1 {
		t.Errorf("4xx requests: %v, want 1", got)
	}
	if n := testutil.CollectAndCount(m.requests); n != 2 {
		t.Errorf("%d request series, want 2 (2xx and 4xx only)", n)
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("%d duration series, want 2", n)
	}
	b := hist.Series(inst, time.Now())
	if last := b[len(b)-1]; last.Requests != 5 {
		t.Errorf("dashboard history: %d requests, want 5", last.Requests)
	}
	other := units.Instance{Service: "api", ID: "b"}
	for _, in := range []units.Instance{inst, other} {
		m.ObserveRequest(in, 0, time.Millisecond) // class "other"
		m.ObserveRequest(in, 503, time.Millisecond)
		m.ObserveWake(in, time.Millisecond, nil)
		m.ObserveWake(in, time.Millisecond, errors.New("no"))
		m.Restarted(in, apitype.RestartCrash)
		m.Restarted(in, apitype.RestartHealth)
		m.Restarted(in, "by hand") // a reason added later
	}
	m.Forget(inst)
	for name, c := range map[string]prometheus.Collector{"request": m.requests, "duration": m.duration, "wake": m.wakes, "wake duration": m.wakeDur, "restart": m.restarts} {
		ch := make(chan prometheus.Metric, 100)
		c.Collect(ch)
		close(ch)
		left := 0
		for mt := range ch {
			var pb dto.Metric
			mt.Write(&pb)
			for _, l := range pb.Label {
				if l.GetName() == "instance" && l.GetValue() == inst.String() {
					t.Errorf("a %s series of %s after Forget: %v", name, inst, pb.Label)
				}
				if l.GetName() == "instance" && l.GetValue() == other.String() {
					left++
				}
			}
		}
		if left == 0 {
			t.Errorf("Forget(%s) dropped %s's %s series too", inst, other, name)
		}
	}
}

// BenchmarkObserveRequest: recording one request through the label lookup
// (ObserveRequest) against the observer resolved once per instance, from
// 2 goroutines per CPU at once.
func BenchmarkObserveRequest(b *testing.B) {
	inst := units.Instance{Service: "api", ID: "a"}
	b.Run("lookup", func(b *testing.B) {
		m := NewInstances(dashboard.NewHistory())
		b.ReportAllocs()
		b.SetParallelism(2)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.ObserveRequest(inst, 200, time.Millisecond)
			}
		})
	})
	b.Run("resolved", func(b *testing.B) {
		m := NewInstances(dashboard.NewHistory())
		obs := m.RequestObserver(inst)
		b.ReportAllocs()
		b.SetParallelism(2)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				obs(200, time.Millisecond)
			}
		})
	})
}
