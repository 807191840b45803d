// Package deploy is ten's deploy: a new version of a service is spawned
// with weight 0, started, given its weight once its health check passes,
// or removed again when it does not pass in time (nothing else changes
// then); with Replace the old versions are then drained and removed. A
// version that exists already is woken if it sleeps and given its weight
// once healthy (a deploy script run twice succeeds, as tenement's does),
// and left as it was when it is not. It changes instances only through
// Instances, which the server implements.
package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/tenhq/ten/api"
	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/strictjson"
	"github.com/tenhq/ten/units"
)

// Bounds of DeployRequest.Timeout, in seconds.
const (
	MinTimeout = 1
	MaxTimeout = 3600
)

// Instances is what a deploy asks of the server.
type Instances interface {
	// Declared reports whether the config declares the service.
	Declared(service string) bool
	// Lock marks inst busy (registry.ErrBusy when it is); Unlock ends that.
	Lock(inst units.Instance) error
	Unlock(inst units.Instance)
	// Has reports whether ten holds inst.
	Has(inst units.Instance) bool
	// Wake starts inst's app if it sleeps or is frozen, as a request would
	// (at most timeout); a running app is left as it is.
	Wake(ctx context.Context, inst units.Instance, timeout time.Duration) error
	// SpawnStarted creates and starts inst with weight 0, under its lock.
	SpawnStarted(ctx context.Context, inst units.Instance) error
	// StopLocked removes inst, under its lock; Stop takes the lock.
	StopLocked(ctx context.Context, inst units.Instance) error
	Stop(ctx context.Context, inst units.Instance) error
	// WaitHealthy waits until inst's health check passes, at most timeout.
	WaitHealthy(ctx context.Context, inst units.Instance, timeout time.Duration) error
	// SetWeight changes inst's routing weight (saved).
	SetWeight(inst units.Instance, w int) error
	// Inflight is the number of inst's requests in flight; ok is false when
	// the router does not have inst.
	Inflight(inst units.Instance) (n int, ok bool)
	// Instances is every instance (a snapshot of the registry).
	Instances() []registry.Entry
	// Row is inst's ps row.
	Row(ctx context.Context, inst units.Instance) (apitype.Row, error)
}

// Deployer runs deploys.
type Deployer struct {
	in  Instances
	log *slog.Logger
}

// New returns a Deployer over in.
func New(in Instances, log *slog.Logger) *Deployer { return &Deployer{in: in, log: log} }

