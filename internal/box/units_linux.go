package box

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// bootTarget is the unit systemd boots to (--unit=): the D-Bus broker and
// journald, nothing else. Default dependencies add sysinit.target.
const bootTarget = "ten-box.target"

const bootTargetText = `# Written by ten's box package: what a test box boots to.
[Unit]
Description=ten test box
Requires=sysinit.target
Wants=dbus.socket dbus.service systemd-journald.socket systemd-journald.service
After=sysinit.target dbus.socket dbus.service systemd-journald.socket systemd-journald.service
AllowIsolate=yes
`

// journaldConf keeps the box's journal in /run (it dies with the box) and
// turns rate limiting off, since tests read what their units log.
const journaldConf = `# Written by ten's box package.
[Journal]
Storage=volatile
RateLimitIntervalSec=0
ForwardToConsole=no
`

// maskedUnits do not belong in a test box: they change kernel state the box
// shares with the host (modules, clock, binfmt, sysctls, entropy), wait for
// hardware, configure the network, or are the host image's own services.
// Units the host enables are masked too (see masks). Masking a unit that does
// not exist is harmless.
var maskedUnits = []string{
	"timers.target", "getty.target", "getty@.service", "serial-getty@.service",
	"console-getty.service", "container-getty@.service", "remote-fs.target", "swap.target", "cryptsetup.target",
	"systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service",
	"systemd-resolved.service", "systemd-timesyncd.service", "systemd-time-wait-sync.service",
	"networking.service", "ifupdown-pre.service", "ifup@.service", "NetworkManager.service",
	"systemd-pstore.service", "systemd-modules-load.service", "kmod-static-nodes.service",
	"systemd-sysctl.service", "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
	"proc-sys-fs-binfmt_misc.mount", "sys-kernel-config.mount", "sys-kernel-debug.mount",
	"sys-kernel-tracing.mount", "sys-fs-fuse-connections.mount", "dev-hugepages.mount",
	"dev-mqueue.mount", "systemd-random-seed.service", "systemd-udevd.service",
	"systemd-udev-trigger.service", "systemd-udev-settle.service", "systemd-udevd-control.socket",
	"systemd-udevd-kernel.socket", "systemd-hwdb-update.service", "systemd-remount-fs.service",
	"systemd-fsck-root.service", "systemd-fsckd.service", "systemd-fsckd.socket",
	"systemd-journal-flush.service", "systemd-firstboot.service", "systemd-machine-id-commit.service",
	"systemd-repart.service", "systemd-boot-update.service", "systemd-boot-system-token.service",
	"systemd-ask-password-console.path", "systemd-ask-password-wall.path",
	"systemd-tmpfiles-clean.timer", "systemd-journal-catalog-update.service",
	"systemd-update-done.service", "ldconfig.service", "systemd-hibernate-resume@.service",
	"apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer",
	"e2scrub_reap.service", "fstrim.timer", "dpkg-db-backup.timer", "logrotate.timer",
	"postgresql.service", "postgresql@.service", "ssh.service", "ssh.socket", "cron.service",
	"rsyslog.service", "apparmor.service", "auditd.service", "console-setup.service",
	"keyboard-setup.service", "setvtrgb.service", "systemd-quotacheck.service", "quotaon.service",
	"docker.service", "docker.socket", "containerd.service",
}

// keptUnits are never masked, even when the host enables them.
func keptUnit(name string) bool {
	return strings.HasPrefix(name, "dbus") || strings.HasPrefix(name, "systemd-journald")
}

// masks lists the units to mask in a box: maskedUnits plus whatever the host
// enables in /etc/systemd/system (its *.wants and *.requires directories),
// except D-Bus and journald.
func masks(etc string) []string {
	set := map[string]bool{}
	for _, u := range maskedUnits {
		set[u] = true
	}
	for _, pat := range []string{"*.wants", "*.requires"} {
		dirs, _ := filepath.Glob(filepath.Join(etc, "systemd/system", pat))
		for _, d := range dirs {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				set[e.Name()] = true
			}
		}
	}
	var out []string
	for u := range set {
		if !keptUnit(u) {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// generatorDirs hold the systemd generators a box masks, all of them: they
// turn fstab, sysv scripts, getty and the kernel command line into units that
// wait for disks or start the host's services.
var generatorDirs = []string{
	"/etc/systemd/system-generators", "/usr/local/lib/systemd/system-generators",
	"/lib/systemd/system-generators", "/usr/lib/systemd/system-generators",
}

func generators() []string {
	set := map[string]bool{}
	for _, d := range generatorDirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			set[e.Name()] = true
		}
	}
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

// writeUpper writes the box's own configuration into the overlay's upper
// directory, before the overlay is mounted (changing a layer under a mounted
// overlay is undefined).
func writeUpper(upper, name string) error {
	files := map[string]string{
		"etc/systemd/system/" + bootTarget:         bootTargetText,
		"etc/systemd/journald.conf.d/ten-box.conf": journaldConf,
		"etc/hostname":                           name + "\n",
		"etc/machine-id":                         newMachineID() + "\n",
		"etc/systemd/system.conf.d/ten-box.conf": systemConf,
	}
	for p, text := range files {
		full := filepath.Join(upper, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(text), 0o644); err != nil {
			return err
		}
	}
	links := map[string]string{}
	for _, u := range masks("/etc") {
		links["etc/systemd/system/"+u] = "/dev/null"
	}
	for _, g := range generators() {
		links["etc/systemd/system-generators/"+g] = "/dev/null"
	}
	// The box's /tmp is a fresh tmpfs with nothing to clean, and RW paths
	// may sit under it (go test's binary directory): systemd-tmpfiles stops
	// at mount points, but no cleaner should come near a bind of the host.
	links["etc/tmpfiles.d/tmp.conf"] = "/dev/null"
	for p, target := range links {
		full := filepath.Join(upper, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, full); err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	return nil
}

// systemConf quiets the status lines on the console; failures still show.
const systemConf = `# Written by ten's box package.
[Manager]
ShowStatus=error
`

func newMachineID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
