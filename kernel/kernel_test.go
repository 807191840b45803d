package kernel

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/l4"
	"github.com/tenhq/ten/units"
)

// proxyOnly is a Wiring as on a host without BPF, before any instance: no
// root, no kernel objects.
func proxyOnly(t *testing.T) *Wiring {
	t.Helper()
	w := newWiring(Options{})
	w.useProxy(errors.New("not in a unit test"))
	t.Cleanup(func() { w.Close() })
	return w
}

func TestFeaturesWithoutBPF(t *testing.T) {
	w := proxyOnly(t)
	fs := w.Features()
	if len(fs) != 3 || fs[0].Name != apitype.FeatureAccounting || fs[1].Name != apitype.FeatureL4Dispatch || fs[2].Name != apitype.FeaturePortGuard {
		t.Fatalf("Features() = %+v", fs)
	}
	for _, f := range fs {
		if f.On || !strings.Contains(f.Detail, "BPF unavailable") {
			t.Errorf("feature %s: %+v, want off with the reason", f.Name, f)
		}
	}
	if w.Accounting() || w.Dispatching() {
		t.Error("a Wiring without BPF says it accounts or dispatches")
	}
	fs[0].On = true
	if w.Features()[0].On {
		t.Error("Features hands out w's own slice")
	}
}

// Spawns reserve distinct addresses from one shared prefix; a failed spawn
// releases its own, and an instance whose units exist keeps its.
func TestReserveRelease(t *testing.T) {
	w := proxyOnly(t)
	svc := &config.Service{Listen: []string{"tcp://127.0.1.0/30:7000"}} // two hosts
	a := units.Instance{Service: "db", ID: "a"}
	b := units.Instance{Service: "db", ID: "b"}
	c := units.Instance{Service: "db", ID: "c"}
	la, err := w.Reserve(a, svc)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := w.Reserve(b, svc)
	if err != nil {
		t.Fatal(err)
	}
	if len(la) != 1 || len(lb) != 1 || la[0] == lb[0] {
		t.Fatalf("reservations %v and %v, want one distinct address each", la, lb)
	}
	if _, err := w.Reserve(c, svc); err == nil {
		t.Fatal("a third instance got an address of a prefix with two hosts")
	}
	w.Release(b) // b's spawn failed
	lc, err := w.Reserve(c, svc)
	if err != nil {
		t.Fatalf("after b's release: %v", err)
	}
	if lc[0] != lb[0] {
		t.Errorf("c got %v, want b's released %v", lc, lb)
	}
	if got := w.Addresses(a); !reflect.DeepEqual(got, l4.Strings(la)) {
		t.Errorf("Addresses(a) = %v, want %v", got, l4.Strings(la))
	}
	if got := w.Addresses(b); got != nil {
		t.Errorf("Addresses(b) after release = %v", got)
	}

	// Internal sockets on the registry's port; none without a port.
	addrs, internal := w.SetInternal(a, la, 41000)
	if !reflect.DeepEqual(addrs, l4.Strings(la)) || !reflect.DeepEqual(internal, l4.InternalSockets(la, 41000)) {
		t.Errorf("SetInternal = %v %v", addrs, internal)
	}
	if _, internal := w.SetInternal(c, lc, 0); internal != nil {
		t.Errorf("SetInternal without a port = %v", internal)
	}
	if got := internalPorts(internal); len(got) == 0 || got[0] != 41000 {
		t.Errorf("internalPorts(%v) = %v", internal, got)
	}

	// Once its units exist, a release (of a later, failed spawn of the same
	// name) does not take the instance's addresses away; Down does.
	w.mu.Lock()
	w.inst[a].up = true
	w.mu.Unlock()
	w.Release(a)
	if w.Addresses(a) == nil {
		t.Error("Release dropped an instance whose units exist")
	}
	w.Down(context.Background(), a)
	if w.Addresses(a) != nil {
		t.Error("Down left the instance's addresses")
	}
}

