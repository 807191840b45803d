package fleet

import (
	"math/rand/v2"
	"sort"
	"strings"
)

// ServiceInstance is one instance of a service that may take requests for
// {service}.DOMAIN: placed on a live node that owns it, not marked
// failed, with weight above 0.
type ServiceInstance struct {
	Instance string
	Node     string
	Addr     string
	Weight   int
}

// ServiceInstances lists the instances of svc that take a share of
// {service}.DOMAIN, by instance name.
func (v View) ServiceInstances(svc string) []ServiceInstance {
	var out []ServiceInstance
	for name, p := range v.Placements {
		s, _, _ := strings.Cut(name, ":")
		if s != svc || v.Owners[name] != p.Node || v.Failed[name] != "" {
			continue
		}
		n, live := v.Nodes[p.Node]
		if !live {
			continue
		}
		w, ok := v.Weights[name]
		if !ok {
			w = 100
		}
		if w > 0 {
			out = append(out, ServiceInstance{Instance: name, Node: p.Node, Addr: n.Addr, Weight: w})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	return out
}

// PickService picks one of insts with probability weight/total; ok is
// false when they have no weight at all.
func PickService(insts []ServiceInstance) (ServiceInstance, bool) {
	total := 0
	for _, in := range insts {
		total += in.Weight
	}
	if total <= 0 {
		return ServiceInstance{}, false
	}
	n := rand.IntN(total)
	for _, in := range insts {
		if n -= in.Weight; n < 0 {
			return in, true
		}
	}
	return insts[len(insts)-1], true
}

// ServiceInstances is View.ServiceInstances of the current view, kept
// until the view changes, so that a request does not scan every placement.
func (w *Watcher) ServiceInstances(svc string) []ServiceInstance {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.svcRev != w.v.Rev || w.svc == nil {
		w.svc, w.svcRev = map[string][]ServiceInstance{}, w.v.Rev
	}
	insts, ok := w.svc[svc]
	if !ok {
		insts = w.v.ServiceInstances(svc)
		w.svc[svc] = insts
	}
	return insts
}
