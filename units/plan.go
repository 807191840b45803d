package units

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/config"
)

// Options are the inputs of a plan that do not come from the config.
type Options struct {
	// Port is the PORT given to the app (allocated by the caller).
	Port int
	// Shim is the absolute path of the ten binary that runs as the
	// activation shim (`ten shim`) for apps that bind PORT/SOCKET_PATH.
	Shim string
	// ShimBin, when set, is the small ten-shim binary, which the unit runs
	// as the shim instead of `ten shim` (it starts faster at every wake).
	ShimBin string
	// Listen are the instance's L4 addresses (config.Listen, one address
	// each), given to the app as TEN_LISTEN.
	Listen []string
	// L4Sockets are the TCP addresses ("127.0.0.1:20123") the socket unit
	// listens on besides the router's unix socket: ten dispatches the
	// connections for Listen to them (sk_lookup, or its proxy without BPF).
	// They are passed to the app after the unix socket (LISTEN_FDS fd 4...)
	// and named in TEN_L4_SOCKETS.
	L4Sockets []string
	// Runsc is the absolute path of gVisor's runsc for isolation =
	// "sandbox"; empty means it is not installed.
	Runsc string
	// Cat is the absolute path of systemd-cat; empty (no journald tools)
	// leaves the app's output to systemd. journald cannot tell a service's
	// stdout from its stderr (both streams get the unit's SyslogLevel), so
	// a directly run app starts under `ten-shim cat` (where ShimBin is
	// set) or `systemd-cat --stderr-priority=err`: either connects stdout
	// and stderr to the journal as two streams and execs the app (same PID,
	// same fds, socket activation intact). stdout lines get priority info
	// (6), stderr lines err (3); `ten logs --level` filters on that. Where
	// the shim runs in front of the app, it opens the two streams itself
	// (`ten shim --identifier`).
	Cat string
	// Resolve, when set, turns the command's first word into the path the
	// unit executes (the caller checks PATH and the file; units stays pure).
	// It gets the word and the instance's working directory.
	Resolve func(cmd, workdir string) (string, error)
	// Standby runs the app behind the standby waiter where it can
	// (units.Standby): settings.standby is not 0.
	Standby bool
	// Home and Path are the HOME and PATH of the user ten runs as. An
	// isolation = "process" app runs as that user and gets them, as under
	// tenement, whose apps inherit its environment (systemd gives a root
	// service neither HOME nor the PATH of the shell that started ten):
	// `go run`, uv and npm keep their caches under HOME and run tools
	// found in PATH. The service's env may set either.
	Home, Path string
}

// Plan is everything ten creates for one instance.
type Plan struct {
	Instance Instance
	// Listen is the systemd-held unix socket the router connects to.
	Listen string
	// AppSocket is where a shim-mode app's socket is as ten sees it (the
	// router dials it).
	AppSocket string
	// AppSocketInside is SOCKET_PATH: the same socket as the app and the
	// unit's own processes see it. It differs from AppSocket only where the
	// instance's runtime directory is bound over the socket key's
	// directory in its namespace (appSocket).
	AppSocketInside string
	// appSocketBind is that directory, or "".
	appSocketBind string
	// Port is PORT.
	Port int
	// DataDir is the instance's persistent directory ({data_dir}).
	DataDir string
	// Workdir is the app's working directory (workdir, interpolated;
	// DataDir by default).
	Workdir string
	// Argv is the app's command line after interpolation.
	Argv []string
	// Env is the app's environment (KEY=VALUE, sorted).
	Env []string
	// Slice holds both units (Instance.Slice).
	Slice string
	// L4Sockets are the socket unit's TCP listen addresses (Options.L4Sockets).
	L4Sockets []string
	// Socket and Service are the D-Bus properties of the two units.
	Socket  []sd.Property
	Service []sd.Property
}

// ErrNoRunsc means isolation = "sandbox" was asked for on a host without gVisor.
var ErrNoRunsc = errors.New(`isolation = "sandbox" runs the app under gVisor, but runsc is not installed: apt-get install runsc (Debian/Ubuntu), or see https://gvisor.dev/docs/user_guide/install/`)

// StateRoot is where per-instance state directories live (systemd StateDirectory).
const StateRoot = "/var/lib/tenement"

// StateMountPoint is the real directory behind an instance's state
// directory, where a storage quota image is mounted: with DynamicUser
// (isolation = "namespace") systemd keeps it under /var/lib/private and
// links it from /var/lib/tenement.
func StateMountPoint(svc *config.Service, inst Instance) string {
	if svc.Isolation == config.IsolationNamespace {
		return filepath.Join("/var/lib/private/tenement", inst.Service, inst.ID)
	}
	return filepath.Join(StateRoot, inst.Service, inst.ID)
}

