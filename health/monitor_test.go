package health

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// fakes recording what the monitor does; the logic under test is the
// monitor's, the systemd and router behind it are the system tests'.
type fakeSystemd struct {
	mu               sync.Mutex
	info             systemd.Info
	restarts, sleeps int
	reads            int // Status calls
}

func (f *fakeSystemd) Status(context.Context, units.Instance) (systemd.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.info, nil
}
func (f *fakeSystemd) State(units.Instance) (systemd.UnitState, systemd.UnitState, bool) {
	return systemd.UnitState{}, systemd.UnitState{}, false
}
func (f *fakeSystemd) Restart(context.Context, units.Instance) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarts++
	return nil
}
func (f *fakeSystemd) Sleep(context.Context, units.Instance) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps++
	return nil
}

type fakeRouter struct {
	mu     sync.Mutex
	code   int
	err    error
	failed map[units.Instance]string
	// first are the errors of the next probes, before err.
	first  []error
	probes int
}

func (f *fakeRouter) Probe(context.Context, units.Instance, string, time.Duration, bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	if len(f.first) > 0 {
		err := f.first[0]
		f.first = f.first[1:]
		return 0, err
	}
	return f.code, f.err
}
func (f *fakeRouter) SetFailed(inst units.Instance, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed[inst] = reason
}

type marks map[string]string

func (m marks) FailedMark(name string) string           { return m[name] }
func (m marks) SetFailedMark(name, reason string) error { m[name] = reason; return nil }
func (m marks) ForgetFailedMark(name string) error      { delete(m, name); return nil }

func newTestMonitor(t *testing.T, svc *config.Service) (*Monitor, *fakeSystemd, *fakeRouter, marks, units.Instance) {
	t.Helper()
	inst := units.Instance{Service: "api", ID: "a"}
	reg := registry.New()
	reg.Add(registry.Entry{Inst: inst, Svc: svc})
	sd := &fakeSystemd{info: systemd.Info{ActiveState: "active", SubState: "running"}}
	r := &fakeRouter{code: 200, failed: map[units.Instance]string{}}
	mk := marks{}
	settings := &config.Settings{MaxRestarts: 2, RestartWindow: 60, HealthCheckInterval: 10, BackoffBaseMs: 1, BackoffMaxMs: 2}
	h := NewMonitor(MonitorOptions{Settings: settings, Systemd: sd, Router: r, Registry: reg, Marks: mk})
	return h, sd, r, mk, inst
}

// Crashes systemd restarted count toward max_restarts: one more than it
// marks the instance failed, stops it and keeps the mark; Clear undoes it.
func TestMonitorCrashLoopFails(t *testing.T) {
	h, sd, r, mk, inst := newTestMonitor(t, &config.Service{RequestTimeout: 5})
	ctx := context.Background()
	h.checkOne(ctx, inst) // NRestarts 0: the baseline
	if h.Of(inst) != apitype.HealthHealthy {
		t.Fatalf("health of an active service without a path = %s", h.Of(inst))
	}
	sd.info.NRestarts = 3
	h.checkOne(ctx, inst)
	reason := h.Failed(inst)
	if reason == "" || !strings.Contains(reason, "restarted 3 times") {
		t.Fatalf("failed mark after 3 crashes (max_restarts 2) = %q", reason)
	}
	if h.Of(inst) != apitype.HealthFailed || mk[inst.String()] != reason || r.failed[inst] != reason || sd.sleeps != 1 {
		t.Errorf("failed: health %s, mark %q, router %q, sleeps %d", h.Of(inst), mk[inst.String()], r.failed[inst], sd.sleeps)
	}
	var out apitype.Health
	h.Fill(&out, inst)
	if out.RestartsInWindow != 3 || len(out.Restarts) != 3 || out.Restarts[0].Reason != apitype.RestartCrash {
		t.Errorf("Fill = %+v, want 3 crash restarts", out)
	}
	// A failed instance is not checked again.
	sd.info.NRestarts = 9
	h.checkOne(ctx, inst)
	if sd.sleeps != 1 {
		t.Error("a failed instance was stopped again")
	}
	h.Clear(inst)
	if h.Failed(inst) != "" || mk[inst.String()] != "" || r.failed[inst] != "" {
		t.Errorf("after Clear: mark %q, router %q", mk[inst.String()], r.failed[inst])
	}
	// Restored from state.json after a restart of ten.
	mk[inst.String()] = "kept"
	h.RestoreFailed(inst)
	if h.Failed(inst) != "kept" || r.failed[inst] != "kept" {
		t.Errorf("RestoreFailed: %q %q", h.Failed(inst), r.failed[inst])
	}
}

