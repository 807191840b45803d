package router

import (
	"math/rand/v2"
	"sort"

	"github.com/tenhq/ten/units"
)

// table is an immutable snapshot of Host → backend, replaced (atomic
// pointer) whenever an instance, a weight or a failed mark changes, so a
// request routes with one map read and no lock. Weights are taken into the
// snapshot under the router's lock, so a Swap is seen whole or not at all.
//
// Both maps are split into shards by a hash of the key, and a change copies
// only the shards it touches and the rotation of the instance's service:
// with 10,000 instances a change copies about 160 hosts, not 10,000, and
// adding n instances one by one costs O(n), not O(n²).
type table struct {
	// hosts maps "{id}.{service}.{domain}" to its instance.
	hosts [shards]map[string]*Route
	// services maps "{service}.{domain}" to the service's rotation; a
	// service with instances but none in rotation has an empty one.
	services [shards]map[string]*rotation
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

// service returns the rotation of "{service}.{domain}", nil if none.
func (t *table) service(key string) *rotation {
	return t.services[shardOf(key)][key]
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

// with returns a copy of rt (nil: empty) in which inst is what b says: in
// rotation with b's weight if b is in rotation, absent if b is nil or out
// of it.
func (rt *rotation) with(inst units.Instance, b *Route) *rotation {
	var old []cand
	if rt != nil {
		old = rt.cands
	}
	i := sort.Search(len(old), func(i int) bool { return old[i].b.Instance.ID >= inst.ID })
	rest := old[i:]
	if len(rest) > 0 && rest[0].b.Instance.ID == inst.ID {
		rest = rest[1:]
	}
	cands := make([]cand, 0, len(old)+1)
	cands = append(cands, old[:i]...)
	if b != nil {
		if w := int(b.weight.Load()); w > 0 && b.failedReason() == "" {
			cands = append(cands, cand{b, w})
		}
	}
	cands = append(cands, rest...)
	nr := &rotation{cands: cands, cum: make([]int, len(cands))}
	for k, c := range cands {
		nr.total += c.w
		nr.cum[k] = nr.total
	}
	return nr
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
		if !svcCopied[s] {
			nt.services[s] = cloneMap(old.services[s])
			svcCopied[s] = true
		}
		if r.perService[inst.Service] == 0 {
			delete(nt.services[s], key)
			continue
		}
		nt.services[s][key] = nt.services[s][key].with(inst, b)
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
	if rt := t.services[sh][string(buf[:n])]; rt != nil && r.fleetService == nil {
		// In a fleet a service's instances on other nodes have their
		// share: ServeHTTP picks (Options.FleetService).
		return rt.pick()
	}
	return nil
}
