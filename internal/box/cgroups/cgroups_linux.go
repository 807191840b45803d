package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Hierarchy is one mounted cgroup hierarchy and where the current process
// sits in it.
type Hierarchy struct {
	// mount is the mount point, e.g. /sys/fs/cgroup/memory.
	mount string
	// dir is the current process's cgroup directory in it.
	dir string
	// cpuset marks the v1 cpuset hierarchy, whose new cgroups need
	// cpuset.cpus and cpuset.mems before they can hold a process.
	cpuset bool
}

// FindHierarchies reads the cgroup mounts of this mount namespace and the
// process's place in each.
func FindHierarchies() ([]Hierarchy, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	return ParseHierarchies(string(mi), string(cg))
}

// ParseHierarchies matches cgroup mounts in mountinfo with the lines of
// /proc/self/cgroup: v1 mounts by their controller set (or name=), the v2
// mount by the "0::" line.
func ParseHierarchies(mountinfo, cgroup string) ([]Hierarchy, error) {
	paths := map[string]string{} // sorted controller set ("" for v2) -> path
	for line := range strings.Lines(cgroup) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			paths[""] = f[2]
			continue
		}
		paths[controllerKey(strings.Split(f[1], ","))] = f[2]
	}
	var hs []Hierarchy
	seen := map[string]bool{}
	for line := range strings.Lines(mountinfo) {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(strings.TrimSpace(line), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		root, mnt := unescapeMount(pf[3]), unescapeMount(pf[4])
		var key string
		switch qf[0] {
		case "cgroup2":
			key = ""
		case "cgroup":
			var ctrls []string
			for o := range strings.SplitSeq(qf[2], ",") {
				if o == "rw" || o == "ro" || o == "clone_children" || o == "noprefix" || o == "xattr" ||
					strings.HasPrefix(o, "release_agent=") {
					continue
				}
				ctrls = append(ctrls, o)
			}
			key = controllerKey(ctrls)
		default:
			continue
		}
		p, ok := paths[key]
		if !ok || seen[key] {
			continue
		}
		rel, ok := strings.CutPrefix(p, root)
		if !ok {
			// The process sits outside this mount's root: it cannot be placed
			// through this mount.
			continue
		}
		seen[key] = true
		hs = append(hs, Hierarchy{
			mount:  mnt,
			dir:    filepath.Join(mnt, rel),
			cpuset: slices.Contains(strings.Split(key, ","), "cpuset"),
		})
	}
	if len(hs) == 0 {
		return nil, errors.New("cgroups: no cgroup hierarchy mounted")
	}
	return hs, nil
}

// Mount is one cgroup file system mounted under /sys/fs/cgroup.
type Mount struct {
	Rel    string // path under /sys/fs/cgroup, e.g. "memory" or "cpu,cpuacct"
	FSType string // cgroup or cgroup2
	Data   string // mount options naming the hierarchy, e.g. "memory", "name=systemd"
}

// ParseMounts lists the cgroup mounts under /sys/fs/cgroup, in mount
// order.
func ParseMounts(mountinfo string) []Mount {
	var out []Mount
	for line := range strings.Lines(mountinfo) {
		pre, post, ok := strings.Cut(strings.TrimSpace(line), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || (qf[0] != "cgroup" && qf[0] != "cgroup2") {
			continue
		}
		rel, ok := strings.CutPrefix(unescapeMount(pf[4]), "/sys/fs/cgroup/")
		if !ok || rel == "" || strings.Contains(rel, "/") {
			continue
		}
		m := Mount{Rel: rel, FSType: qf[0]}
		if qf[0] == "cgroup" {
			var opts []string
			for o := range strings.SplitSeq(qf[2], ",") {
				if o != "rw" && o != "ro" {
					opts = append(opts, o)
				}
			}
			m.Data = strings.Join(opts, ",")
		}
		out = append(out, m)
	}
	return out
}

func controllerKey(ctrls []string) string {
	c := slices.Clone(ctrls)
	sort.Strings(c)
	return strings.Join(c, ",")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ExecCgroup is the leaf cgroup, under the box's root cgroup, that commands
// run by Box.Command are put in. Inside the box it is /ten-box-exec; a leaf, so that it never conflicts with the
// cgroup v2 rule against processes in inner nodes. It is made on demand:
// systemd removes empty cgroups it does not know when it starts.
const ExecCgroup = "ten-box-exec"

// Cgroup is the box's root cgroup in one hierarchy.
type Cgroup struct {
	Dir    string
	Cpuset bool
}

// Make creates the box's root cgroup in every hierarchy. On error it
// removes what it created.
func Make(hs []Hierarchy, id string) (cgs []Cgroup, err error) {
	defer func() {
		if err != nil {
			_ = Remove(cgs, time.Second)
			cgs = nil
		}
	}()
	for _, h := range hs {
		cg := Cgroup{Dir: filepath.Join(h.dir, id), Cpuset: h.cpuset}
		if err := makeCgroup(cg.Dir, cg.Cpuset); err != nil {
			return cgs, err
		}
		cgs = append(cgs, cg)
	}
	return cgs, nil
}

// makeCgroup creates one cgroup; it is fine if it exists.
func makeCgroup(dir string, cpuset bool) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return fmt.Errorf("cgroups: %w", err)
	}
	if cpuset {
		return copyCpuset(dir)
	}
	return nil
}

