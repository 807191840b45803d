package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/selfunit"
)

// InstallCmd is `ten install`.
type InstallCmd struct {
	Domain  string `short:"d" required:"" help:"Domain to route, e.g. example.com ({id}.{service}.example.com)."`
	Port    int    `short:"p" help:"Port tenement.socket holds for the router and API (default: the port of settings.listen, 8080)."`
	Address string `help:"Address tenement.socket binds (default: the address of settings.listen; 0.0.0.0 where it names none)."`
	Binary  string `default:"/usr/local/bin/ten" help:"Where to install the ten binary."`
	DryRun  bool   `help:"Print the unit files instead of installing them."`
	Runtime bool   `help:"Install into /run/systemd/system (gone at reboot) instead of /etc/systemd/system."`
	Caddy   bool   `help:"Also put Caddy in front for HTTPS: install it if missing (apt-get install caddy), write the Caddyfile of ten caddy where caddy.service reads it, enable and reload caddy.service."`

	DNSProvider string `help:"With --caddy: DNS provider for the Caddyfile's wildcard certificates (e.g. cloudflare)."`
	Email       string `help:"With --caddy: ACME account email."`
}

func (c *InstallCmd) options(g *Globals) (selfunit.Options, error) {
	cfgPath := g.Config
	cfg, err := g.loadConfig()
	if err != nil {
		return selfunit.Options{}, err
	}
	if cfgPath == "" {
		cfgPath = cfg.Path
	}
	abs, err := filepath.Abs(cfgPath)
	if err != nil {
		return selfunit.Options{}, err
	}
	addr, port, err := installListen(c.Address, c.Port, cfg.Settings.Listen)
	if err != nil {
		return selfunit.Options{}, fmt.Errorf("%s: %w", abs, err)
	}
	o := selfunit.Options{Binary: c.Binary, Config: abs, Listen: net.JoinHostPort(addr, fmt.Sprint(port)), Domain: c.Domain}
	if t := cfg.Settings.TLS; t.Enabled {
		// The socket holds the HTTPS and redirect ports too, so a restart
		// of ten drops no HTTPS connection either.
		o.Extra = []string{net.JoinHostPort(addr, fmt.Sprint(t.HTTPSPort)), net.JoinHostPort(addr, fmt.Sprint(t.HTTPPort))}
	}
	return o, o.Validate()
}

// installListen is the address and port tenement.socket holds: --address
// and -p where given, else those of settings.listen (listen), which the
// installed ten would otherwise ignore, since the socket's address wins: a
// config that keeps ten on loopback stays there. An empty host in listen
// (":8080", the default) is every address, 0.0.0.0; "localhost" is
// 127.0.0.1.
func installListen(address string, port int, listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("settings.listen %q: %v", listen, err)
	}
	if address == "" {
		switch {
		case host == "":
			address = "0.0.0.0"
		case host == "localhost":
			address = "127.0.0.1"
		case net.ParseIP(host) == nil:
			return "", 0, fmt.Errorf("settings.listen %q: tenement.socket needs an IP address: give one with --address", listen)
		default:
			address = host
		}
	}
	if port == 0 {
		if port, err = strconv.Atoi(p); err != nil {
			return "", 0, fmt.Errorf("settings.listen %q: bad port", listen)
		}
	}
	return address, port, nil
}

func unitDir(runtime bool) string {
	if runtime {
		return "/run/systemd/system"
	}
	return "/etc/systemd/system"
}

// Run installs ten as tenement.service behind tenement.socket.
func (c *InstallCmd) Run(g *Globals) error {
	if err := selfunit.RefuseIfPackaged(selfunit.System); err != nil {
		return err
	}
	o, err := c.options(g)
	if err != nil {
		return err
	}
	var caddyfile string
	if c.Caddy {
		if caddyfile, err = c.caddyfile(g, o.Listen); err != nil {
			return err
		}
	} else if c.DNSProvider != "" || c.Email != "" {
		return fmt.Errorf("--dns-provider and --email are for the Caddyfile: add --caddy")
	}
	if c.DryRun {
		files := selfunit.Files(o)
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Printf("# %s/%s\n%s\n", unitDir(c.Runtime), n, files[n])
		}
		if c.Caddy {
			fmt.Printf("# %s (for %s; Caddy is installed first if missing)\n%s", selfunit.DefaultCaddyfile, selfunit.CaddyUnit, caddyfile)
		}
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("install writes systemd units: run it as root (or use --dry-run)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := selfunit.Apply(o, unitDir(c.Runtime), self, os.Stdout); err != nil {
		return err
	}
	if !c.Caddy {
		return nil
	}
	return selfunit.ApplyCaddy(caddyfile, selfunit.CaddySetup{Install: true, Runtime: c.Runtime}, os.Stdout)
}

