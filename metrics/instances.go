package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/dashboard"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// Instances are the per-instance metrics ten counts itself: requests and
// wakes (from the router: it is the router's Observer and
// InstanceObserver, and feeds the dashboard's history too) and restarts
// (from the health loop). What systemd knows (state, memory, CPU) is read
// at scrape time by the state collector.
type Instances struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	wakes    *prometheus.CounterVec
	wakeDur  *prometheus.HistogramVec
	restarts *prometheus.CounterVec
	hist     *dashboard.History
	// reasons are the restart reasons counted so far (Forget deletes
	// each instance's series by their exact labels).
	reasons sync.Map
}

var (
	_ router.Observer         = (*Instances)(nil)
	_ router.InstanceObserver = (*Instances)(nil)
)

// NewInstances returns the counters, feeding hist as well.
func NewInstances(hist *dashboard.History) *Instances {
	return &Instances{
		hist: hist,
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
			Help: "Restarts of an instance's service, by reason: crash (systemd restarted it after it exited), health (ten, after failed health checks), manual (ten restart).",
		}, []string{"instance", "reason"}),
	}
}

// Collectors are the vectors to register.
func (m *Instances) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration, m.wakes, m.wakeDur, m.restarts}
}

func codeClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}

// ObserveRequest implements router.Observer.
func (m *Instances) ObserveRequest(inst units.Instance, code int, d time.Duration) {
	name, class := inst.String(), codeClass(code)
	m.requests.WithLabelValues(name, class).Inc()
	m.duration.WithLabelValues(name, class).Observe(d.Seconds())
	m.hist.ObserveRequest(inst, code, d)
}

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
func (m *Instances) RequestObserver(inst units.Instance) func(code int, d time.Duration) {
	o := &reqObserver{m: m, name: inst.String(), hist: m.hist.Recorder(inst)}
	return o.observe
}

type reqObserver struct {
	m       *Instances
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
func (m *Instances) ObserveWake(inst units.Instance, d time.Duration, err error) {
	m.hist.ObserveWake(inst, d, err)
	if err != nil {
		m.wakes.WithLabelValues(inst.String(), "failed").Inc()
		return
	}
	m.wakes.WithLabelValues(inst.String(), "ok").Inc()
	m.wakeDur.WithLabelValues(inst.String()).Observe(d.Seconds())
}

// Restarted counts a restart of inst's service (reason: apitype.Restart*).
func (m *Instances) Restarted(inst units.Instance, reason string) {
	m.reasons.Store(reason, true)
	m.restarts.WithLabelValues(inst.String(), reason).Inc()
}

// Forget drops the series of a removed instance. It deletes each series by
// its exact labels (every label value ten uses is known): a partial match
// walks every series of every instance, which made removing all of 10,000
// instances quadratic.
func (m *Instances) Forget(inst units.Instance) {
	name := inst.String()
	for _, c := range codeClasses {
		m.requests.DeleteLabelValues(name, c)
		m.duration.DeleteLabelValues(name, c)
	}
	m.wakes.DeleteLabelValues(name, "ok")
	m.wakes.DeleteLabelValues(name, "failed")
	m.wakeDur.DeleteLabelValues(name)
	m.reasons.Range(func(r, _ any) bool {
		m.restarts.DeleteLabelValues(name, r.(string))
		return true
	})
}
