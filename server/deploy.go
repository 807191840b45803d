package server

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/tenhq/ten/api"
	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/statefile"
	"github.com/tenhq/ten/units"
)

// Bounds of DeployRequest.Timeout, in seconds.
const (
	MinDeployTimeout = 1
	MaxDeployTimeout = 3600
)

// Deploy spawns SERVICE:VERSION with weight 0, starts it, waits until its
// health check passes, then gives it its weight. If it does not become
// healthy in time it is removed again (its journal stays: journalctl -u
// tenement-SERVICE@VERSION) and nothing else changes: the old versions keep
// their traffic. With Replace the old versions are then drained and removed.
func (s *Server) Deploy(ctx context.Context, req apitype.DeployRequest) (apitype.DeployResult, error) {
	svcName := req.Service
	if svcName == "" {
		svcName = req.Process
	}
	inst := units.Instance{Service: svcName, ID: req.Version}
	if _, err := units.ParseInstance(inst.String()); err != nil {
		return apitype.DeployResult{}, fmt.Errorf("deploy: %w: %v", ErrBadInput, err)
	}
	weight := 100
	if req.Weight != nil {
		weight = *req.Weight
	}
	if weight < 0 || weight > 100 {
		return apitype.DeployResult{}, fmt.Errorf("deploy %s: %w: weight %d must be 0..100", inst, ErrBadInput, weight)
	}
	timeout := 30 * time.Second
	if req.Timeout != 0 {
		if req.Timeout < MinDeployTimeout || req.Timeout > MaxDeployTimeout {
			return apitype.DeployResult{}, fmt.Errorf("deploy %s: %w: timeout %d: want %d to %d seconds", inst, ErrBadInput, req.Timeout, MinDeployTimeout, MaxDeployTimeout)
		}
		timeout = time.Duration(req.Timeout) * time.Second
	}
	if _, ok := s.cfg.Services[inst.Service]; !ok {
		return apitype.DeployResult{}, fmt.Errorf("deploy %s: %w %q", inst, ErrUnknownService, inst.Service)
	}

	if err := s.reg.Lock(inst); err != nil {
		return apitype.DeployResult{}, err
	}
	start := time.Now()
	if err := s.spawnLocked(ctx, inst, spawnOptions{weight: 0, start: true}); err != nil {
		s.reg.Unlock(inst)
		return apitype.DeployResult{}, fmt.Errorf("deploy: %w", err)
	}
	in, _ := s.reg.Get(inst)
	s.log.Info("deploy: waiting for health", "instance", inst.String(), "timeout", timeout)
	if err := s.health.WaitHealthy(ctx, in, timeout); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		rerr := s.stopLocked(rctx, inst)
		cancel()
		s.reg.Unlock(inst)
		msg := fmt.Sprintf("deploy %s: %v; removed %s again, the other instances of %s keep their weights (its output: journalctl -u %s)",
			inst, err, inst, inst.Service, inst.ServiceUnit())
		if rerr != nil {
			msg += fmt.Sprintf("; removing it failed too: %v", rerr)
		}
		return apitype.DeployResult{}, &api.DeployError{Msg: msg}
	}
	if err := s.SetWeight(inst, weight); err != nil {
		s.reg.Unlock(inst)
		return apitype.DeployResult{}, err
	}
	s.reg.Unlock(inst)
	res := apitype.DeployResult{Instance: inst.String(), Weight: weight, HealthyAfter: time.Since(start).Seconds()}
	s.log.Info("deploy: healthy", "instance", inst.String(), "after", time.Since(start), "weight", weight)

	if req.Replace {
		replaced, err := s.replace(ctx, inst)
		res.Replaced = replaced
		if err != nil {
			return res, fmt.Errorf("deploy %s: healthy with weight %d, but replacing the old versions failed: %w", inst, weight, err)
		}
	}
	row, err := s.Row(ctx, inst)
	if err != nil {
		return res, err
	}
	res.Row = row
	return res, nil
}

// replace takes every other instance of inst's service out of the rotation,
// waits for its requests in flight (at most its request_timeout), then
// removes it.
func (s *Server) replace(ctx context.Context, inst units.Instance) ([]string, error) {
	var olds []registry.Entry
	for _, in := range s.reg.Snapshot() {
		if in.Inst.Service == inst.Service && in.Inst != inst {
			olds = append(olds, in)
		}
	}
	sort.Slice(olds, func(i, j int) bool { return olds[i].Inst.ID < olds[j].Inst.ID })
	for _, old := range olds {
		if err := s.SetWeight(old.Inst, 0); err != nil {
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
			st, ok := s.router.Stat(old.Inst)
			if !ok || st.Inflight == 0 {
				break
			}
			if time.Now().After(deadline) {
				s.log.Warn("deploy --replace: requests still in flight after request_timeout; removing anyway", "instance", old.Inst.String(), "inflight", st.Inflight)
				break
			}
			select {
			case <-ctx.Done():
				return done, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		if err := s.Stop(ctx, old.Inst); err != nil {
			return done, err
		}
		s.log.Info("deploy --replace: drained and removed", "instance", old.Inst.String())
		done = append(done, old.Inst.String())
	}
	return done, nil
}

// Route gives To the weight From had and From weight 0, in one step: no
// request sees both or neither in the rotation. The weights are saved.
func (s *Server) Route(req apitype.RouteRequest) (apitype.RouteResult, error) {
	svc := req.Service
	if svc == "" {
		svc = req.Process
	}
	from, to := units.Instance{Service: svc, ID: req.From}, units.Instance{Service: svc, ID: req.To}
	for _, i := range []units.Instance{from, to} {
		if _, err := units.ParseInstance(i.String()); err != nil {
			return apitype.RouteResult{}, fmt.Errorf("route: %w: %v", ErrBadInput, err)
		}
	}
	if req.From == req.To {
		return apitype.RouteResult{}, fmt.Errorf("route %s: %w: --from and --to are both %q", svc, ErrBadInput, req.From)
	}
	for _, i := range []units.Instance{from, to} {
		if _, ok := s.router.Stat(i); !ok {
			return apitype.RouteResult{}, fmt.Errorf("route: %s: %w", i, ErrNotFound)
		}
	}
	// The swap and the save happen under the state lock, so two routes
	// cannot interleave their saves.
	var w int
	var ok bool
	err := s.state.Update(func(p *statefile.Persisted) {
		w, ok = s.router.Swap(from, to)
		if ok {
			p.Weights[from.String()] = 0
			p.Weights[to.String()] = w
		}
	})
	if !ok {
		return apitype.RouteResult{}, fmt.Errorf("route: %s or %s: %w", from, to, ErrNotFound)
	}
	if err != nil {
		return apitype.RouteResult{}, fmt.Errorf("route %s to %s: weights swapped but not saved: %w", from, to, err)
	}
	s.log.Info("route", "from", from.String(), "to", to.String(), "weight", w)
	return apitype.RouteResult{Service: svc, From: from.String(), To: to.String(), Weight: w}, nil
}
