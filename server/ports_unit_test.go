package server

import (
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/units"
)

// Two spawns in flight at once must not get the same PORT: the first one is
// not in the registry yet, and a sleeping instance does not hold its port
// bound, so neither the map nor the bind probe would see it.
func TestAllocPortConcurrentSpawns(t *testing.T) {
	lo, n := 47100, 40
	s := &Server{cfg: &config.Config{Settings: config.Settings{PortRange: []int{lo, lo + n - 1}}},
		reg: registry.New()}
	// Two names whose hashes pick the same first port.
	slot := func(inst units.Instance) uint32 {
		h := fnv.New32a()
		h.Write([]byte(inst.String()))
		return h.Sum32() % uint32(n)
	}
	a := units.Instance{Service: "api", ID: "a0"}
	var b units.Instance
	for i := 1; ; i++ {
		b = units.Instance{Service: "api", ID: fmt.Sprintf("a%d", i)}
		if slot(b) == slot(a) {
			break
		}
	}
	ra, err := s.reservePorts(a, nil)
	pa := ra.Port
	if err != nil {
		t.Fatal(err)
	}
	rb, err := s.reservePorts(b, nil)
	pb := rb.Port
	if err != nil {
		t.Fatal(err)
	}
	if pa == pb {
		t.Fatalf("%s and %s, spawned at once, both got PORT %d", a, b, pa)
	}
	// Once a spawn is over its reservation goes (the instance holds it, or
	// it failed).
	s.reg.Release(a)
	if ra2, err := s.reservePorts(a, nil); err != nil || ra2.Port != pa {
		pa2 := ra2.Port
		t.Fatalf("after release: %d %v, want %d", pa2, err, pa)
	}
}