// Direct reports whether an instance of svc runs its PORT/SOCKET_PATH app as
// the service's main process, with no resident shim: the router dials the
// app's own address once it listens and uses the systemd-held socket only to
// wake the service (a connection there starts it; the socket unit flushes
// such never-accepted connections when the service stops). A small waiter
// (ExecStartPost=ten-shim wait) keeps the unit activating until the app
// listens and fails the start after startup_timeout.
//
// The shim's relay stays where the router cannot reach the app's own
// address or where something else must take the systemd socket's
// connections: gVisor (isolation = "sandbox"), and L4 listen addresses
// with network = "none" or ip_allow (see AppListens). Other L4 listen
// addresses (their connections arrive on the systemd-held sockets
// until the app listens: a relay process serves those and exits once ten
// steers new ones to the app's own socket, see Launched).
func Direct(svc *config.Service) bool {
	return AppListens(svc) && len(svc.Listen) == 0
}

// Launched reports whether an instance of svc runs an app ten can reach
// (AppListens) that also has L4 listen addresses: its main process starts
// as a launcher (`ten-shim launch`), which hands the systemd sockets to a
// relay process and execs the app. The relay serves the L4 connections that
// arrive (and wake the service) before the app listens, and exits once ten
// steers the L4 addresses to the app's own socket (kernel.Wiring.AppSocket):
// like a Direct app, nothing of ten stays resident beside it then. Without
// the steering (no BPF, or ten down) the relay stays and keeps relaying.
func Launched(svc *config.Service) bool {
	return AppListens(svc) && len(svc.Listen) > 0
}

// Standby reports whether an instance of svc runs its app behind the
// standby waiter (`ten-shim standby`, shim.Standby): the service's main
// process waits for a connection on the systemd socket and then becomes the
// app. Started by systemd for a connection it execs the app at once (and
// opens the app's journal streams instead of systemd-cat); started by ten
// ahead of time (a sleeping instance kept on standby, settings.standby) it
// waits, sandbox and all set up, and a wake costs only the app's own start.
// ten makes such units while settings.standby is not 0 (Options.Standby).
// It is the app that takes the socket (activation = "socket") or a directly
// run app (Direct), with no L4 listen addresses and not in gVisor.
func Standby(svc *config.Service) bool {
	if len(svc.Listen) > 0 || svc.Isolation == config.IsolationSandbox {
		return false
	}
	return Direct(svc) || svc.Activation == config.ActivationSocket
}

// resident reports whether an instance of svc runs ten's shim as its main
// process for its whole life (Type=notify, READY=1 once the app listens):
// where ten cannot reach the app's own address.
func resident(svc *config.Service) bool {
	return (svc.Activation == config.ActivationShim || svc.Isolation == config.IsolationSandbox) && !AppListens(svc)
}

// AppListens reports whether an instance of svc runs an app that binds its
// own PORT/SOCKET_PATH where ten reaches it without a relay: activation =
// "shim", not in gVisor (its sockets live in the sandbox's netstack). With
// network = "none" the router dials PORT inside the instance's own network
// namespace (PrivateNetwork), and with ip_allow over loopback, which the
// unit's allow-list then includes (LoopbackAllowed). Such an app's listening
// socket on PORT is also where ten steers the service's L4 connections once
// it listens — except with network = "none" (sk_lookup steers only within a
// namespace) or ip_allow (the unit's IP filter would drop the packets of the
// clients steered to it): those services with L4 addresses keep the shim's
// relay, which takes every connection on the systemd-held sockets.
func AppListens(svc *config.Service) bool {
	if svc.Activation != config.ActivationShim || svc.Isolation == config.IsolationSandbox {
		return false
	}
	return len(svc.Listen) == 0 || (svc.Network != "none" && len(svc.IPAllow) == 0)
}

// PrivateNetwork reports whether an instance of svc has a network namespace
// of its own (network = "none"), where its app's PORT on 127.0.0.1 is: the
// router dials it there (package netns).
func PrivateNetwork(svc *config.Service) bool { return svc.Network == "none" }

// LoopbackAllowed reports whether the IP allow-list of an instance of svc
// (ip_allow) also holds loopback (127.0.0.1, ::1): an app that binds PORT
// is reached over it — by the router, or by the shim inside the service —
// and systemd's IP filter on the service's cgroup drops loopback packets
// like any others. The app can then reach services that listen on
// loopback too; one that must not should bind SOCKET_PATH and run with
// activation = "socket".
func LoopbackAllowed(svc *config.Service) bool {
	return len(svc.IPAllow) > 0 && (svc.Activation == config.ActivationShim || svc.Isolation == config.IsolationSandbox)
}

// AppSocketPath is SOCKET_PATH of instance id of svc: the service's socket
// key, interpolated as in Build ({data_dir} is settings.data_dir), or
// app.sock in the instance's runtime directory. The router dials it, so it
// must be the path the app was told.
func AppSocketPath(cfg *config.Config, svc *config.Service, id string, port int) string {
	host, _, _ := appSocket(cfg, svc, id, port)
	return host
}

