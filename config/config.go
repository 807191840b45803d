// Package config reads tenement.toml, the configuration format ten shares with
// tenement, validates it whole and fills in defaults. It does no I/O beyond
// reading the file it is given, so that a bad file is rejected before anything
// running is touched.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// FileName is the name ten looks for when walking up from the working directory.
const FileName = "tenement.toml"

// Config is a whole, validated tenement.toml with defaults filled in.
type Config struct {
	// Path is the file the config came from ("" when parsed from bytes).
	Path string `toml:"-" json:"path,omitempty"`
	// Settings is [settings].
	Settings Settings `toml:"settings" json:"settings"`
	// Services are the [service.NAME] tables.
	Services map[string]*Service `toml:"service" json:"service"`
	// Instances is [instances]: SERVICE = ["ID", ...], spawned whenever ten
	// starts.
	Instances map[string][]string `toml:"instances" json:"instances"`
	// Routing is [routing].
	Routing Routing `toml:"routing" json:"routing"`
	// Fleet is the [fleet] table (ten's, experimental): absent, ten is a
	// single server.
	Fleet Fleet `toml:"fleet" json:"fleet,omitzero"`

	// zeroGiven: settings the file sets to 0 (Parse).
	zeroGiven zeroGiven
}

// Settings is the [settings] table.
type Settings struct {
	// DataDir holds ten's API token (api_token), tokens.json, state.json and
	// storage images (default "./tenement-data", relative to the config file).
	DataDir string `toml:"data_dir" json:"data_dir"`
	// HealthCheckInterval is the seconds between health checks (default 10;
	// at least 1).
	HealthCheckInterval int `toml:"health_check_interval" json:"health_check_interval"`
	// MaxRestarts is how many restarts within restart_window mark an
	// instance failed (default 3; 0, set explicitly: the first crash or
	// failed health check marks it failed, as in tenement).
	MaxRestarts int `toml:"max_restarts" json:"max_restarts"`
	// RestartWindow is the window in seconds max_restarts counts in
	// (default 300).
	RestartWindow int `toml:"restart_window" json:"restart_window"`
	// BackoffBaseMs is the first restart backoff in milliseconds, doubled
	// per restart in the window (default 1000; 0, set explicitly: restart
	// at once).
	BackoffBaseMs int `toml:"backoff_base_ms" json:"backoff_base_ms"`
	// BackoffMaxMs caps the restart backoff in milliseconds (default 60000;
	// 0, set explicitly: no backoff).
	BackoffMaxMs int `toml:"backoff_max_ms" json:"backoff_max_ms"`
	// TLS is [settings.tls], read for compatibility with tenement; ten
	// leaves TLS to a proxy in front (ten caddy).
	TLS TLS `toml:"tls" json:"tls"`

	// Keys ten adds (documented in the README).

	// Listen is the router's and API's listen address (default ":8080").
	Listen string `toml:"listen" json:"listen"`
	// Domain is the base domain for host routing (default "localhost").
	Domain string `toml:"domain" json:"domain"`
	// SocketDir holds the instances' systemd-held sockets (default /run/tenement).
	SocketDir string `toml:"socket_dir" json:"socket_dir"`
	// PortRange is the [first, last] range PORT values are drawn from.
	PortRange []int `toml:"port_range" json:"port_range"`
	// MaxFrozenMB caps the memory of all frozen instances together (0: no
	// cap); past it the longest-frozen are stopped.
	MaxFrozenMB int `toml:"max_frozen_mb" json:"max_frozen_mb,omitempty"`
	// SpawnRatePerClient is how many instances one client IP may create per
	// minute by requesting ids that do not exist yet (wake on request of a
	// new id; default 10).
	SpawnRatePerClient int `toml:"spawn_rate_per_client" json:"spawn_rate_per_client"`

	// dataDirDefault is set when data_dir was not given (in the file or by
	// SetDataDir): instance data then stays in DefaultInstanceRoot.
	dataDirDefault bool
	// MetricsListen, when set, is the only address GET /metrics is served
	// on (for example 127.0.0.1:9100), instead of Listen.
	MetricsListen string `toml:"metrics_listen" json:"metrics_listen,omitempty"`
	// MetricsAuth makes GET /metrics need an admin token.
	MetricsAuth bool `toml:"metrics_auth" json:"metrics_auth,omitempty"`
	// MaxConcurrentWakes bounds how many sleeping instances the router wakes
	// at once (0, the default: WakesPerCPU per CPU, at least
	// MinConcurrentWakes). A request past it and past wake_queue gets 503
	// with Retry-After at once.
	MaxConcurrentWakes int `toml:"max_concurrent_wakes" json:"max_concurrent_wakes"`
	// WakeQueue is how many more wakes wait for a place when
	// max_concurrent_wakes are under way (default DefaultWakeQueue, 1000;
	// 0: none).
	WakeQueue *int `toml:"wake_queue" json:"wake_queue"`
	// WakeQueueTimeout is the seconds a wake may wait in the queue before it
	// starts (default DefaultWakeQueueTimeout, 30; 1 to 3600). It is not part of the
	// instance's startup_timeout, which counts from the wake's own start. A
	// request whose wake the queue ahead would keep waiting longer, at the
	// recent pace of wakes, gets 503 with Retry-After at once.
	WakeQueueTimeout int `toml:"wake_queue_timeout" json:"wake_queue_timeout"`
	// MaxBodyMB bounds a request body the router passes to an instance, in
	// MiB (default DefaultMaxBodyMB, 100; 0, set explicitly: no bound). A larger
	// Content-Length gets 413 before anything is forwarded; a chunked body
	// that grows past it is cut (413 when the instance has not answered yet).
	MaxBodyMB *int `toml:"max_body_mb" json:"max_body_mb"`
	// MaxConnsPerAddress bounds the connections one client address holds
	// open on ten's listeners, plain and HTTPS, and through its userspace
	// L4 proxy (default DefaultMaxConnsPerAddress, 512; 0, set explicitly:
	// no bound). A proxy of TrustedProxies, or another node's router in a
	// fleet, is not counted by its address: each request it carries
	// counts, while it runs, against the client it names, and its own
	// connections are bounded at 64 times this. Any other proxy in front
	// reaches ten from one address, so its pool (and, for WebSockets and
	// streams, its clients' open requests) must fit.
	MaxConnsPerAddress *int `toml:"max_conns_per_address" json:"max_conns_per_address"`
	// TrustedProxies are the addresses (IPs or CIDR prefixes, at most 64) of
	// proxies in front of ten, such as Caddy on the same host
	// ("127.0.0.1", "::1"). A request from one keeps its X-Forwarded-For
	// (ten appends the proxy's address), X-Forwarded-Host and
	// X-Forwarded-Proto, so that the app sees the original client and
	// scheme, as behind tenement, which passes every header on; the client
	// such a proxy names is the one the token lockout,
	// spawn_rate_per_client and max_conns_per_address count (the proxy's
	// own connections are not counted). From anyone else ten replaces them
	// (default: no one is trusted), since a tenant on the same host could
	// forge them.
	TrustedProxies []string `toml:"trusted_proxies" json:"trusted_proxies,omitempty"`
	// Standby is how many sleeping instances ten keeps on standby (0 to
	// 1000; default 0: none). The instances that went to sleep last have
	// their service started again at once, sandbox and all, with a small
	// waiter in place of the app that becomes the app on the next request:
	// such a wake costs the app's own start, not systemd's set-up of the
	// service. The app's process is gone while it sleeps, as with a stop,
	// but the service is not stopped: systemd shows it active (activating
	// for a PORT app) with status "standing by", and the waiter costs a
	// sleeping process (about 1 MiB) per instance on standby.
	Standby *int `toml:"standby" json:"standby"`
	// TasksMaxTotal caps the processes and threads of all instances
	// together (TasksMax of tenement.slice), so that tenants cannot take the
	// kernel's last PIDs from ten, systemd and the host. Unset: three
	// quarters of the kernel's PIDs (pid_max or threads-max, the smaller);
	// 0: no cap.
	TasksMaxTotal *int `toml:"tasks_max_total" json:"tasks_max_total"`
	// MemoryMaxTotalMB caps the memory of all instances together, in MiB
	// (MemoryMax of tenement.slice): past it the kernel's OOM killer picks
	// among the instances, not ten, systemd or the host. Unset: nine
	// tenths of the machine's memory; 0: no cap.
	MemoryMaxTotalMB *int `toml:"memory_max_total_mb" json:"memory_max_total_mb"`
}

