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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// runscPath finds gVisor's runsc for units.Options.Runsc ("" when missing:
// units.Build then refuses isolation = "sandbox" with how to install it).
func runscPath() string {
	for _, p := range []string{"/usr/bin/runsc", "/usr/local/bin/runsc"} {
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath("runsc"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}

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
	quota = uint64(svc.StorageQuotaMB) << 20
	var st unix.Statfs_t
	where := units.DataMountPoint(cfg, svc, inst)
	if err := unix.Statfs(where, &st); err != nil || st.Type != unix.EXT4_SUPER_MAGIC {
		return 0, quota
	}
	return (st.Blocks - st.Bfree) * uint64(st.Bsize), quota
}

// oomBook remembers, per instance, the OOM kills and how the app last
// ended. It must watch as it happens: systemd makes a new cgroup for every
// start (an automatic restart too) and resets ExecMainStatus and Result
// when the service starts again, so nothing is left to read afterwards.
type oomBook struct {
	mu       sync.Mutex
	kills    map[units.Instance]uint64
	pending  map[units.Instance]bool   // an OOM kill not yet matched to an exit
	watching map[units.Instance]string // cgroup watched for OOM events
	last     map[units.Instance]string // last crash, as lastExit says it
	lastAt   map[units.Instance]uint64 // its ExecMainExitTimestampMonotonic
}

func (b *oomBook) init() {
	if b.kills == nil {
		b.kills, b.pending, b.watching, b.last, b.lastAt = map[units.Instance]uint64{}, map[units.Instance]bool{}, map[units.Instance]string{}, map[units.Instance]string{}, map[units.Instance]uint64{}
	}
}

func (b *oomBook) get(inst units.Instance) (kills uint64, last string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	return b.kills[inst], b.last[inst]
}

func (b *oomBook) forget(inst units.Instance) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	delete(b.kills, inst)
	delete(b.pending, inst)
	delete(b.last, inst)
	delete(b.watching, inst)
}

// noteServiceState is called for every state change of a service (follow):
// a started service gets an OOM watch on its new cgroup, a crashed one has
// its exit recorded before systemd starts it again.
func (s *Server) noteServiceState(c systemd.Change) {
	switch {
	case c.ActiveState == "active":
		go s.watchOOM(c.Instance, "")
	case c.SubState == "auto-restart" || c.ActiveState == "failed":
		go s.recordExit(c.Instance)
	}
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
	b := &s.oom
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	if e.At != 0 && b.lastAt[inst] == e.At {
		return // another signal about the same exit
	}
	b.lastAt[inst] = e.At
	oom := b.pending[inst]
	delete(b.pending, inst)
	if e.Result == "oom-kill" && !oom {
		b.kills[inst]++ // cgroup v2: systemd saw it in memory.events
	}
	if oom {
		// In the instance's own journal (journalctl -u shows entries that
		// root logs with OBJECT_SYSTEMD_UNIT), where systemd's own line
		// on cgroup v1 says only "killed, status=9/KILL".
		msg := fmt.Sprintf("%s: the app was killed by the kernel's OOM killer at memory_limit_mb (MemoryMax); systemd restarts it (Restart=)", inst.ServiceUnit())
		if err := journal.Send(msg, journal.PriWarning, map[string]string{"OBJECT_SYSTEMD_UNIT": inst.ServiceUnit(), "TEN_INSTANCE": inst.String(), "TEN_EVENT": "oom-kill"}); err != nil {
			s.log.Debug("journal", "err", err)
		}
	}
	if d := lastExit(e.Result, e, oom); d != "" {
		b.last[inst] = d
		s.log.Warn("instance app ended", "instance", inst.String(), "exit", d, "result", e.Result)
	}
}