// appSocket returns the app's socket path as ten sees it (host, which the
// router dials) and as the app and the unit's own processes see it
// (inside, SOCKET_PATH), and bindDir, the directory the instance's runtime
// directory is bound over inside its namespace to make them one socket
// ("" when they are the same path). With isolation = "namespace" a socket
// key in a directory of /tmp, /var/tmp or /run that is not the instance's
// own (tenement's /tmp/tenement/{name}-{id}.sock) cannot be created where
// ten reaches it (the instance's /tmp is its own, the rest read-only), so
// the runtime directory, /run/tenement-app/{name}-{id}, is bound there and
// the socket is its file (config.SocketBindDir says which keys).
func appSocket(cfg *config.Config, svc *config.Service, id string, port int) (host, inside, bindDir string) {
	runtime := filepath.Join("/run", "tenement-app", svc.Name+"-"+id)
	def := filepath.Join(runtime, "app.sock")
	if svc.Socket == "" {
		return def, def, ""
	}
	vars := config.Vars{Name: svc.Name, ID: id, DataDir: cfg.InstanceRoot(), Port: strconv.Itoa(port), Socket: def}
	inside = vars.Expand(svc.Socket)
	if svc.Isolation == config.IsolationNamespace && cfg.SocketBindDir(svc) {
		return filepath.Join(runtime, filepath.Base(inside)), inside, filepath.Dir(filepath.Clean(inside))
	}
	return inside, inside, ""
}

// ListenPath returns the systemd-held socket path of an instance.
func ListenPath(socketDir string, inst Instance) string {
	return filepath.Join(socketDir, inst.Service, inst.ID+".sock")
}

// Build plans instance id of svc.
func Build(cfg *config.Config, svc *config.Service, id string, opts Options) (*Plan, error) {
	inst := Instance{Service: svc.Name, ID: id}
	if err := config.CheckID("instance id", id); err != nil {
		return nil, fmt.Errorf("instance %s: %w", inst, err)
	}
	if svc.Activation == config.ActivationShim && opts.Shim == "" {
		return nil, fmt.Errorf("instance %s: no shim binary for activation = \"shim\"", inst)
	}
	if svc.Isolation == config.IsolationSandbox {
		if opts.Runsc == "" {
			return nil, fmt.Errorf("instance %s: %w", inst, ErrNoRunsc)
		}
		if opts.Shim == "" {
			return nil, fmt.Errorf("instance %s: no ten binary to run the sandbox with", inst)
		}
	}
	stateRel := filepath.Join("tenement", svc.Name, id)
	runtimeRel := filepath.Join("tenement-app", svc.Name+"-"+id)
	root := cfg.InstanceRoot()
	appHost, appInside, appBind := appSocket(cfg, svc, id, opts.Port)
	p := &Plan{
		Instance:        inst,
		Listen:          ListenPath(cfg.Settings.SocketDir, inst),
		AppSocket:       appHost,
		AppSocketInside: appInside,
		appSocketBind:   appBind,
		Port:            opts.Port,
		DataDir:         filepath.Join(root, svc.Name, id),
		Slice:           inst.Slice(),
		L4Sockets:       opts.L4Sockets,
	}
	// {data_dir} is tenement's settings.data_dir: the instance's own data
	// is {data_dir}/{name}/{id} (DATA_DIR).
	vars := config.Vars{Name: svc.Name, ID: id, DataDir: root, Port: strconv.Itoa(opts.Port), Socket: p.AppSocketInside}
	// Without workdir the app runs where tenement.toml is (tenement runs it
	// where `ten serve` was started, which is where users keep the file),
	// so relative commands like ./run.sh and relative paths in args work.
	// A sandbox hides home directories (ProtectHome): a config kept there
	// leaves the app in its data directory, as ten did before, unless the
	// command needs the config's directory.
	p.Workdir = p.DataDir
	if cfg.Path != "" {
		dir := filepath.Dir(cfg.Path)
		if svc.Isolation == config.IsolationProcess || !HiddenByProtectHome(dir) {
			p.Workdir = dir
		} else if svc.Workdir == "" && relativeCommand(svc) {
			return nil, fmt.Errorf("service.%s.command: relative command %q is taken in the config file's directory %s, which isolation = %q hides from the instance (ProtectHome): keep the app and tenement.toml elsewhere (e.g. /srv), set workdir, or use isolation = \"process\"", svc.Name, svc.Command, dir, svc.Isolation)
		}
	}
	if svc.Workdir != "" {
		p.Workdir = vars.Expand(svc.Workdir)
	}
	if len(svc.Args) > 0 {
		p.Argv = append([]string{vars.Expand(svc.Command)}, expandAll(vars, svc.Args)...)
	} else {
		words, err := config.SplitCommand(svc.Command)
		if err != nil {
			return nil, fmt.Errorf("service.%s.command: %w", svc.Name, err)
		}
		p.Argv = expandAll(vars, words)
	}
	if opts.Resolve != nil {
		path, err := opts.Resolve(p.Argv[0], p.Workdir)
		if err != nil {
			return nil, fmt.Errorf("service.%s.command: %w", svc.Name, err)
		}
		p.Argv[0] = path
	}
	env := map[string]string{
		"PORT":         strconv.Itoa(opts.Port),
		"SOCKET_PATH":  p.AppSocketInside,
		"DATA_DIR":     p.DataDir,
		"TEN_INSTANCE": inst.String(),
	}
	if len(opts.Listen) > 0 {
		env["TEN_LISTEN"] = strings.Join(opts.Listen, " ")
	}
	if len(opts.L4Sockets) > 0 {
		env["TEN_L4_SOCKETS"] = strings.Join(opts.L4Sockets, " ")
	}
	if svc.Isolation == config.IsolationProcess {
		if opts.Home != "" {
			env["HOME"] = opts.Home
		}
		if opts.Path != "" {
			env["PATH"] = opts.Path
		}
	}
	for k, v := range svc.Env {
		env[k] = vars.Expand(v)
	}
	if len(opts.Listen) > 0 && AppListens(svc) {
		// ten steers L4 clients to the app's own socket on PORT, which a
		// sockmap takes only when it is plain TCP; Go 1.24 and later
		// listen with MPTCP by default where the kernel has it (an
		// MPTCP listener's clients would keep going through the shim).
		// MPTCP buys nothing on a loopback PORT. Other programs ignore it;
		// a GODEBUG the service sets itself is kept, with this added.
		if g := env["GODEBUG"]; !strings.Contains(g, "multipathtcp=") {
			env["GODEBUG"] = strings.TrimPrefix(g+",multipathtcp=0", ",")
		}
	}
	for k, v := range env {
		p.Env = append(p.Env, k+"="+v)
	}
	sort.Strings(p.Env)

	p.Socket = socketProps(inst, p.Listen, p.L4Sockets, p.Slice)
	if Direct(svc) {
		// The app never accepts from the systemd socket: the connection
		// that woke it stays pending there, and must not start the service
		// again once it stops.
		p.Socket = append(p.Socket, prop("FlushPending", true))
	}
	p.Service = serviceProps(cfg, svc, inst, p, opts, stateRel, runtimeRel)
	return p, nil
}

