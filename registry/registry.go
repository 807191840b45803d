// Package registry is ten serve's book of instances: which instances exist,
// which are being changed (the busy set), and every TCP port of the
// settings.port_range that an instance holds or a spawn has reserved — its
// PORT and the port of its L4 internal sockets alike, so that two spawns can
// never be handed the same port. It owns its state behind one lock; callers
// get copies (snapshots), never the entries themselves.
//
// State, the one judgement of an instance's state that ps, the metrics and
// the health checks share, is a pure function of what systemd, the router
// and the health book say.
package registry

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/units"
)

// Errors a client can act on; the admin API maps them to status codes
// (404, 409).
var (
	// ErrBusy means another request is changing the instance right now.
	ErrBusy = errors.New("instance is being changed by another request")
	// ErrUnknownService means the config declares no such service.
	ErrUnknownService = errors.New("unknown service")
	// ErrExists means the instance exists already.
	ErrExists = errors.New("instance exists already")
	// ErrNotFound means there is no such instance.
	ErrNotFound = errors.New("no such instance")
)

// Entry is one instance as the registry knows it.
type Entry struct {
	Inst units.Instance
	// Svc is nil when the config no longer declares the service.
	Svc *config.Service
	// Port is the instance's PORT.
	Port int
	// Listen is the path of its systemd-held socket.
	Listen  string
	Created time.Time
	// WakeFailed says why the instance did not answer a waking request
	// ("" once it answered or was restarted).
	WakeFailed string
}

// Registry holds the instances, the busy set and the port reservations.
type Registry struct {
	mu        sync.Mutex
	instances map[units.Instance]*Entry
	busy      map[units.Instance]bool
	// ports maps each held port to the instance holding it; held is its
	// inverse, so that freeing an instance's ports costs no scan of all.
	ports map[int]units.Instance
	held  map[units.Instance][]int
	// perService counts the instances of each service, so that a stop
	// learns whether it removed a service's last instance without a scan.
	perService map[string]int
	// fold maps an instance with its id in lower case to the ids
	// registered under it, so FoldTwin needs no scan of all.
	fold map[units.Instance][]string
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{instances: map[units.Instance]*Entry{}, busy: map[units.Instance]bool{}, ports: map[int]units.Instance{}, held: map[units.Instance][]int{}, perService: map[string]int{}, fold: map[units.Instance][]string{}}
}

// Lock marks inst busy (spawn, stop, restart, deploy); ErrBusy when it is
// already.
func (r *Registry) Lock(inst units.Instance) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy[inst] {
		return fmt.Errorf("%s: %w", inst, ErrBusy)
	}
	r.busy[inst] = true
	return nil
}

// Unlock ends what Lock began.
func (r *Registry) Unlock(inst units.Instance) {
	r.mu.Lock()
	delete(r.busy, inst)
	r.mu.Unlock()
}

// Busy reports whether inst is being changed.
func (r *Registry) Busy(inst units.Instance) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.busy[inst]
}

// Add records an instance whose units exist, and marks its port held by it.
func (r *Registry) Add(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.instances[e.Inst] == nil {
		r.perService[e.Inst.Service]++
		k := foldKey(e.Inst)
		r.fold[k] = append(r.fold[k], e.Inst.ID)
	}
	r.instances[e.Inst] = &e
	if e.Port > 0 {
		r.holdLocked(e.Inst, e.Port)
	}
}

// Remove forgets an instance and frees every port it holds.
func (r *Registry) Remove(inst units.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.instances[inst] != nil {
		if r.perService[inst.Service]--; r.perService[inst.Service] <= 0 {
			delete(r.perService, inst.Service)
		}
		k := foldKey(inst)
		if ids := slices.DeleteFunc(r.fold[k], func(id string) bool { return id == inst.ID }); len(ids) > 0 {
			r.fold[k] = ids
		} else {
			delete(r.fold, k)
		}
	}
	delete(r.instances, inst)
	r.releaseLocked(inst)
}

// FoldTwin returns a registered instance of inst's service whose id equals
// inst's ignoring case but differs from it; ok is false when there is none.
func (r *Registry) FoldTwin(inst units.Instance) (twin units.Instance, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range r.fold[foldKey(inst)] {
		if id != inst.ID {
			return units.Instance{Service: inst.Service, ID: id}, true
		}
	}
	return units.Instance{}, false
}

func foldKey(inst units.Instance) units.Instance {
	return units.Instance{Service: inst.Service, ID: strings.ToLower(inst.ID)}
}

// ServiceCount is the number of registered instances of service.
func (r *Registry) ServiceCount(service string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.perService[service]
}

// Get returns a copy of inst's entry.
func (r *Registry) Get(inst units.Instance) (Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.instances[inst]
	if e == nil {
		return Entry{}, false
	}
	return *e, true
}

// Has reports whether inst is registered.
func (r *Registry) Has(inst units.Instance) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.instances[inst] != nil
}

// Len is the number of instances.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.instances)
}

// Names returns the name of every instance, in no order: for a periodic
// pass over all of them that needs no sort.
func (r *Registry) Names() []units.Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]units.Instance, 0, len(r.instances))
	for inst := range r.instances {
		out = append(out, inst)
	}
	return out
}