// ListenOnPort is settings.listen with its port replaced (`ten serve -p`):
// the address stays, so a router kept on loopback is not exposed on every
// interface by a new port. A listen without a port gives ":PORT".
func (s *Settings) ListenOnPort(port int) string {
	host, _, err := net.SplitHostPort(s.Listen)
	if err != nil {
		host = ""
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// StandbyCount is settings.standby (DefaultStandby when unset).
func (s *Settings) StandbyCount() int {
	if s.Standby == nil {
		return DefaultStandby
	}
	return *s.Standby
}

// DefaultStandby is settings.standby when the config does not set it: a
// sleeping instance's service is stopped, as tenement stops its process.
const DefaultStandby = 0

// DefaultMaxBodyMB is max_body_mb when the config does not set it. tenement
// streams bodies without a bound; 100 MiB keeps uploads a web app takes
// working (as far as Cloudflare's default plans do) while no tenant can
// stream gigabytes through the router into a neighbour's disk or memory.
const DefaultMaxBodyMB = 100

// MaxBodyBytes is max_body_mb in bytes (0: no bound).
func (s *Settings) MaxBodyBytes() int64 {
	if s.MaxBodyMB == nil {
		return DefaultMaxBodyMB << 20
	}
	return int64(*s.MaxBodyMB) << 20
}

// DefaultMaxConnsPerAddress is max_conns_per_address when the config does
// not set it: more than a browser (6 per host) or a proxy's keep-alive pool
// needs, and a small share of the descriptors ten may hold (tenement.service
// has LimitNOFILE=1048576).
const DefaultMaxConnsPerAddress = 512

// ConnsPerAddress is max_conns_per_address (0: no bound).
func (s *Settings) ConnsPerAddress() int {
	if s.MaxConnsPerAddress == nil {
		return DefaultMaxConnsPerAddress
	}
	return *s.MaxConnsPerAddress
}

// Defaults of the wake queue ([settings] max_concurrent_wakes, wake_queue).
// A wake is CPU-bound (fork, sandbox set-up, the app's start), so more
// than a couple per CPU at once only makes each of them slower.
const (
	WakesPerCPU        = 2
	MinConcurrentWakes = 4
	DefaultWakeQueue   = 1000
	// DefaultWakeQueueTimeout is wake_queue_timeout's default, in seconds.
	DefaultWakeQueueTimeout = 30
)

// WakeQueueWait is wake_queue_timeout as a duration.
func (s *Settings) WakeQueueWait() time.Duration {
	return time.Duration(s.WakeQueueTimeout) * time.Second
}

// ConcurrentWakes is max_concurrent_wakes, or its default for ncpu CPUs.
func (s *Settings) ConcurrentWakes(ncpu int) int {
	if s.MaxConcurrentWakes > 0 {
		return s.MaxConcurrentWakes
	}
	return max(MinConcurrentWakes, WakesPerCPU*ncpu)
}

// TLS is [settings.tls]: HTTPS with certificates from an ACME CA (see the
// tlsfront package).
type TLS struct {
	// Enabled turns on HTTPS: certificates from the ACME CA, served on HTTPSPort.
	Enabled bool `toml:"enabled" json:"enabled"`
	// AcmeEmail is the ACME account's contact email.
	AcmeEmail string `toml:"acme_email" json:"acme_email,omitempty"`
	// Domain is the bare domain certificates are issued under; settings.domain defaults to it.
	Domain string `toml:"domain" json:"domain,omitempty"`
	// CacheDir is where certificates and the ACME account are kept.
	CacheDir string `toml:"cache_dir" json:"cache_dir,omitempty"`
	// Staging selects the CA's staging directory (Let's Encrypt staging).
	Staging bool `toml:"staging" json:"staging"`
	// HTTPSPort is the HTTPS port (default 443).
	HTTPSPort int `toml:"https_port" json:"https_port"`
	// HTTPPort is the HTTP port: ACME HTTP-01 challenges and the redirect to HTTPS (default 80).
	HTTPPort int `toml:"http_port" json:"http_port"`
	// DNSProvider is the DNS provider that answers ACME DNS-01 challenges,
	// which gives wildcard certificates (*.DOMAIN and *.SERVICE.DOMAIN for
	// each service): cloudflare or rfc2136 (DNSProviders). Its
	// credentials come from the environment or dns_credentials.
	DNSProvider string `toml:"dns_provider" json:"dns_provider,omitempty"`

	// Keys ten adds.

	// CA is the ACME directory URL (default: Let's Encrypt, or its staging
	// directory with staging = true), e.g. a private step-ca.
	CA string `toml:"ca" json:"ca,omitempty"`
	// CARoot is a PEM file of roots to trust for the ACME server's own
	// HTTPS (a private CA); default: the system's roots.
	CARoot string `toml:"ca_root" json:"ca_root,omitempty"`
	// DNSCredentials is a file of KEY=VALUE lines with the DNS provider's
	// credentials (such as CLOUDFLARE_API_TOKEN); a variable in ten's
	// environment takes precedence over the file.
	DNSCredentials string `toml:"dns_credentials" json:"dns_credentials,omitempty"`
	// DNSResolvers are the DNS servers (HOST:PORT) asked for the zone of a
	// challenge record and whether it has propagated; default: the
	// system's resolvers, then the zone's authoritative servers.
	DNSResolvers []string `toml:"dns_resolvers" json:"dns_resolvers,omitempty"`
}

// DNSProviders are the values of settings.tls.dns_provider ten supports
// (libdns providers): cloudflare (API token) and rfc2136 (dynamic updates
// signed with TSIG to a DNS server of one's own: BIND, Knot, PowerDNS).
var DNSProviders = []string{"cloudflare", "rfc2136"}

// Routing is the [routing] table (parsed, as in tenement, for compatibility).
type Routing struct {
	// Default is the service for hosts no rule matches (parsed, unused, as in tenement).
	Default string `toml:"default" json:"default,omitempty"`
	// Subdomain maps subdomains to services (parsed, unused, as in tenement).
	Subdomain map[string]string `toml:"subdomain" json:"subdomain,omitempty"`
	// Path maps path prefixes to services (parsed, unused, as in tenement).
	Path map[string]string `toml:"path" json:"path,omitempty"`
}

// Mount is one [[service.NAME.mounts]] entry.
type Mount struct {
	// Source is the host path to bind into the instance; a relative one is
	// taken against the config file's directory. It must exist when an
	// instance is made.
	Source string `toml:"source" json:"source"`
	// Destination is the absolute path where the instance sees it.
	Destination string `toml:"destination" json:"destination"`
	// Readonly binds it read-only.
	Readonly bool `toml:"readonly" json:"readonly"`
}

// Service is one [service.NAME] table.
type Service struct {
	// Name is the NAME of [service.NAME].
	Name string `toml:"-" json:"name"`
	// Command is the app's command line (split like a shell command when
	// args is empty); {name} {id} {data_dir} {port} {socket} are replaced.
	Command string `toml:"command" json:"command"`
	// Args are the arguments, when command is the program alone.
	Args []string `toml:"args" json:"args,omitempty"`
	// Socket is the unix socket path the app binds (SOCKET_PATH); default a
	// per-instance path under /run/tenement-app. With isolation namespace a
	// path below /tmp, /var/tmp or /run (tenement's
	// /tmp/tenement/{name}-{id}.sock) is made the instance's own: ten binds
	// its runtime directory over the path's directory inside its namespace.
	// With sandbox it must be in the instance's data directory
	// ({data_dir}/{name}/{id}) or /run/tenement-app/{name}-{id}; with
	// process, ten creates its directory.
	Socket string `toml:"socket" json:"socket,omitempty"`
	// Health is the path of the health check (GET, 2xx/3xx passes), e.g.
	// "/health"; none: systemd's state alone.
	Health string `toml:"health" json:"health,omitempty"`
	// Workdir is the app's working directory; a relative one is taken
	// against the config file's directory. Default: the config file's
	// directory (where tenement runs its apps), so ./run.sh is found; the
	// instance's data directory when isolation hides the config's
	// directory (a home directory under namespace or sandbox).
	Workdir string `toml:"workdir" json:"workdir,omitempty"`
	// Isolation is "namespace" (default: own dynamic user, systemd sandbox),
	// "process" (limits only) or "sandbox" (also gVisor; tenement's "gvisor").
	Isolation string `toml:"isolation" json:"isolation"`
	// Image is tenement's VM image key (parsed; refused by isolation).
	Image string `toml:"image" json:"image,omitempty"`
	// Restart is systemd's Restart= for the app (default "on-failure";
	// tenement's "never" is "no").
	Restart string `toml:"restart" json:"restart"`
	// IdleTimeout is the seconds without traffic after which an instance
	// sleeps (0: never).
	IdleTimeout int `toml:"idle_timeout" json:"idle_timeout"`
	// IdleActivity is what keeps an instance awake: "any" (default: its
	// requests and every packet of its TCP/IP sockets, in or out, ten's own
	// health checks aside) or "inbound" (its requests and its clients'
	// connections only, not the connections it opens itself to a database
	// or an API it polls, nor its DNS lookups: tenement counts requests).
	IdleActivity string `toml:"idle_activity" json:"idle_activity"`
	// StartupTimeout is the seconds an app may take to listen (default 10).
	StartupTimeout int `toml:"startup_timeout" json:"startup_timeout"`
	// RequestTimeout is the seconds a request may take (default 30).
	RequestTimeout int `toml:"request_timeout" json:"request_timeout"`
	// MaxInflight bounds the requests of one instance that the router has
	// in flight at once, WebSockets and other upgraded connections
	// included (default DefaultMaxInflight, 4096; 0, set explicitly: no
	// bound). Past it a request gets 503 with Retry-After at once: each
	// costs ten two descriptors and some memory, and a flood of one
	// instance must not take them from the others.
	MaxInflight *int `toml:"max_inflight" json:"max_inflight,omitempty"`
	// MemoryLimitMB maps to MemoryMax (and MemorySwapMax=0).
	MemoryLimitMB int `toml:"memory_limit_mb" json:"memory_limit_mb,omitempty"`
	// CPUShares maps to CPUWeight.
	CPUShares int `toml:"cpu_shares" json:"cpu_shares,omitempty"`
	// StorageQuotaMB caps the instance's state directory (an ext4 image
	// mounted over it).
	StorageQuotaMB int `toml:"storage_quota_mb" json:"storage_quota_mb,omitempty"`
	// StoragePersist false wipes the state directory whenever the app stops
	// and removes it when the instance is stopped for good (default true).
	StoragePersist *bool `toml:"storage_persist" json:"storage_persist"`
	// FleetMove lets a fleet move this service's instances to a live node
	// when their node is lost although the service keeps local data
	// (storage_quota_mb, or storage_persist written as true): the data
	// stays on the lost node's disk and the instance starts empty.
	FleetMove bool `toml:"fleet_move" json:"fleet_move,omitempty"`
	// persistSet records that storage_persist was written in the file
	// (before defaults).
	persistSet bool
	// Env is [service.NAME.env]: environment of the app (placeholders replaced).
	Env map[string]string `toml:"env" json:"env,omitempty"`
	// Mounts are [[service.NAME.mounts]]: host paths bound into the instance.
	Mounts []Mount `toml:"mounts" json:"mounts,omitempty"`
	// Kernel is a VM key of tenement; VM keys are accepted so its files
	// load, and refused by isolation.
	Kernel string `toml:"kernel" json:"kernel,omitempty"`
	// Rootfs is a VM key of tenement (parsed; refused by isolation).
	Rootfs string `toml:"rootfs" json:"rootfs,omitempty"`
	// MemoryMB is a VM key of tenement (parsed; refused by isolation).
	MemoryMB int `toml:"memory_mb" json:"memory_mb,omitempty"`
	// VCPUs is a VM key of tenement (parsed; refused by isolation).
	VCPUs int `toml:"vcpus" json:"vcpus,omitempty"`
	// VsockPort is a VM key of tenement (parsed; refused by isolation).
	VsockPort int `toml:"vsock_port" json:"vsock_port,omitempty"`

	// Keys ten adds.

	// Activation says how the app gets its socket: "shim" (default; the app
	// binds PORT or SOCKET_PATH itself and ten's shim sits in front) or
	// "socket" (the app takes the socket by systemd socket activation, LISTEN_FDS).
	Activation string `toml:"activation" json:"activation"`
	// Start is "auto" (default: an explicit spawn starts the app, as
	// tenement's does; instances made at boot or by a request are lazy when
	// idle_timeout > 0, eager otherwise), "eager" (start the app whenever
	// the instance is made) or "lazy" (start on the first request, also
	// after an explicit spawn).
	Start string `toml:"start" json:"start"`
	// CPUQuotaPercent maps to CPUQuota (percent of one CPU).
	CPUQuotaPercent int `toml:"cpu_quota_percent" json:"cpu_quota_percent,omitempty"`
	// TasksMax maps to TasksMax: the processes and threads an instance may
	// have at once (default 1024; 0, set explicitly: systemd's
	// DefaultTasksMax, 15 % of the kernel's PIDs).
	TasksMax *int `toml:"tasks_max" json:"tasks_max"`
	// IOWeight maps to IOWeight.
	IOWeight int `toml:"io_weight" json:"io_weight,omitempty"`
	// Network is "" (host network) or "none" (PrivateNetwork).
	Network string `toml:"network" json:"network,omitempty"`
	// MemoryDenyWriteExecute forbids writable-and-executable memory
	// (systemd MemoryDenyWriteExecute; isolation = "namespace" only). Off by
	// default: JITs such as Node's need it.
	MemoryDenyWriteExecute bool `toml:"memory_deny_write_execute" json:"memory_deny_write_execute,omitempty"`
	// IPAllow lists address prefixes the instance may talk to (IPAddressAllow).
	IPAllow []string `toml:"ip_allow" json:"ip_allow,omitempty"`
	// Listen lists L4 addresses (tcp://IP:PORT) dispatched to the instance.
	Listen []string `toml:"listen" json:"listen,omitempty"`
	// Sleep is how an idle instance sleeps: "stop" (default: the service
	// stops after idle_timeout), "freeze" (its cgroup is frozen after
	// idle_timeout and keeps its memory) or "freeze-then-stop" (frozen after
	// idle_timeout, stopped after stop_after).
	Sleep string `toml:"sleep" json:"sleep"`
	// StopAfter is, with sleep = "freeze-then-stop", the seconds of silence
	// after which a frozen instance is stopped (more than idle_timeout).
	StopAfter int `toml:"stop_after" json:"stop_after,omitempty"`
	// SpawnOnRequest lets a request for {id}.{name}.{domain} create
	// instance name:id when it does not exist (tenement's wake on request
	// of a new id; default true).
	SpawnOnRequest *bool `toml:"spawn_on_request" json:"spawn_on_request"`
	// MaxInstances caps the instances of the service that requests may
	// create: past it a request for a new id is refused (default 100;
	// ten spawn is not capped).
	MaxInstances int `toml:"max_instances" json:"max_instances"`
	// LogRateLimitBurst is how many lines of an instance's output reach the
	// journal every log_rate_limit_interval seconds (systemd's
	// LogRateLimitBurst, which journald scales up a few times with its free
	// disk space); journald drops the rest and says how many. Default
	// 1000; 0 leaves journald's own limit (10000 lines per 30 s).
	LogRateLimitBurst *int `toml:"log_rate_limit_burst" json:"log_rate_limit_burst"`
	// LogRateLimitInterval is the window of log_rate_limit_burst, in
	// seconds (systemd's LogRateLimitIntervalSec; default 10, at most 3600).
	LogRateLimitInterval int `toml:"log_rate_limit_interval" json:"log_rate_limit_interval"`
}

// DefaultMaxInstances is max_instances when the config does not set it.
const DefaultMaxInstances = 100

// DefaultTasksMax is tasks_max when the config does not set it: plenty for
// an app's processes and threads (a Go, Node or Python app has tens), and a
// fork bomb stops there instead of at systemd's default of 15 % of the
// kernel's PIDs, seven of which take them all.
const DefaultTasksMax = 1024

// Defaults of log_rate_limit_burst and log_rate_limit_interval: a tenant
// that floods its output cannot fill the journal (and rotate other
// tenants' lines out of it) faster than this.
const (
	DefaultLogRateLimitBurst    = 1000
	DefaultLogRateLimitInterval = 10
)

// What keeps an instance awake (idle_activity).
const (
	IdleActivityAny     = "any"
	IdleActivityInbound = "inbound"
)

// Sleep modes.
const (
	SleepStop           = "stop"
	SleepFreeze         = "freeze"
	SleepFreezeThenStop = "freeze-then-stop"
)

// Isolation levels.
const (
	IsolationProcess   = "process"
	IsolationNamespace = "namespace"
	IsolationSandbox   = "sandbox"
)

// Activation kinds.
const (
	ActivationShim   = "shim"
	ActivationSocket = "socket"
)

// Error is a config error that names the file, line and key.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

// Error renders "file:line: key: message".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	} else {
		b.WriteString("config")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file; a file with any is rejected whole.
type Errors []*Error

// Error renders every problem, one per line.
func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return Parse(abs, data)
}

// SystemFile is the config of a packaged ten (the Debian package's
// conffile); Find falls back to it.
const SystemFile = "/etc/tenement/" + FileName

// Find walks up from dir to the first tenement.toml; without one there, it
// returns SystemFile when that exists.
func Find(dir string) (string, error) {
	return find(dir, SystemFile)
}

func find(dir, system string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(d, FileName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			if _, err := os.Stat(system); err == nil {
				return system, nil
			}
			return "", fmt.Errorf("no %s in %s or any parent directory, and no %s (pass --config)", FileName, dir, system)
		}
		d = parent
	}
}

