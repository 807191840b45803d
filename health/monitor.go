package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/systemd"
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

// Systemd is what the monitor needs of systemd (*systemd.Manager).
type Systemd interface {
	// Status reads the service's state, result and restart count.
	Status(ctx context.Context, inst units.Instance) (systemd.Info, error)
	State(inst units.Instance) (service, socket systemd.UnitState, ok bool)
	Restart(ctx context.Context, inst units.Instance) error
	Sleep(ctx context.Context, inst units.Instance) error
}

// Router is what the monitor needs of the router (*router.Router).
type Router interface {
	Probe(ctx context.Context, inst units.Instance, path string, timeout time.Duration, wake bool) (int, error)
	SetFailed(inst units.Instance, reason string)
}

// Registry is what the monitor needs of the instance registry
// (*registry.Registry).
type Registry interface {
	Get(inst units.Instance) (registry.Entry, bool)
	Has(inst units.Instance) bool
	Busy(inst units.Instance) bool
	// Names lists every instance, in no order.
	Names() []units.Instance
	Lock(inst units.Instance) error
	Unlock(inst units.Instance)
}

// Marks keeps the failed marks across restarts of ten (state.json).
type Marks interface {
	FailedMark(name string) string
	SetFailedMark(name, reason string) error
	ForgetFailedMark(name string) error
}

// MonitorOptions are what a Monitor needs from the server.
type MonitorOptions struct {
	Log      *slog.Logger
	Settings *config.Settings
	Systemd  Systemd
	Router   Router
	Registry Registry
	Marks    Marks
	// ThawForStop thaws a frozen instance before it is restarted or
	// stopped (kernel.Freezing.ThawForStop).
	ThawForStop func(ctx context.Context, inst units.Instance)
	// OnRestart counts a restart (crash or health) in the metrics.
	OnRestart func(inst units.Instance, reason string)
}

// instance is one instance's health: the pure state machine plus what the
// loop keeps around it.
type instance struct {
	State
	restarts    []apitype.RestartEvent // pruned to restart_window
	total       uint32                 // every restart seen, crash or health, since ten watched it
	nRestarts   uint32                 // systemd's NRestarts at the last check
	seenN       bool
	pending     bool // a restart is scheduled
	nextRestart time.Time
	backoff     time.Duration
	failed      string
	checking    bool
}

// Monitor checks every running instance, restarts the unhealthy ones after
// a backoff, and marks failed those that need more restarts than
// max_restarts.
type Monitor struct {
	MonitorOptions

	mu   sync.Mutex // mu guards m
	m    map[units.Instance]*instance
	kick chan kickReq
	// bg counts the checks and scheduled restarts under way: Run returns
	// after them, so that none outlives the server's shutdown.
	bg sync.WaitGroup
}

// NewMonitor returns a Monitor; Run runs its loop.
func NewMonitor(o MonitorOptions) *Monitor {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ThawForStop == nil {
		o.ThawForStop = func(context.Context, units.Instance) {}
	}
	if o.OnRestart == nil {
		o.OnRestart = func(units.Instance, string) {}
	}
	return &Monitor{MonitorOptions: o, m: map[units.Instance]*instance{}, kick: make(chan kickReq, 256)}
}

// get returns inst's state, creating it; callers hold h.mu.
func (h *Monitor) get(inst units.Instance) *instance {
	hs := h.m[inst]
	if hs == nil {
		hs = &instance{State: State{State: apitype.HealthUnknown}}
		h.m[inst] = hs
	}
	return hs
}

// kickReq asks for a check of inst now; known, when set, is its status as
// systemd's signal of the change gave it (CheckChange), which the check
// uses instead of reading it.
type kickReq struct {
	inst  units.Instance
	known *known
}

// known is a service status the check does not read from systemd.
type known struct {
	info systemd.Info
	// restarts says info.NRestarts is systemd's; otherwise the check
	// counts no crash (the next one that reads does).
	restarts bool
	// started says the change is a fresh start: the check gives the app
	// FreshGrace, as CheckNow does.
	started bool
}

// Check asks for an immediate check of inst (systemd reported a change).
func (h *Monitor) Check(inst units.Instance) { h.kickCheck(kickReq{inst: inst}) }