// Snapshot returns a copy of every entry, sorted by name.
func (r *Registry) Snapshot() []Entry {
	r.mu.Lock()
	out := make([]Entry, 0, len(r.instances))
	for _, e := range r.instances {
		out = append(out, *e)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Entry) int { return compareNames(a.Inst, b.Inst) })
	return out
}

// compareNames orders instances as their names "service:id" sort, without
// making the names (a sort of 10,000 made half a million strings).
func compareNames(a, b units.Instance) int {
	if a.Service == b.Service {
		return strings.Compare(a.ID, b.ID)
	}
	n := min(len(a.Service), len(b.Service))
	if c := strings.Compare(a.Service[:n], b.Service[:n]); c != 0 {
		return c
	}
	// One service name starts the other: the shorter name's ':' meets the
	// longer one's next byte.
	if len(a.Service) < len(b.Service) {
		return cmp.Compare(byte(':'), b.Service[n])
	}
	return cmp.Compare(a.Service[n], byte(':'))
}

// Instances returns the names of every instance, sorted.
func (r *Registry) Instances() []units.Instance {
	snap := r.Snapshot()
	out := make([]units.Instance, len(snap))
	for i, e := range snap {
		out[i] = e.Inst
	}
	return out
}

// SetWakeFailed sets (or with "" clears) the wake failure of inst; false
// when inst is not registered.
func (r *Registry) SetWakeFailed(inst units.Instance, reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.instances[inst]
	if e == nil {
		return false
	}
	e.WakeFailed = reason
	return true
}

// PortRequest says which ports a spawn needs.
type PortRequest struct {
	// Lo and Hi bound the range (settings.port_range), both included.
	Lo, Hi int
	// Start is the offset into the range where the search for PORT begins
	// (a stable hash of the name keeps an instance's PORT across respawns).
	Start int
	// L4Start is where the search for the L4 port begins.
	L4Start int
	// L4 is set when the instance has L4 addresses: it lists the internal
	// sockets that would use port p, each of which must be free on the host.
	L4 func(p int) []string
}

// Ports is what ReservePorts handed out.
type Ports struct {
	Port int
	// L4Port is the port of the L4 internal sockets (0: none asked).
	L4Port int
}

// Prober reports whether a TCP address can be bound on this host now.
type Prober func(addr string) bool

// ReservePorts picks PORT (and the L4 port, when asked) for inst, past every
// port any instance or spawn holds and every port probe finds bound, and
// holds them for inst — all in one critical section, so that concurrent
// spawns never get the same port. Release frees them if the spawn fails;
// Remove when the instance goes.
func (r *Registry) ReservePorts(inst units.Instance, req PortRequest, probe Prober) (Ports, error) {
	n := req.Hi - req.Lo + 1
	if n <= 0 {
		return Ports{}, fmt.Errorf("settings.port_range %d-%d is empty", req.Lo, req.Hi)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out Ports
	pick := func(start int, free func(p int) bool) int {
		start = ((start % n) + n) % n
		for i := 0; i < n; i++ {
			p := req.Lo + (start+i)%n
			if _, held := r.ports[p]; held {
				continue
			}
			if free(p) {
				return p
			}
		}
		return 0
	}
	out.Port = pick(req.Start, func(p int) bool { return probe(fmt.Sprintf("127.0.0.1:%d", p)) })
	if out.Port == 0 {
		return Ports{}, fmt.Errorf("no free port in settings.port_range %d-%d", req.Lo, req.Hi)
	}
	if req.L4 != nil {
		out.L4Port = pick(req.L4Start, func(p int) bool {
			if p == out.Port {
				return false
			}
			for _, a := range req.L4(p) {
				if !probe(a) {
					return false
				}
			}
			return true
		})
		if out.L4Port == 0 {
			return Ports{}, fmt.Errorf("no free port in settings.port_range %d-%d for the L4 socket of %s", req.Lo, req.Hi, inst)
		}
		r.holdLocked(inst, out.L4Port)
	}
	r.holdLocked(inst, out.Port)
	return out, nil
}

// Hold marks ports as held by inst (an instance adopted from systemd).
func (r *Registry) Hold(inst units.Instance, ports ...int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ports {
		if p > 0 {
			r.holdLocked(inst, p)
		}
	}
}

// Release frees the ports inst holds, unless inst is registered (its units
// were made): for a spawn that failed.
func (r *Registry) Release(inst units.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.instances[inst] == nil {
		r.releaseLocked(inst)
	}
}

// holdLocked marks p held by inst (taking it from any other holder).
func (r *Registry) holdLocked(inst units.Instance, p int) {
	if owner, ok := r.ports[p]; ok {
		if owner == inst {
			return
		}
		r.held[owner] = slices.DeleteFunc(r.held[owner], func(q int) bool { return q == p })
		if len(r.held[owner]) == 0 {
			delete(r.held, owner)
		}
	}
	r.ports[p] = inst
	r.held[inst] = append(r.held[inst], p)
}

func (r *Registry) releaseLocked(inst units.Instance) {
	for _, p := range r.held[inst] {
		if r.ports[p] == inst {
			delete(r.ports, p)
		}
	}
	delete(r.held, inst)
}

// HeldBy returns the ports inst holds, sorted.
func (r *Registry) HeldBy(inst units.Instance) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.held[inst])
	sort.Ints(out)
	return out
}