func expandAll(v config.Vars, in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = v.Expand(s)
	}
	return out
}

func prop(name string, v any) sd.Property {
	return sd.Property{Name: name, Value: dbus.MakeVariant(v)}
}

func socketProps(inst Instance, listen string, l4 []string, slice string) []sd.Property {
	addrs := []struct{ Type, Path string }{{"Stream", listen}}
	for _, a := range l4 {
		addrs = append(addrs, struct{ Type, Path string }{"Stream", a})
	}
	return []sd.Property{
		prop("Description", "ten instance "+inst.String()+" (socket)"),
		prop("Slice", slice),
		prop("Listen", addrs),
		// Only root (ten's router) may connect: other tenants cannot reach
		// this instance's socket even if they can see the path.
		prop("SocketMode", uint32(0o600)),
		prop("DirectoryMode", uint32(0o755)),
		prop("RemoveOnStop", true),
		// Sleep/wake cycles are normal here; systemd's default of 20
		// triggers in 2 s would leave the socket failed and refusing.
		prop("TriggerLimitIntervalUSec", uint64(0)),
		prop("TriggerLimitBurst", uint32(0)),
	}
}

func serviceProps(cfg *config.Config, svc *config.Service, inst Instance, p *Plan, opts Options, stateRel, runtimeRel string) []sd.Property {
	argv := p.Argv
	if svc.Isolation == config.IsolationSandbox {
		argv = sandboxArgv(svc, p, opts)
	}
	shimmed := resident(svc)
	if shimmed {
		// In a sandbox the systemd socket cannot reach the app (runsc of
		// this age passes no fds in), so the shim always sits in front.
		head := shimCmd(opts, "shim", "shim", svc, inst, p)
		if opts.Cat != "" {
			// The shim opens the app's two journal streams itself: one
			// exec fewer at every wake than systemd-cat in front.
			head = append(head, "--identifier="+filepath.Base(p.Argv[0]))
		}
		argv = append(append(head, "--"), argv...)
	}
	standby := opts.Standby && Standby(svc) && (opts.Shim != "" || opts.ShimBin != "")
	if standby {
		head := append(shimCmd(opts, "shim-standby", "standby", svc, inst, p), "--fds=1")
		if Direct(svc) {
			// Type=notify: the unit stays activating while it stands by.
			head = append(head, "--extend="+strconv.Itoa(svc.StartupTimeout)+"s")
		}
		if opts.Cat != "" {
			// The waiter opens the app's two journal streams itself, as
			// the shim does: no systemd-cat is exec'd at a wake.
			head = append(head, "--identifier="+filepath.Base(p.Argv[0]))
		}
		argv = append(append(head, "--"), argv...)
	}
	if opts.Cat != "" && !shimmed && !standby {
		argv = append(catCmd(opts, inst, filepath.Base(p.Argv[0])), argv...)
	}
	if Launched(svc) {
		// The launcher starts the L4 relay and then execs the app (through
		// systemd-cat, when set): the app is the main process.
		head := shimCmd(opts, "shim-launch", "launch", svc, inst, p)
		argv = append(append(head, "--"), argv...)
	}
	type execCmd struct {
		Path          string
		Argv          []string
		IgnoreFailure bool
	}
	props := []sd.Property{
		prop("Description", "ten instance "+inst.String()),
		prop("Slice", p.Slice),
		prop("Type", serviceType(svc)),
		prop("ExecStart", []execCmd{{Path: argv[0], Argv: literalArgv(argv), IgnoreFailure: false}}),
	}
	if AppListens(svc) {
		// The unit stays activating until the app listens: ten sees it
		// listen and sends READY=1 on the app's behalf (systemd.NotifyReady;
		// an L4 service's relay does it too, so that works while ten is
		// down). A start whose app never listens fails at startup_timeout.
		// No process of ten's is started for it: a waiter exec'd at every
		// wake cost more than the rest of the wake's own work.
		props = append(props,
			prop("NotifyAccess", "all"),
			prop("TimeoutStartUSec", uint64(svc.StartupTimeout)*1_000_000))
	}
	props = append(props,
		prop("Environment", p.Env),
		prop("Restart", svc.Restart),
		// tenement's backoff_base_ms is the pause before systemd restarts a
		// crashed app, capped by backoff_max_ms as every later pause is.
		prop("RestartUSec", uint64(min(cfg.Settings.BackoffBaseMs, cfg.Settings.BackoffMaxMs))*1000),
		// Wakes are starts; systemd's default of 5 starts in 10 s would
		// fail the unit under ordinary bursty traffic.
		prop("StartLimitIntervalUSec", uint64(0)),
		prop("StartLimitBurst", uint32(0)),
		prop("TimeoutStopUSec", uint64(10_000_000)),
		// ps and /metrics show MemoryCurrent (CPUAccounting: below).
		prop("MemoryAccounting", true),
		prop("StateDirectory", []string{stateRel}),
		prop("RuntimeDirectory", runtimeDirs(svc, inst, runtimeRel)),
		// Only the instance's own user (and root) may enter its directories:
		// its app socket lives in the runtime one.
		prop("RuntimeDirectoryMode", uint32(0o700)),
		prop("StateDirectoryMode", uint32(0o700)),
	)
	if Direct(svc) {
		// The app binds PORT/SOCKET_PATH itself; it is not to take the
		// systemd socket it is handed (that only wakes it).
		props = append(props, prop("UnsetEnvironment", []string{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}))
	}
	props = append(props, prop("WorkingDirectory", p.Workdir))
	if resident(svc) {
		// The shim gives up after startup_timeout itself; this only
		// guards against a shim that hangs.
		props = append(props, prop("TimeoutStartUSec", uint64(svc.StartupTimeout+10)*1_000_000))
	}
	props = append(props, dataDirProps(cfg, svc, inst, p)...)
	if p.appSocketBind != "" {
		// The socket key's directory, inside the namespace, is the
		// instance's runtime directory, where ten reaches the socket.
		props = append(props, prop("BindPaths", []bind{{Source: filepath.Dir(p.AppSocket), Dest: p.appSocketBind}}))
	}
	if ro := hiddenPaths(svc, p); len(ro) > 0 {
		props = append(props, bindProp("BindReadOnlyPaths", ro))
	}
	// CPUUsageNSec (ps, metrics, the CPU quota test) needs CPU accounting,
	// which systemd leaves off by default on cgroup v1.
	props = append(props, prop("CPUAccounting", true))
	if svc.MemoryLimitMB > 0 {
		props = append(props, prop("MemoryMax", uint64(svc.MemoryLimitMB)<<20))
		// No swap beyond the limit. systemd applies this only where the
		// memory controller is on cgroup v2; on v1/hybrid hosts it is kept
		// as a property but has no effect (see README, Isolation).
		props = append(props, prop("MemorySwapMax", uint64(0)))
	}
	if svc.StorageQuotaMB > 0 {
		// ten mounts the instance's quota image there (a transient .mount
		// unit); the service must not start on the bare directory.
		props = append(props, prop("RequiresMountsFor", []string{DataMountPoint(cfg, svc, inst)}))
	}
	if svc.StoragePersist != nil && !*svc.StoragePersist {
		// Wipe the state directory whenever the service stops (sleep too),
		// as root: the tenant may have left files it cannot remove itself.
		// -H follows the DynamicUser symlink to /var/lib/private; -xdev
		// stays inside a quota image mounted there.
		type execEx struct {
			Path  string
			Argv  []string
			Flags []string
		}
		props = append(props, prop("ExecStopPostEx", []execEx{{Path: "/usr/bin/find",
			Argv:  []string{"/usr/bin/find", "-H", p.DataDir, "-mindepth", "1", "-xdev", "-delete"},
			Flags: []string{"privileged", "ignore-failure"}}}))
	}
	if svc.CPUShares > 0 {
		props = append(props, prop("CPUWeight", uint64(svc.CPUShares)))
	}
	if svc.CPUQuotaPercent > 0 {
		props = append(props, prop("CPUQuotaPerSecUSec", uint64(svc.CPUQuotaPercent)*10_000))
	}
	if svc.TasksMax != nil && *svc.TasksMax > 0 {
		props = append(props, prop("TasksMax", uint64(*svc.TasksMax)))
	}
	if svc.IOWeight > 0 {
		props = append(props, prop("IOWeight", uint64(svc.IOWeight)))
	}
	if b := svc.LogRateLimitBurst; b != nil && *b > 0 && svc.LogRateLimitInterval > 0 {
		// journald keys its limit by the unit (from the sender's cgroup), so
		// it holds for the app's own journal streams too.
		props = append(props,
			prop("LogRateLimitIntervalUSec", uint64(svc.LogRateLimitInterval)*1_000_000),
			prop("LogRateLimitBurst", uint32(*b)))
	}
	if svc.Network == "none" {
		props = append(props, prop("PrivateNetwork", true))
	}
	if len(svc.IPAllow) > 0 {
		allow := svc.IPAllow
		if LoopbackAllowed(svc) {
			allow = append(append([]string{}, allow...), "127.0.0.1/32", "::1/128")
		}
		props = append(props, ipAccess("IPAddressAllow", allow), ipAccess("IPAddressDeny", []string{"0.0.0.0/0", "::/0"}))
	}
	switch svc.Isolation {
	case config.IsolationNamespace:
		props = append(props, prop("User", DynamicUserName(inst)))
		props = append(props, sandboxProps(svc)...)
	case config.IsolationSandbox:
		props = append(props, gvisorProps()...)
	}
	for _, m := range svc.Mounts {
		name := "BindPaths"
		if m.Readonly {
			name = "BindReadOnlyPaths"
		}
		props = append(props, prop(name, []bind{{Source: m.Source, Dest: m.Destination}}))
	}
	return props
}

