package ebpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// DefaultBPFFS is where the kernel's bpf filesystem is conventionally mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// Capability numbers from <linux/capability.h>.
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capBPF      = 39
)

// Supported reports whether this process can load and attach ten's BPF
// programs. A nil error means yes; otherwise the error joins one or more of
// ErrNoPrivilege, ErrKernelTooOld, ErrNoBPFFS and ErrNoCgroup2, each with
// the detail `ten doctor` shows. A bpf filesystem that is not mounted yet is
// not a reason: EnsureBPFFS mounts it.
func Supported() error {
	var errs []error
	if err := checkCapabilities(); err != nil {
		errs = append(errs, err)
	} else {
		// Probing loads tiny programs, which needs the privilege.
		errs = append(errs, checkKernel()...)
	}
	if err := checkFilesystem("bpf"); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrNoBPFFS, err))
	}
	if _, err := CgroupV2Root(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func checkCapabilities() error {
	f, err := os.Open("/proc/thread-self/status") // capabilities are per thread
	if err != nil {
		return fmt.Errorf("%w: read capabilities: %w", ErrNoPrivilege, err)
	}
	defer f.Close()
	var eff uint64
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &eff); err != nil {
				return fmt.Errorf("%w: parse CapEff %q: %w", ErrNoPrivilege, v, err)
			}
		}
	}
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	if has(capSysAdmin) || (has(capBPF) && has(capNetAdmin)) {
		return nil
	}
	return fmt.Errorf("%w (effective capabilities %#x)", ErrNoPrivilege, eff)
}

func checkKernel() []error {
	var errs []error
	for _, p := range []struct {
		name string
		t    ebpf.ProgramType
	}{
		{"cgroup_skb", ebpf.CGroupSKB},
		{"sock_ops", ebpf.SockOps},
		{"sk_lookup", ebpf.SkLookup},
	} {
		if err := features.HaveProgramType(p.t); err != nil {
			errs = append(errs, fmt.Errorf("%w: program type %s: %w", ErrKernelTooOld, p.name, err))
		}
	}
	for _, m := range []struct {
		name string
		t    ebpf.MapType
	}{
		{"percpu_cgroup_storage", ebpf.PerCPUCGroupStorage},
		{"lpm_trie", ebpf.LPMTrie},
		{"sockmap", ebpf.SockMap},
	} {
		if err := features.HaveMapType(m.t); err != nil {
			errs = append(errs, fmt.Errorf("%w: map type %s: %w", ErrKernelTooOld, m.name, err))
		}
	}
	return errs
}

// checkFilesystem reports whether the kernel knows the filesystem type.
func checkFilesystem(fstype string) error {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == fstype {
			return nil
		}
	}
	return fmt.Errorf("%s not in /proc/filesystems", fstype)
}

// CgroupV2Root returns the mount point of the cgroup v2 hierarchy:
// /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
func CgroupV2Root() (string, error) {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified", ErrNoCgroup2)
}

// SelfCgroupID returns the id (CgroupID) of this process's own cgroup v2
// cgroup, from the "0::" line of /proc/self/cgroup.
func SelfCgroupID() (uint64, error) {
	root, err := CgroupV2Root()
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			return CgroupID(root + rel)
		}
	}
	return 0, errors.New("/proc/self/cgroup has no cgroup v2 line")
}

// CgroupID returns the id of the cgroup v2 directory at path: its inode
// number, which is what bpf_skb_cgroup_id() and the kernel's cgroup storage
// use as the key.
func CgroupID(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("cgroup id of %s: not in a cgroup v2 hierarchy", path)
	}
	var s unix.Stat_t
	if err := unix.Stat(path, &s); err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", path, err)
	}
	return s.Ino, nil
}

// EnsureBPFFS mounts a bpf filesystem at path (normally DefaultBPFFS) unless
// one is mounted there already, creating the directory if needed. systemd
// mounts it on most hosts, but not in containers.
func EnsureBPFFS(path string) error {
	if ok, err := isBPFFS(path); err == nil && ok {
		return nil
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", path, err)
	}
	if err := unix.Mount("bpf", path, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", path, err)
	}
	return nil
}

func isBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return st.Type == unix.BPF_FS_MAGIC, nil
}
