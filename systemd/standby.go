package systemd

import (
	"context"
	"fmt"
	"sync"

	"github.com/tenhq/ten/units"
)

// StandbySubState is the sub-state ten reports for a service kept on
// standby (SetStandby): its ActiveState reads "inactive", as a sleeping
// instance's does.
const StandbySubState = "standby"

// standbySet holds the instances whose services ten started ahead of a
// request (SetStandby): systemd says "active" or "activating" of them (a
// waiter runs, the app does not), and the Manager reports them as
// sleeping until EndStandby.
type standbySet struct {
	mu sync.Mutex
	m  map[units.Instance]struct{}
}

func (s *standbySet) has(inst units.Instance) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[inst]
	return ok
}

// SetStandby puts the instance's service on standby: ten reports it as
// sleeping from now on, its service is stopped (the app ends; the stop job
// is waited for, so that no request reaches the app as it ends) and then
// started without a connection, so that its waiter waits (see
// units.Standby). The start job is not waited for: a Type=notify service
// stays activating while it stands by.
func (m *Manager) SetStandby(ctx context.Context, inst units.Instance) error {
	m.AdoptStandby(inst)
	if err := m.Sleep(ctx, inst); err != nil {
		m.EndStandby(inst)
		return fmt.Errorf("standby: %w", err)
	}
	_ = m.conn.ResetFailedUnitContext(ctx, inst.ServiceUnit())
	if _, err := m.conn.StartUnitContext(ctx, inst.ServiceUnit(), "replace", nil); err != nil {
		m.EndStandby(inst)
		return fmt.Errorf("standby %s: %w", inst.ServiceUnit(), err)
	}
	return nil
}

// AdoptStandby reports the instance as on standby without restarting its
// service: ten found its standby waiter running when it started.
func (m *Manager) AdoptStandby(inst units.Instance) {
	m.standby.mu.Lock()
	if m.standby.m == nil {
		m.standby.m = map[units.Instance]struct{}{}
	}
	m.standby.m[inst] = struct{}{}
	m.standby.mu.Unlock()
}

// EndStandby stops reporting the instance as sleeping (its app is being
// started, or its service stopped) and reports whether it was on standby.
func (m *Manager) EndStandby(inst units.Instance) bool {
	m.standby.mu.Lock()
	defer m.standby.mu.Unlock()
	_, ok := m.standby.m[inst]
	delete(m.standby.m, inst)
	return ok
}

// InStandby reports whether the instance is on standby (SetStandby).
func (m *Manager) InStandby(inst units.Instance) bool { return m.standby.has(inst) }

// standbyView is st as ten reports it for inst's service: asleep while it
// stands by, unless it failed.
func (m *Manager) standbyView(inst units.Instance, st UnitState) UnitState {
	if st.ActiveState != "failed" && m.standby.has(inst) {
		st.ActiveState, st.SubState = "inactive", StandbySubState
	}
	return st
}

// TrueState is what systemd last said of the instance's service, standby
// or not (State reports a service on standby as sleeping).
func (m *Manager) TrueState(inst units.Instance) (UnitState, bool) {
	return m.cache.get(inst.ServiceUnit())
}

// ExecStartArgv reads the command line of the service's ExecStart (its
// first command).
func (m *Manager) ExecStartArgv(ctx context.Context, inst units.Instance) ([]string, error) {
	p, err := m.conn.GetServicePropertyContext(ctx, inst.ServiceUnit(), "ExecStart")
	if err != nil {
		return nil, fmt.Errorf("read %s ExecStart: %w", inst.ServiceUnit(), err)
	}
	cmds, ok := p.Value.Value().([][]any)
	if !ok || len(cmds) == 0 || len(cmds[0]) < 2 {
		return nil, fmt.Errorf("read %s ExecStart: unexpected %s", inst.ServiceUnit(), p.Value.Signature())
	}
	argv, _ := cmds[0][1].([]string)
	return argv, nil
}
