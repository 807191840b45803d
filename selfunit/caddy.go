package selfunit

import (
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CaddyUnit is the systemd unit of Debian's and Ubuntu's caddy package
// (and of Caddy's own packages).
const CaddyUnit = "caddy.service"

// DefaultCaddyfile is where caddy.service reads its configuration unless
// its ExecStart names another file.
const DefaultCaddyfile = "/etc/caddy/Caddyfile"

// CaddySetup says what ApplyCaddy does besides writing the Caddyfile.
type CaddySetup struct {
	// Path is where the Caddyfile goes; "" is the file caddy.service
	// reads (CaddyfileOf its ExecStart).
	Path string
	// Install installs Caddy with apt-get (the distribution's package)
	// when no caddy binary is found.
	Install bool
	// Runtime enables caddy.service until the next boot only
	// (systemctl enable --runtime), as ten install --runtime does.
	Runtime bool
}

// ApplyCaddy puts Caddy in front of ten as a systemd service: it installs
// Caddy if asked and it is missing, checks text with `caddy adapt` (so a
// Caddyfile this Caddy cannot load changes nothing: the file and the
// running Caddy stay as they were), writes it where caddy.service reads
// its configuration, enables caddy.service and reloads (or starts) it.
func ApplyCaddy(text string, s CaddySetup, out io.Writer) error {
	if s.Install {
		if err := InstallCaddy(out); err != nil {
			return err
		}
	}
	bin, err := exec.LookPath("caddy")
	if err != nil {
		return errors.New("caddy is not installed: install it (apt-get install caddy) or add --install")
	}
	show, err := exec.Command("systemctl", "show", "--property=LoadState,ExecStart", CaddyUnit).Output()
	if err != nil {
		return fmt.Errorf("systemctl show %s: %v", CaddyUnit, err)
	}
	props := parseShow(string(show))
	if props["LoadState"] == "masked" {
		return fmt.Errorf("%s is masked: systemctl unmask %s, then run this again", CaddyUnit, CaddyUnit)
	}
	if props["LoadState"] != "loaded" {
		return fmt.Errorf("%s is not there (LoadState %q): Caddy was installed without its systemd unit; install the distribution's caddy package", CaddyUnit, props["LoadState"])
	}
	reads := CaddyfileOf(props["ExecStart"])
	path := s.Path
	if path == "" {
		path = reads
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if path != reads {
		return fmt.Errorf("%s reads %s, not %s: leave out -o, or point caddy.service at that file", CaddyUnit, reads, path)
	}
	if err := writeCaddyfile(bin, path, text); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s\n", path)
	enable := []string{"enable", CaddyUnit}
	if s.Runtime {
		enable = []string{"enable", "--runtime", CaddyUnit}
	}
	for _, args := range [][]string{enable, {"reload-or-restart", CaddyUnit}} {
		if b, err := exec.Command("systemctl", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl %s: %v: %s (journalctl -u %s)", strings.Join(args, " "), err, strings.TrimSpace(string(b)), CaddyUnit)
		}
	}
	fmt.Fprintf(out, "enabled and reloaded %s: Caddy serves HTTPS in front of ten (journalctl -u %s)\n", CaddyUnit, CaddyUnit)
	return nil
}

// writeCaddyfile checks text with the caddy binary bin and puts it at path
// in one rename; a text Caddy refuses leaves path as it was.
func writeCaddyfile(bin, path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), ".Caddyfile.ten-new")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	b, err := exec.Command(bin, "adapt", "--adapter", "caddyfile", "--config", tmp).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("caddy cannot load the Caddyfile, %s is unchanged: %s%s", path, lastLine(string(b)), dnsHint(string(b)))
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// dnsHint explains caddy's "module not registered" for a DNS provider:
// the distribution's Caddy has no DNS provider modules.
func dnsHint(msg string) string {
	if strings.Contains(msg, "dns.providers.") {
		return " (this Caddy has no module for that DNS provider: build one with it, e.g. xcaddy build --with github.com/caddy-dns/PROVIDER, or leave out --dns-provider)"
	}
	return ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// InstallCaddy installs the distribution's caddy package unless a caddy
// binary is there already.
func InstallCaddy(out io.Writer) error {
	if p, err := exec.LookPath("caddy"); err == nil {
		fmt.Fprintf(out, "Caddy is installed: %s\n", p)
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("caddy is not installed and there is no apt-get here to install it: install Caddy (https://caddyserver.com/docs/install), then run this again")
	}
	fmt.Fprintln(out, "installing Caddy: apt-get install -y caddy")
	cmd := exec.Command("apt-get", "install", "-y", "caddy")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get install caddy: %v (apt-get update first?)", err)
	}
	return nil
}

// parseShow reads `systemctl show` output (KEY=VALUE lines).
func parseShow(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// CaddyfileOf is the configuration file a caddy.service ExecStart (as
// `systemctl show` prints it: "{ path=... ; argv[]=/usr/bin/caddy run
// --environ --config /etc/caddy/Caddyfile ; ... }") makes Caddy read:
// the argument of --config, DefaultCaddyfile when it has none.
func CaddyfileOf(execStart string) string {
	argv := execStart
	if _, after, ok := strings.Cut(execStart, "argv[]="); ok {
		argv, _, _ = strings.Cut(after, " ;")
	}
	f := strings.Fields(argv)
	for i, a := range f {
		if a == "--config" && i+1 < len(f) {
			return f[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v
		}
	}
	return DefaultCaddyfile
}

// Check refuses what cannot go into a Caddyfile as given: a domain that is
// not a host name (ValidDomain), a DNS provider that is not a Caddy module
// name (lower-case letters, digits, '_'), an email that is not a plain
// address. Nothing is written with them.
func (c Caddy) Check() error {
	if err := ValidDomain(c.Domain); err != nil {
		return err
	}
	if p := c.DNSProvider; p != "" {
		ok := len(p) <= 40 && p[0] >= 'a' && p[0] <= 'z'
		for i := 0; ok && i < len(p); i++ {
			ok = p[i] >= 'a' && p[i] <= 'z' || p[i] >= '0' && p[i] <= '9' || p[i] == '_'
		}
		if !ok {
			return fmt.Errorf("--dns-provider %q is not the name of one of Caddy's DNS modules (e.g. cloudflare, route53, digitalocean)", p)
		}
	}
	if e := c.Email; e != "" {
		a, err := mail.ParseAddress(e)
		if err != nil || a.Address != e || len(e) > 254 || strings.ContainsAny(e, "{}\"\\ \t\r\n#") {
			return fmt.Errorf("--email %q is not an email address such as ops@example.com", e)
		}
	}
	return nil
}

// ValidDomain checks that d is a host name to route under and to name in a
// Caddyfile or a unit: dot-separated labels of ASCII letters, digits and
// '-' (not first or last), at most 63 bytes each and 253 in all.
func ValidDomain(d string) error {
	bad := func(why string) error { return fmt.Errorf("domain %q is not a domain name: %s", d, why) }
	if d == "" || len(d) > 253 {
		return bad("want 1 to 253 characters")
	}
	for _, l := range strings.Split(strings.TrimSuffix(d, "."), ".") {
		if l == "" || len(l) > 63 {
			return bad("each dot-separated label has 1 to 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return bad("a label starts or ends with '-'")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return bad(fmt.Sprintf("%q is not a letter, digit or '-'", c))
			}
		}
	}
	return nil
}