// literalArgv escapes argv for ExecStart, whose words systemd expands at
// every start: "$NAME" as a word becomes the variable's value split at
// whitespace (nothing, when unset), "${NAME}" anywhere its value, and "$$"
// one "$". tenement hands its apps their command and args as written, and
// so does ten: every "$" is doubled. (The app's environment has PORT and
// the rest; a shell the command runs, sh -c '... ${PORT}', expands them.)
func literalArgv(argv []string) []string {
	var out []string
	for i, a := range argv {
		if strings.Contains(a, "$") {
			if out == nil {
				out = append([]string(nil), argv...)
			}
			out[i] = strings.ReplaceAll(a, "$", "$$")
		}
	}
	if out == nil {
		return argv
	}
	return out
}

// shimCmd is the command line of one of ten's shim roles for inst: the
// small ten-shim (opts.ShimBin) with its verb binVerb, or ten itself
// (opts.Shim) with tenVerb, and the flags every role takes.
func shimCmd(opts Options, tenVerb, binVerb string, svc *config.Service, inst Instance, p *Plan) []string {
	cmd := []string{opts.Shim, tenVerb}
	if opts.ShimBin != "" {
		cmd = []string{opts.ShimBin, binVerb}
	}
	return append(cmd, "--instance="+inst.String(), "--socket="+p.AppSocketInside,
		"--port="+strconv.Itoa(p.Port), "--startup-timeout="+strconv.Itoa(svc.StartupTimeout)+"s")
}

