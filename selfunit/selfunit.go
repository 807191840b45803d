// Package selfunit writes the systemd units that run ten itself: a hardened
// tenement.service and a tenement.socket that holds ten's HTTP port, so that
// restarting or upgrading ten drops no connection (requests wait in the
// socket's backlog). It also writes the Caddyfile `ten caddy` prints. The
// rendering is pure; Apply does the file and systemctl work. Where ten and
// its ten-shim are installed is known here too (FindShim, InstallBinaries),
// and InstallShims copies them where sandboxed instances can run them.
package selfunit

import (
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Options describe one installation.
type Options struct {
	// Binary is where ten is installed (default /usr/local/bin/ten).
	Binary string
	// Config is the absolute path of tenement.toml.
	Config string
	// Listen is the address tenement.socket holds, e.g. "0.0.0.0:8080".
	Listen string
	// Domain is the routing domain; empty leaves it to settings.domain of
	// the config (the packaged units).
	Domain string
	// Packaged marks the units the Debian package ships rather than the ones
	// `ten install` writes; only their header comment differs.
	Packaged bool
	// Extra are more addresses tenement.socket holds: with [settings.tls],
	// https_port and http_port (ten tells the sockets apart by port).
	Extra []string
}

// Package is where the Debian package puts ten and its config, and the
// address its tenement.socket holds: loopback, for a TLS proxy in front
// (`ten caddy`); `systemctl edit tenement.socket` changes it.
var Package = Options{
	Binary:   "/usr/bin/ten",
	Config:   "/etc/tenement/tenement.toml",
	Listen:   "127.0.0.1:8080",
	Packaged: true,
}

// PackageUnitDir is where the package ships its units. `ten install` writes
// to /etc/systemd/system (or /run/systemd/system) instead, so the two never
// own the same file; a unit there would override the packaged one, which is
// why `ten install` refuses on a host where the package is installed.
const PackageUnitDir = "/usr/lib/systemd/system"

// Names of ten's own units.
const (
	ServiceName = "tenement.service"
	SocketName  = "tenement.socket"
)

// Validate checks the options.
func (o Options) Validate() error {
	if !filepath.IsAbs(o.Binary) {
		return fmt.Errorf("binary path %q must be absolute", o.Binary)
	}
	if !filepath.IsAbs(o.Config) {
		return fmt.Errorf("config path %q must be absolute", o.Config)
	}
	host, port, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %v", o.Listen, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("listen address %q: bad port", o.Listen)
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("listen address %q: host must be an IP address", o.Listen)
	}
	for _, a := range o.Extra {
		if _, p, err := net.SplitHostPort(a); err != nil || p == port {
			return fmt.Errorf("extra listen address %q: want HOST:PORT on a port other than %s", a, port)
		}
	}
	if o.Packaged && o.Domain == "" {
		return nil
	}
	return ValidDomain(o.Domain)
}

// Socket renders tenement.socket.
func Socket(o Options) string {
	return fmt.Sprintf(`# %s Holds ten's HTTP port so that restarting ten
# drops no connection: requests wait in the backlog while ten starts.
[Unit]
Description=ten router and API socket

[Socket]
ListenStream=%s
%sNoDelay=yes
Backlog=4096
Service=%s

[Install]
WantedBy=sockets.target
`, header(o), o.Listen, extra(o.Extra), ServiceName)
}

// header is the first comment line of a unit: who wrote it.
func header(o Options) string {
	if o.Packaged {
		return "Shipped by the ten package; change it with systemctl edit."
	}
	return "Written by ten install."
}

// extra renders one ListenStream= line per extra address.
func extra(addrs []string) string {
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "ListenStream=%s\n", a)
	}
	return b.String()
}

