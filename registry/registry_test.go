package registry

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/units"
)

func always(string) bool { return true }

// Concurrent spawns, some with L4 addresses, each reserving PORT and an L4
// port, must never be handed a port another holds. Before the registry, the
// L4 port and PORT were picked under two locks in turn, and a spawn could
// pick a port between another's snapshot and its reservation.
func TestReservePortsConcurrentNeverShare(t *testing.T) {
	r := New()
	const spawns = 24
	req := PortRequest{Lo: 20000, Hi: 20000 + 2*spawns - 1}
	var wg sync.WaitGroup
	got := make([]Ports, spawns)
	errs := make([]error, spawns)
	for i := range spawns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := req
			q.Start, q.L4Start = i%3, (i+1)%3 // crowd the same first ports
			if i%2 == 0 {
				q.L4 = func(p int) []string { return []string{fmt.Sprintf("127.0.0.1:%d", p)} }
			}
			got[i], errs[i] = r.ReservePorts(units.Instance{Service: "s", ID: fmt.Sprint(i)}, q, always)
		}()
	}
	wg.Wait()
	owner := map[int]int{}
	for i, p := range got {
		if errs[i] != nil {
			t.Fatalf("spawn %d: %v", i, errs[i])
		}
		for _, port := range []int{p.Port, p.L4Port} {
			if port == 0 {
				continue
			}
			if o, dup := owner[port]; dup {
				t.Fatalf("port %d handed to spawn %d and spawn %d", port, o, i)
			}
			owner[port] = i
		}
	}
	if len(owner) != spawns+spawns/2 {
		t.Fatalf("%d ports held, want %d", len(owner), spawns+spawns/2)
	}
}

// A full range is an error naming settings.port_range, and a released
// reservation frees its ports; a registered instance keeps them.
func TestReservePortsReleaseAndFull(t *testing.T) {
	r := New()
	a, b := units.Instance{Service: "s", ID: "a"}, units.Instance{Service: "s", ID: "b"}
	req := PortRequest{Lo: 30000, Hi: 30001, L4: func(p int) []string { return []string{fmt.Sprintf("127.0.0.1:%d", p)} }}
	pa, err := r.ReservePorts(a, req, always)
	if err != nil || pa.Port == pa.L4Port {
		t.Fatalf("reserve: %+v %v", pa, err)
	}
	if _, err := r.ReservePorts(b, req, always); err == nil {
		t.Fatal("reserved past a full settings.port_range")
	}
	r.Release(a)
	if _, err := r.ReservePorts(b, req, always); err != nil {
		t.Fatalf("after release: %v", err)
	}
	r.Add(Entry{Inst: b, Port: 30000})
	r.Release(b) // registered: keeps its ports
	if held := r.HeldBy(b); len(held) != 2 {
		t.Fatalf("registered instance holds %v, want two ports", held)
	}
	r.Remove(b)
	if held := r.HeldBy(b); len(held) != 0 {
		t.Fatalf("removed instance still holds %v", held)
	}
}

// A port the probe finds bound is skipped.
func TestReservePortsSkipsBound(t *testing.T) {
	r := New()
	p, err := r.ReservePorts(units.Instance{Service: "s", ID: "a"}, PortRequest{Lo: 40000, Hi: 40002},
		func(addr string) bool { return addr != "127.0.0.1:40000" })
	if err != nil || p.Port != 40001 {
		t.Fatalf("got %+v %v, want 40001", p, err)
	}
}

func TestBusy(t *testing.T) {
	r := New()
	inst := units.Instance{Service: "s", ID: "a"}
	if err := r.Lock(inst); err != nil {
		t.Fatal(err)
	}
	if err := r.Lock(inst); err == nil || !r.Busy(inst) {
		t.Fatal("second Lock succeeded")
	}
	r.Unlock(inst)
	if r.Busy(inst) {
		t.Fatal("still busy after Unlock")
	}
}

func TestSnapshotIsACopy(t *testing.T) {
	r := New()
	inst := units.Instance{Service: "s", ID: "a"}
	r.Add(Entry{Inst: inst, Port: 1})
	snap := r.Snapshot()
	snap[0].WakeFailed = "x"
	if e, _ := r.Get(inst); e.WakeFailed != "" {
		t.Fatal("a snapshot changed the registry")
	}
	if !r.SetWakeFailed(inst, "no answer") || r.Len() != 1 {
		t.Fatal("SetWakeFailed")
	}
	if e, _ := r.Get(inst); e.WakeFailed != "no answer" {
		t.Fatalf("WakeFailed %q", e.WakeFailed)
	}
}

