package server

// Isolation and limits that ten enforces or reports beyond unit properties
// (issue 5): gVisor's runsc for isolation = "sandbox", storage_quota_mb as
// a per-instance ext4 image mounted over the state directory, and OOM kills
// and the last exit of an instance for ps, the API and metrics.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/isolation"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// quotaImage is the file system image that holds an instance's state when
// storage_quota_mb is set. It lives in ten's data dir, not under the state
// directory it is mounted on.
func (s *Server) quotaImage(inst units.Instance) string {
	return filepath.Join(s.cfg.DataDirAbs(), "storage", inst.Service, inst.ID+".img")
}

// quotaPrepare makes (once) an ext4 image of storage_quota_mb and mounts it,
// as a transient mount unit, on the directory systemd uses as the
// instance's StateDirectory; the service has RequiresMountsFor= on it. A
// write past the quota then fails with ENOSPC inside the instance. The
// mount unit outlives sleep, wake and restarts of ten; `ten stop` removes it.
func (s *Server) quotaPrepare(ctx context.Context, svc *config.Service, inst units.Instance) error {
	if svc.StorageQuotaMB <= 0 {
		return nil
	}
	img := s.quotaImage(inst)
	if err := makeImage(img, int64(svc.StorageQuotaMB)<<20, inst); err != nil {
		return fmt.Errorf("storage_quota_mb: %w", err)
	}
	where := units.DataMountPoint(s.cfg, svc, inst)
	if units.CustomDataDir(s.cfg) {
		if err := os.MkdirAll(where, 0o700); err != nil {
			return fmt.Errorf("storage_quota_mb: %w", err)
		}
	} else if svc.Isolation == config.IsolationNamespace {
		// systemd insists on 0700 for the DynamicUser parent.
		if err := os.MkdirAll("/var/lib/private", 0o700); err != nil {
			return fmt.Errorf("storage_quota_mb: %w", err)
		}
	}
	desc := fmt.Sprintf("ten instance %s storage (storage_quota_mb = %d)", inst, svc.StorageQuotaMB)
	if err := s.sd.Mount(ctx, img, where, "ext4", "loop,nosuid,nodev", desc); err != nil {
		return fmt.Errorf("storage_quota_mb: mount %s on %s: %w (the image needs a loop device: /dev/loop-control)", img, where, err)
	}
	return nil
}

func makeImage(img string, size int64, inst units.Instance) error {
	if st, err := os.Stat(img); err == nil {
		if st.Size() < size {
			// storage_quota_mb grew: grow the image and its file system
			// (it is not mounted: ten mounts it only after this).
			if err := os.Truncate(img, size); err != nil {
				return err
			}
			if out, err := exec.Command("resize2fs", img).CombinedOutput(); err != nil {
				return fmt.Errorf("resize2fs %s: %v: %s", img, err, strings.TrimSpace(string(out)))
			}
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(img), 0o700); err != nil {
		return err
	}
	tmp := img + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size) // sparse: the quota is a ceiling, not a reservation
	f.Close()
	if err != nil {
		os.Remove(tmp)
		return err
	}
	// -m 0: no blocks reserved for root, so the tenant gets the whole quota.
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", "-L", "ten-"+inst.Service, tmp).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mkfs.ext4 %s: %v: %s", tmp, err, strings.TrimSpace(string(out)))
	}
	return os.Rename(tmp, img)
}

// quotaRelease unmounts the instance's image when it is stopped for good.
// The image stays (like a StateDirectory does) unless storage_persist =
// false, so that spawning the instance again brings its files back.
func (s *Server) quotaRelease(ctx context.Context, svc *config.Service, inst units.Instance) {
	img := s.quotaImage(inst)
	if _, err := os.Stat(img); err != nil {
		return
	}
	wheres := []string{filepath.Join("/var/lib/private/tenement", inst.Service, inst.ID), filepath.Join(units.StateRoot, inst.Service, inst.ID)}
	if svc != nil {
		wheres = []string{units.DataMountPoint(s.cfg, svc, inst)}
	}
	for _, w := range wheres {
		if err := s.sd.Unmount(ctx, w); err != nil {
			s.log.Warn("storage quota: unmount", "instance", inst.String(), "where", w, "err", err)
		}
	}
	if svc != nil && svc.StoragePersist != nil && !*svc.StoragePersist {
		os.Remove(img)
	}
}