// Deploy spawns SERVICE:VERSION with weight 0, starts it, waits until its
// health check passes, then gives it its weight. If it does not become
// healthy in time it is removed again (its journal stays: journalctl -u
// tenement-SERVICE@VERSION) and nothing else changes: the old versions keep
// their traffic. With Replace the old versions are then drained and removed.
func (d *Deployer) Deploy(ctx context.Context, req apitype.DeployRequest) (apitype.DeployResult, error) {
	svcName := req.Service
	if svcName == "" {
		svcName = req.Process
	}
	inst := units.Instance{Service: svcName, ID: req.Version}
	if _, err := units.ParseInstance(inst.String()); err != nil {
		return apitype.DeployResult{}, fmt.Errorf("deploy: %w: %v", strictjson.ErrBadInput, err)
	}
	weight := 100
	if req.Weight != nil {
		weight = *req.Weight
	}
	if weight < 0 || weight > 100 {
		return apitype.DeployResult{}, fmt.Errorf("deploy %s: %w: weight %d must be 0..100", inst, strictjson.ErrBadInput, weight)
	}
	timeout := 30 * time.Second
	if req.Timeout != 0 {
		if req.Timeout < MinTimeout || req.Timeout > MaxTimeout {
			return apitype.DeployResult{}, fmt.Errorf("deploy %s: %w: timeout %d: want %d to %d seconds", inst, strictjson.ErrBadInput, req.Timeout, MinTimeout, MaxTimeout)
		}
		timeout = time.Duration(req.Timeout) * time.Second
	}
	if !d.in.Declared(inst.Service) {
		return apitype.DeployResult{}, fmt.Errorf("deploy %s: %w %q", inst, registry.ErrUnknownService, inst.Service)
	}

	if err := d.in.Lock(inst); err != nil {
		return apitype.DeployResult{}, err
	}
	start := time.Now()
	existed := d.in.Has(inst)
	if existed {
		if err := d.existing(ctx, inst, timeout); err != nil {
			d.in.Unlock(inst)
			return apitype.DeployResult{}, err
		}
	} else if err := d.in.SpawnStarted(ctx, inst); err != nil {
		d.in.Unlock(inst)
		return apitype.DeployResult{}, fmt.Errorf("deploy: %w", err)
	}
	d.log.Info("deploy: waiting for health", "instance", inst.String(), "timeout", timeout, "existed", existed)
	if err := d.in.WaitHealthy(ctx, inst, timeout); err != nil {
		if existed {
			// It was there before this deploy (and may serve traffic):
			// it stays, with its weight.
			d.in.Unlock(inst)
			return apitype.DeployResult{}, &api.DeployError{Msg: fmt.Sprintf(
				"deploy %s: it exists already and is %v; left as it was, with its weight (its output: journalctl -u %s; ten restart %s restarts it)",
				inst, err, inst.ServiceUnit(), inst)}
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		rerr := d.in.StopLocked(rctx, inst)
		cancel()
		d.in.Unlock(inst)
		msg := fmt.Sprintf("deploy %s: %v; removed %s again, the other instances of %s keep their weights (its output: journalctl -u %s)",
			inst, err, inst, inst.Service, inst.ServiceUnit())
		if rerr != nil {
			msg += fmt.Sprintf("; removing it failed too: %v", rerr)
		}
		return apitype.DeployResult{}, &api.DeployError{Msg: msg}
	}
	if err := d.in.SetWeight(inst, weight); err != nil {
		d.in.Unlock(inst)
		return apitype.DeployResult{}, err
	}
	d.in.Unlock(inst)
	res := apitype.DeployResult{Instance: inst.String(), Status: "healthy", Weight: weight, HealthyAfter: time.Since(start).Seconds(), Existed: existed}
	d.log.Info("deploy: healthy", "instance", inst.String(), "after", time.Since(start), "weight", weight, "existed", existed)

	if req.Replace {
		replaced, err := d.replace(ctx, inst)
		res.Replaced = replaced
		if err != nil {
			return res, fmt.Errorf("deploy %s: healthy with weight %d, but replacing the old versions failed: %w", inst, weight, err)
		}
	}
	row, err := d.in.Row(ctx, inst)
	if err != nil {
		return res, err
	}
	res.Row = row
	res.Socket = row.Socket
	return res, nil
}

// existing readies a version that exists already for its health wait:
// one marked failed is refused at once (its health check would never pass
// until `ten restart` clears the mark), one that sleeps or is frozen is
// woken.
func (d *Deployer) existing(ctx context.Context, inst units.Instance, timeout time.Duration) error {
	row, err := d.in.Row(ctx, inst)
	if err != nil {
		return fmt.Errorf("deploy %s: %w", inst, err)
	}
	if row.Health == apitype.HealthFailed {
		// 409: the instance's state, not a timeout, stops the deploy.
		return fmt.Errorf("deploy %s: %w and is marked failed; left as it was (ten health %s says why, ten restart %s clears the mark)", inst, registry.ErrExists, inst, inst)
	}
	if err := d.in.Wake(ctx, inst, timeout); err != nil {
		// The health wait that follows says what is wrong.
		d.log.Info("deploy: wake of an existing version", "instance", inst.String(), "err", err)
	}
	return nil
}

// replace takes every other instance of inst's service out of the rotation,
// waits for its requests in flight (at most its request_timeout), then
// removes it.
func (d *Deployer) replace(ctx context.Context, inst units.Instance) ([]string, error) {
	var olds []registry.Entry
	for _, in := range d.in.Instances() {
		if in.Inst.Service == inst.Service && in.Inst != inst {
			olds = append(olds, in)
		}
	}
	sort.Slice(olds, func(i, j int) bool { return olds[i].Inst.ID < olds[j].Inst.ID })
	for _, old := range olds {
		if err := d.in.SetWeight(old.Inst, 0); err != nil {
			return nil, err
		}
	}
	var done []string
	for _, old := range olds {
		drain := 30 * time.Second
		if old.Svc != nil {
			drain = old.Svc.RequestTimeoutDuration()
		}
		deadline := time.Now().Add(drain)
		for {
			inflight, ok := d.in.Inflight(old.Inst)
			if !ok || inflight == 0 {
				break
			}
			if time.Now().After(deadline) {
				d.log.Warn("deploy --replace: requests still in flight after request_timeout; removing anyway", "instance", old.Inst.String(), "inflight", inflight)
				break
			}
			select {
			case <-ctx.Done():
				return done, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		if err := d.in.Stop(ctx, old.Inst); err != nil {
			return done, err
		}
		d.log.Info("deploy --replace: drained and removed", "instance", old.Inst.String())
		done = append(done, old.Inst.String())
	}
	return done, nil
}
