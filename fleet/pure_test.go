package fleet

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPlace(t *testing.T) {
	cands := []Candidate{
		{Node: "a", Capacity: Capacity{MemoryMB: 1000, Instances: 10}, Load: Load{MemoryMB: 800, Instances: 2}},
		{Node: "b", Capacity: Capacity{MemoryMB: 1000, Instances: 10}, Load: Load{MemoryMB: 200, Instances: 5}},
		{Node: "c", Capacity: Capacity{MemoryMB: 4000}, Load: Load{MemoryMB: 3900, Instances: 1}},
	}
	for _, tc := range []struct {
		name  string
		mem   int
		want  string
		node  string
		noCap bool
	}{
		{name: "most free share wins", mem: 100, node: "b"}, // b: min(0.7, 0.4)=0.4; a: 0.1; c: 0
		{name: "too big for all", mem: 900, noCap: true},    // a and c full; b 200+900 > 1000
		{name: "forced node with room", mem: 100, want: "a", node: "a"},
		{name: "forced node without room", mem: 300, want: "a", noCap: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Place(cands, tc.mem, tc.want)
			if tc.noCap {
				if !errors.Is(err, ErrNoCapacity) {
					t.Fatalf("Place = %q, %v; want ErrNoCapacity", got, err)
				}
				return
			}
			if err != nil || got != tc.node {
				t.Fatalf("Place = %q, %v; want %q", got, err, tc.node)
			}
		})
	}
	if _, err := Place(cands, 1, "zz"); err == nil || errors.Is(err, ErrNoCapacity) {
		t.Fatalf("unknown --node: %v; want a not-live error", err)
	}
	// Instance count alone: the emptier node, ties by name.
	even := []Candidate{
		{Node: "y", Capacity: Capacity{Instances: 4}, Load: Load{Instances: 1}},
		{Node: "x", Capacity: Capacity{Instances: 4}, Load: Load{Instances: 1}},
		{Node: "z", Capacity: Capacity{Instances: 4}, Load: Load{Instances: 3}},
	}
	if got, _ := Place(even, 0, ""); got != "x" {
		t.Fatalf("tie: got %q, want x", got)
	}
	// Uncounted capacity never fills.
	if got, err := Place([]Candidate{{Node: "u", Load: Load{MemoryMB: 1 << 20, Instances: 1 << 20}}}, 512, ""); got != "u" || err != nil {
		t.Fatalf("uncounted: %q, %v", got, err)
	}
}

func TestDeadline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := NewDeadline(t0, 10*time.Second, 3*time.Second)
	if got := d.FenceAt(); !got.Equal(t0.Add(7 * time.Second)) {
		t.Fatalf("FenceAt = %v", got)
	}
	d.Renewed(t0.Add(2*time.Second), 10*time.Second)
	if got := d.LeaseEnd(); !got.Equal(t0.Add(12 * time.Second)) {
		t.Fatalf("LeaseEnd after renew = %v", got)
	}
	// A late answer to an older keep-alive never moves the deadline back.
	d.Renewed(t0.Add(1*time.Second), 10*time.Second)
	if got := d.FenceAt(); !got.Equal(t0.Add(9 * time.Second)) {
		t.Fatalf("FenceAt after stale renew = %v", got)
	}
}

func TestTiming(t *testing.T) {
	ok := Timing{TTL: DefaultTTL, Margin: DefaultMargin}
	if err := ok.Valid(); err != nil {
		t.Fatal(err)
	}
	if got := ok.KeepAliveEvery(); got != 2*time.Second {
		t.Fatalf("KeepAliveEvery = %v", got)
	}
	for _, bad := range []Timing{
		{TTL: 1500 * time.Millisecond, Margin: time.Second},
		{TTL: 0, Margin: 0},
		{TTL: 5 * time.Second, Margin: 5 * time.Second},
		{TTL: 5 * time.Second, Margin: 0},
		{TTL: 1 * time.Second, Margin: 900 * time.Millisecond},
	} {
		if err := bad.Valid(); err == nil {
			t.Errorf("%+v: want an error", bad)
		}
	}
}

