package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// MaxNameLen bounds service names and instance ids: each becomes a DNS label
// in routing and part of a unit name (at most 255 bytes).
const MaxNameLen = 63

// CheckName validates a service name (what names it in the message).
// Names become DNS labels and unit-name parts, so they are lowercase
// letters, digits and '-', starting and ending with a letter or digit.
func CheckName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s %q is %d characters long; at most %d are allowed", what, s, len(s), MaxNameLen)
	}
	for i, r := range s {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-'
		if !ok {
			return fmt.Errorf("%s %q has %q at position %d; use lowercase letters, digits and '-'", what, s, r, i+1)
		}
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return fmt.Errorf("%s %q must start and end with a letter or digit", what, s)
	}
	return nil
}

// CheckID validates an instance id (what names it in the message): ASCII
// letters, digits, '-' and '_', as tenement accepts. Every one of them is
// valid in a systemd unit name as it is, and a DNS label matches it
// case-insensitively (two ids that differ only by case are refused where
// both would exist: see FoldConflict).
func CheckID(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s %q is %d characters long; at most %d are allowed", what, s, len(s), MaxNameLen)
	}
	for i, r := range s {
		ok := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '-' || r == '_'
		if !ok {
			return fmt.Errorf("%s %q has %q at position %d; use ASCII letters, digits, '-' and '_'", what, s, r, i+1)
		}
	}
	return nil
}

// FoldConflict returns the id among others that equals id ignoring case
// but differs from it, or "". Host routing is case-insensitive (DNS), so
// such a pair could not be told apart by a request.
func FoldConflict(id string, others []string) string {
	for _, o := range others {
		if o != id && strings.EqualFold(o, id) {
			return o
		}
	}
	return ""
}

var validIsolation = map[string]string{
	IsolationProcess:   "",
	IsolationNamespace: "",
	IsolationSandbox:   "",
	"litebox":          "ten does not support litebox isolation; use process, namespace or sandbox (gVisor)",
	"quark":            "ten does not support quark isolation; use process, namespace or sandbox (gVisor)",
	"firecracker":      "ten does not run Firecracker VMs; use sandbox (gVisor) for a kernel boundary",
	"qemu":             "ten does not run QEMU VMs; use sandbox (gVisor) for a kernel boundary",
}

var validRestart = map[string]bool{"no": true, "on-failure": true, "always": true, "on-abnormal": true, "on-abort": true, "on-watchdog": true, "on-success": true}

