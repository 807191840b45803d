// Package ondemand guards tenement's "wake on request" of a new id: a
// request for {id}.{service}.{domain} of a declared service whose
// instance does not exist creates it. Anyone who can reach the router can
// send such requests, so creation is bounded: per service by
// max_instances and spawn_on_request, per client IP by a rate. Each
// decision is counted for /metrics. The package decides only; the server
// creates the instance.
package ondemand

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/config"
)

// Results counted in ten_instances_created_on_request_total.
const (
	ResultCreated = "created"
	ResultOff     = "off"
	ResultBadID   = "bad_id"
	ResultMax     = "max_instances"
	ResultRate    = "rate"
	ResultFailed  = "failed"
)

// CreateTimeout bounds one creation by request (units made; the wake that
// follows has startup_timeout of its own), here or, in a fleet, on the
// node the instance is placed on.
const CreateTimeout = 30 * time.Second

// maxClients bounds the per-client state under a flood of addresses.
const maxClients = 10000

// Refusal is why a request may not create an instance: the status and
// message the client gets, and the result counted.
type Refusal struct {
	Status int
	Msg    string
	Result string
	// RetryAfter is set for a rate refusal.
	RetryAfter time.Duration
}

// Guard decides and counts. It is safe for concurrent use.
type Guard struct {
	perMinute int
	now       func() time.Time
	counts    *prometheus.CounterVec

	mu      sync.Mutex
	clients map[string]*bucket

	pendMu sync.Mutex // pendMu guards pending; taken before mu
	// pending counts creations in progress per service (Begin).
	pending map[string]int
}

// bucket is a token bucket of one client: perMinute tokens, refilled
// evenly over a minute.
type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a guard letting one client create perMinute instances a
// minute (settings.spawn_rate_per_client); now may be nil for time.Now.
func New(perMinute int, now func() time.Time) *Guard {
	if now == nil {
		now = time.Now
	}
	return &Guard{perMinute: perMinute, now: now, clients: map[string]*bucket{}, pending: map[string]int{},
		counts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName("ten", "", "instances_created_on_request_total"),
			Help: "Requests for an id that did not exist, by service and result: created, or refused (off, bad_id, max_instances, rate) or failed.",
		}, []string{"service", "result"})}
}

// Collector is the guard's counter, for the server's registry.
func (g *Guard) Collector() prometheus.Collector { return g.counts }

// Check decides whether client may create id of svc now that the service
// has existing instances (those being created included). A nil Refusal
// means yes, and takes one of the client's tokens.
func (g *Guard) Check(svc *config.Service, id string, existing int, client string) *Refusal {
	inst := svc.Name + ":" + id
	var r *Refusal
	switch {
	case svc.SpawnOnRequest != nil && !*svc.SpawnOnRequest:
		r = &Refusal{Status: http.StatusNotFound, Result: ResultOff,
			Msg: fmt.Sprintf("no instance %s on this server; service %s does not create instances on request (spawn_on_request = false): ten spawn %s", inst, svc.Name, inst)}
	case config.CheckID("instance id", id) != nil:
		r = &Refusal{Status: http.StatusNotFound, Result: ResultBadID,
			Msg: fmt.Sprintf("no instance %s on this server, and no request creates it: %v", inst, config.CheckID("instance id", id))}
	case existing >= svc.MaxInstances:
		r = &Refusal{Status: http.StatusTooManyRequests, Result: ResultMax,
			Msg: fmt.Sprintf("no instance %s on this server, and service %s has %d instances, its max_instances: a request creates no more (ten stop one, or raise max_instances)", inst, svc.Name, existing)}
	default:
		if wait := g.take(client); wait > 0 {
			r = &Refusal{Status: http.StatusTooManyRequests, Result: ResultRate, RetryAfter: wait,
				Msg: fmt.Sprintf("no instance %s on this server, and %s has created instances by request %d times in the last minute (settings.spawn_rate_per_client); try again in %ds", inst, client, g.perMinute, int(wait.Seconds()+0.999))}
		}
	}
	if r != nil {
		g.counts.WithLabelValues(svc.Name, r.Result).Inc()
	}
	return r
}

// Begin is Check for a creation that runs until end is called: creations
// in progress count as existing instances of their service, so that
// concurrent requests for new ids cannot pass max_instances together.
// existing counts the service's instances (those in progress not
// included); it is called under the lock that orders these decisions.
func (g *Guard) Begin(svc *config.Service, id string, existing func() int, client string) (r *Refusal, end func()) {
	g.pendMu.Lock()
	defer g.pendMu.Unlock()
	if r := g.Check(svc, id, g.pending[svc.Name]+existing(), client); r != nil {
		return r, nil
	}
	g.pending[svc.Name]++
	return nil, sync.OnceFunc(func() {
		g.pendMu.Lock()
		if g.pending[svc.Name]--; g.pending[svc.Name] == 0 {
			delete(g.pending, svc.Name)
		}
		g.pendMu.Unlock()
	})
}

// Done counts the outcome of a creation Check allowed.
func (g *Guard) Done(service string, err error) {
	if err != nil {
		g.counts.WithLabelValues(service, ResultFailed).Inc()
		return
	}
	g.counts.WithLabelValues(service, ResultCreated).Inc()
}

// take takes a token of client's bucket; it returns 0, or how long until
// one is there.
func (g *Guard) take(client string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	rate := float64(g.perMinute) / 60 // tokens a second
	b := g.clients[client]
	if b == nil {
		if len(g.clients) >= maxClients {
			g.pruneLocked(now)
		}
		b = &bucket{tokens: float64(g.perMinute), last: now}
		g.clients[client] = b
	}
	b.tokens = min(float64(g.perMinute), b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// pruneLocked forgets clients whose bucket is full again (they are like
// new ones); if none is, it forgets everyone rather than grow.
func (g *Guard) pruneLocked(now time.Time) {
	for k, b := range g.clients {
		if now.Sub(b.last) >= time.Minute {
			delete(g.clients, k)
		}
	}
	if len(g.clients) >= maxClients {
		clear(g.clients)
	}
}
