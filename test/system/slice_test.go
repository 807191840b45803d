package system

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// A service's slice (tenement-SVC.slice, holding its instances' slices)
// stops when its last instance is removed, and a spawn of the same service
// running while the last instance is being removed keeps its units and its
// slice. The name has a '-' so that the slice's name is escaped.
func TestServiceSliceStopsWithLastInstance(t *testing.T) {
	s := startTen(t, `
[service.slc-x]
command = "ECHO --mode activation"
activation = "socket"
isolation = "process"
`)
	const slice = `tenement-slc\x2dx.slice`
	state := func() string { return show(t, slice, "ActiveState") }

	s.mustTen("spawn", "slc-x:a")
	s.mustTen("spawn", "slc-x:b")
	if st := state(); st != "active" {
		t.Fatalf("%s with two instances: ActiveState %q", slice, st)
	}
	s.mustTen("stop", "slc-x:a")
	if st := state(); st != "active" {
		t.Fatalf("%s after stopping one of two instances: ActiveState %q", slice, st)
	}
	s.mustGet("b.slc-x.localhost", "/")
	s.mustTen("stop", "slc-x:b")
	if st := state(); st != "inactive" {
		t.Fatalf("%s after its last instance stopped: ActiveState %q, want inactive", slice, st)
	}

	// The last instance's stop and a new spawn at once, several times: the
	// new instance must be created, serve, and keep its slice.
	for round := range 6 {
		old, nu := fmt.Sprintf("slc-x:o%d", round), fmt.Sprintf("slc-x:n%d", round)
		s.mustTen("spawn", old)
		var wg sync.WaitGroup
		var stopOut, spawnOut string
		var stopErr, spawnErr error
		wg.Add(2)
		go func() { defer wg.Done(); stopOut, stopErr = s.ten("stop", old) }()
		go func() { defer wg.Done(); spawnOut, spawnErr = s.ten("spawn", nu) }()
		wg.Wait()
		if stopErr != nil || spawnErr != nil {
			t.Fatalf("round %d: stop %s: %v %s; spawn %s: %v %s", round, old, stopErr, stopOut, nu, spawnErr, spawnOut)
		}
		id := strings.TrimPrefix(nu, "slc-x:")
		if body := s.mustGet(id+".slc-x.localhost", "/"); !strings.Contains(body, "hello from "+nu) {
			t.Fatalf("round %d: %s answered %q", round, nu, body)
		}
		for _, u := range []string{"tenement-slc-x@" + id + ".socket", "tenement-slc-x@" + id + ".service", slice} {
			if st := show(t, u, "ActiveState"); st != "active" {
				t.Fatalf("round %d: %s is %q after a spawn raced the last stop", round, u, st)
			}
		}
		s.mustTen("stop", nu)
		if st := state(); st != "inactive" {
			t.Fatalf("round %d: %s after its last instance stopped: ActiveState %q, want inactive", round, slice, st)
		}
	}
}
