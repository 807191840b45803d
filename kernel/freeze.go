package kernel

import (
	"context"
	"sync"

	"github.com/tenhq/ten/l4"
	"github.com/tenhq/ten/units"
)

// An instance that sleeps frozen keeps its L4 bindings; the dispatcher
// marks it frozen, counts the connections that arrive for it meanwhile and
// sends a wake event for them, which the server answers by thawing it (the
// connections wait in the socket's backlog). Without the dispatcher these
// calls do nothing.

// MarkFrozen marks the instance's L4 destinations frozen or thawed.
func (w *Wiring) MarkFrozen(inst units.Instance, frozen bool) {
	if w.disp == nil {
		return
	}
	if err := w.disp.SetFrozen(l4.Label(inst), frozen); err != nil {
		what := "mark thawed"
		if frozen {
			what = "mark frozen"
		}
		w.log.Warn("L4 dispatch: "+what, "instance", inst.String(), "err", err)
	}
}

// FrozenConnections returns, per instance marked frozen, the L4 connections
// that arrived for it since it was marked (nil without the dispatcher or
// when the marks cannot be read).
func (w *Wiring) FrozenConnections() map[units.Instance]uint64 {
	if w.disp == nil {
		return nil
	}
	fz, err := w.disp.Frozen()
	if err != nil {
		w.log.Warn("L4 dispatch: read frozen marks", "err", err)
		return nil
	}
	out := make(map[units.Instance]uint64, len(fz))
	for label, st := range fz {
		if inst, ok := w.instanceByLabel(label); ok {
			out[inst] = st.Connections
		}
	}
	return out
}

// Wakes calls wake, each call in a goroutine of its own, for every frozen
// instance an L4 connection arrives for, until ctx ends; it returns once
// every call has returned (wake may use w: it thaws). Without the
// dispatcher it returns at once.
func (w *Wiring) Wakes(ctx context.Context, wake func(units.Instance)) error {
	if w.disp == nil {
		return nil
	}
	var calls sync.WaitGroup
	defer calls.Wait()
	return w.disp.Wakes(ctx, func(label string) {
		if inst, ok := w.instanceByLabel(label); ok {
			calls.Go(func() { wake(inst) })
		}
	})
}

// instanceByLabel finds the instance of a dispatcher label: the instance's
// name, or (for a name too long for a label) one of the instances w knows.
func (w *Wiring) instanceByLabel(label string) (units.Instance, bool) {
	if inst, err := units.ParseInstance(label); err == nil && l4.Label(inst) == label {
		return inst, true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for inst := range w.inst {
		if l4.Label(inst) == label {
			return inst, true
		}
	}
	return units.Instance{}, false
}
