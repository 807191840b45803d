package server

import (
	"context"
	"sync"
)

// serviceSlices orders the removal of a service's slice (tenement-SVC.slice,
// which holds its instances' slices) with spawns of the same service.
// systemd stops every unit in a slice it stops, so a spawn whose units
// landed in the slice while its stop job ran would be stopped with it:
// spawns hold their service's gate shared from before their units are made
// until the instance is registered, and the removal holds it alone.
type serviceSlices struct {
	mu    sync.Mutex // mu guards the following
	gates map[string]*sync.RWMutex
}

// gate returns the service's lock. The map holds at most one entry per
// service the config declares: spawns of other names are refused before
// they get here.
func (g *serviceSlices) gate(service string) *sync.RWMutex {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gates == nil {
		g.gates = map[string]*sync.RWMutex{}
	}
	l := g.gates[service]
	if l == nil {
		l = new(sync.RWMutex)
		g.gates[service] = l
	}
	return l
}

// removeServiceSlice stops the service's slice once its last instance is
// gone, so that an emptied service leaves no active unit behind. A spawn of
// the service in flight finishes first (and keeps the slice).
func (s *Server) removeServiceSlice(ctx context.Context, service string) {
	if s.reg.ServiceCount(service) > 0 {
		return
	}
	g := s.slices.gate(service)
	g.Lock()
	defer g.Unlock()
	if s.reg.ServiceCount(service) > 0 {
		return // a spawn registered an instance while this waited
	}
	removed, err := s.sd.RemoveServiceSlice(ctx, service)
	if err != nil {
		s.log.Warn("remove service slice", "service", service, "err", err)
		return
	}
	if removed {
		s.log.Debug("removed service slice", "service", service)
	}
}