// CheckChange asks for an immediate check of inst after systemd reported
// its service's new state and sub-state. fresh says the service was
// started other than by Restart= (a wake, a spawn, a restart by ten):
// systemd reset its Result to "success" and its NRestarts to 0 as it
// started it. A check of a freshly started active service, or of an
// inactive one (a stop that failed would be "failed"), then takes what it
// needs from the change and reads nothing from systemd: at every wake and
// every sleep of every instance those reads were four D-Bus calls into
// PID 1, on a 2-core machine about a tenth of a cold wake's CPU. Any other
// change is read as Check reads it; the periodic check reads in any case.
func (h *Monitor) CheckChange(inst units.Instance, state, sub string, fresh bool) {
	var k *known
	switch {
	case state == "active" && fresh:
		k = &known{info: systemd.Info{ActiveState: state, SubState: sub, Result: "success"}, restarts: true, started: true}
	case state == "inactive":
		k = &known{info: systemd.Info{ActiveState: state, SubState: sub, Result: "success"}}
	}
	h.kickCheck(kickReq{inst: inst, known: k})
}

func (h *Monitor) kickCheck(r kickReq) {
	select {
	case h.kick <- r:
	default:
	}
}

func (h *Monitor) window() time.Duration {
	return time.Duration(h.Settings.RestartWindow) * time.Second
}

// recordRestart notes one restart; callers hold h.mu.
func (h *Monitor) recordRestart(inst units.Instance, hs *instance, reason string, now time.Time) {
	hs.restarts = append(hs.restarts, apitype.RestartEvent{At: now, Reason: reason})
	hs.total++
	h.OnRestart(inst, reason)
}

// inWindow prunes and counts restarts within restart_window; callers hold h.mu.
func (h *Monitor) inWindow(hs *instance, now time.Time) int {
	hs.restarts = InWindow(hs.restarts, h.window(), now)
	return len(hs.restarts)
}

// Run checks every instance each health_check_interval, and an instance
// at once when Check asks, until ctx ends; it returns once the checks and
// restarts it started have ended.
func (h *Monitor) Run(ctx context.Context) {
	defer h.bg.Wait()
	interval := time.Duration(h.Settings.HealthCheckInterval) * time.Second
	t := time.NewTicker(interval)
	defer t.Stop()
	sem := make(chan struct{}, 8)
	run := func(inst units.Instance, k *known) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		h.bg.Go(func() {
			defer func() { <-sem }()
			h.check(ctx, inst, k, false)
		})
	}
	// A first round soon after start, of the instances systemd has
	// active, so that `ten ps` shows the adopted ones healthy (or not)
	// without waiting a whole interval; a second on, once the state cache
	// has caught up, and never of sleepers.
	first := time.NewTimer(min(time.Second, interval))
	defer first.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-h.kick:
			run(r.inst, r.known)
		case <-first.C:
			for _, inst := range h.Registry.Names() {
				if svc, _, ok := h.Systemd.State(inst); ok && svc.ActiveState == "active" {
					run(inst, nil)
				}
			}
		case <-t.C:
			for _, inst := range h.Registry.Names() {
				// A sleeper changes only through systemd, which signals it
				// into the state cache, and the server asks for a check on
				// every such change. Reading every sleeper's properties on
				// a tick made ten's and systemd's idle CPU grow with the
				// number of sleepers (10,000: half a core each).
				if h.asleep(inst) {
					continue
				}
				run(inst, nil)
			}
		}
	}
}

// asleep reports whether the state cache has inst's service inactive and
// its socket listening: nothing for a health check to see.
func (h *Monitor) asleep(inst units.Instance) bool {
	svc, sock, ok := h.Systemd.State(inst)
	return ok && svc.ActiveState == "inactive" && sock.ActiveState == "active"
}

func (h *Monitor) probeTimeout(in registry.Entry) time.Duration {
	d := time.Duration(h.Settings.HealthCheckInterval) * time.Second
	d = max(min(d, 5*time.Second), time.Second)
	if in.Svc != nil {
		d = min(d, in.Svc.RequestTimeoutDuration())
	}
	return d
}

// CheckNow runs one health check of inst at once and returns when it is done
// (a spawn, a restart by hand: ps and health show its result, not "unknown"
// until the next tick). The app has just started: a probe that fails to
// connect or read (an app that serves one connection at a time and has not
// taken the next yet, as a shell loop around nc does) is tried again for up
// to FreshGrace before it counts, as in the check systemd's report of the
// fresh start asks for (CheckChange), which may run first. It does nothing
// while another check of inst runs or inst is locked.
func (h *Monitor) CheckNow(ctx context.Context, inst units.Instance) {
	h.check(ctx, inst, nil, true)
}