// A service without listen holds nothing, and a bad listen is an error
// that reserves nothing.
func TestReserveNoneAndBad(t *testing.T) {
	w := proxyOnly(t)
	inst := units.Instance{Service: "web", ID: "a"}
	ls, err := w.Reserve(inst, &config.Service{})
	if err != nil || ls != nil {
		t.Fatalf("Reserve without listen = %v, %v", ls, err)
	}
	bad := units.Instance{Service: "web", ID: "b"}
	if _, err := w.Reserve(bad, &config.Service{Listen: []string{"tcp://nonsense"}}); err == nil {
		t.Fatal("bad listen reserved")
	}
	w.mu.Lock()
	_, held := w.inst[bad]
	w.mu.Unlock()
	if held {
		t.Error("a failed Reserve left a record")
	}
}

// Adoption reads what ten gave the service's environment.
func TestAdoptEnv(t *testing.T) {
	w := proxyOnly(t)
	inst := units.Instance{Service: "db", ID: "a"}
	ports := w.Adopt(context.Background(), inst, []string{"PORT=5000", "TEN_L4_SOCKETS=127.0.0.1:41001 [::1]:41001"})
	if !reflect.DeepEqual(ports, []int{41001, 41001}) {
		t.Errorf("Adopt ports = %v", ports)
	}
	w.mu.Lock()
	li := w.inst[inst]
	w.mu.Unlock()
	if li == nil || !li.up || len(li.internal) != 2 {
		t.Fatalf("adopted record = %+v", li)
	}
}

func TestBindings(t *testing.T) {
	inst := units.Instance{Service: "db", ID: "a"}
	ls, err := l4.ParseAll("tcp://127.0.1.5:7000-7010", "tcp://[::1]:53")
	if err != nil {
		t.Fatal(err)
	}
	bs := bindings(inst, ls)
	if len(bs) != 2 {
		t.Fatalf("bindings = %v", bs)
	}
	if bs[0].Label != l4.Label(inst) || bs[0].Protocol != "tcp" || bs[0].Port != 7000 || bs[0].PortEnd != 7010 || bs[0].Prefix.String() != "127.0.1.5/32" {
		t.Errorf("binding 0 = %+v", bs[0])
	}
	if bs[1].Protocol != "tcp" || bs[1].Port != 53 || bs[1].Prefix.String() != "::1/128" {
		t.Errorf("binding 1 = %+v", bs[1])
	}
}

// Labels name instances; a long name's label is found among the instances
// w knows.
func TestInstanceByLabel(t *testing.T) {
	w := proxyOnly(t)
	short := units.Instance{Service: "db", ID: "a"}
	if got, ok := w.instanceByLabel(l4.Label(short)); !ok || got != short {
		t.Errorf("instanceByLabel(%q) = %v %v", l4.Label(short), got, ok)
	}
	long := units.Instance{Service: "db", ID: strings.Repeat("x", 60)}
	if _, ok := w.instanceByLabel(l4.Label(long)); ok && l4.Label(long) != long.String() {
		t.Error("found an instance w does not know by its hashed label")
	}
	if _, err := w.Reserve(long, &config.Service{}); err != nil {
		t.Fatal(err)
	}
	if got, ok := w.instanceByLabel(l4.Label(long)); !ok || got != long {
		t.Errorf("instanceByLabel(label of a known long name) = %v %v", got, ok)
	}
	if _, ok := w.instanceByLabel(strings.Repeat("y", 46) + "~0123456789abcdef"); ok {
		t.Error("found an instance for the hashed label of a name w does not know")
	}
	// Without the dispatcher the frozen calls do nothing.
	w.MarkFrozen(short, true)
	if fc := w.FrozenConnections(); fc != nil {
		t.Errorf("FrozenConnections without a dispatcher = %v", fc)
	}
	if err := w.Wakes(context.Background(), func(units.Instance) { t.Error("wake without a dispatcher") }); err != nil {
		t.Error(err)
	}
}