func TestFingerprintDiff(t *testing.T) {
	type svc struct{ Command string }
	a, _ := FingerprintOf(map[string]svc{"api": {"x"}, "web": {"y"}, "old": {"o"}})
	b, _ := FingerprintOf(map[string]svc{"api": {"x"}, "web": {"z"}, "new": {"n"}})
	if d := a.Diff(a); len(d) != 0 {
		t.Fatalf("self diff: %v", d)
	}
	want := []string{
		"service new: in the fleet, missing on this node",
		"service old: only on this node",
		"service web: configured differently from the fleet",
	}
	if got := a.Diff(b); !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff:\n%q\nwant\n%q", got, want)
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"node-1", "a.b_c"} {
		if err := ValidNode(n); err != nil {
			t.Error(err)
		}
	}
	for _, n := range []string{"", "Node", "a/b", string(make([]byte, 129))} {
		if ValidNode(n) == nil {
			t.Errorf("node %q accepted", n)
		}
	}
	for _, i := range []string{"api", "api:", ":x", "api:a/b", "api:a:b"} {
		if ValidInstance(i) == nil {
			t.Errorf("instance %q accepted", i)
		}
	}
	if inst, ok := InstanceFromKey(OwnerKey("api:prod")); !ok || inst != "api:prod" {
		t.Fatalf("InstanceFromKey = %q, %v", inst, ok)
	}
	if _, ok := InstanceFromKey(NodeKey("n1")); ok {
		t.Fatal("node key read as an instance")
	}
}

func TestPlanMoves(t *testing.T) {
	v := newView()
	v.Nodes["n1"] = NodeInfo{Node: "n1", Capacity: Capacity{Instances: 2}}
	v.Nodes["n2"] = NodeInfo{Node: "n2", Capacity: Capacity{Instances: 10}}
	v.Placements["web:a"] = Placed{Placement: Placement{Node: "n3"}, ModRev: 5}
	v.Placements["web:b"] = Placed{Placement: Placement{Node: "n3"}, ModRev: 6}
	v.Placements["db:a"] = Placed{Placement: Placement{Node: "n3"}, ModRev: 7}
	v.Placements["web:c"] = Placed{Placement: Placement{Node: "n1"}, ModRev: 8}
	movable := func(inst string) bool { return !strings.HasPrefix(inst, "db:") }
	got := PlanMoves(v, movable)
	want := []Move{
		{Instance: "web:a", From: v.Placements["web:a"], To: "n2"},
		{Instance: "web:b", From: v.Placements["web:b"], To: "n2"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PlanMoves = %+v, want %+v", got, want)
	}
	// No live node with room: nothing moves.
	v.Nodes = map[string]NodeInfo{"n1": {Node: "n1", Capacity: Capacity{Instances: 1}}}
	if got := PlanMoves(v, movable); len(got) != 0 {
		t.Fatalf("PlanMoves with no room = %+v, want none", got)
	}
}

// A service's share of {service}.DOMAIN: only owned instances of live
// nodes, not failed, with weight > 0, picked in proportion to weight.
func TestServiceInstancesAndPick(t *testing.T) {
	v := newView()
	v.Nodes["n1"] = NodeInfo{Node: "n1", Addr: "10.0.0.1:80"}
	v.Nodes["n2"] = NodeInfo{Node: "n2", Addr: "10.0.0.2:80"}
	for name, node := range map[string]string{"web:a": "n1", "web:b": "n2", "web:c": "n2", "web:d": "n3", "web:e": "n1", "web:f": "n1", "api:a": "n1"} {
		v.Placements[name] = Placed{Placement: Placement{Node: node}}
		v.Owners[name] = node
	}
	v.Owners["web:e"] = "" // not claimed yet
	v.Failed["web:f"] = "crashed"
	v.Weights["web:a"] = 25
	v.Weights["web:c"] = 0
	got := v.ServiceInstances("web")
	if len(got) != 2 || got[0].Instance != "web:a" || got[0].Weight != 25 || got[1].Instance != "web:b" || got[1].Weight != 100 || got[1].Addr != "10.0.0.2:80" {
		t.Fatalf("ServiceInstances(web) = %+v; want web:a (25) on n1 and web:b (100) on n2", got)
	}
	counts := map[string]int{}
	for range 10000 {
		p, ok := PickService(got)
		if !ok {
			t.Fatal("no pick")
		}
		counts[p.Instance]++
	}
	if a := counts["web:a"]; a < 1600 || a > 2400 { // 2000 expected; sd 40
		t.Fatalf("web:a (weight 25 of 125) picked %d of 10000 times", a)
	}
	if _, ok := PickService(nil); ok {
		t.Fatal("a pick among nothing")
	}
}
