package server

import (
	"context"
	"fmt"
	"os"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/units"
)

// dataBindPrepare bind-mounts the instance's {data_dir}/{name}/{id} over
// its state directory when data_dir is set and it runs as a DynamicUser
// (units.DataBind): a transient mount unit the service requires, made
// after the storage quota's image is mounted there, so the bind shows it.
func (s *Server) dataBindPrepare(ctx context.Context, svc *config.Service, inst units.Instance) error {
	what, where, ok := units.DataBind(s.cfg, svc, inst)
	if !ok {
		return nil
	}
	// systemd insists on 0700 for the DynamicUser parent.
	if err := os.MkdirAll("/var/lib/private", 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	// The instance does not exist (spawn checked): a mount left there
	// (ten killed between spawn steps, another data_dir) is stale, and
	// Mount would keep an active one whatever it shows.
	if err := s.sd.Unmount(ctx, where); err != nil {
		return fmt.Errorf("data_dir: remove the old mount on %s: %w", where, err)
	}
	desc := fmt.Sprintf("ten instance %s data (data_dir %s)", inst, s.cfg.InstanceRoot())
	if err := s.sd.Mount(ctx, what, where, "none", "bind", desc); err != nil {
		return fmt.Errorf("data_dir: bind %s on %s: %w", what, where, err)
	}
	return nil
}

// dataBindRelease removes the bind mount when the instance is stopped for
// good; the data stays in data_dir.
func (s *Server) dataBindRelease(ctx context.Context, svc *config.Service, inst units.Instance) {
	if svc == nil {
		return
	}
	if _, where, ok := units.DataBind(s.cfg, svc, inst); ok {
		if err := s.sd.Unmount(ctx, where); err != nil {
			s.log.Warn("data_dir: unmount", "instance", inst.String(), "where", where, "err", err)
		}
	}
}
