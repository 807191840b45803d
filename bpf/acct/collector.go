package acct

import (
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// StatsSource is what a Collector reads at scrape time; *Accounting is one.
type StatsSource interface {
	All() (map[uint64]Stats, error)
}

// InstanceNamer names the instance a cgroup id belongs to ("api:prod"); ok
// is false for cgroups that are not an instance's, which are left out.
// Several cgroups may belong to one instance (its socket unit's and its
// service's); their activity is summed.
type InstanceNamer func(cgroupID uint64) (instance string, ok bool)

// Collector exposes the accounting counters as Prometheus metrics, read
// from the BPF map at scrape time, and counts the scrapes that failed.
type Collector struct {
	src  StatsSource
	name InstanceNamer
	log  *slog.Logger

	rxBytes, txBytes, rxPackets, txPackets, connections, lastActivity, lastInbound, openConns *prometheus.Desc

	mu           sync.Mutex // one scrape at a time reads the map
	scrapeErrors prometheus.Counter
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector of src's activity per instance.
func NewCollector(src StatsSource, name InstanceNamer, log *slog.Logger) *Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", name), help, []string{"instance"}, nil)
	}
	return &Collector{
		src:  src,
		name: name,
		log:  log,

		rxBytes:      desc("rx_bytes_total", "IP bytes received by the instance's sockets, counted by BPF on its cgroups."),
		txBytes:      desc("tx_bytes_total", "IP bytes sent by the instance's sockets, counted by BPF on its cgroups."),
		rxPackets:    desc("rx_packets_total", "IP packets received by the instance's sockets."),
		txPackets:    desc("tx_packets_total", "IP packets sent by the instance's sockets."),
		connections:  desc("connections_total", "TCP connections the instance accepted or opened."),
		lastActivity: desc("last_activity_seconds", "Unix time of the instance's last packet or connection."),
		lastInbound:  desc("last_inbound_seconds", "Unix time of the instance's last packet or connection other than those of connections it opened itself and non-TCP packets (what idle_activity = \"inbound\" counts)."),
		openConns:    desc("open_connections", "Accepted TCP connections of the instance that are open now (L4 clients); they keep it awake."),
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ten",
			Subsystem: "bpf",
			Name:      "scrape_errors_total",
			Help:      "Scrapes that could not read the BPF accounting map.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rxBytes, c.txBytes, c.rxPackets, c.txPackets, c.connections, c.lastActivity, c.lastInbound, c.openConns} {
		ch <- d
	}
	c.scrapeErrors.Describe(ch)
}

// Collect implements prometheus.Collector. A failed read is logged and
// counted in ten_bpf_scrape_errors_total; the scrape goes on without the
// instance metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() { ch <- c.scrapeErrors }()
	all, err := c.src.All()
	if err != nil {
		c.scrapeErrors.Inc()
		c.log.Warn("scrape BPF accounting", "err", err)
		return
	}
	byInstance := make(map[string]Stats)
	for id, s := range all {
		if name, ok := c.name(id); ok {
			byInstance[name] = byInstance[name].add(s)
		}
	}
	for name, s := range byInstance {
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), name)
		}
		counter(c.rxBytes, s.RxBytes)
		counter(c.txBytes, s.TxBytes)
		counter(c.rxPackets, s.RxPackets)
		counter(c.txPackets, s.TxPackets)
		counter(c.connections, s.Connections)
		ch <- prometheus.MustNewConstMetric(c.openConns, prometheus.GaugeValue, float64(s.OpenConnections), name)
		if !s.LastActivity.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastActivity, prometheus.GaugeValue,
				float64(s.LastActivity.UnixNano())/1e9, name)
		}
		if !s.LastInbound.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastInbound, prometheus.GaugeValue,
				float64(s.LastInbound.UnixNano())/1e9, name)
		}
	}
}