// decodeTypeErr matches the TOML decoder's message for a value of the
// wrong type, which names Go's types.
var decodeTypeErr = regexp.MustCompile(`cannot decode TOML (\w+) into struct field \S+ of type (\S+)`)

// decodeMsg says a decoder's error in the config's terms: "want a whole
// number, got a string" rather than Go's struct field and type names.
func decodeMsg(msg string) string {
	m := decodeTypeErr.FindStringSubmatch(msg)
	if m == nil {
		return strings.TrimPrefix(msg, "toml: ")
	}
	got := map[string]string{"string": "a string", "integer": "a whole number", "float": "a number with a fraction", "boolean": "true or false",
		"array": "an array", "inline": "a table", "table": "a table", "datetime": "a date", "date": "a date", "time": "a time"}[m[1]]
	if got == "" {
		got = "a TOML " + m[1]
	}
	typ := strings.TrimPrefix(m[2], "*")
	want := "a value of another kind"
	switch {
	case strings.HasPrefix(typ, "int") || strings.HasPrefix(typ, "uint"):
		want = "a whole number"
	case typ == "string":
		want = "a string"
	case typ == "bool":
		want = "true or false"
	case strings.HasPrefix(typ, "float"):
		want = "a number"
	case typ == "[]string":
		want = "an array of strings"
	case strings.HasPrefix(typ, "[]"):
		want = "an array"
	case strings.HasPrefix(typ, "map[") || strings.HasPrefix(typ, "config.") || strings.HasPrefix(typ, "struct"):
		want = "a table"
	}
	return "want " + want + ", got " + got
}

