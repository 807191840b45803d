package selfunit

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DpkgList is the file in which dpkg lists the files of the installed ten
// package; it exists exactly while the package is installed.
const DpkgList = "/var/lib/dpkg/info/ten.list"

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
	// Detail names what shows it: the dpkg list, the unit file, the binary.
	Detail string
}

// PackageInstalled reports whether the ten Debian package is installed
// under root ("/" for this host), by dpkg's file list of it.
func PackageInstalled(root string) bool {
	return packageOwns(root, "") != ""
}

// packageOwns returns the path of dpkg's list of ten's files when the
// package is installed and, for a non-empty path, lists it; else "".
func packageOwns(root, path string) string {
	list := filepath.Join(root, DpkgList)
	f, err := os.Open(list)
	if err != nil {
		return ""
	}
	defer f.Close()
	if path == "" {
		return list
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sc.Text() == path {
			return list
		}
	}
	return ""
}

// Installed tells how the ten binary at exe came to be under root ("/" for
// this host): from the Debian package (dpkg lists exe), by `ten install`
// (its unit in /etc/systemd/system or /run/systemd/system runs exe), or by
// hand (neither).
func Installed(root, exe string) Method {
	if list := packageOwns(root, exe); list != "" {
		return Method{ByPackage, fmt.Sprintf("%s is in the ten package (%s); units in %s", exe, list, PackageUnitDir)}
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
			return Method{ByInstall, fmt.Sprintf("%s runs %s", p, exe)}
		}
		return Method{ByHand, fmt.Sprintf("%s; ten install's %s runs %s instead", exe, p, bin)}
	}
	if list := packageOwns(root, ""); list != "" {
		return Method{ByHand, fmt.Sprintf("%s; the ten package is installed too (%s), with /usr/bin/ten", exe, list)}
	}
	return Method{ByHand, exe + " (neither the ten package nor ten install put it there)"}
}

// RefuseIfPackaged returns an error when the ten package is installed under
// root: units written by `ten install` to /etc/systemd/system would override
// the package's, and the two would fight over tenement.service.
func RefuseIfPackaged(root string) error {
	if list := packageOwns(root, ""); list != "" {
		return fmt.Errorf("the ten package is installed (%s): it runs ten as %s from %s; configure it in %s and restart it with systemctl restart %s, or remove the package (apt-get remove ten) before ten install",
			list, ServiceName, PackageUnitDir, Package.Config, ServiceName)
	}
	return nil
}
