package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tenhq/ten/health"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// How ten judges health.
//
// With `health = "/path"` ten sends GET /path, with the instance's own Host,
// through the same systemd-held socket the router uses, every
// settings.health_check_interval seconds — but only while the service runs:
// a check must never wake a sleeping instance. One failed check makes the
// instance degraded; unhealthyAfter failures in a row make it unhealthy, and
// ten restarts it after an exponential backoff (backoff_base_ms doubling per
// restart already in restart_window, at most backoff_max_ms).
//
// Without `health` systemd's state is the whole judgement: an active service
// is healthy and ten never restarts it (tenement judged such services by a
// socket file that never existed and restarted them forever).
//
// Crashes are restarted by systemd itself (Restart=on-failure); ten counts
// them from the service's NRestarts. Restarts of either kind count toward
// max_restarts: when an instance needs one more restart than max_restarts
// within restart_window, ten marks it failed, stops its service and leaves it
// stopped. The router then answers 503 for it without touching its socket,
// so nothing wakes it until `ten restart`. The mark is kept in state.json and
// survives a restart of ten.

// healthState is one instance's health: the pure state machine of package
// health plus what the loop keeps around it.
type healthState struct {
	health.State
	restarts    []RestartEvent // pruned to restart_window
	nRestarts   uint32         // systemd's NRestarts at the last check
	seenN       bool
	pending     bool // a restart is scheduled
	nextRestart time.Time
	backoff     time.Duration
	failed      string
	checking    bool
}

// healthBook holds every instance's health state.
type healthBook struct {
	mu   sync.Mutex
	m    map[units.Instance]*healthState
	kick chan units.Instance
}

func newHealthBook() *healthBook {
	return &healthBook{m: map[units.Instance]*healthState{}, kick: make(chan units.Instance, 256)}
}

// get returns inst's state, creating it; callers hold h.mu.
func (h *healthBook) get(inst units.Instance) *healthState {
	hs := h.m[inst]
	if hs == nil {
		hs = &healthState{State: health.State{State: HealthUnknown}}
		h.m[inst] = hs
	}
	return hs
}

// check asks for an immediate check of inst (a crash was seen).
func (h *healthBook) check(inst units.Instance) {
	select {
	case h.kick <- inst:
	default:
	}
}

func (s *Server) window() time.Duration {
	return time.Duration(s.cfg.Settings.RestartWindow) * time.Second
}

// recordRestart notes one restart; callers hold s.health.mu.
func (s *Server) recordRestart(inst units.Instance, hs *healthState, reason string, now time.Time) {
	hs.restarts = append(hs.restarts, RestartEvent{At: now, Reason: reason})
	if s.im != nil {
		s.im.restarts.WithLabelValues(inst.String(), reason).Inc()
	}
}

// inWindow prunes and counts restarts within restart_window; callers hold s.health.mu.
func (s *Server) inWindow(hs *healthState, now time.Time) int {
	hs.restarts = health.InWindow(hs.restarts, s.window(), now)
	return len(hs.restarts)
}

// runHealth checks every instance each health_check_interval, and an
// instance at once when systemd reports it crashed.
func (s *Server) runHealth(ctx context.Context) {
	interval := time.Duration(s.cfg.Settings.HealthCheckInterval) * time.Second
	t := time.NewTicker(interval)
	defer t.Stop()
	sem := make(chan struct{}, 8)
	run := func(inst units.Instance) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		go func() {
			defer func() { <-sem }()
			s.checkOne(ctx, inst)
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case inst := <-s.health.kick:
			run(inst)
		case <-t.C:
			for _, inst := range s.reg.Instances() {
				// A sleeper changes only through systemd, which signals it
				// into the state cache, and follow asks for a check on every
				// such change. Reading every sleeper's properties on a tick
				// made ten's and systemd's idle CPU grow with the number of
				// sleepers (10,000: half a core each).
				if s.asleep(inst) {
					continue
				}
				run(inst)
			}
		}
	}
}

// asleep reports whether the state cache has inst's service inactive and
// its socket listening: nothing for a health check to see.
func (s *Server) asleep(inst units.Instance) bool {
	svc, sock, ok := s.sd.State(inst)
	return ok && svc.ActiveState == "inactive" && sock.ActiveState == "active"
}

func (s *Server) probeTimeout(in registry.Entry) time.Duration {
	d := time.Duration(s.cfg.Settings.HealthCheckInterval) * time.Second
	d = max(min(d, 5*time.Second), time.Second)
	if in.Svc != nil {
		d = min(d, in.Svc.RequestTimeoutDuration())
	}
	return d
}