// Parse decodes, defaults and validates data; file names the source in errors.
func Parse(file string, data []byte) (*Config, error) {
	lines := keyLines(data)
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var sm *toml.StrictMissingError
		var de *toml.DecodeError
		switch {
		case errors.As(err, &sm):
			var es Errors
			for _, e := range sm.Errors {
				row, _ := e.Position()
				es = append(es, &Error{File: file, Line: row, Key: strings.Join(e.Key(), "."), Msg: unknownKeyMsg(e.Key())})
			}
			return nil, es
		case errors.As(err, &de):
			row, _ := de.Position()
			return nil, Errors{{File: file, Line: row, Key: strings.Join(de.Key(), "."), Msg: decodeMsg(de.Error())}}
		default:
			return nil, Errors{{File: file, Msg: err.Error()}}
		}
	}
	c.Path = file
	// Which of the restart settings the file gives, 0 included: tenement
	// reads an explicit 0 as 0 (no backoff, no restarts), not as unset.
	var given struct {
		Settings struct {
			HealthCheckInterval *int `toml:"health_check_interval"`
			MaxRestarts         *int `toml:"max_restarts"`
			RestartWindow       *int `toml:"restart_window"`
			BackoffBaseMs       *int `toml:"backoff_base_ms"`
			BackoffMaxMs        *int `toml:"backoff_max_ms"`
		} `toml:"settings"`
	}
	_ = toml.Unmarshal(data, &given) // decoded once already: no error
	g := given.Settings
	c.zeroGiven = zeroGiven{healthCheckInterval: isZero(g.HealthCheckInterval), maxRestarts: isZero(g.MaxRestarts),
		restartWindow: isZero(g.RestartWindow), backoffBaseMs: isZero(g.BackoffBaseMs), backoffMaxMs: isZero(g.BackoffMaxMs)}
	c.defaults()
	if es := c.validate(file, lines); len(es) > 0 {
		return nil, es
	}
	return &c, nil
}