// UnhealthyAfter failed probes in a row restart the instance after the
// backoff; the restart counts in the window.
func TestMonitorUnhealthyRestarts(t *testing.T) {
	h, sd, r, _, inst := newTestMonitor(t, &config.Service{Health: "/health", RequestTimeout: 5})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.code, r.err = 0, errors.New("connection refused")
	for range UnhealthyAfter {
		h.checkOne(ctx, inst)
	}
	h.bg.Wait() // the scheduled restart (backoff 1 ms)
	if sd.restarts != 1 {
		t.Fatalf("restarts after %d failed probes = %d, want 1", UnhealthyAfter, sd.restarts)
	}
	var out apitype.Health
	h.Fill(&out, inst)
	if out.RestartsInWindow != 1 || out.Restarts[0].Reason != apitype.RestartHealth || out.Health != apitype.HealthUnknown {
		t.Errorf("after the restart: %+v", out)
	}
	r.code, r.err = 200, nil
	h.checkOne(ctx, inst)
	if h.Of(inst) != apitype.HealthHealthy {
		t.Errorf("health after a passing probe = %s", h.Of(inst))
	}
}

// The check right after a start (CheckNow: spawn, restart by hand) tries a
// probe that got no HTTP answer again for a moment: an app that serves one
// connection at a time (a shell loop around nc) is not degraded by ten's
// own readiness connection. The periodic check does not wait, and an HTTP
// status is the app's answer at once.
func TestCheckNowFreshGrace(t *testing.T) {
	h, _, r, _, inst := newTestMonitor(t, &config.Service{Health: "/health", RequestTimeout: 5})
	ctx := context.Background()
	reset := errors.New("read: connection reset by peer")
	r.first = []error{reset, reset}
	h.CheckNow(ctx, inst)
	if got := h.Of(inst); got != apitype.HealthHealthy || r.probes != 3 {
		t.Fatalf("CheckNow after two resets: health %s after %d probes, want healthy after 3", got, r.probes)
	}
	// The check systemd's report of a fresh start asks for (it may run
	// before CheckNow, which then does nothing) gives the same grace.
	r.first, r.probes = []error{reset}, 0
	h.CheckChange(inst, "active", "running", true)
	k := <-h.kick
	h.check(ctx, k.inst, k.known, false)
	if got := h.Of(inst); got != apitype.HealthHealthy || r.probes != 2 {
		t.Fatalf("check of a fresh start after a reset: health %s after %d probes, want healthy after 2", got, r.probes)
	}
	r.first, r.probes = []error{reset}, 0
	h.checkOne(ctx, inst)
	if got := h.Of(inst); got != apitype.HealthDegraded || r.probes != 1 {
		t.Fatalf("periodic check after a reset: health %s after %d probes, want degraded after 1", got, r.probes)
	}
	h.checkOne(ctx, inst) // healthy again
	r.code, r.probes = 500, 0
	h.CheckNow(ctx, inst)
	if got := h.Of(inst); got != apitype.HealthDegraded || r.probes != 1 {
		t.Fatalf("CheckNow answered 500: health %s after %d probes, want degraded after 1", got, r.probes)
	}
}

