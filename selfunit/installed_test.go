package selfunit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, root, path, text string) {
	t.Helper()
	p := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

type fakeDpkg struct {
	installed bool
	owns      map[string]bool
}

func (f fakeDpkg) Installed() bool { return f.installed }
func (f fakeDpkg) Owner(p string) string {
	if f.owns[p] {
		return PackageName
	}
	return ""
}

func TestInstalled(t *testing.T) {
	none := fakeDpkg{}
	bare := t.TempDir()
	if m := Installed(none, bare, "/home/me/ten"); m.Kind != ByHand {
		t.Errorf("bare host: %+v", m)
	}
	if err := RefuseIfPackaged(none); err != nil {
		t.Errorf("bare host refused: %v", err)
	}

	installed := t.TempDir()
	o := Options{Binary: "/usr/local/bin/ten", Config: "/srv/tenement.toml", Listen: "0.0.0.0:8080", Domain: "example.com"}
	write(t, installed, "etc/systemd/system/"+ServiceName, Service(o))
	if m := Installed(none, installed, "/usr/local/bin/ten"); m.Kind != ByInstall {
		t.Errorf("ten install: %+v", m)
	}
	if m := Installed(none, installed, "/home/me/ten"); m.Kind != ByHand || !strings.Contains(m.Detail, "/usr/local/bin/ten") {
		t.Errorf("other binary next to ten install: %+v", m)
	}

	pkg := t.TempDir()
	dpkg := fakeDpkg{installed: true, owns: map[string]bool{"/usr/bin/ten": true}}
	if m := Installed(dpkg, pkg, "/usr/bin/ten"); m.Kind != ByPackage {
		t.Errorf("package: %+v", m)
	}
	if m := Installed(dpkg, pkg, "/root/ten"); m.Kind != ByHand || !strings.Contains(m.Detail, "package is installed") {
		t.Errorf("plain binary beside the package: %+v", m)
	}
	err := RefuseIfPackaged(dpkg)
	if err == nil || !strings.Contains(err.Error(), "apt-get remove ten") {
		t.Errorf("package installed, want a refusal with a hint, got %v", err)
	}
}

// The packaged units are the hardened ones ten install writes, for ten in
// /usr/bin reading /etc/tenement, with the domain left to the config.
func TestPackageUnits(t *testing.T) {
	if err := Package.Validate(); err != nil {
		t.Fatal(err)
	}
	inst := Options{Binary: Package.Binary, Config: Package.Config, Listen: Package.Listen, Domain: "example.com"}
	pkgSvc, instSvc := Service(Package), Service(inst)
	if !strings.Contains(pkgSvc, "ExecStart=/usr/bin/ten serve --config /etc/tenement/tenement.toml\n") {
		t.Errorf("packaged ExecStart:\n%s", pkgSvc)
	}
	drop := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "ExecStart=") && !strings.HasPrefix(l, "Description=") {
				out = append(out, l)
			}
		}
		return out
	}
	if a, b := strings.Join(drop(pkgSvc), "\n"), strings.Join(drop(instSvc), "\n"); a != b {
		t.Errorf("packaged service differs from ten install's beyond ExecStart:\n%s\n---\n%s", a, b)
	}
	if !strings.Contains(Socket(Package), "ListenStream=127.0.0.1:8080\n") {
		t.Errorf("packaged socket:\n%s", Socket(Package))
	}
}
