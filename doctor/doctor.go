// Package doctor checks what ten can use on this host — root, systemd and
// its version, the cgroup layout, BPF, gVisor, cgroup freezing — and says
// for each feature whether it is on and, when it is off, why.
package doctor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/bpf/portguard"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/router/upstream"
	"github.com/tenhq/ten/selfunit"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/tlsfront"
)

// Check is one line of `ten doctor`.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Run performs every check.
func Run(ctx context.Context) []Check {
	var cs []Check
	add := func(name string, ok bool, format string, a ...any) {
		cs = append(cs, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, a...)})
	}
	if exe, err := os.Executable(); err == nil {
		m := selfunit.Installed(selfunit.System, "/", exe)
		add("install", true, "%s: %s", m.Kind, m.Detail)
	}
	root := os.Geteuid() == 0
	if root {
		add("root", true, "running as root")
	} else {
		add("root", false, "ten serve needs root to create units over the system bus (run doctor with sudo for the full picture)")
	}
	comm, _ := os.ReadFile("/proc/1/comm")
	pid1 := strings.TrimSpace(string(comm))
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := systemd.Connect(cctx, slog.New(slog.DiscardHandler))
	if err != nil {
		add("systemd", false, "%v (PID 1 is %q); to run ten anyway: sudo ./bin/tenbox run -- ./bin/ten serve ...", err, pid1)
	} else {
		add("systemd", true, "systemd %s answers on the system bus (PID 1 is %s)", m.Version(), pid1)
		m.Close()
	}
	layout, v2 := cgroupLayout()
	add("cgroups", v2 != "", "%s", layout)
	if err := ebpf.Supported(); err != nil {
		add("ebpf", false, "activity accounting and sk_lookup dispatch are off: %v; the HTTP router still counts activity and L4 addresses use a userspace proxy", err)
	} else {
		add("ebpf", true, "cgroup_skb/sock_ops accounting and sk_lookup dispatch available")
	}
	if fi, err := os.Stat("/sys/fs/bpf"); err == nil && fi.IsDir() {
		add("bpffs", true, "/sys/fs/bpf present (ten pins its maps under /sys/fs/bpf/tenement)")
	} else {
		add("bpffs", false, "/sys/fs/bpf missing; ten mounts bpffs there when it has the privilege")
	}
	if v2 != "" && (fileExistsAny(v2) || kernelAtLeast(5, 2)) {
		add("freeze", true, "cgroup v2 freezer (cgroup.freeze) available under %s", v2)
	} else {
		add("freeze", false, "no cgroup v2 freezer: instances cannot be frozen")
	}
	self, err := ebpf.SelfCgroupID()
	if err == nil {
		err = upstream.CheckPeerCgroups(self)
	}
	if err != nil {
		add("port-owner-check", false, "the owner of a sleeping PORT app's port is not checked: %v", err)
	} else {
		add("port-owner-check", true, "an answer on a PORT app's 127.0.0.1:PORT is taken for the app's only from the instance's service (the socket's cgroup, sock_diag)")
	}
	if g, err := portguard.Load("", nil); err != nil {
		add("port-guard", false, "a process of one instance can bind another's PORT while it sleeps: %v", err)
	} else {
		g.Close()
		add("port-guard", true, "cgroup bind4/bind6 programs keep each instance's PORT for its own processes")
	}
	if p, err := exec.LookPath("runsc"); err == nil {
		out, _ := exec.Command(p, "--version").CombinedOutput()
		add("gvisor", true, "%s (%s)", p, firstLine(string(out)))
	} else {
		add("gvisor", false, "runsc not found: isolation = \"sandbox\" is unavailable (apt-get install runsc)")
	}
	return cs
}

func fileExistsAny(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.IsDir() {
			if _, err := os.Stat(dir + "/" + e.Name() + "/cgroup.freeze"); err == nil {
				return true
			}
		}
	}
	return false
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// kernelAtLeast compares the running kernel's release with major.minor.
func kernelAtLeast(major, minor int) bool {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(string(b), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// TLS reports [settings.tls]: off, or each certificate in the cache
// directory with its names and expiry (an expired or soon-expiring one is
// not OK).
func TLS(cfg *config.Config, now time.Time) []Check {
	t := cfg.Settings.TLS
	if !t.Enabled {
		return []Check{{Name: "tls", OK: false, Detail: "[settings.tls] enabled = false: ten serves plain HTTP only"}}
	}
	dir := tlsfront.CacheDir(t.CacheDir, cfg.DataDirAbs())
	certs, err := tlsfront.Stored(dir, now)
	if err != nil {
		return []Check{{Name: "tls", OK: false, Detail: fmt.Sprintf("read certificates in %s: %v", dir, err)}}
	}
	cs := []Check{{Name: "tls", OK: true, Detail: fmt.Sprintf("HTTPS on port %d for %s and the hosts under it, certificates on first use in %s (%d stored); DNS-01 wildcards: not supported", t.HTTPSPort, cfg.Settings.Domain, dir, len(certs))}}
	for _, c := range certs {
		ok := c.Error == "" && c.ExpiresIn > 0
		detail := c.Error
		if detail == "" {
			detail = fmt.Sprintf("expires %s (in %s), issuer %q", c.NotAfter.UTC().Format(time.RFC3339), time.Duration(c.ExpiresIn*float64(time.Second)).Round(time.Second), c.Issuer)
		}
		cs = append(cs, Check{Name: "tls-cert " + strings.Join(c.Names, ","), OK: ok, Detail: detail})
	}
	return cs
}
