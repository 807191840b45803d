package server

import "github.com/tenhq/ten/units"

// l4AppSocket has the kernel wiring steer an L4 service's connections to
// its app's own socket on PORT, for an app ten can reach that way
// (units.AppListens; see kernel.Wiring.AppSocket).
func (s *Server) l4AppSocket(inst units.Instance) {
	e, ok := s.reg.Get(inst)
	if !ok || e.Svc == nil || !units.AppListens(e.Svc) {
		return
	}
	s.kern.AppSocket(inst, e.Port)
}
