package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/health"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/units"
)

// backend is the server as the admin API's Backend (package api): the
// server's own methods, with the choice between this node and the fleet
// made here.
type backend struct{ *Server }

// List is ps: this node's rows and, in a fleet, the other nodes' instances.
func (b backend) List(ctx context.Context) ([]apitype.Row, error) {
	rows, err := b.ps.Rows(ctx)
	if err != nil || b.fleet == nil {
		return rows, err
	}
	return b.fleet.Rows(rows), nil
}

// Create spawns inst here, or in a fleet places it (on node, or where
// placement picks) and waits until its node has it.
func (b backend) Create(ctx context.Context, inst units.Instance, node string) (apitype.Row, error) {
	s := b.Server
	if s.fleet != nil {
		want := node
		node, err := s.fleet.Spawn(ctx, inst, node)
		if err != nil {
			if errors.Is(err, ErrExists) {
				// Placed already: success, as on a single node, unless
				// it was asked for on another node than it is.
				if row, ok := b.listed(ctx, inst); ok && (want == "" || row.Node == want) {
					row.Existed = true
					return row, nil
				}
			}
			return apitype.Row{}, err
		}
		if node != s.fleet.Name() {
			return apitype.Row{Instance: inst.String(), ID: inst.String(), Node: node, State: apitype.StateRemote}, nil
		}
		s.health.CheckNow(ctx, inst)
		row, err := s.spawnRow(ctx, inst)
		row.Node = node
		return row, err
	}
	if node != "" {
		return apitype.Row{}, fmt.Errorf("%w: node %q: this server is not part of a fleet (no [fleet] in %s)", ErrBadInput, node, s.cfg.Path)
	}
	if err := s.SpawnNow(ctx, inst); err != nil {
		if !errors.Is(err, ErrExists) || !s.reg.Has(inst) {
			return apitype.Row{}, err
		}
		// Spawning an instance that exists changes nothing and succeeds, as
		// tenement's spawn does: scripts spawn at every deploy. An id that
		// differs only by case, units systemd has that ten does not, and an
		// instance being changed still fail.
		row, err := s.spawnRow(ctx, inst)
		row.Existed = true
		return row, err
	}
	// Judged before the answer: an instance started at spawn shows its
	// health, not "unknown" until the next check.
	s.health.CheckNow(ctx, inst)
	return s.spawnRow(ctx, inst)
}

// spawnRow is inst's row as a spawn answers it: a running app's Address is
// filled in even when its health check, if any, did not dial it (Locate
// connects once), as tenement's spawn says where the app listens.
func (s *Server) spawnRow(ctx context.Context, inst units.Instance) (apitype.Row, error) {
	row, err := s.ps.Row(ctx, inst)
	if err != nil || row.State != apitype.StateRunning || row.Address != "" {
		return row, err
	}
	if d := s.router.AppDialer(inst); d != nil {
		row.Address = d.Locate(ctx)
	}
	return row, nil
}

// listed is inst's row in a fleet, wherever it runs: this node's own row
// when it runs here, the fleet's otherwise (not every row of ps).
func (b backend) listed(ctx context.Context, inst units.Instance) (apitype.Row, bool) {
	var here []apitype.Row
	if b.reg.Has(inst) {
		r, err := b.ps.Row(ctx, inst)
		if err != nil {
			return apitype.Row{}, false
		}
		here = append(here, r)
	}
	for _, r := range b.fleet.Rows(here) {
		if r.Instance == inst.String() {
			return r, true
		}
	}
	return apitype.Row{}, false
}

// Row is inst's row.
func (b backend) Row(ctx context.Context, inst units.Instance) (apitype.Row, error) {
	return b.ps.Row(ctx, inst)
}

// Health is inst's health.
func (b backend) Health(ctx context.Context, inst units.Instance) (apitype.Health, error) {
	return b.ps.Health(ctx, inst)
}