// FreshGrace is how long CheckNow tries again a probe of a freshly started
// app that did not get an HTTP answer.
const FreshGrace = 2 * time.Second

// checkOne runs one health check of inst and acts on it.
func (h *Monitor) checkOne(ctx context.Context, inst units.Instance) { h.check(ctx, inst, nil, false) }

// check is checkOne with the service's status known (k) or, when k is nil,
// read from systemd; fresh is CheckNow's (a change that is a fresh start
// is fresh too).
func (h *Monitor) check(ctx context.Context, inst units.Instance, k *known, fresh bool) {
	fresh = fresh || k != nil && k.started
	in, ok := h.Registry.Get(inst)
	if !ok || h.Registry.Busy(inst) {
		return
	}
	h.mu.Lock()
	hs := h.get(inst)
	if hs.failed != "" || hs.checking {
		h.mu.Unlock()
		return
	}
	hs.checking = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		hs.checking = false
		h.mu.Unlock()
	}()

	var info systemd.Info
	if k != nil {
		info = k.info
	} else {
		var err error
		if info, err = h.Systemd.Status(ctx, inst); err != nil {
			h.Log.Debug("health: read state", "instance", inst.String(), "err", err)
			return
		}
	}
	now := time.Now()

	// Crashes systemd restarted since the last check. NRestarts goes back
	// to 0 when the service is started other than by Restart= (a wake, a
	// restart by ten); a smaller value then counts from 0.
	h.mu.Lock()
	crashes := 0
	if k == nil || k.restarts {
		crashes = Crashes(hs.nRestarts, hs.seenN, info.NRestarts)
		hs.nRestarts, hs.seenN = info.NRestarts, true
	}
	for i := 0; i < crashes; i++ {
		h.recordRestart(inst, hs, apitype.RestartCrash, now)
	}
	n := h.inWindow(hs, now)
	pending := hs.pending
	h.mu.Unlock()
	if crashes > 0 {
		h.Log.Warn("instance crashed; systemd restarted it", "instance", inst.String(), "crashes", crashes, "restarts_in_window", n, "max_restarts", h.Settings.MaxRestarts)
	}
	if n > h.Settings.MaxRestarts {
		h.markFailed(ctx, inst, fmt.Sprintf("restarted %d times within restart_window %ds (max_restarts %d); last: %s",
			n, h.Settings.RestartWindow, h.Settings.MaxRestarts, DescribeExit(info.ActiveState, info.SubState, info.Result)))
		return
	}
	if pending {
		return
	}

	o := Observation{Active: info.ActiveState, Sub: info.SubState, Result: info.Result}
	if in.Svc != nil {
		o.Path = in.Svc.Health
	}
	if NeedsProbe(o.Active, o.Path) {
		o.Probed = true
		probe := func() { o.Code, o.ProbeErr = h.Router.Probe(ctx, inst, o.Path, h.probeTimeout(in), false) }
		probe()
		// No HTTP answer from an app that has just started: again, briefly.
		retry := func(err error) bool {
			return err != nil && !errors.Is(err, router.ErrAsleep) && !errors.Is(err, router.ErrNoInstance)
		}
		for until := time.Now().Add(FreshGrace); fresh && retry(o.ProbeErr) && time.Now().Before(until); probe() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		if errors.Is(o.ProbeErr, router.ErrAsleep) {
			o.Asleep, o.ProbeErr = true, nil
		}
	}
	state, detail := Judge(o)

	h.mu.Lock()
	if hs.LastCheck.After(now) {
		// A newer result (deploy's WaitHealthy) came in while this check
		// ran; what this one saw is older.
		h.mu.Unlock()
		return
	}
	restart := hs.Step(state, detail, now)
	detail = hs.Detail
	h.mu.Unlock()
	if restart {
		h.scheduleRestart(ctx, inst, detail)
	}
}

