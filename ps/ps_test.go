package ps

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/isolation"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// fakeSystemd answers from fixed states and counts live reads: the logic
// under test is which instances ps reads live (the D-Bus calls themselves
// are the system tests').
type fakeSystemd struct {
	mu     sync.Mutex
	states map[units.Instance]string // service ActiveState; absent: not cached
	info   map[units.Instance]systemd.Info
	reads  []string
}

func (f *fakeSystemd) State(inst units.Instance) (systemd.UnitState, systemd.UnitState, bool) {
	st, ok := f.states[inst]
	return systemd.UnitState{ActiveState: st}, systemd.UnitState{ActiveState: "active"}, ok
}

func (f *fakeSystemd) Info(_ context.Context, inst units.Instance) (systemd.Info, error) {
	f.mu.Lock()
	f.reads = append(f.reads, inst.String())
	f.mu.Unlock()
	in, ok := f.info[inst]
	if !ok {
		return systemd.Info{}, errors.New("no reply")
	}
	return in, nil
}

func (f *fakeSystemd) Usage(context.Context, units.Instance) (uint64, uint64, error) {
	return 0, 0, nil
}

type noHealth struct{}

func (noHealth) Failed(units.Instance) string         { return "" }
func (noHealth) Of(units.Instance) string             { return apitype.HealthUnknown }
func (noHealth) Fill(*apitype.Health, units.Instance) {}
func (noHealth) Restarts(units.Instance) uint32       { return 0 }

func TestRowsReadOnlyTheLive(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sleeper, runner, broken := units.Instance{Service: "api", ID: "s"}, units.Instance{Service: "api", ID: "r"}, units.Instance{Service: "api", ID: "b"}
	reg := registry.New()
	rt := router.New("example.test", http.NotFoundHandler(), nil, log, router.Options{})
	for _, inst := range []units.Instance{sleeper, runner, broken} {
		reg.Add(registry.Entry{Inst: inst, Listen: "/nonexistent/" + inst.ID})
		rt.Put(router.Backend{Instance: inst, Socket: "/nonexistent", Weight: 100}, false)
	}
	sd := &fakeSystemd{
		states: map[units.Instance]string{sleeper: "inactive", runner: "active"},
		info:   map[units.Instance]systemd.Info{runner: {ActiveState: "active", SocketState: "active", ActiveSince: time.Now().Add(-time.Minute), MemoryCurrent: 1 << 20}},
	}
	p := New(Options{Config: &config.Config{}, Registry: reg, Systemd: sd, Router: rt, Health: noHealth{}, OOM: isolation.NewOOM(log),
		FrozenMemory: func(units.Instance) (uint64, bool) { return 0, false }})
	rows, err := p.Rows(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]apitype.Row{}
	for _, r := range rows {
		got[r.Instance] = r
		// tenement's scripts read "id" ("api:u1") of every row, a
		// sleeper's too.
		if r.ID != r.Instance {
			t.Errorf("row %s: id %q, want %q", r.Instance, r.ID, r.Instance)
		}
	}
	if r := got["api:s"]; r.State != apitype.StateSleeping || r.Weight != 100 {
		t.Errorf("sleeper: %+v", r)
	}
	if r := got["api:r"]; r.State != apitype.StateRunning || r.MemoryBytes != 1<<20 || r.UptimeSec < 59 {
		t.Errorf("runner: %+v", r)
	}
	// One unreadable instance does not hide the others.
	if r := got["api:b"]; r.State != "unknown" || r.Detail != "no reply" {
		t.Errorf("unreadable: %+v", r)
	}
	for _, name := range sd.reads {
		if name == "api:s" {
			t.Errorf("a cached sleeper was read live: %v", sd.reads)
		}
	}
	if len(sd.reads) != 2 {
		t.Errorf("live reads %v, want the runner and the uncached one", sd.reads)
	}
	if _, err := p.Row(context.Background(), units.Instance{Service: "api", ID: "none"}); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Row of an unknown instance: %v", err)
	}
	if ms := p.Instances(); len(ms) != 3 {
		t.Errorf("metrics source: %d instances, want 3", len(ms))
	}
}
