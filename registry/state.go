package registry

import "github.com/tenhq/ten/apitype"

// Facts are what State judges an instance by.
type Facts struct {
	// Failed is ten's failed mark (max_restarts used up), "" when none.
	Failed string
	// WakeFailed is why the last wake got no answer, "" when none.
	WakeFailed string
	// ServiceActive, ServiceResult and SocketActive are systemd's
	// ActiveState and Result of the service and the socket unit's
	// ActiveState.
	ServiceActive, ServiceResult, SocketActive string
	// SocketUnit names the socket unit, for the detail.
	SocketUnit string
	// Frozen is true while ten holds the service frozen.
	Frozen bool
	// Health is the health book's state (apitype.Health*).
	Health string
}

// State is the state `ten ps`, the metrics and health report for an
// instance (apitype.State*), with a detail for a failed one, and the health
// to show (a sleeping instance is not checked, so it is shown as sleeping
// unless it is marked failed).
func State(f Facts) (state, detail, health string) {
	switch {
	case f.Failed != "":
		state, detail = apitype.StateFailed, f.Failed
	case f.WakeFailed != "":
		state, detail = apitype.StateFailed, f.WakeFailed
	case f.SocketActive == "failed":
		state, detail = apitype.StateFailed, "socket unit failed: "+f.SocketUnit
	case f.ServiceActive == "failed":
		state, detail = apitype.StateFailed, "service "+f.ServiceResult
	case (f.ServiceActive == "active" || f.ServiceActive == "reloading") && f.Frozen:
		state = apitype.StateFrozen
	case f.ServiceActive == "active" || f.ServiceActive == "reloading":
		state = apitype.StateRunning
	case f.ServiceActive == "activating":
		state = apitype.StateStarting
	default:
		state = apitype.StateSleeping
	}
	health = f.Health
	if health == "" {
		health = apitype.HealthUnknown
	}
	if state == apitype.StateSleeping && f.Failed == "" {
		health = apitype.HealthSleeping
	}
	return state, detail, health
}