// checkOne runs one health check of inst and acts on it.
func (s *Server) checkOne(ctx context.Context, inst units.Instance) {
	in, ok := s.reg.Get(inst)
	if !ok || s.reg.Busy(inst) {
		return
	}
	s.health.mu.Lock()
	hs := s.health.get(inst)
	if hs.failed != "" || hs.checking {
		s.health.mu.Unlock()
		return
	}
	hs.checking = true
	s.health.mu.Unlock()
	defer func() {
		s.health.mu.Lock()
		hs.checking = false
		s.health.mu.Unlock()
	}()

	info, err := s.sd.Info(ctx, inst)
	if err != nil {
		s.log.Debug("health: read state", "instance", inst.String(), "err", err)
		return
	}
	now := time.Now()

	// Crashes systemd restarted since the last check. NRestarts goes back
	// to 0 when the service is started other than by Restart= (a wake, a
	// restart by ten); a smaller value then counts from 0.
	s.health.mu.Lock()
	crashes := health.Crashes(hs.nRestarts, hs.seenN, info.NRestarts)
	hs.nRestarts, hs.seenN = info.NRestarts, true
	for i := 0; i < crashes; i++ {
		s.recordRestart(inst, hs, RestartCrash, now)
	}
	n := s.inWindow(hs, now)
	pending := hs.pending
	s.health.mu.Unlock()
	if crashes > 0 {
		s.log.Warn("instance crashed; systemd restarted it", "instance", inst.String(), "crashes", crashes, "restarts_in_window", n, "max_restarts", s.cfg.Settings.MaxRestarts)
	}
	if n > s.cfg.Settings.MaxRestarts {
		s.markFailed(ctx, inst, fmt.Sprintf("restarted %d times within restart_window %ds (max_restarts %d); last: %s",
			n, s.cfg.Settings.RestartWindow, s.cfg.Settings.MaxRestarts, health.DescribeExit(info.ActiveState, info.SubState, info.Result)))
		return
	}
	if pending {
		return
	}

	o := health.Observation{Active: info.ActiveState, Sub: info.SubState, Result: info.Result}
	if in.Svc != nil {
		o.Path = in.Svc.Health
	}
	if health.NeedsProbe(o.Active, o.Path) {
		o.Probed = true
		o.Code, o.ProbeErr = s.router.Probe(ctx, inst, o.Path, s.probeTimeout(in), false)
		if errors.Is(o.ProbeErr, router.ErrAsleep) {
			o.Asleep, o.ProbeErr = true, nil
		}
	}
	state, detail := health.Judge(o)

	s.health.mu.Lock()
	restart := hs.Step(state, detail, now)
	detail = hs.Detail
	s.health.mu.Unlock()
	if restart {
		s.scheduleRestart(ctx, inst, detail)
	}
}

// scheduleRestart restarts an unhealthy instance after its backoff, or marks
// it failed when it has used up max_restarts within restart_window.
func (s *Server) scheduleRestart(ctx context.Context, inst units.Instance, why string) {
	now := time.Now()
	s.health.mu.Lock()
	hs := s.health.get(inst)
	n := s.inWindow(hs, now)
	if n >= s.cfg.Settings.MaxRestarts {
		s.health.mu.Unlock()
		s.markFailed(ctx, inst, fmt.Sprintf("unhealthy after %d restarts within restart_window %ds (max_restarts %d): %s",
			n, s.cfg.Settings.RestartWindow, s.cfg.Settings.MaxRestarts, why))
		return
	}
	d := health.Backoff(time.Duration(s.cfg.Settings.BackoffBaseMs)*time.Millisecond, time.Duration(s.cfg.Settings.BackoffMaxMs)*time.Millisecond, n)
	hs.pending, hs.nextRestart, hs.backoff = true, now.Add(d), d
	s.health.mu.Unlock()
	s.log.Warn("instance unhealthy; restarting after backoff", "instance", inst.String(), "backoff", d, "restarts_in_window", n, "why", why)
	go func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.healthRestart(ctx, inst, why)
	}()
}