func (c *Config) validate(file string, lines map[string]int) Errors {
	var es Errors
	add := func(key, format string, a ...any) {
		es = append(es, &Error{File: file, Line: lineOf(lines, key), Key: key, Msg: fmt.Sprintf(format, a...)})
	}
	c.Fleet.validate(add)
	s := c.Settings
	if len(s.PortRange) != 2 || s.PortRange[0] < 1024 || s.PortRange[1] > 65535 || s.PortRange[0] > s.PortRange[1] {
		add("settings.port_range", "must be [first, last] with 1024 <= first <= last <= 65535")
	}
	if !filepath.IsAbs(s.SocketDir) {
		add("settings.socket_dir", "must be an absolute path, got %q", s.SocketDir)
	}
	if s.HealthCheckInterval < 1 || s.HealthCheckInterval > 86400 {
		add("settings.health_check_interval", "must be 1 to 86400 seconds between health checks, got %d", s.HealthCheckInterval)
	}
	if s.RestartWindow < 0 {
		add("settings.restart_window", "must not be negative, got %d", s.RestartWindow)
	}
	if s.BackoffBaseMs < 0 || s.BackoffMaxMs < 0 {
		add("settings.backoff_base_ms", "backoff_base_ms and backoff_max_ms must not be negative, got %d and %d", s.BackoffBaseMs, s.BackoffMaxMs)
	}
	if s.MaxRestarts < 0 {
		add("settings.max_restarts", "must not be negative")
	}
	if s.SpawnRatePerClient < 0 {
		add("settings.spawn_rate_per_client", "must be positive (instances one client may create per minute by request), got %d", s.SpawnRatePerClient)
	}
	if s.MaxConcurrentWakes < 0 || s.MaxConcurrentWakes > 10000 {
		add("settings.max_concurrent_wakes", "must be 0 (2 per CPU) to 10000, got %d", s.MaxConcurrentWakes)
	}
	if *s.WakeQueue < 0 || *s.WakeQueue > 1000000 {
		add("settings.wake_queue", "must be 0 to 1000000 (0: no queue, a wake past max_concurrent_wakes gets 503), got %d", *s.WakeQueue)
	}
	if s.WakeQueueTimeout < 0 || s.WakeQueueTimeout > 3600 {
		add("settings.wake_queue_timeout", "must be 1 to 3600 seconds (0: the default, %d), got %d", DefaultWakeQueueTimeout, s.WakeQueueTimeout)
	}
	if *s.Standby < 0 || *s.Standby > 1000 {
		add("settings.standby", "must be 0 (none) to 1000 sleeping instances kept on standby (each holds two journald streams; journald takes 4096), got %d", *s.Standby)
	}
	if *s.MaxBodyMB < 0 || *s.MaxBodyMB > 1<<20 {
		add("settings.max_body_mb", "must be 0 (no bound) to 1048576 MiB, got %d", *s.MaxBodyMB)
	}
	if len(s.TrustedProxies) > 64 {
		add("settings.trusted_proxies", "names %d entries; at most 64 (use CIDR prefixes)", len(s.TrustedProxies))
	}
	for i, e := range s.TrustedProxies {
		if _, err := parseProxy(e); err != nil {
			add(fmt.Sprintf("settings.trusted_proxies[%d]", i), "%q is not an IP address or CIDR prefix (e.g. \"127.0.0.1\", \"10.0.0.0/8\")", e)
		}
	}
	if *s.MaxConnsPerAddress < 0 || *s.MaxConnsPerAddress > 1<<20 {
		add("settings.max_conns_per_address", "must be 0 (no bound) to 1048576 connections one client address may hold open, got %d", *s.MaxConnsPerAddress)
	}
	if t := s.TasksMaxTotal; t != nil && (*t < 0 || *t > 1<<22) {
		add("settings.tasks_max_total", "must be 0 (no cap) to 4194304 processes and threads (the most PIDs a kernel has), got %d", *t)
	}
	if m := s.MemoryMaxTotalMB; m != nil && (*m < 0 || *m > 1<<30) {
		add("settings.memory_max_total_mb", "must be 0 (no cap) to 1073741824 MiB, got %d", *m)
	}
	if s.MaxFrozenMB < 0 {
		add("settings.max_frozen_mb", "must not be negative (0: no cap), got %d", s.MaxFrozenMB)
	}
	for _, r := range c.Routing.keys() {
		add("routing."+r, "is not used (tenement parses it and does nothing with it either); ten routes by Host: {id}.{service}.DOMAIN and {service}.DOMAIN; remove it")
	}
	if d := s.Domain; d != "" {
		// One trailing dot (a fully qualified name) was dropped; more, or
		// an empty label elsewhere, names no host.
		if err := CheckDomain(d); err != nil {
			add("settings.domain", "%v", err)
		}
	}
	if t := s.TLS; t.Enabled {
		for k, port := range map[string]int{"https_port": t.HTTPSPort, "http_port": t.HTTPPort} {
			if port < 1 || port > 65535 {
				add("settings.tls."+k, "must be a port from 1 to 65535, got %d", port)
			}
		}
		if t.HTTPSPort == t.HTTPPort {
			add("settings.tls.http_port", "must differ from https_port (%d)", t.HTTPSPort)
		}
		if err := CheckDomain(strings.TrimSuffix(t.Domain, ".")); t.Domain != "" && err != nil {
			add("settings.tls.domain", "%v", err)
		} else if t.Domain != "" && NormalDomain(t.Domain) != s.Domain {
			add("settings.tls.domain", "%q differs from settings.domain %q: ten routes and gets certificates for one domain", t.Domain, s.Domain)
		}
		if t.CA != "" && !strings.HasPrefix(t.CA, "https://") {
			add("settings.tls.ca", "must be an https:// ACME directory URL, got %q", t.CA)
		}
		if t.DNSProvider != "" && !slices.Contains(DNSProviders, t.DNSProvider) {
			add("settings.tls.dns_provider", "%q is not a DNS provider ten supports; use one of %s, or leave it out (no wildcard certificates: every host gets its own through HTTP-01 or TLS-ALPN-01)", t.DNSProvider, strings.Join(DNSProviders, ", "))
		}
		if t.DNSProvider == "" && (t.DNSCredentials != "" || len(t.DNSResolvers) > 0) {
			add("settings.tls.dns_provider", "is not set, but dns_credentials or dns_resolvers is: set dns_provider (one of %s) or remove them", strings.Join(DNSProviders, ", "))
		}
		for _, r := range t.DNSResolvers {
			if host, port, err := net.SplitHostPort(r); err != nil || host == "" || port == "" {
				add("settings.tls.dns_resolvers", "want HOST:PORT such as 127.0.0.1:53, got %q", r)
			}
		}
	}
	if s.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(s.MetricsListen); err != nil {
			add("settings.metrics_listen", "want HOST:PORT such as 127.0.0.1:9100: %v", err)
		} else if s.MetricsListen == s.Listen {
			add("settings.metrics_listen", "is settings.listen too (%s); leave it out to serve /metrics there", s.Listen)
		}
	}
	for _, name := range c.ServiceNames() {
		svc := c.Services[name]
		k := "service." + name
		for _, u := range svc.unsupported() {
			add(k+"."+u.key, "%s", u.msg)
		}
		if err := CheckName("service name", name); err != nil {
			add(k, "%v", err)
		}
		if strings.TrimSpace(svc.Command) == "" {
			add(k+".command", "is required")
		} else if len(svc.Args) == 0 {
			if _, err := SplitCommand(svc.Command); err != nil {
				add(k+".command", "%v", err)
			}
		}
		if svc.MemoryDenyWriteExecute && svc.Isolation != IsolationNamespace {
			add(k+".memory_deny_write_execute", "applies only with isolation = \"namespace\", not %q", svc.Isolation)
		}
		if msg, ok := validIsolation[svc.Isolation]; !ok {
			add(k+".isolation", "unknown isolation %q; use process, namespace or sandbox", svc.Isolation)
		} else if msg != "" {
			add(k+".isolation", "%s", msg)
		}
		if !validRestart[svc.Restart] {
			add(k+".restart", "unknown restart policy %q; use no (never), on-failure or always", svc.Restart)
		}
		if svc.Activation != ActivationShim && svc.Activation != ActivationSocket {
			add(k+".activation", "unknown activation %q; use shim (app binds PORT or SOCKET_PATH) or socket (app takes LISTEN_FDS)", svc.Activation)
		}
		switch svc.Start {
		case "auto", "eager", "lazy":
		default:
			add(k+".start", "unknown start %q; use auto, eager or lazy", svc.Start)
		}
		switch svc.IdleActivity {
		case IdleActivityAny, IdleActivityInbound:
		default:
			add(k+".idle_activity", "unknown idle_activity %q; use any (every packet of the instance, in or out) or inbound (its requests and its clients' connections, not the connections it opens itself)", svc.IdleActivity)
		}
		switch svc.Sleep {
		case SleepStop:
			if svc.StopAfter != 0 {
				add(k+".stop_after", "only applies with sleep = \"freeze-then-stop\" (sleep is %q)", svc.Sleep)
			}
		case SleepFreeze, SleepFreezeThenStop:
			if svc.IdleTimeout <= 0 {
				add(k+".idle_timeout", "sleep = %q needs idle_timeout > 0 (the seconds of silence before the instance is frozen)", svc.Sleep)
			}
			if svc.Sleep == SleepFreeze && svc.StopAfter != 0 {
				add(k+".stop_after", "only applies with sleep = \"freeze-then-stop\" (sleep is %q)", svc.Sleep)
			}
			if svc.Sleep == SleepFreezeThenStop && svc.StopAfter <= svc.IdleTimeout {
				add(k+".stop_after", "sleep = \"freeze-then-stop\" needs stop_after > idle_timeout (%d), got %d", svc.IdleTimeout, svc.StopAfter)
			}
		default:
			add(k+".sleep", "unknown sleep %q; use stop, freeze or freeze-then-stop", svc.Sleep)
		}
		nonNeg := map[string]int{"idle_timeout": svc.IdleTimeout, "memory_limit_mb": svc.MemoryLimitMB, "storage_quota_mb": svc.StorageQuotaMB}
		if svc.TasksMax != nil {
			nonNeg["tasks_max"] = *svc.TasksMax
		}
		for key, v := range nonNeg {
			if v < 0 {
				add(k+"."+key, "must not be negative, got %d", v)
			}
		}
		if svc.MaxInstances < 0 {
			add(k+".max_instances", "must be positive, got %d (spawn_on_request = false turns creation by request off)", svc.MaxInstances)
		}
		if b := svc.LogRateLimitBurst; b != nil && (*b < 0 || *b > 1000000) {
			add(k+".log_rate_limit_burst", "must be within 0..1000000 lines (0: journald's own limit), got %d", *b)
		}
		if svc.LogRateLimitInterval < 0 || svc.LogRateLimitInterval > 3600 {
			add(k+".log_rate_limit_interval", "must be within 1..3600 seconds, got %d", svc.LogRateLimitInterval)
		}
		if svc.StartupTimeout < 0 {
			add(k+".startup_timeout", "must be positive, got %d", svc.StartupTimeout)
		}
		if svc.RequestTimeout < 0 {
			add(k+".request_timeout", "must be positive, got %d", svc.RequestTimeout)
		}
		if m := svc.MaxInflight; m != nil && (*m < 0 || *m > 1<<20) {
			add(k+".max_inflight", "must be 0 (no bound) to 1048576 requests in flight at once, got %d", *m)
		}
		if svc.CPUShares != 0 && (svc.CPUShares < 1 || svc.CPUShares > 10000) {
			add(k+".cpu_shares", "must be within 1..10000 (systemd CPUWeight), got %d", svc.CPUShares)
		}
		if svc.IOWeight != 0 && (svc.IOWeight < 1 || svc.IOWeight > 10000) {
			add(k+".io_weight", "must be within 1..10000 (systemd IOWeight), got %d", svc.IOWeight)
		}
		if svc.CPUQuotaPercent < 0 {
			add(k+".cpu_quota_percent", "must not be negative, got %d", svc.CPUQuotaPercent)
		}
		if svc.Network != "" && svc.Network != "none" {
			add(k+".network", "unknown network %q; use \"none\" or leave it out", svc.Network)
		}
		for _, p := range svc.IPAllow {
			if _, err := netip.ParsePrefix(p); err != nil {
				if _, err2 := netip.ParseAddr(p); err2 != nil {
					add(k+".ip_allow", "%q is not an address or prefix", p)
				}
			}
		}
		for _, l := range svc.Listen {
			if _, err := ParseListen(l); err != nil {
				add(k+".listen", "%v", err)
			}
		}
		if svc.Health != "" && !strings.HasPrefix(svc.Health, "/") {
			add(k+".health", "must be a path starting with '/', got %q", svc.Health)
		}
		if svc.Workdir != "" && !filepath.IsAbs(svc.Workdir) && !strings.Contains(svc.Workdir, "{") {
			// Relative workdirs are taken against the config file's directory.
			svc.Workdir = filepath.Join(filepath.Dir(c.Path), svc.Workdir)
		}
		for i := range svc.Mounts {
			checkMount(&svc.Mounts[i], fmt.Sprintf("%s.mounts[%d]", k, i), c.Path, add)
		}
		for key := range svc.Env {
			if !envName(key) {
				add(k+".env", "bad variable name %q; use letters, digits and '_', not starting with a digit (systemd takes no other)", key)
			}
		}
		if err := checkTemplate(svc.Socket); err != nil {
			add(k+".socket", "%v", err)
		} else if svc.Socket != "" {
			if msg := c.socketProblem(svc); msg != "" {
				add(k+".socket", "%s", msg)
			}
		}
		if err := checkTemplate(svc.Command); err != nil {
			add(k+".command", "%v", err)
		}
		for _, a := range svc.Args {
			if err := checkTemplate(a); err != nil {
				add(k+".args", "%v", err)
			}
		}
	}
	for _, key := range nulKeys(reflect.ValueOf(c).Elem(), "") {
		add(key, "contains a NUL byte (\\u0000), which no command, path or variable can carry")
	}
	for _, o := range listenOverlaps(c) {
		add(o.key, "%s", o.msg)
	}
	for _, svcName := range sortedKeys(c.Instances) {
		k := "instances." + svcName
		if _, ok := c.Services[svcName]; !ok {
			add(k, "no [service.%s] is defined", svcName)
			continue
		}
		seen := map[string]bool{}
		ids := c.Instances[svcName]
		for i, id := range ids {
			if err := CheckID("instance id", id); err != nil {
				add(k, "%v", err)
			}
			if seen[id] {
				add(k, "instance id %q is listed twice", id)
			} else if o := FoldConflict(id, ids[:i]); o != "" {
				add(k, "instance ids %q and %q differ only by case; Host routing cannot tell them apart (DNS ignores case): rename one", o, id)
			}
			seen[id] = true
		}
	}
	return es
}