// scheduleRestart restarts an unhealthy instance after its backoff, or marks
// it failed when it has used up max_restarts within restart_window.
func (h *Monitor) scheduleRestart(ctx context.Context, inst units.Instance, why string) {
	now := time.Now()
	h.mu.Lock()
	hs := h.get(inst)
	n := h.inWindow(hs, now)
	if n >= h.Settings.MaxRestarts {
		h.mu.Unlock()
		h.markFailed(ctx, inst, fmt.Sprintf("unhealthy after %d restarts within restart_window %ds (max_restarts %d): %s",
			n, h.Settings.RestartWindow, h.Settings.MaxRestarts, why))
		return
	}
	d := Backoff(time.Duration(h.Settings.BackoffBaseMs)*time.Millisecond, time.Duration(h.Settings.BackoffMaxMs)*time.Millisecond, n)
	hs.pending, hs.nextRestart, hs.backoff = true, now.Add(d), d
	h.mu.Unlock()
	h.Log.Warn("instance unhealthy; restarting after backoff", "instance", inst.String(), "backoff", d, "restarts_in_window", n, "why", why)
	h.bg.Go(func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.restart(ctx, inst, why)
	})
}

func (h *Monitor) restart(ctx context.Context, inst units.Instance, why string) {
	done := func(state, detail string) {
		h.mu.Lock()
		hs := h.get(inst)
		hs.pending, hs.nextRestart = false, time.Time{}
		if state != "" {
			hs.State.State, hs.Detail, hs.Fails = state, detail, 0
		}
		h.mu.Unlock()
	}
	if err := h.Registry.Lock(inst); err != nil {
		// Someone restarts or removes it right now; that settles it.
		done("", "")
		return
	}
	defer h.Registry.Unlock(inst)
	if !h.Registry.Has(inst) {
		done("", "")
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	// The reaper may have frozen it during the backoff (probes are not
	// activity); systemd cannot stop a frozen service cleanly.
	h.ThawForStop(rctx, inst)
	err := h.Systemd.Restart(rctx, inst)
	cancel()
	now := time.Now()
	h.mu.Lock()
	hs := h.get(inst)
	h.recordRestart(inst, hs, apitype.RestartHealth, now)
	hs.seenN = false // NRestarts starts again from 0 after a restart by ten
	h.mu.Unlock()
	if err != nil {
		h.Log.Error("health restart failed", "instance", inst.String(), "err", err)
		done(apitype.HealthUnhealthy, fmt.Sprintf("restart after failed checks failed: %v", err))
		return
	}
	h.Log.Info("restarted unhealthy instance", "instance", inst.String(), "why", why)
	done(apitype.HealthUnknown, "restarted by ten after: "+why)
}

// markFailed stops the instance's service and keeps it stopped until
// `ten restart`: the router answers 503 for it without connecting to its
// socket (which stays, so the instance keeps its address).
func (h *Monitor) markFailed(ctx context.Context, inst units.Instance, reason string) {
	h.mu.Lock()
	hs := h.get(inst)
	if hs.failed != "" {
		h.mu.Unlock()
		return
	}
	hs.failed, hs.State.State, hs.Detail, hs.pending = reason, apitype.HealthFailed, reason, false
	h.mu.Unlock()
	h.Router.SetFailed(inst, reason)
	if err := h.Marks.SetFailedMark(inst.String(), reason); err != nil {
		h.Log.Error("save failed mark", "instance", inst.String(), "err", err)
	}
	h.Log.Error("instance failed; stopped until `ten restart`", "instance", inst.String(), "reason", reason)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h.ThawForStop(sctx, inst)
	if err := h.Systemd.Sleep(sctx, inst); err != nil {
		h.Log.Error("stop failed instance", "instance", inst.String(), "err", err)
	}
}

// Clear forgets the failed mark and restart history of inst (after
// `ten restart`, a new spawn, or removal).
func (h *Monitor) Clear(inst units.Instance) { h.clear(inst, false) }

// clear is Clear; keepTotal keeps the count of every restart (Restarts).
func (h *Monitor) clear(inst units.Instance, keepTotal bool) {
	h.mu.Lock()
	hs := h.m[inst]
	had := hs != nil && hs.failed != ""
	delete(h.m, inst)
	if keepTotal && hs != nil && hs.total > 0 {
		h.get(inst).total = hs.total
	}
	h.mu.Unlock()
	h.Router.SetFailed(inst, "")
	if had || h.Marks.FailedMark(inst.String()) != "" {
		if err := h.Marks.ForgetFailedMark(inst.String()); err != nil {
			h.Log.Error("save state", "instance", inst.String(), "err", err)
		}
	}
}

// ClearForRestart is Clear before a restart by hand (ten restart): the
// failed mark and the restart history that max_restarts judges go, the
// count of every restart (Restarts) stays.
func (h *Monitor) ClearForRestart(inst units.Instance) { h.clear(inst, true) }

// RestartedByHand counts a restart by hand that succeeded: in Restarts and
// ten_instance_restarts_total{reason="manual"}, as tenement counts its
// restarts, but not toward max_restarts. NRestarts is read afresh after it.
func (h *Monitor) RestartedByHand(inst units.Instance) {
	h.mu.Lock()
	hs := h.get(inst)
	hs.total++
	hs.seenN = false
	h.mu.Unlock()
	h.OnRestart(inst, apitype.RestartManual)
}

// RestoreFailed re-applies a failed mark kept in state.json (ten restarted).
func (h *Monitor) RestoreFailed(inst units.Instance) {
	reason := h.Marks.FailedMark(inst.String())
	if reason == "" {
		return
	}
	h.mu.Lock()
	hs := h.get(inst)
	hs.failed, hs.State.State, hs.Detail = reason, apitype.HealthFailed, reason
	h.mu.Unlock()
	h.Router.SetFailed(inst, reason)
}

// Failed is the failed mark of inst ("" when none).
func (h *Monitor) Failed(inst units.Instance) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hs := h.m[inst]; hs != nil {
		return hs.failed
	}
	return ""
}