// Service renders tenement.service. ten must stay root (it creates units
// over the system bus and attaches BPF programs), so hardening limits what
// else that root can do.
func Service(o Options) string {
	desc, domainFlag := "", ""
	if o.Domain != "" {
		desc, domainFlag = fmt.Sprintf(" (domain %s)", o.Domain), " --domain "+o.Domain
	}
	return fmt.Sprintf(`# %[6]s
[Unit]
Description=ten: app instances as systemd units%[7]s
Documentation=https://github.com/tenhq/ten
Requires=%[4]s
After=network.target %[4]s dbus.service
# Restarts and upgrades of ten are routine (the socket holds the port), so
# systemd's default of 5 starts in 10 s must not leave ten down.
StartLimitIntervalSec=0

[Service]
Type=exec
ExecStart=%[1]s serve --config %[2]s%[3]s
Restart=always
RestartSec=1
# Instances are units of their own: stopping ten must not touch them.
KillMode=mixed
NoNewPrivileges=yes
ProtectHome=read-only
ProtectSystem=full
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
ProtectHostname=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
ReadWritePaths=-/var/lib/tenement -/var/lib/private -%[5]s
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
`, o.Binary, o.Config, domainFlag, SocketName, filepath.Dir(o.Config), header(o), desc)
}

// Files returns every file an install writes, by name.
func Files(o Options) map[string]string {
	return map[string]string{ServiceName: Service(o), SocketName: Socket(o)}
}

// Caddy describes a Caddyfile for ten.
type Caddy struct {
	Domain      string
	Upstream    string // ten's address, e.g. localhost:8080
	Services    []string
	DNSProvider string // for wildcard certificates (e.g. cloudflare)
	Email       string
}

// DNSTokenEnv is the environment variable the Caddyfile's DNS challenge
// for provider reads its API token from: tenement's names, so that a
// caddy.service environment set up for tenement's Caddyfile keeps working
// (CF_API_TOKEN for cloudflare, DNS_API_TOKEN for a provider it does not
// name); "" for route53, whose module reads AWS's own variables and takes
// no token.
func DNSTokenEnv(provider string) string {
	switch provider {
	case "route53":
		return ""
	case "cloudflare":
		return "CF_API_TOKEN"
	case "digitalocean":
		return "DO_AUTH_TOKEN"
	case "vultr":
		return "VULTR_API_KEY"
	case "linode":
		return "LINODE_TOKEN"
	case "gandi":
		return "GANDI_API_TOKEN"
	case "namecheap":
		return "NAMECHEAP_API_KEY"
	case "godaddy":
		return "GODADDY_API_KEY"
	}
	return "DNS_API_TOKEN"
}

// Caddyfile renders a Caddyfile with a wildcard site per service
// (*.{service}.{domain} needs a DNS challenge for its certificate).
func Caddyfile(c Caddy) string {
	var b strings.Builder
	b.WriteString("# Written by ten caddy: TLS in Caddy, routing in ten.\n")
	if c.Email != "" {
		fmt.Fprintf(&b, "{\n\temail %s\n}\n\n", c.Email)
	}
	tls := ""
	if c.DNSProvider != "" {
		if env := DNSTokenEnv(c.DNSProvider); env != "" {
			fmt.Fprintf(&b, "# The DNS challenge reads %s from caddy.service's environment\n# (systemctl edit caddy.service: [Service] Environment=%s=...).\n", env, env)
			tls = fmt.Sprintf("\ttls {\n\t\tdns %s {env.%s}\n\t}\n", c.DNSProvider, env)
		} else {
			fmt.Fprintf(&b, "# The DNS challenge reads AWS's credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)\n# from caddy.service's environment.\n")
			tls = fmt.Sprintf("\ttls {\n\t\tdns %s\n\t}\n", c.DNSProvider)
		}
	}
	proxy := fmt.Sprintf("\treverse_proxy %s\n", c.Upstream)
	fmt.Fprintf(&b, "%s {\n%s}\n", c.Domain, proxy)
	svcs := append([]string(nil), c.Services...)
	sort.Strings(svcs)
	for _, s := range svcs {
		fmt.Fprintf(&b, "\n%s.%s, *.%s.%s {\n%s%s}\n", s, c.Domain, s, c.Domain, tls, proxy)
	}
	return b.String()
}