// catCmd is what runs in front of a directly run app to give it its two
// journal streams and exec it: `ten-shim cat` where the small shim binary
// is installed (in a cgo build a C constructor does it before Go's runtime
// starts, a fraction of a millisecond; without cgo it costs about half of
// systemd-cat's CPU per start, which loads libsystemd-shared and its
// libraries at every wake; BENCHMARKS.md section 8), systemd-cat otherwise
// (all of ten would cost more than systemd-cat to start).
func catCmd(opts Options, inst Instance, identifier string) []string {
	if opts.ShimBin != "" {
		// --instance names it in an error (a missing app). Keep this
		// order: the C fast path (cmd/ten-shim/cat_linux.c) takes exactly
		// this line and leaves any other to Go's slower path.
		return []string{opts.ShimBin, "cat", "--instance=" + inst.String(), "--identifier=" + identifier, "--"}
	}
	return []string{opts.Cat, "--identifier=" + identifier, "--stderr-priority=err", "--"}
}

// serviceType is "notify" where the app binds its own address: the
// service is ready (READY=1) only once the app listens, so until then the
// unit is "activating" (ten ps: starting; the router waits for it with
// startup_timeout, not request_timeout) and an app that never listens
// shows as such. The shim sends READY=1 where it runs in front of the
// app; for a directly run app (AppListens) ten sends it on the app's
// behalf. An app that takes its socket itself is ready at exec.
func serviceType(svc *config.Service) string {
	if resident(svc) || AppListens(svc) {
		return "notify"
	}
	return "exec"
}

// bind is one entry of BindPaths/BindReadOnlyPaths, a(ssbt).
type bind struct {
	Source, Dest  string
	IgnoreMissing bool
	Options       uint64
}

func bindProp(name string, paths []string) sd.Property {
	bs := make([]bind, len(paths))
	for i, p := range paths {
		bs[i] = bind{Source: p, Dest: p}
	}
	return prop(name, bs)
}

// CustomDataDir reports whether the config puts instance data somewhere
// other than systemd's state directories (settings.data_dir or --data-dir
// given).
func CustomDataDir(cfg *config.Config) bool {
	return cfg.InstanceRoot() != config.DefaultInstanceRoot
}