// Of is inst's health state.
func (h *Monitor) Of(inst units.Instance) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hs := h.m[inst]; hs != nil {
		return hs.State.State
	}
	return apitype.HealthUnknown
}

// WaitHealthy polls inst until a health check passes (deploy). It may wake
// the instance: deploy starts it on purpose. Without `health`, the service
// must be active in systemd and answer GET / with any status below 500.
func (h *Monitor) WaitHealthy(ctx context.Context, in registry.Entry, timeout time.Duration) error {
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
		info, err := h.Systemd.Status(ctx, in.Inst)
		switch {
		case err != nil:
			last = err.Error()
		case info.ActiveState != "active":
			last = "service " + DescribeExit(info.ActiveState, info.SubState, info.Result)
		default:
			code, err := h.Router.Probe(ctx, in.Inst, path, min(left, h.probeTimeout(in)), true)
			switch {
			case err != nil:
				last = err.Error()
			case path == "/" && code < 500, code >= 200 && code < 400:
				// ps and health show it healthy as soon as deploy says so,
				// not after the next check.
				detail := "systemd: active"
				if in.Svc != nil && in.Svc.Health != "" {
					detail = fmt.Sprintf("GET %s: %d", path, code)
				}
				h.passed(in.Inst, detail)
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

// passed records a health check of inst that WaitHealthy saw pass, unless a
// failed mark or a scheduled restart says otherwise.
func (h *Monitor) passed(inst units.Instance, detail string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hs := h.get(inst); hs.failed == "" && !hs.pending {
		hs.Step(apitype.HealthHealthy, detail, time.Now())
	}
}

// Restarts returns how many times inst's service was restarted since this
// monitor first saw it: crashes systemd restarted and ten's restarts after
// failed health checks, and restarts by hand (ten restart), as
// ten_instance_restarts_total counts them. Sleeps and wakes are not
// restarts and do not reset it; a stop (Clear) does.
func (h *Monitor) Restarts(inst units.Instance) uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hs := h.m[inst]; hs != nil {
		return hs.total
	}
	return 0
}

// Fill fills the health fields of an answer of GET
// /api/instances/{id}/health from what the monitor knows of inst.
func (h *Monitor) Fill(out *apitype.Health, inst units.Instance) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	hs := h.get(inst)
	out.Health, out.Detail, out.ConsecutiveFailures = hs.State.State, hs.Detail, hs.Fails
	out.LastCheck, out.LastHealthy = hs.LastCheck, hs.LastHealthy
	out.RestartsInWindow = h.inWindow(hs, now)
	out.Restarts = append([]apitype.RestartEvent{}, hs.restarts...)
	out.NextRestart, out.Failed = hs.nextRestart, hs.failed
	out.BackoffMs = hs.backoff.Milliseconds()
}