func (c *Config) defaults() {
	c.Fleet.defaults()
	s := &c.Settings
	if s.DataDir == "" {
		s.DataDir = "./tenement-data"
		s.dataDirDefault = true
	}
	z := c.zeroGiven
	if s.HealthCheckInterval == 0 && !z.healthCheckInterval {
		s.HealthCheckInterval = 10
	}
	if s.MaxRestarts == 0 && !z.maxRestarts {
		s.MaxRestarts = 3
	}
	if s.RestartWindow == 0 && !z.restartWindow {
		s.RestartWindow = 300
	}
	if s.BackoffBaseMs == 0 && !z.backoffBaseMs {
		s.BackoffBaseMs = 1000
	}
	if s.BackoffMaxMs == 0 && !z.backoffMaxMs {
		s.BackoffMaxMs = 60000
	}
	if s.TLS.HTTPSPort == 0 {
		s.TLS.HTTPSPort = 443
	}
	if s.TLS.HTTPPort == 0 {
		s.TLS.HTTPPort = 80
	}
	if s.Listen == "" {
		s.Listen = ":8080"
	}
	s.Domain = NormalDomain(s.Domain)
	if s.Domain == "" {
		// tenement names its domain in [settings.tls] (and serve -d).
		s.Domain = NormalDomain(s.TLS.Domain)
	}
	if s.Domain == "" {
		// Also for "." (the root), which names no domain to route under.
		s.Domain = "localhost"
	}
	if s.SocketDir == "" {
		s.SocketDir = "/run/tenement"
	}
	if s.SpawnRatePerClient == 0 {
		s.SpawnRatePerClient = 10
	}
	if s.WakeQueue == nil {
		n := DefaultWakeQueue
		s.WakeQueue = &n
	}
	if s.WakeQueueTimeout == 0 {
		s.WakeQueueTimeout = DefaultWakeQueueTimeout
	}
	if s.Standby == nil {
		n := DefaultStandby
		s.Standby = &n
	}
	if s.MaxBodyMB == nil {
		n := DefaultMaxBodyMB
		s.MaxBodyMB = &n
	}
	if s.MaxConnsPerAddress == nil {
		n := DefaultMaxConnsPerAddress
		s.MaxConnsPerAddress = &n
	}
	if len(s.PortRange) == 0 {
		s.PortRange = []int{20000, 29999}
	}
	if c.Services == nil {
		c.Services = map[string]*Service{}
	}
	if c.Instances == nil {
		c.Instances = map[string][]string{}
	}
	for name, svc := range c.Services {
		svc.Name = name
		if svc.Isolation == "" {
			svc.Isolation = IsolationNamespace
		}
		if svc.Isolation == "gvisor" {
			svc.Isolation = IsolationSandbox
		}
		switch svc.Restart {
		case "":
			svc.Restart = "on-failure"
		case "never": // tenement's name for systemd's "no"
			svc.Restart = "no"
		}
		if svc.StartupTimeout == 0 {
			svc.StartupTimeout = 10
		}
		if svc.RequestTimeout == 0 {
			svc.RequestTimeout = 30
		}
		svc.persistSet = svc.StoragePersist != nil
		if svc.StoragePersist == nil {
			t := true
			svc.StoragePersist = &t
		}
		if svc.Activation == "" {
			svc.Activation = ActivationShim
		}
		if svc.Start == "" {
			svc.Start = "auto"
		}
		if svc.Sleep == "" {
			svc.Sleep = SleepStop
		}
		if svc.IdleActivity == "" {
			svc.IdleActivity = IdleActivityAny
		}
		if svc.SpawnOnRequest == nil {
			t := true
			svc.SpawnOnRequest = &t
		}
		if svc.MaxInstances == 0 {
			svc.MaxInstances = DefaultMaxInstances
		}
		if svc.TasksMax == nil {
			n := DefaultTasksMax
			svc.TasksMax = &n
		}
		if svc.LogRateLimitBurst == nil {
			n := DefaultLogRateLimitBurst
			svc.LogRateLimitBurst = &n
		}
		if svc.LogRateLimitInterval == 0 {
			svc.LogRateLimitInterval = DefaultLogRateLimitInterval
		}
	}
}