// storageUse is what the instance's quota file system holds and allows.
func storageUse(cfg *config.Config, svc *config.Service, inst units.Instance) (used, quota uint64) {
	if svc == nil || svc.StorageQuotaMB <= 0 {
		return 0, 0
	}
	return isolation.StorageUse(units.DataMountPoint(cfg, svc, inst)), uint64(svc.StorageQuotaMB) << 20
}

// noteServiceState is called for every state change of a service (follow):
// a started service gets an OOM watch on its new cgroup, a crashed one has
// its exit recorded before systemd starts it again.
func (s *Server) noteServiceState(ctx context.Context, c systemd.Change) {
	switch {
	case c.ActiveState == "active":
		go s.watchOOM(ctx, c.Instance)
	case c.SubState == "auto-restart" || c.ActiveState == "failed":
		go s.recordExit(c.Instance)
	}
}

// watchOOM starts the OOM watch of inst's present cgroup (package
// isolation); it ends with ctx, the cgroup, or the instance.
func (s *Server) watchOOM(ctx context.Context, inst units.Instance) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	info, err := s.sd.Info(rctx, inst)
	cancel()
	if err != nil || info.ControlGroup == "" || !s.reg.Has(inst) {
		return
	}
	s.oom.Watch(ctx, inst, info.ControlGroup)
}

func (s *Server) recordExit(inst units.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// One read: ExecMain* and Result are reset when systemd starts it again.
	e, err := s.sd.LastExit(ctx, inst.ServiceUnit())
	if err != nil {
		return
	}
	s.log.Debug("instance exit", "instance", inst.String(), "code", e.Code, "status", e.Status, "result", e.Result)
	// The OOM event reaches ten before the exit does; give a late one a moment.
	time.Sleep(20 * time.Millisecond)
	s.oom.Exit(inst, e)
}

// isolationRow fills the isolation columns of a ps row. It only reads: OOM
// watches start with the service (follow) or at adoption, never from ps.
func (s *Server) isolationRow(in registry.Entry, r *Row) {
	r.OOMKills, r.LastExit = s.oom.Get(in.Inst)
	r.StorageBytes, r.StorageQuotaBytes = storageUse(s.cfg, in.Svc, in.Inst)
}

// isolationCollector exports OOM kills and quota use at scrape time.
type isolationCollector struct {
	s                *Server
	oom, used, quota *prometheus.Desc
}

func newIsolationCollector(s *Server) *isolationCollector {
	return &isolationCollector{s: s,
		oom: prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", "oom_kills_total"),
			"Processes of the instance the kernel's OOM killer ended at memory_limit_mb, counted while ten ran.", []string{"instance"}, nil),
		used: prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", "storage_used_bytes"),
			"Bytes used on the instance's storage_quota_mb file system.", []string{"instance"}, nil),
		quota: prometheus.NewDesc(prometheus.BuildFQName("ten", "instance", "storage_quota_bytes"),
			"The instance's storage_quota_mb in bytes.", []string{"instance"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *isolationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.oom
	ch <- c.used
	ch <- c.quota
}

// Collect implements prometheus.Collector.
func (c *isolationCollector) Collect(ch chan<- prometheus.Metric) {
	ins := c.s.reg.Snapshot()
	for _, in := range ins {
		name := in.Inst.String()
		kills, _ := c.s.oom.Get(in.Inst)
		ch <- prometheus.MustNewConstMetric(c.oom, prometheus.CounterValue, float64(kills), name)
		if used, quota := storageUse(c.s.cfg, in.Svc, in.Inst); quota > 0 {
			ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(used), name)
			ch <- prometheus.MustNewConstMetric(c.quota, prometheus.GaugeValue, float64(quota), name)
		}
	}
}
