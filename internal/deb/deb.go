// Package deb builds ten's Debian package: it stages the files of the
// package (the binary, the units selfunit renders, the conffile, man pages,
// completions, the copyright file, the maintainer scripts) in a directory
// with DEBIAN/control, md5sums and conffiles, and lets dpkg-deb build the
// archive. Everything but the dpkg-deb call is pure and unit-tested.
package deb

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// File is one file of the package.
type File struct {
	// Path is absolute, as installed (/usr/bin/ten).
	Path string
	Mode fs.FileMode
	Data []byte
	// Conffile marks a file under /etc that dpkg keeps an administrator's
	// changes to.
	Conffile bool
}

// Package is everything the control archive and the data archive hold.
type Package struct {
	Name       string
	Version    string
	Arch       string
	Maintainer string
	Section    string
	Priority   string
	Homepage   string
	Depends    []string
	Recommends []string
	// Summary is the first line of Description, Long its body (paragraphs
	// separated by blank lines).
	Summary string
	Long    string
	Files   []File
	// Dirs are directories the package owns even when empty (/var/lib/tenement).
	Dirs []string
	// Scripts are the maintainer scripts by name (postinst, prerm, postrm).
	Scripts map[string][]byte
}

var (
	versionRE = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]+$`)
)

// ValidVersion checks a native Debian version (no revision): it starts with
// a digit and holds only letters, digits and . + ~.
func ValidVersion(v string) error {
	if !versionRE.MatchString(v) {
		return fmt.Errorf("version %q is not a Debian version (a digit, then letters, digits, '.', '+', '~')", v)
	}
	return nil
}

// GitVersion maps what git says of a checkout to a Debian version that
// grows with every commit: base+git<commits>.<hash>, with ".dirty" for a
// tree with uncommitted changes; 0.1.0+git117.3480885 sorts after
// 0.1.0+git116.ab12cd3 whatever the hashes.
func GitVersion(base string, commits int, hash string, dirty bool) string {
	v := fmt.Sprintf("%s+git%d.%s", base, commits, hash)
	if dirty {
		v += ".dirty"
	}
	return v
}

// Validate checks the package before anything is written.
func (p *Package) Validate() error {
	if !nameRE.MatchString(p.Name) {
		return fmt.Errorf("package name %q is not a Debian package name", p.Name)
	}
	if err := ValidVersion(p.Version); err != nil {
		return err
	}
	switch p.Arch {
	case "amd64", "arm64":
	default:
		return fmt.Errorf("architecture %q: ten is packaged for amd64 and arm64", p.Arch)
	}
	if p.Maintainer == "" || !strings.Contains(p.Maintainer, "<") {
		return fmt.Errorf("maintainer %q: want \"Name <email>\"", p.Maintainer)
	}
	seen := map[string]bool{}
	for _, f := range p.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return fmt.Errorf("file %q: path must be absolute and clean", f.Path)
		}
		if seen[f.Path] {
			return fmt.Errorf("file %s is in the package twice", f.Path)
		}
		seen[f.Path] = true
		if f.Conffile && !strings.HasPrefix(f.Path, "/etc/") {
			return fmt.Errorf("conffile %s is not under /etc", f.Path)
		}
	}
	for n := range p.Scripts {
		switch n {
		case "preinst", "postinst", "prerm", "postrm":
		default:
			return fmt.Errorf("maintainer script %q is not one dpkg runs", n)
		}
	}
	return nil
}

// dirs returns every directory the package holds, parents first.
func (p *Package) dirs() []string {
	set := map[string]bool{}
	add := func(d string) {
		for ; d != "/" && d != "."; d = path.Dir(d) {
			set[d] = true
		}
	}
	for _, f := range p.Files {
		add(path.Dir(f.Path))
	}
	for _, d := range p.Dirs {
		add(d)
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// InstalledSize is the Installed-Size field: KiB, each file rounded up, one
// for each directory (as dpkg-gencontrol counts).
func (p *Package) InstalledSize() int {
	n := len(p.dirs())
	for _, f := range p.Files {
		n += (len(f.Data) + 1023) / 1024
	}
	return n
}

// Control renders DEBIAN/control.
func (p *Package) Control() string {
	var b strings.Builder
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	field("Package", p.Name)
	field("Version", p.Version)
	field("Architecture", p.Arch)
	field("Maintainer", p.Maintainer)
	field("Installed-Size", fmt.Sprint(p.InstalledSize()))
	field("Depends", strings.Join(p.Depends, ", "))
	field("Recommends", strings.Join(p.Recommends, ", "))
	field("Section", p.Section)
	field("Priority", p.Priority)
	field("Homepage", p.Homepage)
	fmt.Fprintf(&b, "Description: %s\n", p.Summary)
	for i, para := range strings.Split(strings.TrimSpace(p.Long), "\n\n") {
		if i > 0 {
			b.WriteString(" .\n")
		}
		for _, line := range strings.Split(para, "\n") {
			fmt.Fprintf(&b, " %s\n", strings.TrimSpace(line))
		}
	}
	return b.String()
}

// MD5Sums renders DEBIAN/md5sums: every file but the conffiles (dpkg keeps
// their sums itself), paths relative to /.
func (p *Package) MD5Sums() string {
	var lines []string
	for _, f := range p.Files {
		if f.Conffile {
			continue
		}
		lines = append(lines, fmt.Sprintf("%x  %s", md5.Sum(f.Data), strings.TrimPrefix(f.Path, "/")))
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][34:] < lines[j][34:] })
	return strings.Join(lines, "\n") + "\n"
}

// Conffiles renders DEBIAN/conffiles ("" when there are none).
func (p *Package) Conffiles() string {
	var out []string
	for _, f := range p.Files {
		if f.Conffile {
			out = append(out, f.Path)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\n") + "\n"
}

// FileName is the name Debian gives the archive: NAME_VERSION_ARCH.deb.
func (p *Package) FileName() string {
	return fmt.Sprintf("%s_%s_%s.deb", p.Name, p.Version, p.Arch)
}

// Stage writes the package's tree (with DEBIAN/) into the empty directory
// dir, with the modes set explicitly (the umask plays no part).
func (p *Package) Stage(dir string) error {
	if err := p.Validate(); err != nil {
		return err
	}
	mkdir := func(d string) error {
		full := filepath.Join(dir, d)
		if err := os.MkdirAll(full, 0o755); err != nil {
			return err
		}
		return os.Chmod(full, 0o755)
	}
	write := func(name string, data []byte, mode fs.FileMode) error {
		full := filepath.Join(dir, name)
		if err := os.WriteFile(full, data, mode); err != nil {
			return err
		}
		return os.Chmod(full, mode)
	}
	for _, d := range append([]string{"/DEBIAN"}, p.dirs()...) {
		if err := mkdir(d); err != nil {
			return err
		}
	}
	for _, f := range p.Files {
		if err := write(f.Path, f.Data, f.Mode); err != nil {
			return err
		}
	}
	meta := map[string]string{"control": p.Control(), "md5sums": p.MD5Sums(), "conffiles": p.Conffiles()}
	for n, text := range meta {
		if text == "" {
			continue
		}
		if err := write("DEBIAN/"+n, []byte(text), 0o644); err != nil {
			return err
		}
	}
	for n, s := range p.Scripts {
		if err := write("DEBIAN/"+n, s, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// Build stages the package in a directory under outDir and builds
// outDir/FileName() with dpkg-deb (files owned by root, xz-compressed).
// It returns the archive's path.
func (p *Package) Build(outDir string) (string, error) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return "", errors.New("dpkg-deb is not installed (apt-get install dpkg)")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp(outDir, ".stage-"+p.Arch+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	// MkdirTemp makes 0700; the root of the data archive must be 0755.
	if err := os.Chmod(stage, 0o755); err != nil {
		return "", err
	}
	if err := p.Stage(stage); err != nil {
		return "", err
	}
	out := filepath.Join(outDir, p.FileName())
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", stage, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb --build: %v: %s", err, bytes.TrimSpace(b))
	}
	return out, nil
}

// Gzip compresses data as Debian wants documentation compressed (gzip -9n:
// best compression, no name, no time stamp).
func Gzip(data []byte) []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// Changelog renders the single-entry changelog of a native package built
// from a git checkout.
func Changelog(name, version, maintainer, commit string, when time.Time) string {
	return fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- %s  %s\n",
		name, version, commit, maintainer, when.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
}
