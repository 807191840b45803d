package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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

// adoptStateDir readies the state directory of an instance about to run as
// a DynamicUser (isolation = "namespace"). A run of the same instance with
// isolation = "process" leaves a real directory at
// /var/lib/tenement/{name}/{id}; systemd moves it to the private side
// (/var/lib/private/...) only when that side is missing, and otherwise
// fails the start ("Failed to set up special execution directory: File
// exists", status 238/STATE_DIRECTORY), which the private side always is
// once ten has mounted a data_dir bind or a quota image there. So: an empty
// leftover is removed; one holding the instance's data is moved to the
// private side as systemd would, replacing an empty one there; files there
// while the data lives in data_dir are not the instance's data, and the
// operator decides.
func adoptStateDir(cfg *config.Config, svc *config.Service, inst units.Instance) error {
	if svc.Isolation != config.IsolationNamespace {
		return nil
	}
	pub := filepath.Join(units.StateRoot, inst.Service, inst.ID)
	st, err := os.Lstat(pub)
	if err != nil || st.Mode()&os.ModeSymlink != 0 {
		return nil
	}
	if !st.IsDir() {
		return fmt.Errorf("state directory %s of %s is not a directory: remove it", pub, inst)
	}
	if err := os.Remove(pub); err == nil {
		return nil
	}
	priv := units.StateMountPoint(svc, inst)
	if units.CustomDataDir(cfg) {
		return fmt.Errorf("state directory %s of %s holds files from a run with isolation = \"process\" (its data is in data_dir, %s): move what it needs there, remove %s, and spawn again", pub, inst, cfg.InstanceRoot(), pub)
	}
	if err := os.Remove(priv); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("state directory of %s: both %s (from a run with isolation = \"process\") and %s (from one with isolation = \"namespace\") hold files: keep one, remove the other, and spawn again", inst, pub, priv)
	}
	// systemd insists on 0700 for the DynamicUser parent.
	if err := os.MkdirAll("/var/lib/private", 0o700); err != nil {
		return fmt.Errorf("state directory of %s: %w", inst, err)
	}
	if err := os.MkdirAll(filepath.Dir(priv), 0o755); err != nil {
		return fmt.Errorf("state directory of %s: %w", inst, err)
	}
	if err := os.Rename(pub, priv); err != nil {
		return fmt.Errorf("state directory of %s: move %s to %s for its DynamicUser: %w", inst, pub, priv, err)
	}
	return nil
}