// watchOOM follows the OOM events of the instance's memory cgroup on cgroup
// v1 (cgroup.event_control + eventfd on memory.oom_control) until the
// cgroup goes away. On cgroup v2 systemd reports OOM kills itself (Result
// oom-kill).
func (s *Server) watchOOM(inst units.Instance, cgroup string) {
	if cgroup == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := s.sd.Info(ctx, inst)
		cancel()
		if err != nil || info.ControlGroup == "" {
			return
		}
		cgroup = info.ControlGroup
	}
	dir := filepath.Join("/sys/fs/cgroup/memory", cgroup)
	b := &s.oom
	b.mu.Lock()
	b.init()
	if b.watching[inst] == cgroup {
		b.mu.Unlock()
		return
	}
	b.watching[inst] = cgroup
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		if b.watching[inst] == cgroup {
			delete(b.watching, inst)
		}
		b.mu.Unlock()
	}()
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return // not cgroup v1, or no memory cgroup for this service
	}
	defer ctl.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return
	}
	defer unix.Close(efd)
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0); err != nil {
		s.log.Debug("oom watch", "instance", inst.String(), "err", err)
		return
	}
	buf := make([]byte, 8)
	ino := dirInode(dir)
	for {
		if _, err := unix.Read(efd, buf); err != nil && err != unix.EINTR {
			return
		}
		// The eventfd also fires when the cgroup is removed, and by then a
		// new cgroup of the restarted service may sit at the same path:
		// count only events of the cgroup this watch registered on.
		if ino == 0 || dirInode(dir) != ino {
			return
		}
		b.mu.Lock()
		b.kills[inst]++
		b.pending[inst] = true
		b.mu.Unlock()
		s.log.Warn("instance hit memory_limit_mb: the kernel's OOM killer ran in its cgroup", "instance", inst.String(), "cgroup", cgroup)
	}
}

// lastExit describes how the app ended: "oom-kill" when the kernel's OOM
// killer ended it (systemd's Result on cgroup v2; on v1 a SIGKILL, or the
// shim's exit 137, right after an OOM event in its cgroup), else "exit N",
// "signal NAME", "core dump NAME".
func lastExit(result string, e systemd.Exit, oom bool) string {
	if result == "oom-kill" {
		return "oom-kill"
	}
	killed := (e.Code == 2 || e.Code == 3) && e.Status == int32(syscall.SIGKILL) || e.Code == 1 && e.Status == 128+int32(syscall.SIGKILL)
	if killed && oom {
		return "oom-kill"
	}
	switch e.Code {
	case 1:
		return "exit " + strconv.Itoa(int(e.Status))
	case 2:
		return "signal " + unix.SignalName(syscall.Signal(e.Status))
	case 3:
		return "core dump " + unix.SignalName(syscall.Signal(e.Status))
	}
	if result != "" && result != "success" {
		return result
	}
	return ""
}

// isolationRow fills the isolation columns of a ps row.
func (s *Server) isolationRow(ctx context.Context, in *instance, cgroup, activeState string, r *Row) {
	if activeState == "active" {
		go s.watchOOM(in.inst, cgroup) // adopted, or started before ten watched
	}
	r.OOMKills, r.LastExit = s.oom.get(in.inst)
	r.StorageBytes, r.StorageQuotaBytes = storageUse(s.cfg, in.svc, in.inst)
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
	c.s.mu.Lock()
	ins := make([]*instance, 0, len(c.s.instances))
	for _, in := range c.s.instances {
		ins = append(ins, in)
	}
	c.s.mu.Unlock()
	for _, in := range ins {
		name := in.inst.String()
		kills, _ := c.s.oom.get(in.inst)
		ch <- prometheus.MustNewConstMetric(c.oom, prometheus.CounterValue, float64(kills), name)
		if used, quota := storageUse(c.s.cfg, in.svc, in.inst); quota > 0 {
			ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(used), name)
			ch <- prometheus.MustNewConstMetric(c.quota, prometheus.GaugeValue, float64(quota), name)
		}
	}
}

// dirInode returns the inode number of dir, 0 when it is gone.
func dirInode(dir string) uint64 {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return 0
	}
	return st.Ino
}
