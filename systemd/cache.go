package systemd

import (
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/units"
)

// UnitState is what systemd last said of one of ten's units: from a
// listing (ListUnitsByPatterns) or from its PropertiesChanged signals.
type UnitState struct {
	ActiveState string
	SubState    string
	// ActiveSince and InactiveSince are zero until a signal carried them.
	ActiveSince   time.Time
	InactiveSince time.Time
}

// stateCache holds the last known state of every unit of ten's, keyed by
// unit name. It is fed by Watch (signals) and List (a full listing), so
// reading an instance's state costs systemd nothing.
type stateCache struct {
	mu sync.Mutex // mu guards m
	m  map[string]UnitState
}

func newStateCache() *stateCache { return &stateCache{m: map[string]UnitState{}} }

// replace makes the cache what a full listing says: units not listed are
// gone. A listing carries no timestamps; those of a unit whose state did
// not change are kept.
func (c *stateCache) replace(us []Unit) {
	m := make(map[string]UnitState, len(us))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range us {
		name := unitName(u.Instance, u.Kind)
		st := UnitState{ActiveState: u.ActiveState, SubState: u.SubState}
		if old, ok := c.m[name]; ok && old.ActiveState == u.ActiveState {
			st.ActiveSince, st.InactiveSince = old.ActiveSince, old.InactiveSince
		}
		m[name] = st
	}
	c.m = m
}

// differ returns the units of a full listing whose state the cache has
// otherwise, or not at all.
func (c *stateCache) differ(us []Unit) []Unit {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Unit
	for _, u := range us {
		if old, ok := c.m[unitName(u.Instance, u.Kind)]; !ok || old.ActiveState != u.ActiveState || old.SubState != u.SubState {
			out = append(out, u)
		}
	}
	return out
}

// apply merges one PropertiesChanged signal of the Unit interface.
func (c *stateCache) apply(unit string, changed map[string]dbus.Variant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m[unit]
	if v, ok := changed["ActiveState"].Value().(string); ok {
		st.ActiveState = v
	}
	if v, ok := changed["SubState"].Value().(string); ok {
		st.SubState = v
	}
	if v, ok := changed["ActiveEnterTimestamp"].Value().(uint64); ok && v > 0 {
		st.ActiveSince = time.UnixMicro(int64(v))
	}
	if v, ok := changed["InactiveEnterTimestamp"].Value().(uint64); ok && v > 0 {
		st.InactiveSince = time.UnixMicro(int64(v))
	}
	if st.ActiveState == "" {
		return // a property of no interest, of a unit not seen yet
	}
	c.m[unit] = st
}

func (c *stateCache) set(unit string, st UnitState) {
	c.mu.Lock()
	c.m[unit] = st
	c.mu.Unlock()
}

func (c *stateCache) forget(units ...string) {
	c.mu.Lock()
	for _, u := range units {
		delete(c.m, u)
	}
	c.mu.Unlock()
}

func (c *stateCache) get(unit string) (UnitState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[unit]
	return st, ok
}

func unitName(inst units.Instance, kind string) string {
	if kind == units.KindSocket {
		return inst.SocketUnit()
	}
	return inst.ServiceUnit()
}

// State returns the cached state of the instance's service and socket
// unit; ok is false when the cache has neither (not listed, not signalled:
// read it with Info). It makes no D-Bus call.
func (m *Manager) State(inst units.Instance) (service, socket UnitState, ok bool) {
	service, ok1 := m.cache.get(inst.ServiceUnit())
	socket, ok2 := m.cache.get(inst.SocketUnit())
	return m.standbyView(inst, service), socket, ok1 && ok2
}