func (s *Server) healthRestart(ctx context.Context, inst units.Instance, why string) {
	done := func(state, detail string) {
		s.health.mu.Lock()
		hs := s.health.get(inst)
		hs.pending, hs.nextRestart = false, time.Time{}
		if state != "" {
			hs.State.State, hs.Detail, hs.Fails = state, detail, 0
		}
		s.health.mu.Unlock()
	}
	if err := s.reg.Lock(inst); err != nil {
		// Someone restarts or removes it right now; that settles it.
		done("", "")
		return
	}
	defer s.reg.Unlock(inst)
	if !s.reg.Has(inst) {
		done("", "")
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	// The reaper may have frozen it during the backoff (probes are not
	// activity); systemd cannot stop a frozen service cleanly.
	s.frz.ThawForStop(rctx, inst)
	err := s.sd.Restart(rctx, inst)
	cancel()
	now := time.Now()
	s.health.mu.Lock()
	hs := s.health.get(inst)
	s.recordRestart(inst, hs, RestartHealth, now)
	hs.seenN = false // NRestarts starts again from 0 after a restart by ten
	s.health.mu.Unlock()
	if err != nil {
		s.log.Error("health restart failed", "instance", inst.String(), "err", err)
		done(HealthUnhealthy, fmt.Sprintf("restart after failed checks failed: %v", err))
		return
	}
	s.log.Info("restarted unhealthy instance", "instance", inst.String(), "why", why)
	done(HealthUnknown, "restarted by ten after: "+why)
}

// markFailed stops the instance's service and keeps it stopped until
// `ten restart`: the router answers 503 for it without connecting to its
// socket (which stays, so the instance keeps its address).
func (s *Server) markFailed(ctx context.Context, inst units.Instance, reason string) {
	s.health.mu.Lock()
	hs := s.health.get(inst)
	if hs.failed != "" {
		s.health.mu.Unlock()
		return
	}
	hs.failed, hs.State.State, hs.Detail, hs.pending = reason, HealthFailed, reason, false
	s.health.mu.Unlock()
	s.router.SetFailed(inst, reason)
	if err := s.state.update(func(p *persisted) { p.Failed[inst.String()] = reason }); err != nil {
		s.log.Error("save failed mark", "instance", inst.String(), "err", err)
	}
	s.log.Error("instance failed; stopped until `ten restart`", "instance", inst.String(), "reason", reason)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.frz.ThawForStop(sctx, inst)
	if err := s.sd.Sleep(sctx, inst); err != nil {
		s.log.Error("stop failed instance", "instance", inst.String(), "err", err)
	}
}

// clearHealth forgets the failed mark and restart history of inst (after
// `ten restart`, a new spawn, or removal).
func (s *Server) clearHealth(inst units.Instance) {
	s.health.mu.Lock()
	had := s.health.m[inst] != nil && s.health.m[inst].failed != ""
	delete(s.health.m, inst)
	s.health.mu.Unlock()
	s.router.SetFailed(inst, "")
	if had || s.state.failed(inst) != "" {
		if err := s.state.update(func(p *persisted) { delete(p.Failed, inst.String()) }); err != nil {
			s.log.Error("save state", "instance", inst.String(), "err", err)
		}
	}
}

// restoreFailed re-applies a failed mark kept in state.json (ten restarted).
func (s *Server) restoreFailed(inst units.Instance) {
	reason := s.state.failed(inst)
	if reason == "" {
		return
	}
	s.health.mu.Lock()
	hs := s.health.get(inst)
	hs.failed, hs.State.State, hs.Detail = reason, HealthFailed, reason
	s.health.mu.Unlock()
	s.router.SetFailed(inst, reason)
}

// failedReason is the failed mark of inst ("" when none).
func (s *Server) failedReason(inst units.Instance) string {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if hs := s.health.m[inst]; hs != nil {
		return hs.failed
	}
	return ""
}

func (s *Server) healthOf(inst units.Instance) string {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if hs := s.health.m[inst]; hs != nil {
		return hs.State.State
	}
	return HealthUnknown
}

// Health reports inst's health.
func (s *Server) Health(ctx context.Context, inst units.Instance) (Health, error) {
	row, err := s.Row(ctx, inst)
	if err != nil {
		return Health{}, err
	}
	in, have := s.reg.Get(inst)
	h := Health{Instance: inst.String(), State: row.State, Check: "systemd state",
		MaxRestarts: s.cfg.Settings.MaxRestarts, RestartWindowSec: s.cfg.Settings.RestartWindow}
	if have && in.Svc != nil && in.Svc.Health != "" {
		h.Check = "GET " + in.Svc.Health
	}
	now := time.Now()
	s.health.mu.Lock()
	hs := s.health.get(inst)
	h.Health, h.Detail, h.ConsecutiveFailures = hs.State.State, hs.Detail, hs.Fails
	h.LastCheck, h.LastHealthy = hs.LastCheck, hs.LastHealthy
	h.RestartsInWindow = s.inWindow(hs, now)
	h.Restarts = append([]RestartEvent{}, hs.restarts...)
	h.NextRestart, h.Failed = hs.nextRestart, hs.failed
	h.BackoffMs = hs.backoff.Milliseconds()
	s.health.mu.Unlock()
	// A sleeping instance is not checked; say so rather than show a stale result.
	if row.State == StateSleeping && h.Failed == "" {
		h.Health = HealthSleeping
	}
	return h, nil
}

// waitHealthy polls inst until a health check passes (deploy). It may wake
// the instance: deploy starts it on purpose. Without `health`, the service
// must be active in systemd and answer GET / with any status below 500.
func (s *Server) waitHealthy(ctx context.Context, in registry.Entry, timeout time.Duration) error {
	path, judge := "/", "GET / (no health path configured)"
	if in.Svc != nil && in.Svc.Health != "" {
		path, judge = in.Svc.Health, "GET "+in.Svc.Health
	}
	deadline := time.Now().Add(timeout)
	last := "no check finished"
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("not healthy within %s: %s: %s", timeout, judge, last)
		}
		info, err := s.sd.Info(ctx, in.Inst)
		switch {
		case err != nil:
			last = err.Error()
		case info.ActiveState != "active":
			last = "service " + health.DescribeExit(info.ActiveState, info.SubState, info.Result)
		default:
			code, err := s.router.Probe(ctx, in.Inst, path, min(left, s.probeTimeout(in)), true)
			switch {
			case err != nil:
				last = err.Error()
			case path == "/" && code < 500, code >= 200 && code < 400:
				return nil
			default:
				last = fmt.Sprintf("%d %s", code, http.StatusText(code))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(200*time.Millisecond, max(time.Until(deadline), 0))):
		}
	}
}
