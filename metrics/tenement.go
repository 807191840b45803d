package metrics

import (
	"context"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/internal/coalesce"
)

// tenement's metric names, served beside ten's own so that dashboards and
// alerts written against tenement's GET /metrics keep working. Each is
// derived at scrape time from a ten_* family, so nothing on the request
// path counts twice:
//
//	tenement_requests_total{process,instance}           ten_requests_total summed over code
//	tenement_request_duration_ms{process,instance}      ten_request_duration_seconds summed over code, in ms
//	tenement_instances_up                               ten_instances{state="running"}
//	tenement_instance_restarts_total{process,id}        ten_instance_restarts_total summed over reason
//	tenement_instance_storage_bytes{process,instance}   ten_instance_storage_used_bytes
//	tenement_instance_storage_quota_bytes{...}          ten_instance_storage_quota_bytes
//	tenement_instance_storage_usage_ratio{...}          used / quota
//
// The label names are tenement's: process is the service, instance (id for
// restarts, as tenement labels them) the instance id.
const (
	tenRequests     = "ten_requests_total"
	tenDuration     = "ten_request_duration_seconds"
	tenInstances    = "ten_instances"
	tenRestarts     = "ten_instance_restarts_total"
	tenStorageUsed  = "ten_instance_storage_used_bytes"
	tenStorageQuota = "ten_instance_storage_quota_bytes"
)

// WithTenementNames returns a Gatherer that gathers g and adds tenement's
// metric families, derived from g's ten_* families (see above). Scrapes
// that arrive while one is gathered share its result: a gather reads
// systemd for every running instance, and GET /metrics needs no token by
// default, so a flood of scrapes costs one gather at a time.
func WithTenementNames(g prometheus.Gatherer) prometheus.Gatherer {
	return &tenementGatherer{g: g}
}

type tenementGatherer struct {
	g      prometheus.Gatherer
	shared coalesce.Group[gathered]
}

type gathered struct {
	mfs []*dto.MetricFamily
	err error
}

// Gather implements prometheus.Gatherer. Like the registry it wraps, it
// returns what it gathered beside an error, so that one failing collector
// leaves the rest to the scraper. The families are shared among the
// scrapes that got them: they are only read (encoded).
func (t *tenementGatherer) Gather() ([]*dto.MetricFamily, error) {
	r, _ := t.shared.Do(context.Background(), func() (gathered, error) {
		mfs, err := t.g.Gather()
		mfs = append(mfs, TenementFamilies(mfs)...)
		sort.Slice(mfs, func(i, j int) bool { return mfs[i].GetName() < mfs[j].GetName() })
		return gathered{mfs, err}, nil
	})
	return r.mfs, r.err
}

// TenementFamilies derives tenement's metric families from ten's families
// in mfs. tenement_instances_up is always there (0 without instances), as
// tenement serves it; the others have a series per instance seen.
func TenementFamilies(mfs []*dto.MetricFamily) []*dto.MetricFamily {
	by := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		by[mf.GetName()] = mf
	}
	var out []*dto.MetricFamily

	if mf := by[tenRequests]; mf != nil {
		out = append(out, summedCounter(mf, "tenement_requests_total", "Total number of HTTP requests (ten_requests_total summed over code).", "instance"))
	}

	if mf := by[tenDuration]; mf != nil {
		type acc struct {
			count  uint64
			sum    float64
			bounds []float64
			cum    []uint64
		}
		hs := map[string]*acc{}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			inst := label(m, "instance")
			a := hs[inst]
			if a == nil {
				a = &acc{}
				for _, b := range h.GetBucket() {
					a.bounds = append(a.bounds, b.GetUpperBound())
				}
				a.cum = make([]uint64, len(a.bounds))
				hs[inst] = a
			}
			a.count += h.GetSampleCount()
			a.sum += h.GetSampleSum()
			for i, b := range h.GetBucket() {
				if i < len(a.cum) {
					a.cum[i] += b.GetCumulativeCount()
				}
			}
		}
		fam := family("tenement_request_duration_ms", "Request duration in milliseconds (ten_request_duration_seconds summed over code).", dto.MetricType_HISTOGRAM)
		for _, inst := range sortedKeys(hs) {
			a := hs[inst]
			h := &dto.Histogram{SampleCount: proto.Uint64(a.count), SampleSum: proto.Float64(a.sum * 1000)}
			for i, b := range a.bounds {
				h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(b * 1000), CumulativeCount: proto.Uint64(a.cum[i])})
			}
			fam.Metric = append(fam.Metric, &dto.Metric{Label: tenementLabels(inst, "instance"), Histogram: h})
		}
		out = append(out, fam)
	}

	up := 0.0
	if mf := by[tenInstances]; mf != nil {
		for _, m := range mf.GetMetric() {
			if label(m, "state") == "running" {
				up += m.GetGauge().GetValue()
			}
		}
	}
	upFam := family("tenement_instances_up", "Number of running instances (ten_instances{state=\"running\"}).", dto.MetricType_GAUGE)
	upFam.Metric = []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(up)}}}
	out = append(out, upFam)

	if mf := by[tenRestarts]; mf != nil {
		out = append(out, summedCounter(mf, "tenement_instance_restarts_total", "Total instance restarts (ten_instance_restarts_total summed over reason).", "id"))
	}

	used, quota := gauges(by[tenStorageUsed]), gauges(by[tenStorageQuota])
	if len(used) > 0 || len(quota) > 0 {
		u := family("tenement_instance_storage_bytes", "Current storage usage in bytes (ten_instance_storage_used_bytes).", dto.MetricType_GAUGE)
		q := family("tenement_instance_storage_quota_bytes", "Configured storage quota in bytes (ten_instance_storage_quota_bytes).", dto.MetricType_GAUGE)
		r := family("tenement_instance_storage_usage_ratio", "Storage usage ratio (0.0 to 1.0+).", dto.MetricType_GAUGE)
		for _, inst := range sortedKeys(quota) {
			u.Metric = append(u.Metric, &dto.Metric{Label: tenementLabels(inst, "instance"), Gauge: &dto.Gauge{Value: proto.Float64(used[inst])}})
			q.Metric = append(q.Metric, &dto.Metric{Label: tenementLabels(inst, "instance"), Gauge: &dto.Gauge{Value: proto.Float64(quota[inst])}})
			ratio := 0.0
			if quota[inst] > 0 {
				ratio = used[inst] / quota[inst]
			}
			r.Metric = append(r.Metric, &dto.Metric{Label: tenementLabels(inst, "instance"), Gauge: &dto.Gauge{Value: proto.Float64(ratio)}})
		}
		out = append(out, u, q, r)
	}
	return out
}

