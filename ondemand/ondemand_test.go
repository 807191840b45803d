package ondemand

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tenhq/ten/config"
)

func TestGuard(t *testing.T) {
	now := time.Unix(1000, 0)
	g := New(3, func() time.Time { return now })
	on, off := true, false
	api := &config.Service{Name: "api", SpawnOnRequest: &on, MaxInstances: 5}
	for i := range 3 {
		if r := g.Check(api, "c", i, "10.0.0.1"); r != nil {
			t.Fatalf("create %d refused: %+v", i, r)
		}
		g.Done("api", nil)
	}
	r := g.Check(api, "d", 3, "10.0.0.1")
	if r == nil || r.Status != 429 || r.Result != ResultRate || r.RetryAfter != 20*time.Second || !strings.Contains(r.Msg, "10.0.0.1 has created instances by request 3 times") {
		t.Fatalf("fourth in a minute: %+v", r)
	}
	if r := g.Check(api, "d", 3, "10.0.0.2"); r != nil {
		t.Errorf("another client refused: %+v", r)
	}
	now = now.Add(20 * time.Second) // one token back
	if r := g.Check(api, "d", 3, "10.0.0.1"); r != nil {
		t.Errorf("after the refill: %+v", r)
	}
	if r := g.Check(api, "e", 5, "10.0.0.3"); r == nil || r.Status != 429 || r.Result != ResultMax || !strings.Contains(r.Msg, "max_instances") {
		t.Errorf("at max_instances: %+v", r)
	}
	if r := g.Check(api, "a.b", 0, "10.0.0.3"); r == nil || r.Status != 404 || r.Result != ResultBadID {
		t.Errorf("bad id: %+v", r)
	}
	closed := &config.Service{Name: "db", SpawnOnRequest: &off, MaxInstances: 5}
	if r := g.Check(closed, "x", 0, "10.0.0.3"); r == nil || r.Status != 404 || !strings.Contains(r.Msg, "spawn_on_request = false") {
		t.Errorf("off: %+v", r)
	}
	g.Done("api", errors.New("boom"))
	for res, want := range map[string]float64{ResultCreated: 3, ResultRate: 1, ResultMax: 1, ResultBadID: 1, ResultFailed: 1} {
		if got := testutil.ToFloat64(g.counts.WithLabelValues("api", res)); got != want {
			t.Errorf("api %s = %v, want %v", res, got, want)
		}
	}
	if got := testutil.ToFloat64(g.counts.WithLabelValues("db", ResultOff)); got != 1 {
		t.Errorf("db off = %v", got)
	}
}

// Creations in progress count against max_instances: two requests for new
// ids of a service at its last free place cannot both pass.
func TestBeginCountsPending(t *testing.T) {
	g := New(1000, nil)
	svc := &config.Service{Name: "api", MaxInstances: 2}
	existing := func() int { return 1 }
	r, end := g.Begin(svc, "a", existing, "10.0.0.1")
	if r != nil {
		t.Fatalf("first creation refused: %s", r.Msg)
	}
	if r2, _ := g.Begin(svc, "b", existing, "10.0.0.2"); r2 == nil || r2.Result != ResultMax {
		t.Fatalf("second creation while the first runs: %+v, want max_instances", r2)
	}
	end()
	end() // counts once
	r3, end3 := g.Begin(svc, "b", existing, "10.0.0.2")
	if r3 != nil {
		t.Fatalf("after the first ended: %s", r3.Msg)
	}
	end3()
	if len(g.pending) != 0 {
		t.Fatalf("pending left: %v", g.pending)
	}
}
