// Package health is the pure state machine behind ten's health checks: how
// one check's observation becomes a health state, when failed checks call
// for a restart, how crashes are counted from systemd's NRestarts, how
// restarts are counted within restart_window and how long ten waits before
// a restart. Those functions do no I/O and are tested on their own; the
// Monitor (monitor.go) is the loop around them: it reads systemd, probes
// through the router, restarts and marks failed, through small interfaces.
//
// With `health = "/path"` ten sends GET /path through the instance's own
// socket while the service runs (a check never wakes a sleeping instance).
// One failed check makes the instance degraded; UnhealthyAfter failures in a
// row make it unhealthy, and ten restarts it after Backoff. Without
// `health`, systemd's state is the whole judgement.
package health

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tenhq/ten/apitype"
)

// UnhealthyAfter is how many checks in a row must fail before ten restarts
// an instance: one slow answer during a GC pause or a deploy should not cost
// a restart, three (30 s at the default interval) should.
const UnhealthyAfter = 3

// Observation is what one check saw.
type Observation struct {
	// Active, Sub and Result are the service's ActiveState, SubState and
	// Result in systemd.
	Active, Sub, Result string
	// Path is the service's health path ("" when it has none).
	Path string
	// Probed is true when the loop sent GET Path (NeedsProbe said so); then
	// Code is its status, or ProbeErr why it failed, or Asleep that the
	// instance was found asleep (the probe does not wake it).
	Probed   bool
	Code     int
	ProbeErr error
	Asleep   bool
}

// NeedsProbe reports whether a check should send GET path: only while the
// service runs, and only when it has a health path.
func NeedsProbe(active, path string) bool {
	return path != "" && (active == "active" || active == "reloading")
}

// Judge turns an observation into a health state and its detail. A failed
// probe is HealthDegraded here; Step decides when it becomes unhealthy.
func Judge(o Observation) (state, detail string) {
	switch {
	case o.Active == "active" || o.Active == "reloading":
		if o.Path == "" || !o.Probed {
			return apitype.HealthHealthy, "systemd: active"
		}
		switch {
		case o.Asleep:
			return apitype.HealthSleeping, ""
		case o.ProbeErr != nil:
			return apitype.HealthDegraded, fmt.Sprintf("GET %s: %v", o.Path, o.ProbeErr)
		case o.Code < 200 || o.Code >= 400:
			return apitype.HealthDegraded, fmt.Sprintf("GET %s: %d %s", o.Path, o.Code, http.StatusText(o.Code))
		default:
			return apitype.HealthHealthy, fmt.Sprintf("GET %s: %d", o.Path, o.Code)
		}
	case o.Active == "activating" && o.Sub == "auto-restart":
		return apitype.HealthUnhealthy, "exited (" + o.Result + "); systemd restarts it"
	case o.Active == "activating":
		return apitype.HealthUnknown, "starting"
	case o.Active == "failed":
		// The next request starts it again by socket activation.
		return apitype.HealthUnhealthy, "service failed: " + o.Result
	default:
		return apitype.HealthSleeping, ""
	}
}

// State is one instance's health as the checks have found it.
type State struct {
	State       string
	Detail      string
	Fails       int // failed checks in a row
	LastCheck   time.Time
	LastHealthy time.Time
}

// Step applies a judged check at now, and reports whether the instance
// must be restarted (UnhealthyAfter failed checks in a row).
func (s *State) Step(state, detail string, now time.Time) (restart bool) {
	s.LastCheck = now
	switch state {
	case apitype.HealthHealthy:
		s.Fails = 0
		s.LastHealthy = now
	case apitype.HealthDegraded:
		s.Fails++
		if s.Fails >= UnhealthyAfter {
			state = apitype.HealthUnhealthy
			restart = true
		}
		detail = fmt.Sprintf("%s (%d failed check(s) in a row)", detail, s.Fails)
	case apitype.HealthSleeping:
		s.Fails = 0
	}
	s.State, s.Detail = state, detail
	return restart
}

// Crashes is how many times systemd restarted the service since the last
// check, from its NRestarts then (prev; seen false: no earlier reading) and
// now (n). NRestarts goes back to 0 when the service is started other than
// by Restart= (a wake, a restart by ten); a smaller value counts from 0.
func Crashes(prev uint32, seen bool, n uint32) int {
	switch {
	case !seen:
		return 0
	case n >= prev:
		return int(n - prev)
	default:
		return int(n)
	}
}

// InWindow drops the restarts older than window before now and returns the
// rest (oldest first).
func InWindow(restarts []apitype.RestartEvent, window time.Duration, now time.Time) []apitype.RestartEvent {
	cut := now.Add(-window)
	i := 0
	for i < len(restarts) && restarts[i].At.Before(cut) {
		i++
	}
	return restarts[i:]
}

// Backoff is the pause before the restart that follows n restarts within
// the window: base doubled n times, at most max.
func Backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// DescribeExit says how a service ended, for a failed mark or a deploy.
func DescribeExit(active, sub, result string) string {
	if result != "" && result != "success" {
		return "service " + result
	}
	return "service " + active + "/" + sub
}