// NewToken makes an API token; in a fleet, a token of the whole fleet.
func (b backend) NewToken(ctx context.Context, tenant, description string) (string, auth.Token, error) {
	if b.fleet != nil {
		return b.fleet.NewToken(ctx, tenant, description)
	}
	secret, tok, err := b.guard.Store().Create(tenant, description)
	if err != nil {
		return "", auth.Token{}, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	return secret, tok, nil
}

// RevokeFleetToken revokes a token of the fleet (none outside a fleet).
func (b backend) RevokeFleetToken(ctx context.Context, id string) (bool, error) {
	if b.fleet == nil {
		return false, nil
	}
	return b.fleet.RevokeToken(ctx, id)
}

// ForwardAPI answers a call about an instance another node of the fleet
// runs, from that node.
func (b backend) ForwardAPI(w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
	return b.fleet != nil && b.fleet.ForwardAPI(w, r, p)
}

// Remove stops inst here, or in a fleet wherever it runs.
func (b backend) Remove(ctx context.Context, inst units.Instance) error {
	if b.fleet != nil {
		return b.fleet.Stop(ctx, inst)
	}
	return b.StopDraining(ctx, inst)
}

// fleetLocal is the server as a fleet node's Local (package
// fleet/fleetnode).
type fleetLocal struct{ *Server }

// Has reports whether inst runs here.
func (l fleetLocal) Has(inst units.Instance) bool { return l.reg.Has(inst) }

// Instances lists the instances that run here.
func (l fleetLocal) Instances() []units.Instance { return l.reg.Instances() }

// Routed reports whether the router has inst.
func (l fleetLocal) Routed(inst units.Instance) bool { return l.routed(inst) }

// SetWeight changes the weight of an instance of this node (the fleet
// applies its weights through it).
func (l fleetLocal) SetWeight(inst units.Instance, w int) error { return l.setWeightLocal(inst, w) }

// Tokens is the API's token store, nil before it is loaded.
func (l fleetLocal) Tokens() *auth.Store {
	if l.guard == nil {
		return nil
	}
	return l.guard.Store()
}

// marks is where the health loop keeps failed marks: state.json, and in a
// fleet etcd too.
func (s *Server) marks() health.Marks {
	if s.fleet != nil {
		return s.fleet.Marks(s.state)
	}
	return s.state
}

// Deploy is POST /api/deploy (package deploy).
func (b backend) Deploy(ctx context.Context, req apitype.DeployRequest) (apitype.DeployResult, error) {
	if b.fleet != nil {
		// A deployed instance would be created here but placed nowhere,
		// so the node's next reconcile would stop it (and with --replace
		// the old versions would be gone too): refused, nothing changes.
		return apitype.DeployResult{}, fmt.Errorf("deploy: %w: not available in a fleet yet (use `ten spawn`, `ten weight` and `ten stop`, which act across the fleet)", ErrBadInput)
	}
	return b.deployer.Deploy(ctx, req)
}

// deployInstances is the server as a deploy's Instances (package deploy).
type deployInstances struct{ *Server }

// Declared reports whether the config declares service.
func (d deployInstances) Declared(service string) bool {
	_, ok := d.cfg.Services[service]
	return ok
}

// Lock marks inst busy.
func (d deployInstances) Lock(inst units.Instance) error { return d.reg.Lock(inst) }

// Unlock ends Lock.
func (d deployInstances) Unlock(inst units.Instance) { d.reg.Unlock(inst) }

// Has reports whether ten holds inst.
func (d deployInstances) Has(inst units.Instance) bool { return d.reg.Has(inst) }

// Wake starts inst's app if it sleeps or is frozen, through the router's
// wake (a probe of its health path, or of / without one); a running app
// only answers the probe.
func (d deployInstances) Wake(ctx context.Context, inst units.Instance, timeout time.Duration) error {
	in, _ := d.reg.Get(inst)
	path := "/"
	if in.Svc != nil && in.Svc.Health != "" {
		path = in.Svc.Health
	}
	_, err := d.router.Probe(ctx, inst, path, timeout, true)
	return err
}

// SpawnStarted creates and starts inst with weight 0.
func (d deployInstances) SpawnStarted(ctx context.Context, inst units.Instance) error {
	return d.spawnLocked(ctx, inst, spawnOptions{weight: 0, start: true})
}

// StopLocked removes inst under its lock.
func (d deployInstances) StopLocked(ctx context.Context, inst units.Instance) error {
	return d.stopLocked(ctx, inst, 0)
}

// WaitHealthy waits for inst's health check (package health).
func (d deployInstances) WaitHealthy(ctx context.Context, inst units.Instance, timeout time.Duration) error {
	in, _ := d.reg.Get(inst)
	return d.health.WaitHealthy(ctx, in, timeout)
}

// Inflight is inst's requests in flight, from the router.
func (d deployInstances) Inflight(inst units.Instance) (int, bool) {
	st, ok := d.router.Stat(inst)
	return st.Inflight, ok
}

// Row is inst's row.
func (d deployInstances) Row(ctx context.Context, inst units.Instance) (apitype.Row, error) {
	return d.ps.Row(ctx, inst)
}

// Instances is a snapshot of the registry.
func (d deployInstances) Instances() []registry.Entry { return d.reg.Snapshot() }

// Storage measures inst's state directory (isolation.Meter: one walk of
// an instance at a time, its answer reused for isolation.MeterTTL).
func (b backend) Storage(ctx context.Context, inst units.Instance) (apitype.Storage, error) {
	in, ok := b.reg.Get(inst)
	if !ok {
		return apitype.Storage{}, fmt.Errorf("storage %s: %w", inst, ErrNotFound)
	}
	return b.meter.Measure(ctx, b.cfg, in.Svc, inst)
}