// summedCounter is a counter family named name with one series per
// instance of mf, the sum of that instance's series (over code or reason),
// its id under tenement's label idLabel.
func summedCounter(mf *dto.MetricFamily, name, help, idLabel string) *dto.MetricFamily {
	sums := map[string]float64{}
	for _, m := range mf.GetMetric() {
		sums[label(m, "instance")] += m.GetCounter().GetValue()
	}
	fam := family(name, help, dto.MetricType_COUNTER)
	for _, inst := range sortedKeys(sums) {
		fam.Metric = append(fam.Metric, &dto.Metric{Label: tenementLabels(inst, idLabel), Counter: &dto.Counter{Value: proto.Float64(sums[inst])}})
	}
	return fam
}

func family(name, help string, t dto.MetricType) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: t.Enum()}
}

// label is the value of m's label name ("" when it has none).
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// gauges maps each series' instance label to its value.
func gauges(mf *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		out[label(m, "instance")] = m.GetGauge().GetValue()
	}
	return out
}

// tenementLabels splits ten's "service:id" into tenement's labels: process
// and idLabel (sorted by name, as the text format expects them).
func tenementLabels(inst, idLabel string) []*dto.LabelPair {
	process, id, _ := strings.Cut(inst, ":")
	ls := []*dto.LabelPair{
		{Name: proto.String(idLabel), Value: proto.String(id)},
		{Name: proto.String("process"), Value: proto.String(process)},
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].GetName() < ls[j].GetName() })
	return ls
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RequestStats reads every instance's request counters (RequestStatsOf
// over the requests and durations alone: no systemd read as a whole
// scrape's state collector makes).
func (m *Instances) RequestStats() map[string]apitype.RequestStats {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.requests, m.duration)
	return RequestStatsOf(reg)
}

// RequestStatsOf reads every instance's request counters from g's
// ten_requests_total and ten_request_duration_seconds (summed over code),
// keyed by instance name ("api:prod"), for GET /api/telemetry.
func RequestStatsOf(g prometheus.Gatherer) map[string]apitype.RequestStats {
	mfs, _ := g.Gather() // what a failing collector leaves is still counted
	out := map[string]apitype.RequestStats{}
	for _, mf := range TenementFamilies(mfs) {
		switch mf.GetName() {
		case "tenement_requests_total":
			for _, m := range mf.GetMetric() {
				inst := label(m, "process") + ":" + label(m, "instance")
				st := out[inst]
				st.Requests = uint64(m.GetCounter().GetValue())
				out[inst] = st
			}
		case "tenement_request_duration_ms":
			for _, m := range mf.GetMetric() {
				inst := label(m, "process") + ":" + label(m, "instance")
				st := out[inst]
				h := m.GetHistogram()
				st.DurationSum = h.GetSampleSum() / 1000
				st.P99 = quantile(0.99, h) / 1000
				out[inst] = st
			}
		}
	}
	return out
}

// quantile estimates the q-quantile of h as Prometheus's
// histogram_quantile does: linearly within the bucket that holds it; the
// largest finite bound when it falls in +Inf; 0 without observations.
func quantile(q float64, h *dto.Histogram) float64 {
	n := h.GetSampleCount()
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	prevBound, prevCount := 0.0, 0.0
	for _, b := range h.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if c >= rank {
			if c == prevCount {
				return b.GetUpperBound()
			}
			return prevBound + (b.GetUpperBound()-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = b.GetUpperBound(), c
	}
	return prevBound
}