// A passed WaitHealthy (deploy) is the instance's health at once: a check
// that was running when the service was still starting (and so saw it
// "starting") must not leave ps saying unknown after deploy said healthy.
func TestWaitHealthyRecordsHealthy(t *testing.T) {
	h, sd, _, _, inst := newTestMonitor(t, &config.Service{Health: "/health", RequestTimeout: 5})
	sd.info = systemd.Info{ActiveState: "activating", SubState: "start"}
	h.checkOne(context.Background(), inst)
	if got := h.Of(inst); got != apitype.HealthUnknown {
		t.Fatalf("health while starting = %s", got)
	}
	sd.info = systemd.Info{ActiveState: "active", SubState: "running"}
	in, _ := h.Registry.Get(inst)
	if err := h.WaitHealthy(context.Background(), in, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var out apitype.Health
	h.Fill(&out, inst)
	if out.Health != apitype.HealthHealthy || out.Detail != "GET /health: 200" || out.LastHealthy.IsZero() {
		t.Errorf("after WaitHealthy: %+v", out)
	}
	// A failed mark is not overwritten.
	h.markFailed(context.Background(), inst, "crash loop")
	if err := h.WaitHealthy(context.Background(), in, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := h.Of(inst); got != apitype.HealthFailed {
		t.Errorf("failed instance after WaitHealthy = %s", got)
	}
}

// A check after a change takes what it needs from the change: a fresh
// start and a stop read nothing from systemd, and count no crash; a start
// that was not fresh (a reload, a restart after a crash) reads NRestarts,
// and its crashes count.
func TestMonitorCheckChangeReads(t *testing.T) {
	h, sd, _, _, inst := newTestMonitor(t, &config.Service{RequestTimeout: 5})
	ctx := context.Background()
	h.checkOne(ctx, inst) // the baseline: NRestarts 0
	sd.info.NRestarts = 1 // systemd's, unread: a crash after the baseline
	check := func(state, sub string, fresh bool) {
		t.Helper()
		h.CheckChange(inst, state, sub, fresh)
		r := <-h.kick // what Run would take and run
		h.check(ctx, r.inst, r.known, false)
	}
	check("inactive", "dead", false)
	if sd.reads != 1 || h.Of(inst) != apitype.HealthSleeping {
		t.Fatalf("after a stop: %d reads (want 1, the baseline's), health %s", sd.reads, h.Of(inst))
	}
	check("active", "running", true)
	if sd.reads != 1 || h.Of(inst) != apitype.HealthHealthy {
		t.Fatalf("after a fresh start: %d reads (want 1), health %s", sd.reads, h.Of(inst))
	}
	if st := h.m[inst]; st.total != 0 || st.nRestarts != 0 {
		t.Fatalf("a fresh start counted %d restarts, NRestarts %d", st.total, st.nRestarts)
	}
	check("active", "running", false)
	if sd.reads != 2 {
		t.Fatalf("a start that was not fresh: %d reads, want 2", sd.reads)
	}
	if st := h.m[inst]; st.total != 1 {
		t.Fatalf("a start after a crash (NRestarts 1) counted %d restarts, want 1", st.total)
	}
}

// A restart by hand clears the failed mark and the window max_restarts
// judges, and counts as a restart (as tenement's restart does): Restarts
// goes on from the crashes before it, the metric hears reason "manual".
func TestMonitorRestartByHandCounts(t *testing.T) {
	h, sd, r, mk, inst := newTestMonitor(t, &config.Service{RequestTimeout: 5})
	var heard []string
	h.OnRestart = func(_ units.Instance, reason string) { heard = append(heard, reason) }
	ctx := context.Background()
	h.checkOne(ctx, inst)
	sd.info.NRestarts = 3
	h.checkOne(ctx, inst)
	if h.Failed(inst) == "" || h.Restarts(inst) != 3 {
		t.Fatalf("after 3 crashes: failed %q, restarts %d", h.Failed(inst), h.Restarts(inst))
	}
	h.ClearForRestart(inst)
	sd.info.NRestarts = 0 // systemd starts counting again
	h.RestartedByHand(inst)
	if h.Failed(inst) != "" || mk[inst.String()] != "" || r.failed[inst] != "" {
		t.Errorf("after a restart by hand: mark %q, router %q", mk[inst.String()], r.failed[inst])
	}
	if got := h.Restarts(inst); got != 4 {
		t.Errorf("Restarts after 3 crashes and a restart by hand = %d, want 4", got)
	}
	var out apitype.Health
	h.Fill(&out, inst)
	if out.RestartsInWindow != 0 {
		t.Errorf("restarts in the window after a restart by hand = %d, want 0 (it does not count toward max_restarts)", out.RestartsInWindow)
	}
	h.checkOne(ctx, inst) // NRestarts read afresh: 0 is no crash
	if h.Restarts(inst) != 4 || h.Of(inst) != apitype.HealthHealthy {
		t.Errorf("after the next check: restarts %d, health %s", h.Restarts(inst), h.Of(inst))
	}
	if strings.Join(heard, ",") != "crash,crash,crash,manual" {
		t.Errorf("restarts the metric heard: %v", heard)
	}
}
