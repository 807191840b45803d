package server

import (
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/statefile"
	"github.com/tenhq/ten/units"
)

// SetWeight and Route running at once must leave state.json saying what the
// router does: otherwise a restart of ten brings back other weights.
func TestWeightsSavedAsRouted(t *testing.T) {
	st, err := statefile.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := &Server{state: st, log: log, router: router.New("example.test", http.NotFoundHandler(), nil, log, router.Options{})}
	v1, v2 := units.Instance{Service: "web", ID: "v1"}, units.Instance{Service: "web", ID: "v2"}
	s.router.Put(router.Backend{Instance: v1, Socket: "/nonexistent", Weight: 100}, false)
	s.router.Put(router.Backend{Instance: v2, Socket: "/nonexistent", Weight: 0}, false)
	for round := 0; round < 50; round++ {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := s.SetWeight(v1, round%100+1); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := s.Route(apitype.RouteRequest{Service: "web", From: "v1", To: "v2"}); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		for _, inst := range []units.Instance{v1, v2} {
			rs, _ := s.router.Stat(inst)
			if w := st.Weight(inst); w != rs.Weight {
				t.Fatalf("round %d: %s routes with weight %d, state.json says %d", round, inst, rs.Weight, w)
			}
		}
		if _, err := s.Route(apitype.RouteRequest{Service: "web", From: "v2", To: "v1"}); err != nil {
			t.Fatal(err)
		}
	}
}
