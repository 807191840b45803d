package health

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tenhq/ten/apitype"
)

func TestBackoffDoublesToMax(t *testing.T) {
	base, max := 500*time.Millisecond, 4*time.Second
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	for n, w := range want {
		if got := Backoff(base, max, n); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, w)
		}
	}
	if got := Backoff(time.Second, time.Minute, 100); got != time.Minute {
		t.Errorf("Backoff after many restarts = %s", got)
	}
}

func TestJudge(t *testing.T) {
	for _, c := range []struct {
		o      Observation
		state  string
		detail string
	}{
		{Observation{Active: "active"}, apitype.HealthHealthy, "systemd: active"},
		{Observation{Active: "active", Path: "/h", Probed: true, Code: 204}, apitype.HealthHealthy, "GET /h: 204"},
		{Observation{Active: "active", Path: "/h", Probed: true, Code: 500}, apitype.HealthDegraded, "GET /h: 500 Internal Server Error"},
		{Observation{Active: "active", Path: "/h", Probed: true, ProbeErr: errors.New("timeout")}, apitype.HealthDegraded, "GET /h: timeout"},
		{Observation{Active: "active", Path: "/h", Probed: true, Asleep: true}, apitype.HealthSleeping, ""},
		{Observation{Active: "activating", Sub: "auto-restart", Result: "exit-code"}, apitype.HealthUnhealthy, "exited (exit-code); systemd restarts it"},
		{Observation{Active: "activating", Sub: "start"}, apitype.HealthUnknown, "starting"},
		{Observation{Active: "failed", Result: "signal"}, apitype.HealthUnhealthy, "service failed: signal"},
		{Observation{Active: "inactive"}, apitype.HealthSleeping, ""},
	} {
		s, d := Judge(c.o)
		if s != c.state || d != c.detail {
			t.Errorf("Judge(%+v) = %q %q, want %q %q", c.o, s, d, c.state, c.detail)
		}
	}
	if NeedsProbe("inactive", "/h") || NeedsProbe("active", "") || !NeedsProbe("reloading", "/h") {
		t.Error("NeedsProbe: a check must probe only a running service with a health path")
	}
}

// UnhealthyAfter failed checks in a row ask for a restart; a passing check
// or a sleep in between starts the count again.
func TestStepRestartsAfterFailuresInARow(t *testing.T) {
	var s State
	now := time.Unix(1000, 0)
	for i := 1; i < UnhealthyAfter; i++ {
		if s.Step(apitype.HealthDegraded, "GET /h: 500", now) {
			t.Fatalf("restart after %d failed checks", i)
		}
		if s.State != apitype.HealthDegraded || !strings.Contains(s.Detail, "failed check(s) in a row") {
			t.Fatalf("after %d: %+v", i, s)
		}
	}
	s.Step(apitype.HealthHealthy, "GET /h: 200", now)
	if s.Fails != 0 || s.LastHealthy != now {
		t.Fatalf("a passing check did not reset: %+v", s)
	}
	for i := 1; i <= UnhealthyAfter; i++ {
		if got := s.Step(apitype.HealthDegraded, "GET /h: 500", now); got != (i == UnhealthyAfter) {
			t.Fatalf("check %d: restart %v", i, got)
		}
	}
	if s.State != apitype.HealthUnhealthy {
		t.Fatalf("state %q, want unhealthy", s.State)
	}
}

func TestCrashesAndWindow(t *testing.T) {
	if Crashes(0, false, 5) != 0 || Crashes(2, true, 5) != 3 || Crashes(5, true, 1) != 1 {
		t.Error("Crashes")
	}
	now := time.Unix(1000, 0)
	rs := []apitype.RestartEvent{{At: now.Add(-2 * time.Minute)}, {At: now.Add(-30 * time.Second)}, {At: now}}
	if got := InWindow(rs, time.Minute, now); len(got) != 2 {
		t.Errorf("InWindow kept %d, want 2", len(got))
	}
}