// Lazy reports whether a new instance of s starts asleep.
func (s *Service) Lazy() bool {
	switch s.Start {
	case "lazy":
		return true
	case "eager":
		return false
	}
	return s.IdleTimeout > 0
}

// SpawnStarts reports whether an explicit spawn (`ten spawn`, the API, the
// dashboard) of an instance of s starts its app at once, as tenement's spawn
// does: every start but "lazy". Such an instance still goes to sleep after
// idle_timeout without a request.
func (s *Service) SpawnStarts() bool {
	return s.Start != "lazy"
}

// IdleTimeoutDuration is idle_timeout as a duration (0 = never sleep).
func (s *Service) IdleTimeoutDuration() time.Duration {
	return time.Duration(s.IdleTimeout) * time.Second
}

// Freezes reports whether idle instances of s are frozen (sleep = "freeze"
// or "freeze-then-stop") rather than stopped at idle_timeout.
func (s *Service) Freezes() bool {
	return s.Sleep == SleepFreeze || s.Sleep == SleepFreezeThenStop
}

// StopAfterDuration is stop_after as a duration (0 = a frozen instance is
// never stopped for silence).
func (s *Service) StopAfterDuration() time.Duration {
	if s.Sleep != SleepFreezeThenStop {
		return 0
	}
	return time.Duration(s.StopAfter) * time.Second
}

