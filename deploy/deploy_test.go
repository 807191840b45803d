package deploy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenhq/ten/api"
	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/strictjson"
	"github.com/tenhq/ten/units"
)

// fake records what a deploy asks; it is the pure flow under test, the
// real spawns are the system tests' (test/system/deploy_test.go).
type fake struct {
	healthy  bool
	weights  map[units.Instance]int
	have     []units.Instance
	stopped  []string
	woken    []string
	health   map[units.Instance]string
	locked   map[units.Instance]bool
	unlocked int
}

func newFake(healthy bool, have ...units.Instance) *fake {
	return &fake{healthy: healthy, weights: map[units.Instance]int{}, have: have, locked: map[units.Instance]bool{}}
}

func (f *fake) Declared(service string) bool { return service == "web" }
func (f *fake) Lock(inst units.Instance) error {
	if f.locked[inst] {
		return registry.ErrBusy
	}
	f.locked[inst] = true
	return nil
}
func (f *fake) Unlock(inst units.Instance)   { delete(f.locked, inst); f.unlocked++ }
func (f *fake) Has(inst units.Instance) bool { return slices.Contains(f.have, inst) }
func (f *fake) Wake(_ context.Context, inst units.Instance, _ time.Duration) error {
	f.woken = append(f.woken, inst.String())
	return nil
}
func (f *fake) SpawnStarted(_ context.Context, inst units.Instance) error {
	f.have = append(f.have, inst)
	f.weights[inst] = 0
	return nil
}
func (f *fake) StopLocked(_ context.Context, inst units.Instance) error {
	f.stopped = append(f.stopped, inst.String())
	f.have = slices.DeleteFunc(f.have, func(i units.Instance) bool { return i == inst })
	return nil
}
func (f *fake) Stop(ctx context.Context, inst units.Instance) error { return f.StopLocked(ctx, inst) }
func (f *fake) WaitHealthy(context.Context, units.Instance, time.Duration) error {
	if !f.healthy {
		return errors.New("health check failed")
	}
	return nil
}
func (f *fake) SetWeight(inst units.Instance, w int) error { f.weights[inst] = w; return nil }
func (f *fake) Inflight(units.Instance) (int, bool)        { return 0, true }
func (f *fake) Instances() []registry.Entry {
	var out []registry.Entry
	for _, i := range f.have {
		out = append(out, registry.Entry{Inst: i})
	}
	return out
}
func (f *fake) Row(_ context.Context, inst units.Instance) (apitype.Row, error) {
	return apitype.Row{Instance: inst.String(), Weight: f.weights[inst], Health: f.health[inst]}, nil
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestDeployReplace(t *testing.T) {
	v1, v0 := units.Instance{Service: "web", ID: "v1"}, units.Instance{Service: "web", ID: "v0"}
	f := newFake(true, v1, v0)
	w := 60
	res, err := New(f, quiet).Deploy(context.Background(), apitype.DeployRequest{Service: "web", Version: "v2", Weight: &w, Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Weight != 60 || res.Row.Weight != 60 || !slices.Equal(res.Replaced, []string{"web:v0", "web:v1"}) {
		t.Fatalf("result %+v", res)
	}
	if f.weights[v0] != 0 || f.weights[v1] != 0 || len(f.locked) != 0 {
		t.Fatalf("weights %v, locked %v", f.weights, f.locked)
	}
}

// An unhealthy version is removed again under its lock, and nothing else
// changes; the error is a DeployError (504).
func TestDeployUnhealthyRemoved(t *testing.T) {
	v1 := units.Instance{Service: "web", ID: "v1"}
	f := newFake(false, v1)
	f.weights[v1] = 100
	_, err := New(f, quiet).Deploy(context.Background(), apitype.DeployRequest{Service: "web", Version: "v2", Replace: true})
	var de *api.DeployError
	if !errors.As(err, &de) || !strings.Contains(de.Msg, "removed web:v2 again") {
		t.Fatalf("err %v, want a DeployError", err)
	}
	if !slices.Equal(f.stopped, []string{"web:v2"}) || f.weights[v1] != 100 || len(f.locked) != 0 || f.unlocked != 1 {
		t.Fatalf("stopped %v, weights %v, locked %v", f.stopped, f.weights, f.locked)
	}
}

// A version that exists already is woken and given its weight once healthy,
// not spawned again (a deploy script run twice succeeds, as tenement's
// does); when it is not healthy, or marked failed, it stays as it was.
func TestDeployExisting(t *testing.T) {
	v1, v2 := units.Instance{Service: "web", ID: "v1"}, units.Instance{Service: "web", ID: "v2"}
	f := newFake(true, v1, v2)
	f.weights[v1], f.weights[v2] = 100, 10
	w := 40
	res, err := New(f, quiet).Deploy(context.Background(), apitype.DeployRequest{Service: "web", Version: "v2", Weight: &w})
	if err != nil || !res.Existed || res.Weight != 40 || f.weights[v2] != 40 || f.weights[v1] != 100 {
		t.Fatalf("healthy existing version: %v %+v, weights %v", err, res, f.weights)
	}
	if len(f.have) != 2 || !slices.Equal(f.woken, []string{"web:v2"}) || len(f.locked) != 0 {
		t.Fatalf("have %v, woken %v, locked %v", f.have, f.woken, f.locked)
	}

	f = newFake(false, v1, v2)
	f.weights[v1], f.weights[v2] = 100, 10
	_, err = New(f, quiet).Deploy(context.Background(), apitype.DeployRequest{Service: "web", Version: "v2", Weight: &w})
	var de *api.DeployError
	if !errors.As(err, &de) || !strings.Contains(de.Msg, "left as it was") || len(f.stopped) != 0 || f.weights[v2] != 10 || len(f.locked) != 0 {
		t.Fatalf("unhealthy existing version: %v, stopped %v, weights %v, locked %v", err, f.stopped, f.weights, f.locked)
	}

	f = newFake(true, v2)
	f.health = map[units.Instance]string{v2: apitype.HealthFailed}
	f.weights[v2] = 10
	_, err = New(f, quiet).Deploy(context.Background(), apitype.DeployRequest{Service: "web", Version: "v2", Weight: &w})
	if !errors.Is(err, registry.ErrExists) || !strings.Contains(err.Error(), "marked failed") || len(f.woken) != 0 || f.weights[v2] != 10 || len(f.locked) != 0 {
		t.Fatalf("failed existing version: %v, woken %v, weights %v", err, f.woken, f.weights)
	}
}

func TestDeployBadInput(t *testing.T) {
	bad := -1
	for _, req := range []apitype.DeployRequest{
		{Service: "web", Version: "v 2"},
		{Service: "web", Version: "v2", Weight: &bad},
		{Service: "web", Version: "v2", Timeout: MaxTimeout + 1},
	} {
		f := newFake(true)
		if _, err := New(f, quiet).Deploy(context.Background(), req); !errors.Is(err, strictjson.ErrBadInput) || len(f.have) != 0 {
			t.Errorf("%+v: err %v, spawned %v", req, err, f.have)
		}
	}
	if _, err := New(newFake(true), quiet).Deploy(context.Background(), apitype.DeployRequest{Service: "db", Version: "v2"}); !errors.Is(err, registry.ErrUnknownService) {
		t.Errorf("unknown service: %v", err)
	}
}
