package selfunit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// PackageName is the Debian package's name.
const PackageName = "ten"

// How ten was installed (Method.Kind).
const (
	ByPackage = "package"
	ByInstall = "ten install"
	ByHand    = "plain binary"
)

// Method says how the ten at hand was installed.
type Method struct {
	// Kind is ByPackage, ByInstall or ByHand.
	Kind string
	// Detail names what shows it: the package, the unit file, the binary.
	Detail string
}

// Dpkg is what ten asks dpkg: whether the package is installed and which
// package owns a file. System asks dpkg-query; tests give a fake.
type Dpkg interface {
	// Installed reports whether the ten package is installed (unpacked or
	// configured; not merely its conffiles left after removal).
	Installed() bool
	// Owner returns the package that owns path, "" for none.
	Owner(path string) string
}

// System is this host's dpkg, asked through dpkg-query (on a host without
// dpkg nothing is installed).
var System Dpkg = dpkgQuery{}

type dpkgQuery struct{}

func (dpkgQuery) Installed() bool {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status}", PackageName).Output()
	if err != nil {
		return false
	}
	st := strings.TrimSpace(string(out))
	return st != "" && st != "not-installed" && st != "config-files"
}

func (dpkgQuery) Owner(path string) string {
	out, err := exec.Command("dpkg-query", "-S", path).Output()
	if err != nil {
		return ""
	}
	// "ten: /usr/bin/ten"
	pkg, _, ok := strings.Cut(strings.TrimSpace(string(out)), ": ")
	if !ok {
		return ""
	}
	return pkg
}

// Installed tells how the ten binary at exe came to be: from the Debian
// package (dpkg says the package owns exe), by `ten install` (its unit in
// root/etc/systemd/system or root/run/systemd/system runs exe), or by hand
// (neither). root is "/" but in tests.
func Installed(d Dpkg, root, exe string) Method {
	if d.Owner(exe) == PackageName {
		return Method{ByPackage, fmt.Sprintf("%s is in the %s package; units in %s", exe, PackageName, PackageUnitDir)}
	}
	for _, dir := range []string{"/etc/systemd/system", "/run/systemd/system"} {
		p := filepath.Join(root, dir, ServiceName)
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), header(Options{})) {
			continue
		}
		bin := ""
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
				bin, _, _ = strings.Cut(rest, " ")
			}
		}
		if bin == exe {
			return Method{ByInstall, fmt.Sprintf("%s runs %s", filepath.Join(dir, ServiceName), exe)}
		}
		return Method{ByHand, fmt.Sprintf("%s; ten install's %s runs %s instead", exe, filepath.Join(dir, ServiceName), bin)}
	}
	if d.Installed() {
		return Method{ByHand, fmt.Sprintf("%s; the %s package is installed too, with %s", exe, PackageName, Package.Binary)}
	}
	return Method{ByHand, exe + " (neither the ten package nor ten install put it there)"}
}

// RefuseIfPackaged returns an error when the ten package is installed:
// units written by `ten install` to /etc/systemd/system would override the
// package's, and the two would fight over tenement.service.
func RefuseIfPackaged(d Dpkg) error {
	if d.Installed() {
		return fmt.Errorf("the %s package is installed: it runs ten as %s from %s; configure it in %s and restart it with systemctl restart %s, or remove the package (apt-get remove %s) before ten install",
			PackageName, ServiceName, PackageUnitDir, Package.Config, ServiceName, PackageName)
	}
	return nil
}
