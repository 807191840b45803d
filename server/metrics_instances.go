package server

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/dashboard"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// instMetrics are the per-instance metrics ten counts itself: requests and
// wakes (from the router, through router.Observer) and restarts (from the
// health loop). What systemd knows (state, memory, CPU) is read at scrape
// time by instCollector.
type instMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	wakes    *prometheus.CounterVec
	wakeDur  *prometheus.HistogramVec
	restarts *prometheus.CounterVec
}

func newInstMetrics() *instMetrics {
	return &instMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName("ten", "", "requests_total"),
			Help: "HTTP requests the router relayed to an instance, by status code class.",
		}, []string{"instance", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prometheus.BuildFQName("ten", "request", "duration_seconds"),
			Help:    "Time from a request's arrival at the router to the end of its response, by instance and status code class.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"instance", "code"}),
		wakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName("ten", "", "wakes_total"),
			Help: "Wakes of sleeping instances by a request (result ok or failed).",
		}, []string{"instance", "result"}),
		wakeDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prometheus.BuildFQName("ten", "wake", "duration_seconds"),
			Help:    "Time from the waking request's arrival to the instance's first response headers.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"instance"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName("ten", "instance", "restarts_total"),
			Help: "Restarts of an instance's service: by systemd after a crash, or by ten after failed health checks.",
		}, []string{"instance", "reason"}),
	}
}

func (m *instMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration, m.wakes, m.wakeDur, m.restarts}
}

var _ router.Observer = (*Server)(nil)

func codeClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}

// ObserveRequest implements router.Observer.
func (s *Server) ObserveRequest(inst units.Instance, code int, d time.Duration) {
	name, class := inst.String(), codeClass(code)
	s.im.requests.WithLabelValues(name, class).Inc()
	s.im.duration.WithLabelValues(name, class).Observe(d.Seconds())
	s.hist.ObserveRequest(inst, code, d)
}

var _ router.InstanceObserver = (*Server)(nil)

// codeClasses are the values of the code label, by codeIndex.
var codeClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func codeIndex(code int) int {
	if code < 100 || code > 599 {
		return 0
	}
	return code / 100
}

// RequestObserver implements router.InstanceObserver: the instance's
// series are looked up once per code class, at its first request of that
// class (so no series exists for a class the instance never answered),
// and the dashboard's history through a recorder of its own.
func (s *Server) RequestObserver(inst units.Instance) func(code int, d time.Duration) {
	o := &reqObserver{m: s.im, name: inst.String(), hist: s.hist.Recorder(inst)}
	return o.observe
}

type reqObserver struct {
	m       *instMetrics
	name    string
	hist    *dashboard.Recorder
	classes [len(codeClasses)]atomic.Pointer[classSeries]
}

type classSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func (o *reqObserver) observe(code int, d time.Duration) {
	i := codeIndex(code)
	cs := o.classes[i].Load()
	if cs == nil {
		cs = &classSeries{requests: o.m.requests.WithLabelValues(o.name, codeClasses[i]), duration: o.m.duration.WithLabelValues(o.name, codeClasses[i])}
		o.classes[i].Store(cs)
	}
	cs.requests.Inc()
	cs.duration.Observe(d.Seconds())
	o.hist.ObserveRequest(code, d)
}

// ObserveWake implements router.Observer.
func (s *Server) ObserveWake(inst units.Instance, d time.Duration, err error) {
	s.hist.ObserveWake(inst, d, err)
	if err != nil {
		s.im.wakes.WithLabelValues(inst.String(), "failed").Inc()
		return
	}
	s.im.wakes.WithLabelValues(inst.String(), "ok").Inc()
	s.im.wakeDur.WithLabelValues(inst.String()).Observe(d.Seconds())
}

// forgetMetrics drops the series of a removed instance.
func (s *Server) forgetMetrics(inst units.Instance) {
	l := prometheus.Labels{"instance": inst.String()}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{s.im.requests, s.im.duration, s.im.wakes, s.im.wakeDur, s.im.restarts} {
		v.DeletePartialMatch(l)
	}
}

// instCollector reads systemd at scrape time: one ListUnitsByPatterns call
// for every unit's state, and one property read per running service for
// MemoryCurrent and CPUUsageNSec (a sleeping instance uses neither).
type instCollector struct {
	s                                      *Server
	instances, memory, cpu, health, weight *prometheus.Desc
	scrapeErrors                           prometheus.Counter
}

func newInstCollector(s *Server) *instCollector {
	return &instCollector{
		s: s,
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
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prometheus.BuildFQName("ten", "metrics", "systemd_errors_total"),
			Help: "Failed reads of systemd state while collecting metrics.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *instCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.instances, c.memory, c.cpu, c.health, c.weight} {
		ch <- d
	}
	c.scrapeErrors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *instCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.scrapeErrors.Collect(ch)
	s := c.s
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ins := s.reg.Snapshot()
	counts := map[string]int{apitype.StateRunning: 0, apitype.StateFrozen: 0, apitype.StateStarting: 0, apitype.StateSleeping: 0, apitype.StateFailed: 0}
	for _, in := range ins {
		name := in.Inst.String()
		// From the state cache systemd's signals keep: a scrape costs
		// systemd one call per running instance, none per sleeper.
		svc, sock, _ := s.sd.State(in.Inst)
		st, routed := s.router.Stat(in.Inst)
		state, _, h := registry.State(registry.Facts{
			Failed: s.health.Failed(in.Inst), WakeFailed: in.WakeFailed,
			ServiceActive: svc.ActiveState, SocketActive: sock.ActiveState,
			Frozen: routed && st.Frozen, Health: s.health.Of(in.Inst),
		})
		counts[state]++
		for _, hs := range apitype.HealthStates {
			v := 0.0
			if hs == h {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.health, prometheus.GaugeValue, v, name, hs)
		}
		if routed {
			ch <- prometheus.MustNewConstMetric(c.weight, prometheus.GaugeValue, float64(st.Weight), name)
		}
		if state != apitype.StateRunning && state != apitype.StateFrozen {
			continue
		}
		mem, cpu, err := s.sd.Usage(ctx, in.Inst)
		if err != nil {
			c.scrapeErrors.Inc()
			continue
		}
		if mem == 0 && state == apitype.StateFrozen {
			mem, _ = s.frz.MemoryOf(in.Inst)
		}
		ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(mem), name)
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, float64(cpu)/1e9, name)
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(n), state)
	}
}