// caddyfile is the Caddyfile of --caddy: ten caddy's for the address
// tenement.socket holds (listen). ten's own TLS and Caddy would both take
// the HTTPS port, so a config with TLS enabled is refused.
func (c *InstallCmd) caddyfile(g *Globals, listen string) (string, error) {
	if err := (selfunit.Caddy{Domain: c.Domain, DNSProvider: c.DNSProvider, Email: c.Email}).Check(); err != nil {
		return "", err
	}
	cfg, err := g.loadConfig()
	if err != nil {
		return "", err
	}
	if cfg.Settings.TLS.Enabled {
		return "", fmt.Errorf("%s: settings.tls is enabled, so ten serves HTTPS itself on the ports Caddy would take: leave out --caddy, or disable settings.tls", cfg.Path)
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsLoopback() || ip.IsUnspecified() {
		host = "localhost"
	}
	caddyProxyHint(cfg)
	caddyDNSHint(c.DNSProvider)
	return selfunit.Caddyfile(selfunit.Caddy{Domain: c.Domain, Upstream: net.JoinHostPort(host, port), Services: cfg.ServiceNames(), DNSProvider: c.DNSProvider, Email: c.Email}), nil
}

// caddyDNSHint says on stderr which variable Caddy's DNS challenge needs
// in caddy.service's environment, as tenement's install does.
func caddyDNSHint(provider string) {
	if provider == "" {
		return
	}
	env := selfunit.DNSTokenEnv(provider)
	if env == "" {
		env = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	}
	fmt.Fprintf(os.Stderr, "hint: Caddy's DNS challenge (%s) reads %s from caddy.service's environment: systemctl edit caddy.service, add [Service] Environment=..., then systemctl restart caddy.service; Debian's Caddy needs a build with the caddy-dns/%s module\n", provider, env, provider)
}

// caddyProxyHint says on stderr when ten would not believe the
// X-Forwarded-* headers of a Caddy on this machine: without
// settings.trusted_proxies naming loopback, apps behind Caddy see
// X-Forwarded-Proto http and Caddy's address as the client's, and ten's
// per-client bounds count every client behind Caddy as one.
func caddyProxyHint(cfg *config.Config) {
	t := cfg.Settings.TrustedProxy()
	if t != nil && t("127.0.0.1") && t("::1") {
		return
	}
	fmt.Fprintf(os.Stderr, "hint: %s: add trusted_proxies = [\"127.0.0.1\", \"::1\"] to [settings] so apps see the client's address and https in X-Forwarded-For and X-Forwarded-Proto as Caddy sends them, and so max_conns_per_address, the token lockout and spawn_rate_per_client count each client behind Caddy rather than Caddy's one address\n", cfg.Path)
}

// UninstallCmd is `ten uninstall`.
type UninstallCmd struct {
	Runtime bool `help:"Remove a --runtime install."`
}

// Run removes ten's own units; instances keep running.
func (c *UninstallCmd) Run() error {
	// Without a unit of ten install's here, stopping tenement.service would
	// stop the package's ten.
	if _, err := os.Stat(filepath.Join(unitDir(c.Runtime), selfunit.ServiceName)); err != nil {
		if err := selfunit.RefuseIfPackaged(selfunit.System); err != nil {
			return fmt.Errorf("no unit of ten install in %s: %w", unitDir(c.Runtime), err)
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("uninstall changes systemd units: run it as root")
	}
	if err := selfunit.Remove(unitDir(c.Runtime), os.Stdout); err != nil {
		return err
	}
	fmt.Println("ten's own units are gone; instances keep running (ten stop SERVICE:ID removes them)")
	return nil
}

// CaddyCmd is `ten caddy`.
type CaddyCmd struct {
	Domain      string `short:"d" required:"" help:"Domain ten routes."`
	Port        int    `short:"p" help:"ten's port (default: the port of settings.listen, 8080)."`
	Output      string `short:"o" type:"path" help:"Write the Caddyfile here instead of stdout (with --systemd: the file caddy.service reads, by default)."`
	DNSProvider string `help:"DNS provider for wildcard certificates (e.g. cloudflare)."`
	Email       string `help:"ACME account email."`
	Install     bool   `help:"Install Caddy (apt-get install caddy) if it is missing."`
	Systemd     bool   `help:"Run Caddy as a systemd service with this Caddyfile: check it with caddy adapt, write it where caddy.service reads it (/etc/caddy/Caddyfile), enable and reload caddy.service. Needs root."`
	Runtime     bool   `help:"With --systemd: enable caddy.service until the next boot only."`
}

// Run prints a Caddyfile with a wildcard site per configured service, or
// writes it, and with --systemd hands it to caddy.service.
func (c *CaddyCmd) Run(g *Globals) error {
	if c.Runtime && !c.Systemd {
		return fmt.Errorf("--runtime is for --systemd")
	}
	if err := (selfunit.Caddy{Domain: c.Domain, DNSProvider: c.DNSProvider, Email: c.Email}).Check(); err != nil {
		return err
	}
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	up, err := caddyUpstream(c.Port, cfg.Settings.Listen)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Path, err)
	}
	text := selfunit.Caddyfile(selfunit.Caddy{Domain: c.Domain, Upstream: up, Services: cfg.ServiceNames(), DNSProvider: c.DNSProvider, Email: c.Email})
	caddyProxyHint(cfg)
	caddyDNSHint(c.DNSProvider)
	if c.Systemd {
		if os.Geteuid() != 0 {
			return fmt.Errorf("--systemd writes Caddy's configuration and changes caddy.service: run it as root (or use -o FILE)")
		}
		return selfunit.ApplyCaddy(text, selfunit.CaddySetup{Path: c.Output, Install: c.Install, Runtime: c.Runtime}, os.Stdout)
	}
	if c.Install {
		if err := selfunit.InstallCaddy(os.Stdout); err != nil {
			return err
		}
	}
	if c.Output == "" {
		fmt.Print(text)
		return nil
	}
	if err := os.WriteFile(c.Output, []byte(text), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", c.Output)
	return nil
}

// caddyUpstream is where Caddy reaches ten: settings.listen (listen), on
// localhost where it is every address or loopback, its port unless -p
// (port) gives one.
func caddyUpstream(port int, listen string) (string, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("settings.listen %q: %v", listen, err)
	}
	_, port, err = installListen("127.0.0.1", port, listen)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsLoopback() || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}