// StartupTimeoutDuration is startup_timeout as a duration.
func (s *Service) StartupTimeoutDuration() time.Duration {
	return time.Duration(s.StartupTimeout) * time.Second
}

// DefaultMaxInflight is max_inflight when the config does not set it.
const DefaultMaxInflight = 4096

// InflightCap is max_inflight (0: no bound).
func (s *Service) InflightCap() int {
	if s.MaxInflight == nil {
		return DefaultMaxInflight
	}
	return *s.MaxInflight
}

// RequestTimeoutDuration is request_timeout as a duration.
func (s *Service) RequestTimeoutDuration() time.Duration {
	return time.Duration(s.RequestTimeout) * time.Second
}

// ServiceNames returns the services in sorted order.
func (c *Config) ServiceNames() []string {
	names := make([]string, 0, len(c.Services))
	for n := range c.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DataDirAbs returns settings.data_dir made absolute against the config file's directory.
func (c *Config) DataDirAbs() string {
	d := c.Settings.DataDir
	if filepath.IsAbs(d) || c.Path == "" {
		return filepath.Clean(d)
	}
	return filepath.Join(filepath.Dir(c.Path), d)
}

// NormalDomain is a routing domain as ten compares Hosts with it:
// lowercase, without the trailing dot of a fully qualified name.
func NormalDomain(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

// DefaultInstanceRoot holds instances' data when data_dir is not set:
// systemd's StateDirectory root for ten's units.
const DefaultInstanceRoot = "/var/lib/tenement"

// SetDataDir overrides settings.data_dir (ten's --data-dir,
// TENEMENT_DATA_DIR); instance data then lives under it, as when the file
// sets it.
func (c *Config) SetDataDir(d string) {
	c.Settings.DataDir = d
	c.Settings.dataDirDefault = false
}

// InstanceRoot is tenement's {data_dir} as instances see it: an instance's
// data is InstanceRoot()/{name}/{id}. It is data_dir made absolute when the
// config (or --data-dir) sets one, and DefaultInstanceRoot when nothing
// does, so that a config without data_dir keeps its instances' data where
// systemd keeps state.
func (c *Config) InstanceRoot() string {
	if c.Settings.dataDirDefault {
		return DefaultInstanceRoot
	}
	return c.DataDirAbs()
}

// zeroGiven records the settings a file sets to 0 explicitly, where 0
// means something (no backoff, no restarts) rather than "the default".
type zeroGiven struct {
	healthCheckInterval, maxRestarts, restartWindow, backoffBaseMs, backoffMaxMs bool
}

func isZero(p *int) bool { return p != nil && *p == 0 }

// TrustedProxy is the test of settings.trusted_proxies for a client IP (nil
// when it names none); call it on a validated config.
func (s Settings) TrustedProxy() func(ip string) bool {
	var prefixes []netip.Prefix
	for _, e := range s.TrustedProxies {
		if p, err := parseProxy(e); err == nil {
			prefixes = append(prefixes, p)
		}
	}
	if len(prefixes) == 0 {
		return nil
	}
	return func(ip string) bool {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return false
		}
		a = a.Unmap()
		for _, p := range prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
}

// parseProxy reads one entry of settings.trusted_proxies: an IP (a prefix
// of its full length) or a CIDR prefix.
func parseProxy(e string) (netip.Prefix, error) {
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(e)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
