package server

import (
	"fmt"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/statefile"
	"github.com/tenhq/ten/units"
)

// Route moves From's share of the service's traffic to To and gives From
// weight 0, in one step (router.Swap): no request sees both or neither in
// the rotation, and a repeated route changes nothing more. The weights are
// saved.
func (s *Server) Route(req apitype.RouteRequest) (apitype.RouteResult, error) {
	svc := req.Service
	if svc == "" {
		svc = req.Process
	}
	from, to := units.Instance{Service: svc, ID: req.From}, units.Instance{Service: svc, ID: req.To}
	for _, i := range []units.Instance{from, to} {
		if _, err := units.ParseInstance(i.String()); err != nil {
			return apitype.RouteResult{}, fmt.Errorf("route: %w: %v", ErrBadInput, err)
		}
	}
	if s.fleet != nil {
		return apitype.RouteResult{}, fmt.Errorf("route %s: %w: not available in a fleet yet (its weights are shared through etcd: set them with `ten weight %s:%s N` and `ten weight %s:%s 0`)", svc, ErrBadInput, svc, req.To, svc, req.From)
	}
	if req.From == req.To {
		return apitype.RouteResult{}, fmt.Errorf("route %s: %w: --from and --to are both %q", svc, ErrBadInput, req.From)
	}
	for _, i := range []units.Instance{from, to} {
		if _, ok := s.router.Stat(i); !ok {
			return apitype.RouteResult{}, fmt.Errorf("route: %s: %w", i, ErrNotFound)
		}
	}
	// The swap and the save happen under the state lock, so two routes
	// cannot interleave their saves.
	var w int
	var ok bool
	err := s.state.Update(func(p *statefile.Persisted) {
		w, ok = s.router.Swap(from, to)
		if ok {
			p.Weights[from.String()] = 0
			p.Weights[to.String()] = w
		}
	})
	if !ok {
		return apitype.RouteResult{}, fmt.Errorf("route: %s or %s: %w", from, to, ErrNotFound)
	}
	if err != nil {
		return apitype.RouteResult{}, fmt.Errorf("route %s to %s: weights swapped but not saved: %w", from, to, err)
	}
	s.log.Info("route", "from", from.String(), "to", to.String(), "weight", w)
	return apitype.RouteResult{Service: svc, From: from.String(), To: to.String(), Weight: w,
		FromInstance: from.String(), ToInstance: to.String(), FromWeight: 0, ToWeight: w}, nil
}