// DataMountPoint is where an instance's storage quota image is mounted:
// its data directory {data_dir}/{name}/{id} when data_dir is set, else
// the real directory behind its state directory (StateMountPoint).
func DataMountPoint(cfg *config.Config, svc *config.Service, inst Instance) string {
	if CustomDataDir(cfg) {
		return filepath.Join(cfg.InstanceRoot(), inst.Service, inst.ID)
	}
	return StateMountPoint(svc, inst)
}

// DataBind says where ten bind-mounts an instance's data directory
// {data_dir}/{name}/{id} (what) when data_dir is set and the instance runs
// as a DynamicUser: over the real directory behind its state directory
// (where, under /var/lib/private). systemd then gives the directory to the
// user it picks at each start, as it does for any state directory (once:
// it descends only when the owner changed), and the data stays in
// data_dir.
func DataBind(cfg *config.Config, svc *config.Service, inst Instance) (what, where string, ok bool) {
	if !CustomDataDir(cfg) || svc.Isolation != config.IsolationNamespace {
		return "", "", false
	}
	return filepath.Join(cfg.InstanceRoot(), inst.Service, inst.ID), StateMountPoint(svc, inst), true
}

// dataDirProps keep an instance's data in {data_dir}/{name}/{id} when
// data_dir is set (ten makes the directory at spawn): the sandbox binds it
// in, writable, at the same path (visible even under /tmp, which
// PrivateTmp replaces), and a DynamicUser service needs ten's bind mount
// of it over its state directory (DataBind) before it starts.
func dataDirProps(cfg *config.Config, svc *config.Service, inst Instance, p *Plan) []sd.Property {
	if !CustomDataDir(cfg) || svc.Isolation == config.IsolationProcess {
		return nil
	}
	props := []sd.Property{bindProp("BindPaths", []string{p.DataDir})}
	if _, where, ok := DataBind(cfg, svc, inst); ok {
		props = append(props, prop("RequiresMountsFor", []string{where}))
	}
	return props
}

// hiddenPaths are the app's working directory and its command's directory
// when a sandbox would hide them: PrivateTmp gives the unit a /tmp and
// /var/tmp of its own, so a checkout or config under /tmp is bound in
// read-only.
func hiddenPaths(svc *config.Service, p *Plan) []string {
	if svc.Isolation == config.IsolationProcess {
		return nil
	}
	var out []string
	for _, d := range []string{p.Workdir, filepath.Dir(p.Argv[0])} {
		if !filepath.IsAbs(d) || !underTmp(d) || within(d, p.DataDir) {
			continue
		}
		dup := false
		for i, o := range out {
			if within(d, o) {
				dup = true
			} else if within(o, d) {
				out[i], dup = d, true
			}
		}
		if !dup {
			out = append(out, d)
		}
	}
	return out
}

// HiddenByProtectHome reports whether ProtectHome hides p from a
// sandboxed instance.
func HiddenByProtectHome(p string) bool {
	return within(p, "/home") || within(p, "/root") || within(p, "/run/user")
}

// relativeCommand reports whether svc's program is a relative path
// (./run.sh, bin/app), which is taken in the working directory.
func relativeCommand(svc *config.Service) bool {
	first := svc.Command
	if len(svc.Args) == 0 {
		if words, err := config.SplitCommand(svc.Command); err == nil && len(words) > 0 {
			first = words[0]
		}
	}
	return !filepath.IsAbs(first) && strings.Contains(first, "/")
}

func underTmp(p string) bool { return within(p, "/tmp") || within(p, "/var/tmp") }

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// DynamicUserName is the instance's own DynamicUser. Without User=,
// systemd derives the name from the unit name's prefix (tenement-NAME), so
// every instance of a service would share one user and see, signal and
// read each other. '_' cannot occur in service names (ids may have it), so
// the first '_' after "ten_" ends the service and the name is unambiguous;
// systemd allows 31 characters, longer names end in a hash.
func DynamicUserName(inst Instance) string {
	name := "ten_" + inst.Service + "_" + inst.ID
	if len(name) > 31 {
		h := fnv.New32a()
		h.Write([]byte(inst.String()))
		name = fmt.Sprintf("%s_%08x", name[:22], h.Sum32())
	}
	return name
}

// allowList is the (bas) value of SystemCallFilter and
// RestrictAddressFamilies: an allow list when Allow is true.
type allowList struct {
	Allow bool
	Names []string
}

// protectProps are the file-system, device and kernel protections every
// sandboxed unit gets, whether the tenant runs under DynamicUser or gVisor.
func protectProps() []sd.Property {
	return []sd.Property{
		prop("ProtectSystem", "strict"),
		prop("ProtectHome", "yes"),
		prop("PrivateTmp", true),
		prop("PrivateDevices", true),
		prop("ProtectProc", "invisible"),
		prop("ProtectKernelTunables", true),
		prop("ProtectKernelModules", true),
		prop("ProtectKernelLogs", true),
		prop("ProtectControlGroups", true),
		prop("NoNewPrivileges", true),
	}
}