// JoinExec moves process pid into the exec leaf of every box cgroup,
// creating it when missing.
func JoinExec(cgs []Cgroup, pid int) error {
	for _, cg := range cgs {
		leaf := filepath.Join(cg.Dir, ExecCgroup)
		var err error
		// systemd, starting, may remove the empty leaf between mkdir and
		// join: the write then fails with ENOENT, or ENODEV if the cgroup
		// is being removed.
		for try := range 20 {
			if err = makeCgroup(leaf, cg.Cpuset); err != nil {
				return err
			}
			err = Join([]string{leaf}, pid)
			if err == nil || !(errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV)) {
				break
			}
			time.Sleep(time.Duration(try) * time.Millisecond)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// copyCpuset gives a new v1 cpuset cgroup its parent's CPUs and memory nodes.
func copyCpuset(dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		v, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), v, 0); err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
	}
	return nil
}

// Join moves process pid into every one of dirs.
func Join(dirs []string, pid int) error {
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("cgroups: join %s: %w", d, err)
		}
	}
	return nil
}

// Remove kills whatever still runs in the trees under roots and
// removes them, deepest directories first, retrying until timeout while
// dying processes leave.
func Remove(cgs []Cgroup, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var errs []error
		for _, cg := range cgs {
			if err := removeTree(cg.Dir); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups: remove: %w", errors.Join(errs...))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func removeTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Lexical walk order lists parents before children; reverse it.
	var errs []error
	for _, d := range slices.Backward(dirs) {
		for _, pid := range cgroupPIDs(d) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// cgroupPIDs lists the processes in one cgroup (not its children).
func cgroupPIDs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if n, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil && n > 0 {
			pids = append(pids, n)
		}
	}
	return pids
}

// cgroupPrefix starts the name of every box's root cgroup:
// "ten-box.NAME.PIDNS.PID.N", with the owner's PID namespace (inode) and PID
// and a counter, so that a later Boot can tell a leftover of a dead owner
// from a live box of another process.
const cgroupPrefix = "ten-box."

// BoxID names a new box's root cgroup.
func BoxID(name string, n int64) string {
	return fmt.Sprintf("%s%s.%d.%d.%d", cgroupPrefix, name, pidNS(), os.Getpid(), n)
}

// pidNS returns the inode of this process's PID namespace.
func pidNS() uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/pid", &st); err != nil {
		return 0
	}
	return st.Ino
}

// RemoveStale removes box cgroups left by owners that no longer exist (a test
// binary killed with SIGKILL cannot run Close). Owners in another PID
// namespace are left alone: their PIDs mean nothing here.
func RemoveStale(hs []Hierarchy) {
	ns := pidNS()
	for _, h := range hs {
		ents, err := os.ReadDir(h.dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			ownerNS, owner, ok := staleOwner(e.Name())
			if !ok || !e.IsDir() || ownerNS != ns || Alive(owner) {
				continue
			}
			_ = Remove([]Cgroup{{Dir: filepath.Join(h.dir, e.Name())}}, 0)
		}
	}
}

// Alive reports whether process pid exists and is not a zombie (an owner
// killed with SIGKILL stays one until its parent reaps it).
func Alive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(st), ')')
	return i < 0 || i+2 >= len(st) || st[i+2] != 'Z'
}

// staleOwner parses the owner's PID namespace and PID out of a box cgroup
// name.
func staleOwner(name string) (ns uint64, pid int, ok bool) {
	rest, ok := strings.CutPrefix(name, cgroupPrefix)
	if !ok {
		return 0, 0, false
	}
	f := strings.Split(rest, ".")
	if len(f) != 4 {
		return 0, 0, false
	}
	ns, err1 := strconv.ParseUint(f[1], 10, 64)
	pid, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || pid <= 0 {
		return 0, 0, false
	}
	return ns, pid, true
}
