package router

import (
	"math/rand/v2"
	"sort"
)

// table is an immutable snapshot of Host → backend, swapped whole (atomic
// pointer) whenever an instance, a weight or a failed mark changes, so a
// request routes with one map read and no lock. Weights are taken into the
// snapshot under the router's lock, so a Swap is seen whole or not at all.
type table struct {
	// hosts maps "{id}.{service}.{domain}" to its instance.
	hosts map[string]*Route
	// services maps "{service}.{domain}" to the service's rotation; a
	// service with instances but none in rotation has an empty one.
	services map[string]*rotation
}

type rotation struct {
	cands []cand
	total int
}

type cand struct {
	b *Route
	w int
}

// pick chooses among the rotation by weight; nil when it is empty.
func (rt *rotation) pick() *Route {
	if rt.total <= 0 {
		return nil
	}
	n := rand.IntN(rt.total)
	for _, c := range rt.cands {
		n -= c.w
		if n < 0 {
			return c.b
		}
	}
	return rt.cands[len(rt.cands)-1].b
}

// rebuild makes a new table from r.backends; r.mu must be held for writing.
func (r *Router) rebuild() {
	t := &table{hosts: make(map[string]*Route, len(r.backends)), services: map[string]*rotation{}}
	for inst, b := range r.backends {
		t.hosts[inst.ID+"."+inst.Service+"."+r.domain] = b
		key := inst.Service + "." + r.domain
		rt := t.services[key]
		if rt == nil {
			rt = &rotation{}
			t.services[key] = rt
		}
		if w := int(b.weight.Load()); w > 0 && b.failedReason() == "" {
			rt.cands = append(rt.cands, cand{b, w})
			rt.total += w
		}
	}
	for _, rt := range t.services {
		sort.Slice(rt.cands, func(i, j int) bool { return rt.cands[i].b.Instance.ID < rt.cands[j].b.Instance.ID })
	}
	r.table.Store(t)
}

// lookup resolves a Host header value to a backend through the current
// table without allocating; nil when it names no routable instance (the
// caller then takes the path that explains why, or serves the admin API).
func (r *Router) lookup(host []byte) *Route {
	var buf [256]byte
	if len(host) > len(buf) {
		return nil
	}
	n := 0
	for i, c := range host {
		if c == ':' {
			if i == 0 || host[0] == '[' {
				return nil
			}
			break // the port
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	if n > 0 && buf[n-1] == '.' {
		n--
	}
	t := r.table.Load()
	if b := t.hosts[string(buf[:n])]; b != nil {
		return b
	}
	if rt := t.services[string(buf[:n])]; rt != nil && r.fleetService == nil {
		// In a fleet a service's instances on other nodes have their
		// share: ServeHTTP picks (Options.FleetService).
		return rt.pick()
	}
	return nil
}