// envName reports whether k is an environment variable name systemd
// accepts (env_name_is_valid): letters, digits and '_', no leading digit.
func envName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// nulKeys returns the dotted keys (as in the file) of every string in v, a
// decoded config value, that holds a NUL byte: D-Bus strings cannot carry
// one, so such a value could never reach systemd.
func nulKeys(v reflect.Value, key string) []string {
	var out []string
	switch v.Kind() {
	case reflect.String:
		if strings.IndexByte(v.String(), 0) >= 0 {
			out = append(out, key)
		}
	case reflect.Pointer:
		if !v.IsNil() {
			out = nulKeys(v.Elem(), key)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			out = append(out, nulKeys(v.Field(i), join(key, name))...)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			out = append(out, nulKeys(v.Index(i), key)...)
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, mk := range keys {
			k := join(key, mk.String())
			if strings.IndexByte(mk.String(), 0) >= 0 {
				out = append(out, k)
			}
			out = append(out, nulKeys(v.MapIndex(mk), k)...)
		}
	}
	return slices.Compact(out)
}

func join(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

type unsupportedKey struct{ key, msg string }

// unsupported lists the tenement keys of s that ten does not implement,
// with what to use instead: loading such a file would otherwise run the
// app differently from what its author wrote.
func (s *Service) unsupported() []unsupportedKey {
	var out []unsupportedKey
	vm := "is a key of tenement's VM runtimes (firecracker, qemu), which ten does not run; remove it (isolation = \"sandbox\" runs the app under gVisor)"
	if s.Image != "" {
		out = append(out, unsupportedKey{"image", "ten runs the command under gVisor on the host's root filesystem (read-only), not a container image; remove image and point command at the app (isolation = \"sandbox\")"})
	}
	if s.Rootfs != "" {
		out = append(out, unsupportedKey{"rootfs", "ten does not chroot the app; remove rootfs (isolation = \"namespace\" already makes the host's files read-only, [[service.NAME.mounts]] binds directories in)"})
	}
	if s.Kernel != "" {
		out = append(out, unsupportedKey{"kernel", vm})
	}
	if s.MemoryMB != 0 {
		out = append(out, unsupportedKey{"memory_mb", vm + "; memory_limit_mb limits memory"})
	}
	if s.VCPUs != 0 {
		out = append(out, unsupportedKey{"vcpus", vm + "; cpu_quota_percent limits CPU"})
	}
	if s.VsockPort != 0 {
		out = append(out, unsupportedKey{"vsock_port", vm})
	}
	return out
}

func (r Routing) keys() []string {
	var out []string
	if r.Default != "" {
		out = append(out, "default")
	}
	if r.Subdomain != nil {
		out = append(out, "subdomain")
	}
	if r.Path != nil {
		out = append(out, "path")
	}
	return out
}

// socketProblem says why the app of svc could not bind its socket key
// where ten's router reaches it, or "". With isolation namespace and
// sandbox the app can create files only in its data directory
// ({data_dir}/{name}/{id}) and its runtime directory
// (/run/tenement-app/{name}-{id}), and its /tmp is its own. Under
// namespace a key in another directory of /tmp, /var/tmp or /run
// (tenement's /tmp/tenement/{name}-{id}.sock) works all the same: ten binds
// the instance's runtime directory there inside its namespace
// (SocketBindDir). With isolation = "process" any absolute path works (ten
// creates its directory at spawn).
func (c *Config) socketProblem(svc *Service) string {
	path, ok := c.socketTemplate(svc)
	if !ok {
		return fmt.Sprintf("must be an absolute path, got %q", svc.Socket)
	}
	if svc.Isolation == IsolationProcess || c.socketInOwnDir(svc, path) || c.SocketBindDir(svc) {
		return ""
	}
	if svc.Isolation == IsolationNamespace {
		return fmt.Sprintf("%q: an app with isolation = %q can create its socket only in its data directory ({data_dir}/{name}/{id}), its runtime directory (/run/tenement-app/{name}-{id}), or a directory below /tmp, /var/tmp or /run (which ten binds to the runtime directory inside the instance); "+
			"remove the key (SOCKET_PATH is then /run/tenement-app/{name}-{id}/app.sock) or use e.g. \"/tmp/tenement/{name}-{id}.sock\"", svc.Socket, svc.Isolation)
	}
	return fmt.Sprintf("%q: an app with isolation = %q can create its socket only in its data directory ({data_dir}/{name}/{id}) or its runtime directory (/run/tenement-app/{name}-{id}), and its /tmp is its own; "+
		"remove the key (SOCKET_PATH is then /run/tenement-app/{name}-{id}/app.sock) or use e.g. \"{data_dir}/{name}/{id}/app.sock\"", svc.Socket, svc.Isolation)
}

// socketTemplate is svc's socket key expanded with {id} and {port} left
// in (the path must be right for every id), and whether it is absolute.
func (c *Config) socketTemplate(svc *Service) (string, bool) {
	path := Vars{Name: svc.Name, ID: "{id}", DataDir: c.InstanceRoot(), Port: "{port}"}.Expand(svc.Socket)
	return filepath.Clean(path), filepath.IsAbs(path)
}

// socketInOwnDir reports whether path is in the instance's data or runtime
// directory.
func (c *Config) socketInOwnDir(svc *Service, path string) bool {
	dir := filepath.Dir(path)
	for _, ok := range []string{filepath.Join(c.InstanceRoot(), svc.Name, "{id}"), filepath.Join("/run/tenement-app", svc.Name+"-{id}")} {
		if rel, err := filepath.Rel(ok, dir); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
}

// SocketBindDir reports whether svc's socket key (under isolation =
// "namespace") is one ten makes work by binding the instance's runtime
// directory over the key's directory inside the instance's namespace: an
// absolute path in a directory below /tmp, /var/tmp or /run (not one of
// those itself, and not the instance's own directories, which need no
// bind). Each instance binds its own runtime directory there, so two
// instances never share the socket, with {id} in the key or not.
func (c *Config) SocketBindDir(svc *Service) bool {
	if svc.Socket == "" || svc.Isolation != IsolationNamespace {
		return false
	}
	path, ok := c.socketTemplate(svc)
	if !ok || c.socketInOwnDir(svc, path) {
		return false
	}
	dir := filepath.Dir(path)
	for _, top := range []string{"/tmp", "/var/tmp", "/run"} {
		if strings.HasPrefix(dir, top+"/") && !strings.HasPrefix(dir, "/run/tenement") && !strings.HasPrefix(dir, "/run/systemd") {
			return true
		}
	}
	return false
}

var templateVars = map[string]bool{"name": true, "id": true, "data_dir": true, "port": true, "socket": true}

func checkTemplate(s string) error {
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			return nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil // a lone brace is literal text (shell snippets)
		}
		v := s[i+1 : i+j]
		// ${NAME} is a shell's parameter expansion (sh -c '... ${PORT}'),
		// which tenement passes through untouched as ten does.
		if isIdent(v) && !templateVars[v] && (i == 0 || s[i-1] != '$') {
			return fmt.Errorf("unknown placeholder {%s}; known are {name} {id} {data_dir} {port} {socket}", v)
		}
		s = s[i+j+1:]
	}
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sortStrings(ks)
	return ks
}

func lineOf(lines map[string]int, key string) int {
	for k := key; k != ""; {
		if l, ok := lines[k]; ok {
			return l
		}
		if j := strings.LastIndexByte(k, '['); j > 0 && strings.HasSuffix(k, "]") {
			k = k[:j] // an element of an array: the array's own line
			continue
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// keyLines maps dotted keys ("service.api.isolation") to the line they are on.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = table[:0]
			it := n.Key()
			line := 0
			for it.Next() {
				kn := it.Node()
				table = append(table, string(kn.Data))
				if line == 0 && kn.Raw.Length > 0 {
					line = p.Shape(kn.Raw).Start.Line
				}
			}
			if line > 0 {
				k := strings.Join(table, ".")
				if _, ok := lines[k]; !ok {
					lines[k] = line
				}
			}
		case unstable.KeyValue:
			parts := append([]string(nil), table...)
			it := n.Key()
			line := 0
			for it.Next() {
				kn := it.Node()
				parts = append(parts, string(kn.Data))
				if line == 0 && kn.Raw.Length > 0 {
					line = p.Shape(kn.Raw).Start.Line
				}
			}
			if line > 0 {
				lines[strings.Join(parts, ".")] = line
			}
		}
	}
	return lines
}

// checkMount checks one [[service.NAME.mounts]] entry (key names it, e.g.
// service.web.mounts[0]) and makes a relative source absolute against dir,
// the directory of file, the config file, as a relative workdir is. systemd
// takes only absolute paths, and the destination is a path inside the
// instance.
func checkMount(m *Mount, key, file string, add func(key, format string, a ...any)) {
	dir := ""
	if file != "" {
		dir, _ = filepath.Abs(filepath.Dir(file))
	}
	switch {
	case m.Source == "":
		add(key+".source", "is missing: name the host directory or file to bind into the instance")
	case !filepath.IsAbs(m.Source) && dir != "":
		m.Source = filepath.Join(dir, m.Source)
	case !filepath.IsAbs(m.Source):
		add(key+".source", "%q is relative and there is no config file to take it against; use an absolute path", m.Source)
	}
	if m.Source != "" {
		m.Source = filepath.Clean(m.Source)
	}
	switch {
	case m.Destination == "":
		add(key+".destination", "is missing: name the absolute path where the instance sees %q", m.Source)
	case !filepath.IsAbs(m.Destination):
		add(key+".destination", "%q must be an absolute path inside the instance, e.g. \"/mnt/data\"", m.Destination)
	case filepath.Clean(m.Destination) == "/":
		add(key+".destination", "must not be \"/\": a mount there would hide the whole filesystem the app runs from")
	default:
		m.Destination = filepath.Clean(m.Destination)
	}
}

// CheckDomain checks a base domain for Host routing (settings.domain,
// settings.tls.domain, serve -d), given without its trailing dot: dot-separated
// labels of ASCII letters, digits, '-' and '_' (instance ids may hold '_'),
// each 1 to 63 bytes, 253 at most in all. Hosts are matched against it, so
// a domain with anything else in it (a port, a URL's scheme, a space)
// would route nothing.
func CheckDomain(d string) error {
	if d == "" {
		return fmt.Errorf("is empty")
	}
	if len(d) > 253 {
		return fmt.Errorf("%.40q... is %d bytes long; a domain name has at most 253", d, len(d))
	}
	if scheme, rest, ok := strings.Cut(d, "://"); ok && scheme != "" {
		host, _, _ := strings.Cut(rest, "/")
		host, _, _ = strings.Cut(host, ":")
		return fmt.Errorf("%q is a URL; give the domain alone (%q)", d, host)
	}
	if host, port, ok := strings.Cut(d, ":"); ok && host != "" && port != "" && strings.Trim(port, "0123456789") == "" {
		return fmt.Errorf("%q names a port; give the domain alone (%q): ten matches Host headers without their port", d, host)
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" {
			return fmt.Errorf("%q has an empty label", d)
		}
		if len(l) > 63 {
			return fmt.Errorf("%q has a label of %d bytes; DNS labels have at most 63", d, len(l))
		}
		for i, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q has %q at position %d of label %q; a domain is ASCII letters, digits, '-' and '_' between dots", d, r, i+1, l)
			}
		}
	}
	return nil
}