func TestState(t *testing.T) {
	for _, c := range []struct {
		f                     Facts
		state, detail, health string
	}{
		{Facts{ServiceActive: "active", Health: apitype.HealthHealthy}, apitype.StateRunning, "", apitype.HealthHealthy},
		{Facts{ServiceActive: "reloading", Frozen: true}, apitype.StateFrozen, "", apitype.HealthUnknown},
		{Facts{ServiceActive: "activating"}, apitype.StateStarting, "", apitype.HealthUnknown},
		{Facts{ServiceActive: "inactive", Health: apitype.HealthHealthy}, apitype.StateSleeping, "", apitype.HealthSleeping},
		{Facts{ServiceActive: "failed", ServiceResult: "exit-code"}, apitype.StateFailed, "service exit-code", apitype.HealthUnknown},
		{Facts{ServiceActive: "active", SocketActive: "failed", SocketUnit: "x.socket"}, apitype.StateFailed, "socket unit failed: x.socket", apitype.HealthUnknown},
		{Facts{ServiceActive: "active", WakeFailed: "no answer in 10s"}, apitype.StateFailed, "no answer in 10s", apitype.HealthUnknown},
		{Facts{ServiceActive: "inactive", Failed: "max_restarts", Health: apitype.HealthFailed}, apitype.StateFailed, "max_restarts", apitype.HealthFailed},
	} {
		s, d, h := State(c.f)
		if s != c.state || d != c.detail || h != c.health {
			t.Errorf("State(%+v) = %q %q %q, want %q %q %q", c.f, s, d, h, c.state, c.detail, c.health)
		}
	}
}

// Freeing an instance's ports uses the inverse index; a port taken over by
// another instance (Hold at adoption) is freed with its new holder only.
func TestPortsIndexFollowsHolders(t *testing.T) {
	r := New()
	a := units.Instance{Service: "api", ID: "a"}
	b := units.Instance{Service: "api", ID: "b"}
	r.Add(Entry{Inst: a, Port: 30001})
	r.Hold(a, 30002)
	r.Add(Entry{Inst: b, Port: 30003})
	r.Hold(b, 30002) // b takes 30002 over
	if got := r.HeldBy(a); !slices.Equal(got, []int{30001}) {
		t.Fatalf("a holds %v, want [30001]", got)
	}
	r.Remove(a)
	if got := r.HeldBy(b); !slices.Equal(got, []int{30002, 30003}) {
		t.Fatalf("after removing a, b holds %v, want [30002 30003]", got)
	}
	if got := r.HeldBy(a); len(got) != 0 {
		t.Fatalf("a removed still holds %v", got)
	}
	r.Remove(b)
	if len(r.ports) != 0 || len(r.held) != 0 {
		t.Fatalf("left behind: ports %v held %v", r.ports, r.held)
	}
}

// ServiceCount follows Add and Remove: an Add of a registered instance (an
// update) and a Remove of an unknown one change nothing.
func TestServiceCount(t *testing.T) {
	r := New()
	a := units.Instance{Service: "s", ID: "a"}
	b := units.Instance{Service: "s", ID: "b"}
	o := units.Instance{Service: "other", ID: "a"}
	r.Add(Entry{Inst: a})
	r.Add(Entry{Inst: a, Port: 7})
	r.Add(Entry{Inst: b})
	r.Add(Entry{Inst: o})
	if n := r.ServiceCount("s"); n != 2 {
		t.Fatalf("ServiceCount(s) = %d, want 2", n)
	}
	r.Remove(a)
	r.Remove(a)
	r.Remove(units.Instance{Service: "s", ID: "never"})
	if n := r.ServiceCount("s"); n != 1 {
		t.Fatalf("after removing a: ServiceCount(s) = %d, want 1", n)
	}
	r.Remove(b)
	if n := r.ServiceCount("s"); n != 0 {
		t.Fatalf("after removing b: ServiceCount(s) = %d, want 0", n)
	}
	if n := r.ServiceCount("other"); n != 1 {
		t.Fatalf("ServiceCount(other) = %d, want 1", n)
	}
}

// TestFoldTwin: an id that differs only by case from a registered one of
// the same service is its twin; the same id, another service's, or one
// removed is not.
func TestFoldTwin(t *testing.T) {
	r := New()
	r.Add(Entry{Inst: units.Instance{Service: "api", ID: "Prod"}})
	r.Add(Entry{Inst: units.Instance{Service: "web", ID: "x"}})
	if twin, ok := r.FoldTwin(units.Instance{Service: "api", ID: "prod"}); !ok || twin.ID != "Prod" {
		t.Errorf("api:prod: twin %v %v, want api:Prod", twin, ok)
	}
	for _, in := range []units.Instance{{Service: "api", ID: "Prod"}, {Service: "web", ID: "prod"}, {Service: "api", ID: "prod2"}} {
		if twin, ok := r.FoldTwin(in); ok {
			t.Errorf("%s: twin %s", in, twin)
		}
	}
	r.Remove(units.Instance{Service: "api", ID: "Prod"})
	if twin, ok := r.FoldTwin(units.Instance{Service: "api", ID: "prod"}); ok {
		t.Errorf("twin %s after its removal", twin)
	}
}

// TestCompareNames sorts as the names "service:id" do.
func TestCompareNames(t *testing.T) {
	ins := []units.Instance{{Service: "api", ID: "x"}, {Service: "api2", ID: "a"}, {Service: "api", ID: "x2"}, {Service: "a", ID: "pi"}, {Service: "api", ID: "X"}, {Service: "api", ID: "x"}}
	for _, a := range ins {
		for _, b := range ins {
			want := strings.Compare(a.String(), b.String())
			if got := compareNames(a, b); (got < 0) != (want < 0) || (got == 0) != (want == 0) {
				t.Errorf("compareNames(%s, %s) = %d, names compare %d", a, b, got, want)
			}
		}
	}
}
