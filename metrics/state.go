package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/units"
)

// Instance is what the state collector learns of one instance without
// asking systemd (the server's state cache, the router, the health book).
type Instance struct {
	Inst units.Instance
	// State and Health are as ps shows them (apitype.State*, apitype.Health*).
	State, Health string
	// Weight is the routing weight; Routed is false when the router does not
	// have the instance (no weight then).
	Weight int
	Routed bool
	// OOMKills counts the OOM killer's kills while ten ran.
	OOMKills uint64
	// StorageUsed and StorageQuota are the use of its storage_quota_mb file
	// system, 0 and 0 without one.
	StorageUsed, StorageQuota uint64
}

// Source is what the state collector reads at scrape time.
type Source interface {
	// Instances is every instance, from caches only.
	Instances() []Instance
	// Usage reads a running or frozen instance's memory and CPU time.
	Usage(ctx context.Context, in Instance) (memory, cpuNSec uint64, err error)
}

// stateCollector reads the instances at scrape time: their states from
// caches, and one property read per running service for memory and CPU (a
// sleeping instance uses neither).
type stateCollector struct {
	src                                    Source
	instances, memory, cpu, health, weight *prometheus.Desc
	oom, used, quota                       *prometheus.Desc
	scrapeErrors                           prometheus.Counter
}

// NewStateCollector returns the collector of ten_instances,
// ten_instance_{memory_bytes,cpu_seconds_total,health,weight,oom_kills_total,
// storage_used_bytes,storage_quota_bytes} and
// ten_metrics_systemd_errors_total.
func NewStateCollector(src Source) prometheus.Collector {
	return &stateCollector{
		src: src,
		instances: prometheus.NewDesc(prometheus.BuildFQName("ten", "", "instances"),
			"Instances by state as ten ps shows it (running, frozen, starting, sleeping, failed).", []string{"state"}, nil),
		memory: prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", "memory_bytes"),
			"Memory of a running or frozen instance's cgroup (systemd MemoryCurrent).", []string{"instance"}, nil),
		cpu: prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", "cpu_seconds_total"),
			"CPU time of a running instance's service since it last started (systemd CPUUsageNSec).", []string{"instance"}, nil),
		health: prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", "health"),
			"1 for the instance's current health state (unknown, healthy, degraded, unhealthy, sleeping, failed), 0 for the others.", []string{"instance", "state"}, nil),
		weight: prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", "weight"),
			"Routing weight of the instance in its service's rotation (0-100).", []string{"instance"}, nil),
		oom: prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", "oom_kills_total"),
			"Processes of the instance the kernel's OOM killer ended at memory_limit_mb, counted while ten ran.", []string{"instance"}, nil),
		used: prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", "storage_used_bytes"),
			"Bytes used on the instance's storage_quota_mb file system.", []string{"instance"}, nil),
		quota: prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", "storage_quota_bytes"),
			"The instance's storage_quota_mb in bytes.", []string{"instance"}, nil),
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prometheus.BuildFQName("ten", "metrics", "systemd_errors_total"),
			Help: "Failed reads of systemd state while collecting metrics.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.instances, c.memory, c.cpu, c.health, c.weight, c.oom, c.used, c.quota} {
		ch <- d
	}
	c.scrapeErrors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.scrapeErrors.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts := map[string]int{apitype.StateRunning: 0, apitype.StateFrozen: 0, apitype.StateStarting: 0, apitype.StateSleeping: 0, apitype.StateFailed: 0}
	for _, in := range c.src.Instances() {
		name := in.Inst.String()
		counts[in.State]++
		for _, hs := range apitype.HealthStates {
			v := 0.0
			if hs == in.Health {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.health, prometheus.GaugeValue, v, name, hs)
		}
		if in.Routed {
			ch <- prometheus.MustNewConstMetric(c.weight, prometheus.GaugeValue, float64(in.Weight), name)
		}
		ch <- prometheus.MustNewConstMetric(c.oom, prometheus.CounterValue, float64(in.OOMKills), name)
		if in.StorageQuota > 0 {
			ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(in.StorageUsed), name)
			ch <- prometheus.MustNewConstMetric(c.quota, prometheus.GaugeValue, float64(in.StorageQuota), name)
		}
		if in.State != apitype.StateRunning && in.State != apitype.StateFrozen {
			continue
		}
		mem, cpu, err := c.src.Usage(ctx, in)
		if err != nil {
			c.scrapeErrors.Inc()
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(mem), name)
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, float64(cpu)/1e9, name)
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(n), state)
	}
}
