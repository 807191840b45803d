package router

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/tenhq/ten/units"
)

// TestTableMatchesBackends: after every one of 3,000 random changes (put,
// remove, weight, failed mark, swap) over 300 instances of 5 services, the
// incrementally updated table routes exactly as r.backends says: every
// instance's host, every service's rotation (members, weights, order by id,
// running sums), in any letter case of the host.
func TestTableMatchesBackends(t *testing.T) {
	r, _ := newTestRouter(t)
	rng := rand.New(rand.NewPCG(1, 2))
	inst := func() units.Instance {
		return units.Instance{Service: fmt.Sprintf("s%d", rng.IntN(5)), ID: fmt.Sprintf("I%03d", rng.IntN(60))}
	}
	for step := range 3000 {
		a := inst()
		switch op := rng.IntN(10); {
		case op < 4:
			r.Put(Backend{Instance: a, Socket: "/nonexistent", Weight: rng.IntN(3) * 50}, false)
		case op < 6:
			r.Remove(a)
		case op < 8:
			r.SetWeight(a, rng.IntN(3)*50)
		case op < 9:
			reason := ""
			if rng.IntN(2) == 0 {
				reason = "unhealthy"
			}
			r.SetFailed(a, reason)
		default:
			r.Swap(a, inst())
		}
		checkTable(t, r, step)
		if t.Failed() {
			return
		}
	}
}

func checkTable(t *testing.T, r *Router, step int) {
	t.Helper()
	r.mu.RLock()
	backends := maps.Clone(r.backends)
	r.mu.RUnlock()
	tb := r.table.Load()
	hosts := 0
	want := map[string][]cand{}
	for inst, b := range backends {
		if got, _, _, _ := r.route(inst.ID + "." + inst.Service + ".EXAMPLE.test."); got != b {
			t.Errorf("step %d: %s routes to %v, want its backend", step, inst, got)
		}
		key := inst.Service + "." + r.domain
		if _, ok := want[key]; !ok {
			want[key] = nil
		}
		if w := int(b.weight.Load()); w > 0 && b.failedReason() == "" {
			want[key] = append(want[key], cand{b, w})
		}
	}
	for _, m := range tb.hosts {
		hosts += len(m)
	}
	if hosts != len(backends) {
		t.Errorf("step %d: table has %d hosts, router %d backends", step, hosts, len(backends))
	}
	services := 0
	for _, m := range tb.services {
		services += len(m)
	}
	if services != len(want) {
		t.Errorf("step %d: table has %d services, want %d", step, services, len(want))
	}
	for key, cands := range want {
		sr := tb.service(key)
		if sr == nil {
			t.Errorf("step %d: no rotation for %s", step, key)
			continue
		}
		if step%2 == 0 {
			r.route(key) // a request builds it; on odd steps checkTable does
		}
		rt := r.rotation(sr)
		if len(rt.cands) != len(cands) || len(rt.cum) != len(cands) {
			t.Errorf("step %d: %s rotates %d, want %d", step, key, len(rt.cands), len(cands))
			continue
		}
		sum := 0
		for i, c := range rt.cands {
			sum += c.w
			if rt.cum[i] != sum || int(c.b.weight.Load()) != c.w || (i > 0 && rt.cands[i-1].b.Instance.ID >= c.b.Instance.ID) {
				t.Errorf("step %d: %s rotation wrong at %d", step, key, i)
			}
		}
		if rt.total != sum {
			t.Errorf("step %d: %s total %d, want %d", step, key, rt.total, sum)
		}
	}
}

// TestPickByWeight: the binary search over running sums picks each
// instance in proportion to its weight.
func TestPickByWeight(t *testing.T) {
	var cands []cand
	for i, w := range []int{10, 0, 30, 60} {
		cands = append(cands, cand{&Route{Backend: Backend{Instance: units.Instance{Service: "s", ID: fmt.Sprint(i)}}}, w})
	}
	rt := &rotation{}
	for _, c := range cands {
		if c.w > 0 {
			rt.cands = append(rt.cands, c)
			rt.total += c.w
			rt.cum = append(rt.cum, rt.total)
		}
	}
	got := map[string]int{}
	for range 10000 {
		got[rt.pick().Instance.ID]++
	}
	for id, lo := range map[string]int{"0": 800, "2": 2700, "3": 5600} {
		if got[id] < lo || got[id] > lo+800 {
			t.Errorf("instance %s picked %d times of 10,000 (weights 10/30/60): %v", id, got[id], got)
		}
	}
	if got["1"] != 0 {
		t.Errorf("weight 0 picked %d times", got["1"])
	}
}
