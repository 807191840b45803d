// Command mkdeb builds ten's Debian package from a built ten binary (make
// deb runs it; see the Makefile): the units come from selfunit, the same
// code `ten install` uses, the rest from debian/ and docs/man in the
// checkout.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tenhq/ten/internal/deb"
	"github.com/tenhq/ten/selfunit"
)

func main() {
	var (
		bin        = flag.String("bin", "", "the ten binary to package (built for -arch)")
		shimBin    = flag.String("shim", "", "the ten-shim binary to package (built for -arch)")
		hostBin    = flag.String("host-bin", "", "a ten binary that runs here, to print the shell completions")
		arch       = flag.String("arch", "amd64", "Debian architecture: amd64 or arm64")
		version    = flag.String("version", "", "package version")
		commit     = flag.String("commit", "unknown", "git commit the binary is built from")
		date       = flag.String("date", "", "build date, RFC 3339 (default now)")
		maintainer = flag.String("maintainer", "", `"Name <email>"`)
		root       = flag.String("root", ".", "the checkout")
		out        = flag.String("out", "dist", "where the .deb goes")
	)
	flag.Parse()
	if err := run(*bin, *shimBin, *hostBin, *arch, *version, *commit, *date, *maintainer, *root, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

func run(bin, shimBin, hostBin, arch, version, commit, date, maintainer, root, out string) error {
	when := time.Now()
	if date != "" {
		t, err := time.Parse(time.RFC3339, date)
		if err != nil {
			return fmt.Errorf("-date %q: %w", date, err)
		}
		when = t
	}
	read := func(rel string) ([]byte, error) { return os.ReadFile(filepath.Join(root, rel)) }
	binary, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	p := &deb.Package{
		Name: "ten", Version: version, Arch: arch, Maintainer: maintainer,
		Section: "admin", Priority: "optional", Homepage: "https://github.com/tenhq/ten",
		Depends:    []string{"systemd", "dbus"},
		Recommends: []string{"e2fsprogs", "runsc"},
		Summary:    "many small app instances as systemd units",
		Long: `ten runs many small app instances on one Linux server (per-customer
apps, preview environments, multi-tenant SaaS) as systemd units. It routes
HTTP by Host to instance sockets, lets idle instances sleep and wakes them by
socket activation, limits and sandboxes them with systemd, and reads
tenement's tenement.toml and speaks its ten CLI.

This package runs ten as tenement.service behind tenement.socket, which holds
its port (127.0.0.1:8080), so restarts and upgrades of ten drop no request.`,
		Dirs: []string{"/var/lib/tenement"},
	}
	add := func(path string, mode os.FileMode, data []byte) {
		p.Files = append(p.Files, deb.File{Path: path, Mode: mode, Data: data})
	}
	add("/usr/bin/ten", 0o755, binary)
	// The activation shim, which instances' units run at every wake (ten
	// serve copies it beside its own copy in /run/tenement/.bin); without
	// it they would run all of ten.
	if shimBin == "" {
		return fmt.Errorf("-shim: the ten-shim binary is needed")
	}
	shim, err := os.ReadFile(shimBin)
	if err != nil {
		return err
	}
	add(selfunit.PackageShim, 0o755, shim)
	units := selfunit.Files(selfunit.Package)
	for _, n := range sortedKeys(units) {
		add(selfunit.PackageUnitDir+"/"+n, 0o644, []byte(units[n]))
	}
	conf, err := read("debian/tenement.toml")
	if err != nil {
		return err
	}
	p.Files = append(p.Files, deb.File{Path: selfunit.Package.Config, Mode: 0o644, Data: conf, Conffile: true})

	pages, err := filepath.Glob(filepath.Join(root, "docs/man/*.[1-8]"))
	if err != nil || len(pages) == 0 {
		return fmt.Errorf("no man pages in docs/man (make man)")
	}
	for _, pg := range pages {
		data, err := os.ReadFile(pg)
		if err != nil {
			return err
		}
		name := filepath.Base(pg)
		add(fmt.Sprintf("/usr/share/man/man%s/%s.gz", name[len(name)-1:], name), 0o644, deb.Gzip(data))
	}

	for _, c := range []struct{ shell, path string }{
		{"bash", "/usr/share/bash-completion/completions/ten"},
		{"zsh", "/usr/share/zsh/vendor-completions/_ten"},
	} {
		script, err := exec.Command(hostBin, "completion", c.shell).Output()
		if err != nil {
			return fmt.Errorf("%s completion %s: %w", hostBin, c.shell, err)
		}
		add(c.path, 0o644, script)
	}

	copyright, err := read("debian/copyright")
	if err != nil {
		return err
	}
	add("/usr/share/doc/ten/copyright", 0o644, copyright)
	add("/usr/share/doc/ten/changelog.gz", 0o644, deb.Gzip([]byte(deb.Changelog("ten", version, maintainer, commit, when))))
	readme, err := read("README.md")
	if err != nil {
		return err
	}
	add("/usr/share/doc/ten/README.md.gz", 0o644, deb.Gzip(readme))

	p.Scripts = map[string][]byte{}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if p.Scripts[s], err = read("debian/" + s); err != nil {
			return err
		}
	}
	overrides, err := read("debian/lintian-overrides")
	if err == nil {
		// Keep the overrides that apply to the binaries as built (ten-shim
		// is a static non-PIE with cgo, a PIE without).
		pie := map[string]bool{}
		for p, data := range map[string][]byte{"usr/bin/ten": binary, strings.TrimPrefix(selfunit.PackageShim, "/"): shim} {
			if pie[p], err = deb.IsPIE(data); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		overrides = deb.Overrides(overrides, pie)
	}
	if err == nil && len(strings.TrimSpace(string(overrides))) > 0 {
		add("/usr/share/lintian/overrides/ten", 0o644, overrides)
	}
	path, err := p.Build(out)
	if err != nil {
		return err
	}
	fmt.Println(path)
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
