package server

import (
	"context"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/units"
)

// How ten judges health, and the loop that checks, restarts and marks
// failed: package health (health.Monitor).

// Health reports inst's health.
func (s *Server) Health(ctx context.Context, inst units.Instance) (apitype.Health, error) {
	row, err := s.Row(ctx, inst)
	if err != nil {
		return apitype.Health{}, err
	}
	in, have := s.reg.Get(inst)
	h := apitype.Health{Instance: inst.String(), State: row.State, Check: "systemd state",
		MaxRestarts: s.cfg.Settings.MaxRestarts, RestartWindowSec: s.cfg.Settings.RestartWindow}
	if have && in.Svc != nil && in.Svc.Health != "" {
		h.Check = "GET " + in.Svc.Health
	}
	s.health.Fill(&h, inst)
	// A sleeping instance is not checked; say so rather than show a stale result.
	if row.State == apitype.StateSleeping && h.Failed == "" {
		h.Health = apitype.HealthSleeping
	}
	return h, nil
}