func sandboxProps(svc *config.Service) []sd.Property {
	props := append([]sd.Property{prop("DynamicUser", true)}, protectProps()...)
	props = append(props,
		// RestrictNamespaces takes the set of namespace types allowed: none.
		prop("RestrictNamespaces", uint64(0)),
		prop("RestrictSUIDSGID", true),
		prop("LockPersonality", true),
		prop("SystemCallFilter", allowList{Allow: true, Names: []string{"@system-service"}}),
		// With systemd 252 a filtered call would otherwise kill the whole
		// process, which looks like a random crash to a tenant.
		prop("SystemCallErrorNumber", int32(1)), // EPERM
		prop("SystemCallArchitectures", []string{"native"}),
		prop("RestrictAddressFamilies", allowList{Allow: true, Names: []string{"AF_UNIX", "AF_INET", "AF_INET6"}}),
		// The tenant runs as an unprivileged user with no capability to
		// gain: empty bounding and ambient sets, its own user namespace
		// (root and its own user mapped, everyone else nobody).
		prop("CapabilityBoundingSet", uint64(0)),
		prop("AmbientCapabilities", uint64(0)),
		prop("PrivateUsers", true),
		// /proc shows only processes (the tenant's own, ProtectProc), not
		// the kernel's files about the host.
		prop("ProcSubset", "pid"),
		prop("RestrictRealtime", true),
		prop("ProtectHostname", true),
		prop("ProtectClock", true),
		prop("PrivateMounts", true),
		prop("UMask", uint32(0o077)),
	)
	if svc.MemoryDenyWriteExecute {
		// Opt-in: a JIT (Node's V8, the JVM, LuaJIT) needs writable and
		// executable memory and dies under it.
		props = append(props, prop("MemoryDenyWriteExecute", true))
	}
	return props
}

// gvisorProps harden the unit that runs runsc. runsc runs as root and
// makes namespaces and its own seccomp filter, so DynamicUser,
// RestrictNamespaces and SystemCallFilter stay off here; the tenant runs
// inside gVisor's kernel, the unit's cgroup still limits all of it.
func gvisorProps() []sd.Property {
	return append(protectProps(),
		prop("RestrictSUIDSGID", true),
		prop("RestrictAddressFamilies", allowList{Allow: true, Names: []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}}),
	)
}

// sandboxRel is the runtime directory of runsc's state and the OCI bundle,
// apart from the app's own runtime directory, which the app sees.
func sandboxRel(inst Instance) string {
	return filepath.Join("tenement-sandbox", inst.Service+"-"+inst.ID)
}

func runtimeDirs(svc *config.Service, inst Instance, runtimeRel string) []string {
	if svc.Isolation == config.IsolationSandbox {
		return []string{runtimeRel, sandboxRel(inst)}
	}
	return []string{runtimeRel}
}

// sandboxArgv is `ten sandbox`: it writes an OCI bundle and execs
// `runsc run` on it. An app that takes LISTEN_FDS gets them from
// `ten sandbox-listen` inside gVisor, which binds SOCKET_PATH for it.
func sandboxArgv(svc *config.Service, p *Plan, opts Options) []string {
	inner := p.Argv
	if svc.Activation == config.ActivationSocket {
		inner = append([]string{opts.Shim, "sandbox-listen", "--socket=" + p.AppSocket, "--"}, p.Argv...)
	}
	network := "host"
	if svc.Network == "none" {
		network = "none"
	}
	cwd := p.Workdir
	argv := []string{opts.Shim, "sandbox",
		"--runsc=" + opts.Runsc,
		"--id=" + strings.ReplaceAll(p.Instance.Service+"-"+p.Instance.ID, "@", "-"),
		"--dir=" + filepath.Join("/run", sandboxRel(p.Instance)),
		"--network=" + network,
		"--cwd=" + cwd,
		"--bind=" + p.DataDir,
		"--bind=" + filepath.Dir(p.AppSocket),
	}
	for _, d := range hiddenPaths(svc, p) {
		argv = append(argv, "--bind-ro="+d)
	}
	for _, m := range svc.Mounts {
		if m.Readonly {
			argv = append(argv, "--bind-ro="+m.Destination)
		} else {
			argv = append(argv, "--bind="+m.Destination)
		}
	}
	return append(append(argv, "--"), inner...)
}

func ipAccess(name string, prefixes []string) sd.Property {
	type entry struct {
		Family    int32
		Addr      []byte
		PrefixLen uint32
	}
	var es []entry
	seen := map[netip.Prefix]bool{}
	for _, s := range prefixes {
		pfx, err := parsePrefix(s)
		if err != nil || seen[pfx] {
			continue // validated in config; or listed already
		}
		seen[pfx] = true
		fam := int32(2) // AF_INET
		if pfx.Addr().Is6() {
			fam = 10
		}
		es = append(es, entry{Family: fam, Addr: pfx.Addr().AsSlice(), PrefixLen: uint32(pfx.Bits())})
	}
	return prop(name, es)
}

// Describe renders properties one per line, "Name=signature value", for
// golden files and `ten` debugging output.
func Describe(props []sd.Property) string {
	var b strings.Builder
	for _, p := range props {
		fmt.Fprintf(&b, "%s=%s %v\n", p.Name, p.Value.Signature(), p.Value.Value())
	}
	return b.String()
}
