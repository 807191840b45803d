package deb

import (
	"crypto/md5"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func testPackage() *Package {
	return &Package{
		Name: "ten", Version: "0.1.0+git12.abcdef0", Arch: "amd64", Maintainer: "A <a@example.org>",
		Section: "admin", Priority: "optional", Depends: []string{"systemd", "dbus"},
		Summary: "short", Long: "first para\nline two\n\nsecond para",
		Files: []File{
			{Path: "/usr/bin/ten", Mode: 0o755, Data: []byte("binary")},
			{Path: "/etc/tenement/tenement.toml", Mode: 0o644, Data: []byte("[settings]\n"), Conffile: true},
		},
		Dirs:    []string{"/var/lib/tenement"},
		Scripts: map[string][]byte{"postinst": []byte("#!/bin/sh\nexit 0\n")},
	}
}

func TestControl(t *testing.T) {
	p := testPackage()
	want := `Package: ten
Version: 0.1.0+git12.abcdef0
Architecture: amd64
Maintainer: A <a@example.org>
Installed-Size: 9
Depends: systemd, dbus
Section: admin
Priority: optional
Description: short
 first para
 line two
 .
 second para
`
	if got := p.Control(); got != want {
		t.Errorf("control:\n%s\nwant:\n%s", got, want)
	}
	if got := p.Conffiles(); got != "/etc/tenement/tenement.toml\n" {
		t.Errorf("conffiles = %q", got)
	}
	// Conffiles are left out of md5sums: dpkg keeps their sums itself.
	if got, want := p.MD5Sums(), fmt.Sprintf("%x  usr/bin/ten\n", md5.Sum([]byte("binary"))); got != want {
		t.Errorf("md5sums = %q, want %q", got, want)
	}
	if p.FileName() != "ten_0.1.0+git12.abcdef0_amd64.deb" {
		t.Errorf("file name %s", p.FileName())
	}
}

func TestValidate(t *testing.T) {
	for name, mod := range map[string]func(*Package){
		"bad version":       func(p *Package) { p.Version = "v1.0" },
		"version with dash": func(p *Package) { p.Version = "1.0-1" },
		"bad arch":          func(p *Package) { p.Arch = "x86_64" },
		"relative path":     func(p *Package) { p.Files[0].Path = "usr/bin/ten" },
		"twice":             func(p *Package) { p.Files = append(p.Files, p.Files[0]) },
		"conffile in /usr":  func(p *Package) { p.Files[0].Conffile = true },
		"bad script":        func(p *Package) { p.Scripts["config"] = nil },
		"no maintainer":     func(p *Package) { p.Maintainer = "" },
	} {
		p := testPackage()
		mod(p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := testPackage().Validate(); err != nil {
		t.Errorf("good package refused: %v", err)
	}
}

func TestStage(t *testing.T) {
	dir := t.TempDir()
	if err := testPackage().Stage(dir); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{
		"usr/bin/ten": 0o755, "etc/tenement/tenement.toml": 0o644, "DEBIAN/postinst": 0o755,
		"DEBIAN/control": 0o644, "DEBIAN/md5sums": 0o644, "DEBIAN/conffiles": 0o644, "var/lib/tenement": 0o755 | os.ModeDir,
	} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), mode)
		}
	}
}
