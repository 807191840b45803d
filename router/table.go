package router

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/tenhq/ten/units"
)

// table is an immutable snapshot of Host → backend, replaced (atomic
// pointer) whenever an instance, a weight or a failed mark changes, so a
// request routes with one map read and no lock. Weights are taken into the
// snapshot under the router's lock, so a Swap is seen whole or not at all.
//
// Both maps are split into shards by a hash of the key, and a change copies
// only the host shard it touches: with 10,000 instances a change copies
// about 160 hosts, not 10,000, and adding n instances one by one costs
// O(n), not O(n²). A service's rotation (for "{service}.{domain}") is
// built on the first request after a change, not at each change: adding or
// removing 10,000 instances of one service rebuilt its 10,000-member
// rotation at every step, quadratic again.
type table struct {
	// hosts maps "{id}.{service}.{domain}" to its instance.
	hosts [shards]map[string]*Route
	// services maps "{service}.{domain}" to the service's entry, which
	// tables share while the service has instances.
	services [shards]map[string]*svcRoute
}

// svcRoute is a service's entry in the tables: its rotation, or nil from
// a change of one of its instances until the next request to the service
// builds it (Router.rotation).
type svcRoute struct {
	service string
	rot     atomic.Pointer[rotation]
}

// shards is how many pieces each of a table's maps is split into.
const shards = 64

// shardOf is the shard of a key: FNV-1a, as bytes or string, so a lookup
// hashes the host it lowercased into a buffer without converting it.
func shardOf[T ~string | ~[]byte](key T) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % shards)
}

// service returns the entry of "{service}.{domain}", nil if none.
func (t *table) service(key string) *svcRoute {
	return t.services[shardOf(key)][key]
}

// rotation returns sr's rotation, building it from the service's
// backends if a change dropped it. It builds under the read lock, which a
// change holds for writing while it drops a rotation: a rotation stored is
// never older than the backends.
func (r *Router) rotation(sr *svcRoute) *rotation {
	if rt := sr.rot.Load(); rt != nil {
		return rt
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if rt := sr.rot.Load(); rt != nil {
		return rt
	}
	rt := newRotation(r.members[sr.service])
	sr.rot.Store(rt)
	return rt
}

// rotation is a service's instances in rotation (weight > 0, not failed),
// sorted by id, with the running sum of their weights for a weighted pick
// in O(log n).
type rotation struct {
	cands []cand
	// cum[i] is the sum of the weights of cands[:i+1].
	cum   []int
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
	lo, hi := 0, len(rt.cum)-1
	for lo < hi { // the first i with cum[i] > n
		mid := int(uint(lo+hi) >> 1)
		if rt.cum[mid] > n {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return rt.cands[lo].b
}

// newRotation is the rotation of a service's backends: those with a
// weight above 0, no failed mark and nothing that refuses them, by id.
func newRotation(members map[string]*Route) *rotation {
	rt := &rotation{cands: make([]cand, 0, len(members))}
	for _, b := range members {
		if w := int(b.weight.Load()); w > 0 && b.failedReason() == "" && b.Refuse == "" {
			rt.cands = append(rt.cands, cand{b, w})
		}
	}
	slices.SortFunc(rt.cands, func(a, b cand) int { return strings.Compare(a.b.Instance.ID, b.b.Instance.ID) })
	rt.cum = make([]int, len(rt.cands))
	for k, c := range rt.cands {
		rt.total += c.w
		rt.cum[k] = rt.total
	}
	return rt
}

// apply makes and stores a new table in which each of insts is as
// r.backends has it (present, absent, its weight and failed mark); r.mu
// must be held for writing. Several instances change in one new table.
func (r *Router) apply(insts ...units.Instance) {
	old := r.table.Load()
	nt := *old
	var hostCopied, svcCopied [shards]bool
	for _, inst := range insts {
		b := r.backends[inst]
		host := inst.ID + "." + inst.Service + "." + r.domain
		h := shardOf(host)
		if !hostCopied[h] {
			nt.hosts[h] = cloneMap(old.hosts[h])
			hostCopied[h] = true
		}
		if b != nil {
			nt.hosts[h][host] = b
		} else {
			delete(nt.hosts[h], host)
		}
		key := inst.Service + "." + r.domain
		s := shardOf(key)
		sr := nt.services[s][key]
		if (sr == nil) == (len(r.members[inst.Service]) == 0) {
			if sr != nil {
				sr.rot.Store(nil) // built again at the next request
			}
			continue
		}
		if !svcCopied[s] {
			nt.services[s] = cloneMap(old.services[s])
			svcCopied[s] = true
		}
		if sr != nil {
			delete(nt.services[s], key)
		} else {
			nt.services[s][key] = &svcRoute{service: inst.Service}
		}
	}
	r.table.Store(&nt)
}

func cloneMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
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
	sh := shardOf(buf[:n])
	if b := t.hosts[sh][string(buf[:n])]; b != nil {
		return b
	}
	if sr := t.services[sh][string(buf[:n])]; sr != nil && r.fleetService == nil {
		// In a fleet a service's instances on other nodes have their
		// share: ServeHTTP picks (Options.FleetService).
		return r.rotation(sr).pick()
	}
	return nil
}
