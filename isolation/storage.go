package isolation

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/units"
)

// Mounter makes and removes transient mount units (systemd.Manager does).
type Mounter interface {
	// Mount mounts what on where as a transient mount unit.
	Mount(ctx context.Context, what, where, fstype, options, description string) error
	// Unmount stops the mount unit on where; nothing mounted there is no
	// error.
	Unmount(ctx context.Context, where string) error
}

// Storage prepares and releases what an instance's state directory is
// made of beyond StateDirectory=: the ext4 image of storage_quota_mb and
// the bind mount of data_dir.
type Storage struct {
	cfg *config.Config
	m   Mounter
	log *slog.Logger
}

// NewStorage returns the Storage of cfg's instances, mounting through m.
func NewStorage(cfg *config.Config, m Mounter, log *slog.Logger) *Storage {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Storage{cfg: cfg, m: m, log: log}
}

// QuotaImage is the file system image that holds an instance's state when
// storage_quota_mb is set. It lives in ten's data dir, not under the state
// directory it is mounted on.
func (st *Storage) QuotaImage(inst units.Instance) string {
	return filepath.Join(st.cfg.DataDirAbs(), "storage", inst.Service, inst.ID+".img")
}

// PrepareQuota makes (once) an ext4 image of storage_quota_mb and mounts it,
// as a transient mount unit, on the directory systemd uses as the
// instance's StateDirectory; the service has RequiresMountsFor= on it. A
// write past the quota then fails with ENOSPC inside the instance. The
// mount unit outlives sleep, wake and restarts of ten; ReleaseQuota removes
// it.
func (st *Storage) PrepareQuota(ctx context.Context, svc *config.Service, inst units.Instance) error {
	if svc.StorageQuotaMB <= 0 {
		return nil
	}
	img := st.QuotaImage(inst)
	if err := makeImage(img, int64(svc.StorageQuotaMB)<<20, inst); err != nil {
		return fmt.Errorf("storage_quota_mb: %w", err)
	}
	where := units.DataMountPoint(st.cfg, svc, inst)
	if units.CustomDataDir(st.cfg) {
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
	if err := st.m.Mount(ctx, img, where, "ext4", "loop,nosuid,nodev", desc); err != nil {
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

// ReleaseQuota unmounts the instance's image when it is stopped for good
// (svc nil: its service is no longer declared). The image stays (like a
// StateDirectory does) unless storage_persist = false, so that spawning the
// instance again brings its files back.
func (st *Storage) ReleaseQuota(ctx context.Context, svc *config.Service, inst units.Instance) {
	img := st.QuotaImage(inst)
	if _, err := os.Stat(img); err != nil {
		return
	}
	wheres := []string{filepath.Join("/var/lib/private/tenement", inst.Service, inst.ID), filepath.Join(units.StateRoot, inst.Service, inst.ID)}
	if svc != nil {
		wheres = []string{units.DataMountPoint(st.cfg, svc, inst)}
	}
	for _, w := range wheres {
		if err := st.m.Unmount(ctx, w); err != nil {
			st.log.Warn("storage quota: unmount", "instance", inst.String(), "where", w, "err", err)
		}
	}
	if svc != nil && svc.StoragePersist != nil && !*svc.StoragePersist {
		os.Remove(img)
	}
}

// Discard removes what is left of an instance's data once it is stopped
// for good (ten stop, DELETE /api/instances/{id}), when its service has
// storage_persist = false: the data lives as long as the instance, and
// tenement's stop removes {data_dir}/{name}/{id} itself. The app's stop
// already wiped the files (the unit's ExecStopPost); this removes the
// directory, systemd's state directory behind it and the symlink systemd
// makes to it, after the mounts there were released. Nothing is removed
// when svc is nil (the service is no longer declared, so whether its data
// persists is not known) or when the data persists. It does not follow
// symlinks the app left.
func (st *Storage) Discard(svc *config.Service, inst units.Instance) {
	if svc == nil || svc.StoragePersist == nil || *svc.StoragePersist {
		return
	}
	for _, dir := range []string{
		units.DataMountPoint(st.cfg, svc, inst),
		units.StateMountPoint(&config.Service{Isolation: config.IsolationNamespace}, inst),
		units.StateMountPoint(&config.Service{Isolation: config.IsolationProcess}, inst),
	} {
		if _, err := os.Lstat(dir); err != nil {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			st.log.Warn("storage_persist = false: remove the data directory", "instance", inst.String(), "dir", dir, "err", err)
		}
	}
}

// QuotaUse is what the instance's quota file system holds and allows
// (0, 0 without storage_quota_mb).
func QuotaUse(cfg *config.Config, svc *config.Service, inst units.Instance) (used, quota uint64) {
	if svc == nil || svc.StorageQuotaMB <= 0 {
		return 0, 0
	}
	return StorageUse(units.DataMountPoint(cfg, svc, inst)), uint64(svc.StorageQuotaMB) << 20
}

// PrepareDataBind bind-mounts the instance's {data_dir}/{name}/{id} over
// its state directory when data_dir is set and it runs as a DynamicUser
// (units.DataBind): a transient mount unit the service requires, made
// after the storage quota's image is mounted there, so the bind shows it.
func (st *Storage) PrepareDataBind(ctx context.Context, svc *config.Service, inst units.Instance) error {
	what, where, ok := units.DataBind(st.cfg, svc, inst)
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
	if err := st.m.Unmount(ctx, where); err != nil {
		return fmt.Errorf("data_dir: remove the old mount on %s: %w", where, err)
	}
	desc := fmt.Sprintf("ten instance %s data (data_dir %s)", inst, st.cfg.InstanceRoot())
	if err := st.m.Mount(ctx, what, where, "none", "bind", desc); err != nil {
		return fmt.Errorf("data_dir: bind %s on %s: %w", what, where, err)
	}
	return nil
}

// ReleaseDataBind removes the bind mount when the instance is stopped for
// good; the data stays in data_dir. The instance may have been spawned
// under an earlier config than svc says (svc nil: its service is no longer
// declared; or its isolation changed since): with data_dir set, the mount
// point a namespace instance's bind has is released whatever svc says
// (nothing mounted there is no error); without data_dir, a bind that an
// earlier config with data_dir made is released too.
func (st *Storage) ReleaseDataBind(ctx context.Context, svc *config.Service, inst units.Instance) {
	where := units.StateMountPoint(&config.Service{Isolation: config.IsolationNamespace}, inst)
	if !units.CustomDataDir(st.cfg) && !mountRoot(where) {
		// No data_dir now, and no bind left from a config that had one
		// (made under data_dir, then data_dir removed and ten restarted).
		return
	}
	if err := st.m.Unmount(ctx, where); err != nil {
		st.log.Warn("data_dir: unmount", "instance", inst.String(), "where", where, "err", err)
	}
}

// StateDir guesses where the state directory of an instance the config no
// longer declares really is: under /var/lib/private when systemd made it for
// a DynamicUser service, else /var/lib/tenement/NAME/ID.
func StateDir(inst units.Instance) string {
	rel := filepath.Join("tenement", inst.Service, inst.ID)
	private := filepath.Join("/var/lib/private", rel)
	if st, err := os.Lstat(private); err == nil && st.IsDir() {
		return private
	}
	return filepath.Join(units.StateRoot, inst.Service, inst.ID)
}

// DirUsage sums a tree without following symlinks: the bytes of its files,
// the disk blocks of everything in it, and how many files. It reads a
// directory a batch of entries at a time, so a directory of millions of
// files does not cost their names' memory at once.
func DirUsage(ctx context.Context, root string) (size, disk, files int64, err error) {
	info, err := os.Lstat(root)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, 0, nil // never made
	}
	if err != nil {
		return 0, 0, 0, err
	}
	err = walkUsage(ctx, root, info, &size, &disk, &files)
	return size, disk, files, err
}

// AdoptStateDir readies the state directory of an instance about to run as
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
func AdoptStateDir(cfg *config.Config, svc *config.Service, inst units.Instance) error {
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

// Measure is GET /api/instances/{id}/storage: the use of inst's state
// directory (StateDirectory=tenement/NAME/ID, or its data_dir mount point;
// svc may be nil when the config no longer declares the service). A
// directory that does not exist yet (the instance never ran) counts as
// empty.
func Measure(ctx context.Context, cfg *config.Config, svc *config.Service, inst units.Instance) (apitype.Storage, error) {
	out := apitype.Storage{Instance: inst.String(), Path: StateDir(inst)}
	if svc != nil {
		out.Path = units.DataMountPoint(cfg, svc, inst)
		if svc.StorageQuotaMB > 0 {
			out.QuotaBytes = int64(svc.StorageQuotaMB) << 20
		}
	}
	size, disk, files, err := DirUsage(ctx, out.Path)
	if err != nil {
		return apitype.Storage{}, fmt.Errorf("storage %s: %w", inst, err)
	}
	out.Bytes, out.DiskBytes, out.Files = size, disk, files
	out.UsedBytes = out.Bytes
	if out.QuotaBytes > 0 {
		out.UsageRatio = float64(out.Bytes) / float64(out.QuotaBytes)
		pct := out.UsageRatio * 100
		out.UsagePercent = &pct
	}
	return out, nil
}
