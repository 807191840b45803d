package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const good = `
[settings]
data_dir = "/var/lib/ten-data"

[service.api]
command = "/usr/bin/python3 -m http.server {port}"
health = "/health"
idle_timeout = 60
memory_limit_mb = 256
cpu_shares = 200

[service.api.env]
GREETING = "hi {name}:{id}"

[service.worker]
command = "/bin/worker"
args = ["--socket", "{socket}"]
activation = "socket"
isolation = "process"

[instances]
api = ["prod", "staging"]
`

func TestParseDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	api := c.Services["api"]
	if api.Isolation != IsolationNamespace || api.StartupTimeout != 10 || api.RequestTimeout != 30 || api.Activation != ActivationShim || api.Restart != "on-failure" {
		t.Errorf("defaults not applied: %+v", api)
	}
	if !api.Lazy() {
		t.Error("a service with idle_timeout should start lazily by default")
	}
	if c.Services["worker"].Lazy() {
		t.Error("a service without idle_timeout should start eagerly by default")
	}
	if c.Settings.Listen != ":8080" || c.Settings.Domain != "localhost" || c.Settings.SocketDir != "/run/tenement" {
		t.Errorf("settings defaults: %+v", c.Settings)
	}
	if got := c.Instances["api"]; len(got) != 2 {
		t.Errorf("instances: %v", got)
	}
}

func TestSpawnStartsAndLazy(t *testing.T) {
	cases := []struct {
		start       string
		idle        int
		lazy, spawn bool
	}{
		{"", 300, true, true},
		{"", 0, false, true},
		{"auto", 60, true, true},
		{"lazy", 0, true, false},
		{"lazy", 60, true, false},
		{"eager", 60, false, true},
	}
	for _, c := range cases {
		s := Service{Start: c.start, IdleTimeout: c.idle}
		if got := s.Lazy(); got != c.lazy {
			t.Errorf("start=%q idle_timeout=%d: Lazy() = %v, want %v", c.start, c.idle, got, c.lazy)
		}
		if got := s.SpawnStarts(); got != c.spawn {
			t.Errorf("start=%q idle_timeout=%d: SpawnStarts() = %v, want %v", c.start, c.idle, got, c.spawn)
		}
	}
}

func TestParseErrorsNameFileLineKey(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"unknown key", "[service.api]\ncommand = \"/bin/x\"\ncomand = \"y\"\n", "t.toml:3: service.api.comand: unknown key"},
		{"unknown section", "[servce.api]\ncommand = \"/bin/x\"\n", "t.toml:1: servce.api: unknown key"},
		{"bad isolation", "[service.api]\ncommand = \"/bin/x\"\nisolation = \"jail\"\n", "t.toml:3: service.api.isolation: unknown isolation \"jail\""},
		{"firecracker refused", "[service.api]\ncommand = \"/bin/x\"\nisolation = \"firecracker\"\n", "service.api.isolation: ten does not run Firecracker"},
		{"missing command", "[service.api]\nhealth = \"/h\"\n", "t.toml:1: service.api.command: is required"},
		{"bad service name", "[service.Api_1]\ncommand = \"/bin/x\"\n", "service.Api_1: service name \"Api_1\" has 'A'"},
		{"instances of unknown service", "[service.api]\ncommand = \"/bin/x\"\n[instances]\nweb = [\"a\"]\n", "t.toml:4: instances.web: no [service.web] is defined"},
		{"bad instance id", "[service.api]\ncommand = \"/bin/x\"\n[instances]\napi = [\"../x\"]\n", "instances.api: instance id \"../x\" has '.'"},
		{"bad placeholder", "[service.api]\ncommand = \"/bin/x {nmae}\"\n", "unknown placeholder {nmae}"},
		{"wrong type", "[service.api]\ncommand = \"/bin/x\"\nidle_timeout = \"soon\"\n", "t.toml:3"},
		{"syntax", "[service.api\ncommand = 1\n", "t.toml:1"},
		{"unterminated quote", "[service.api]\ncommand = \"/bin/x 'a\"\n", "unterminated single quote"},
		{"negative idle", "[service.api]\ncommand = \"/bin/x\"\nidle_timeout = -1\n", "service.api.idle_timeout: must not be negative"},
		{"bad listen", "[service.api]\ncommand = \"/bin/x\"\nlisten = [\"7000\"]\n", "service.api.listen"},
		{"tasks_max_total too big", "[settings]\ntasks_max_total = 5000000\n[service.api]\ncommand = \"/bin/x\"\n", "settings.tasks_max_total: must be 0 (no cap) to 4194304"},
		{"negative memory_max_total_mb", "[settings]\nmemory_max_total_mb = -1\n[service.api]\ncommand = \"/bin/x\"\n", "settings.memory_max_total_mb: must be 0 (no cap)"},
		{"negative tasks_max", "[service.api]\ncommand = \"/bin/x\"\ntasks_max = -1\n", "service.api.tasks_max: must not be negative"},
		{"negative log burst", "[service.api]\ncommand = \"/bin/x\"\nlog_rate_limit_burst = -5\n", "t.toml:3: service.api.log_rate_limit_burst: must be within 0..1000000"},
		{"socket where a sandboxed app cannot bind", "[service.api]\ncommand = \"/bin/x\"\nsocket = \"/srv/x/{id}.sock\"\n", "t.toml:3: service.api.socket: \"/srv/x/{id}.sock\": an app with isolation = \"namespace\" can create its socket only"},
		{"socket in gVisor's private /tmp", "[service.api]\ncommand = \"/bin/x\"\nisolation = \"sandbox\"\nsocket = \"/tmp/tenement/{name}-{id}.sock\"\n", "t.toml:4: service.api.socket: \"/tmp/tenement/{name}-{id}.sock\": an app with isolation = \"sandbox\" can create its socket only"},
		{"relative socket", "[service.api]\ncommand = \"/bin/x\"\nisolation = \"process\"\nsocket = \"app.sock\"\n", "t.toml:4: service.api.socket: must be an absolute path"},
		{"domain with a space", "[settings]\ndomain = \"exa mple.com\"\n[service.api]\ncommand = \"/bin/x\"\n", "t.toml:2: settings.domain: \"exa mple.com\" has ' ' at position 4 of label \"exa mple\""},
		{"domain with a port", "[settings]\ndomain = \"localhost:8080\"\n[service.api]\ncommand = \"/bin/x\"\n", "settings.domain: \"localhost:8080\" names a port; give the domain alone (\"localhost\")"},
		{"tls domain with a slash", "[settings.tls]\nenabled = true\ndomain = \"https://example.com\"\n[service.api]\ncommand = \"/bin/x\"\n", "t.toml:3: settings.tls.domain: \"https://example.com\" is a URL; give the domain alone (\"example.com\")"},
		{"log interval too long", "[service.api]\ncommand = \"/bin/x\"\nlog_rate_limit_interval = 86400\n", "t.toml:3: service.api.log_rate_limit_interval: must be within 1..3600 seconds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tc.in))
			if err == nil {
				t.Fatalf("accepted bad config:\n%s", tc.in)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, want config.Errors: %v", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, tc.want)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"prod", "a", "v2", "customer-42", strings.Repeat("a", 63)} {
		if err := CheckName("id", ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "../x", "a/b", "a.b", "Prod", "-a", "a-", "a b", "a@b", "a:b", strings.Repeat("a", 64), "ü"} {
		if err := CheckName("id", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	cases := map[string][]string{
		`python3 -m http.server 8000`:    {"python3", "-m", "http.server", "8000"},
		`sh -c 'echo "a b"; exit 1'`:     {"sh", "-c", `echo "a b"; exit 1`},
		`node "my app.js" --x=\"q\"`:     {"node", "my app.js", `--x="q"`},
		"  spaced\targs  ":               {"spaced", "args"},
		`a\ b c`:                         {"a b", "c"},
		`uvicorn main:app --port {port}`: {"uvicorn", "main:app", "--port", "{port}"},
	}
	for in, want := range cases {
		got, err := SplitCommand(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%q: got %q want %q", in, got, want)
		}
	}
	if _, err := SplitCommand(`"open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestExpand(t *testing.T) {
	v := Vars{Name: "api", ID: "prod", DataDir: "/d", Port: "123", Socket: "/s"}
	if got := v.Expand("{name}-{id} {data_dir} {port} {socket} {other}"); got != "api-prod /d 123 /s {other}" {
		t.Errorf("got %q", got)
	}
}

func TestSleepKeys(t *testing.T) {
	c, err := Parse("t.toml", []byte("[settings]\nmax_frozen_mb = 512\n[service.a]\ncommand = \"/bin/x\"\nidle_timeout = 5\nsleep = \"freeze-then-stop\"\nstop_after = 60\n[service.b]\ncommand = \"/bin/x\"\nidle_timeout = 5\n[service.c]\ncommand = \"/bin/x\"\nidle_timeout = 5\nsleep = \"freeze\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, b, cc := c.Services["a"], c.Services["b"], c.Services["c"]
	if !a.Freezes() || a.StopAfterDuration() != 60e9 || c.Settings.MaxFrozenMB != 512 {
		t.Errorf("a: %+v settings %+v", a, c.Settings)
	}
	if b.Sleep != SleepStop || b.Freezes() || b.StopAfterDuration() != 0 {
		t.Errorf("default sleep: %+v", b)
	}
	if !cc.Freezes() || cc.StopAfterDuration() != 0 {
		t.Errorf("freeze: %+v", cc)
	}
	bad := []struct{ in, want string }{
		{"[service.a]\ncommand = \"/bin/x\"\nidle_timeout = 5\nsleep = \"hibernate\"\n", "t.toml:4: service.a.sleep: unknown sleep \"hibernate\""},
		{"[service.a]\ncommand = \"/bin/x\"\nsleep = \"freeze\"\n", "service.a.idle_timeout: sleep = \"freeze\" needs idle_timeout > 0"},
		{"[service.a]\ncommand = \"/bin/x\"\nidle_timeout = 5\nsleep = \"freeze-then-stop\"\nstop_after = 5\n", "t.toml:5: service.a.stop_after: sleep = \"freeze-then-stop\" needs stop_after > idle_timeout (5), got 5"},
		{"[service.a]\ncommand = \"/bin/x\"\nidle_timeout = 5\nstop_after = 50\n", "t.toml:4: service.a.stop_after: only applies with sleep = \"freeze-then-stop\""},
		{"[settings]\nmax_frozen_mb = -1\n", "t.toml:2: settings.max_frozen_mb: must not be negative"},
	}
	for _, tc := range bad {
		_, err := Parse("t.toml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config\n%s\ngave %v, want %s", tc.in, err, tc.want)
		}
	}
}

func TestIdleActivity(t *testing.T) {
	c, err := Parse("t.toml", []byte("[service.a]\ncommand = \"/bin/x\"\nidle_timeout = 5\nidle_activity = \"inbound\"\n[service.b]\ncommand = \"/bin/x\"\nidle_timeout = 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := c.Services["a"], c.Services["b"]; a.IdleActivity != IdleActivityInbound || b.IdleActivity != IdleActivityAny {
		t.Errorf("idle_activity: a %q, b (default) %q", a.IdleActivity, b.IdleActivity)
	}
	_, err = Parse("t.toml", []byte("[service.a]\ncommand = \"/bin/x\"\nidle_timeout = 5\nidle_activity = \"requests\"\n"))
	if err == nil || !strings.Contains(err.Error(), `t.toml:4: service.a.idle_activity: unknown idle_activity "requests"; use any`) {
		t.Errorf("bad idle_activity gave %v", err)
	}
}

func TestIDsAsTenementAccepts(t *testing.T) {
	c, err := Parse("t.toml", []byte("[service.api]\ncommand = \"/bin/x\"\n[instances]\napi = [\"wr_a\", \"Prod-2\", \"_x\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Instances["api"]; len(got) != 3 {
		t.Errorf("instances: %v", got)
	}
	for _, bad := range []string{"a.b", "a b", "ü", "a:b", strings.Repeat("x", 64)} {
		if err := CheckID("instance id", bad); err == nil {
			t.Errorf("CheckID(%q) accepted", bad)
		}
	}
	_, err = Parse("t.toml", []byte("[service.api]\ncommand = \"/bin/x\"\n[instances]\napi = [\"wr_a\", \"WR_A\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "t.toml:4: instances.api: instance ids \"wr_a\" and \"WR_A\" differ only by case") {
		t.Errorf("case-only difference: %v", err)
	}
}

func TestTenementKeysNotImplementedAreRefused(t *testing.T) {
	cases := []struct{ in, want string }{
		{"[service.api]\ncommand = \"/bin/x\"\nimage = \"python:3\"\n", "t.toml:3: service.api.image: ten runs the command under gVisor"},
		{"[service.api]\ncommand = \"/bin/x\"\nrootfs = \"/srv/root\"\n", "t.toml:3: service.api.rootfs: ten does not chroot"},
		{"[service.api]\ncommand = \"/bin/x\"\nvcpus = 2\n", "t.toml:3: service.api.vcpus: is a key of tenement's VM runtimes"},
		{"[routing]\ndefault = \"api\"\n", "t.toml:2: routing.default: is not used"},
		{"[settings]\ndomain = \"x.test\"\n[settings.tls]\nenabled = true\ndns_provider = \"route53\"\n", `t.toml:5: settings.tls.dns_provider: "route53" is not a DNS provider ten supports; use one of cloudflare, rfc2136`},
		{"[settings]\ndomain = \"x.test\"\n[settings.tls]\nenabled = true\ndns_credentials = \"/etc/ten/dns.env\"\n", "settings.tls.dns_provider: is not set, but dns_credentials or dns_resolvers is"},
		{"[settings]\ndomain = \"x.test\"\n[settings.tls]\nenabled = true\ndns_provider = \"rfc2136\"\ndns_resolvers = [\"127.0.0.1\"]\n", `t.toml:6: settings.tls.dns_resolvers: want HOST:PORT such as 127.0.0.1:53, got "127.0.0.1"`},
	}
	for _, c := range cases {
		_, err := Parse("t.toml", []byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.in, err, c.want)
		}
	}
	// TLS off with its other keys filled in loads (they are inert in tenement too).
	if _, err := Parse("t.toml", []byte("[settings.tls]\nenabled = false\nacme_email = \"a@b.c\"\n")); err != nil {
		t.Errorf("tls disabled: %v", err)
	}
	// Every supported provider loads; with TLS off the key is inert, as in tenement.
	for _, p := range append(DNSProviders, "") {
		if _, err := Parse("t.toml", []byte("[settings]\ndomain = \"x.test\"\n[settings.tls]\nenabled = true\ndns_provider = \""+p+"\"\n")); err != nil {
			t.Errorf("dns_provider %q: %v", p, err)
		}
	}
	if _, err := Parse("t.toml", []byte("[settings.tls]\nenabled = false\ndns_provider = \"route53\"\n")); err != nil {
		t.Errorf("tls disabled, dns_provider route53: %v", err)
	}
}

func TestWakeQueueSettings(t *testing.T) {
	c, err := Parse("t.toml", []byte("[service.a]\ncommand = \"/bin/x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Settings.ConcurrentWakes(1) != 4 || c.Settings.ConcurrentWakes(8) != 16 || *c.Settings.WakeQueue != DefaultWakeQueue || c.Settings.WakeQueueWait() != 30*time.Second {
		t.Errorf("defaults: %d %d %d %s", c.Settings.ConcurrentWakes(1), c.Settings.ConcurrentWakes(8), *c.Settings.WakeQueue, c.Settings.WakeQueueWait())
	}
	c, err = Parse("t.toml", []byte("[settings]\nmax_concurrent_wakes = 2\nwake_queue = 0\nwake_queue_timeout = 5\n[service.a]\ncommand = \"/bin/x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Settings.ConcurrentWakes(8) != 2 || *c.Settings.WakeQueue != 0 || c.Settings.WakeQueueWait() != 5*time.Second {
		t.Errorf("set: %d %d %s", c.Settings.ConcurrentWakes(8), *c.Settings.WakeQueue, c.Settings.WakeQueueWait())
	}
	for in, want := range map[string]string{
		"[settings]\nmax_concurrent_wakes = -1\n": "t.toml:2: settings.max_concurrent_wakes: must be 0 (2 per CPU) to 10000, got -1",
		"[settings]\nwake_queue = -5\n":           "t.toml:2: settings.wake_queue: must be 0 to 1000000",
		"[settings]\nwake_queue_timeout = 7200\n": "t.toml:2: settings.wake_queue_timeout: must be 1 to 3600 seconds (0: the default, 30), got 7200",
		"[settings]\nstandby = -1\n":              "t.toml:2: settings.standby: must be 0 (none) to 1000",
		"[settings]\nstandby = 5000\n":            "t.toml:2: settings.standby: must be 0 (none) to 1000",
		"[service.a]\ncommand = \"/bin/x\"\nisolation = \"process\"\nmemory_deny_write_execute = true\n": "service.a.memory_deny_write_execute: applies only with isolation = \"namespace\", not \"process\"",
	} {
		if _, err := Parse("t.toml", []byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %s", in, err, want)
		}
	}
}

func TestMaxBodySetting(t *testing.T) {
	c, err := Parse("t.toml", []byte("[service.a]\ncommand = \"/bin/x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Settings.MaxBodyBytes(); got != DefaultMaxBodyMB<<20 {
		t.Errorf("default: %d bytes, want %d", got, DefaultMaxBodyMB<<20)
	}
	for in, want := range map[string]int64{"max_body_mb = 0": 0, "max_body_mb = 2": 2 << 20} {
		c, err := Parse("t.toml", []byte("[settings]\n"+in+"\n[service.a]\ncommand = \"/bin/x\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Settings.MaxBodyBytes(); got != want {
			t.Errorf("%s: %d bytes, want %d", in, got, want)
		}
	}
	for _, in := range []string{"max_body_mb = -1", "max_body_mb = 2000000"} {
		_, err := Parse("t.toml", []byte("[settings]\n"+in+"\n"))
		if err == nil || !strings.Contains(err.Error(), "t.toml:2: settings.max_body_mb: must be 0 (no bound) to 1048576 MiB") {
			t.Errorf("%s: %v", in, err)
		}
	}
}

func TestMaxConnsPerAddressSetting(t *testing.T) {
	c, err := Parse("t.toml", []byte("[service.a]\ncommand = \"/bin/x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Settings.ConnsPerAddress(); got != DefaultMaxConnsPerAddress {
		t.Errorf("default: %d, want %d", got, DefaultMaxConnsPerAddress)
	}
	for in, want := range map[string]int{"max_conns_per_address = 0": 0, "max_conns_per_address = 4096": 4096} {
		c, err := Parse("t.toml", []byte("[settings]\n"+in+"\n[service.a]\ncommand = \"/bin/x\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Settings.ConnsPerAddress(); got != want {
			t.Errorf("%s: %d, want %d", in, got, want)
		}
	}
	for _, in := range []string{"max_conns_per_address = -1", "max_conns_per_address = 2000000"} {
		_, err := Parse("t.toml", []byte("[settings]\n"+in+"\n"))
		if err == nil || !strings.Contains(err.Error(), "t.toml:2: settings.max_conns_per_address: must be 0 (no bound) to 1048576") {
			t.Errorf("%s: %v", in, err)
		}
	}
}

func TestMaxInflightSetting(t *testing.T) {
	c, err := Parse("t.toml", []byte("[service.a]\ncommand = \"/bin/x\"\n[service.b]\ncommand = \"/bin/x\"\nmax_inflight = 0\n[service.c]\ncommand = \"/bin/x\"\nmax_inflight = 20\n"))
	if err != nil {
		t.Fatal(err)
	}
	for svc, want := range map[string]int{"a": DefaultMaxInflight, "b": 0, "c": 20} {
		if got := c.Services[svc].InflightCap(); got != want {
			t.Errorf("service %s: %d, want %d", svc, got, want)
		}
	}
	_, err = Parse("t.toml", []byte("[service.a]\ncommand = \"/bin/x\"\nmax_inflight = -1\n"))
	if err == nil || !strings.Contains(err.Error(), "service.a.max_inflight: must be 0 (no bound) to 1048576") {
		t.Errorf("max_inflight = -1: %v", err)
	}
}

func TestFindFallsBackToSystemFile(t *testing.T) {
	dir := t.TempDir()
	sys := filepath.Join(t.TempDir(), "tenement.toml")
	if _, err := find(dir, sys); err == nil || !strings.Contains(err.Error(), sys) {
		t.Fatalf("no config anywhere: want an error naming %s, got %v", sys, err)
	}
	if err := os.WriteFile(sys, []byte("[settings]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := find(dir, sys); err != nil || got != sys {
		t.Fatalf("find = %q, %v; want the system file", got, err)
	}
	local := filepath.Join(dir, FileName)
	if err := os.WriteFile(local, []byte("[settings]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := find(dir, sys); err != nil || got != local {
		t.Fatalf("find = %q, %v; want the file found walking up", got, err)
	}
}

// TestParseRejectsWhatSystemdCannotTake: values that could never become a
// unit (found by FuzzBuild in units) are refused when the file is read,
// naming the key, instead of failing every spawn later.
func TestParseRejectsWhatSystemdCannotTake(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"[service.a]\ncommand = \"/bin/a\\u0000b\"\n", "t.toml:2: service.a.command: contains a NUL byte"},
		{"[service.a]\ncommand = \"/bin/a\"\n[service.a.env]\nK = \"a\\u0000b\"\n", "t.toml:4: service.a.env.K: contains a NUL byte"},
		{"[settings]\ndata_dir = \"/x\\u0000\"\n", "t.toml:2: settings.data_dir: contains a NUL byte"},
		{"[service.a]\ncommand = \"/bin/a\"\nargs = [\"ok\", \"\\u0000\"]\n", "t.toml:3: service.a.args: contains a NUL byte"},
		{"[service.a]\ncommand = \"/bin/a\"\n[service.a.env]\n\"my-var\" = \"1\"\n", "service.a.env: bad variable name \"my-var\""},
		{"[service.a]\ncommand = \"/bin/a\"\n[service.a.env]\n1X = \"1\"\n", "service.a.env: bad variable name \"1X\""},
	} {
		_, err := Parse("t.toml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := Parse("t.toml", []byte("[service.a]\ncommand = \"/bin/a\"\n[service.a.env]\n_My_VAR2 = \"\\t\"\n")); err != nil {
		t.Errorf("good variable name refused: %v", err)
	}
}

// TestSocketWhereTheAppCanBindIt: a socket key the app can bind where ten
// reaches it is accepted: in the instance's data or runtime directory, or
// anywhere with isolation = "process" (ten creates its directory).
func TestSocketWhereTheAppCanBindIt(t *testing.T) {
	for _, in := range []string{
		"[service.api]\ncommand = \"/bin/x\"\nsocket = \"{data_dir}/{name}/{id}/app.sock\"\n",
		"[settings]\ndata_dir = \"/srv/d\"\n[service.api]\ncommand = \"/bin/x\"\nsocket = \"{data_dir}/{name}/{id}/run/app.sock\"\n",
		"[service.api]\ncommand = \"/bin/x\"\nsocket = \"/run/tenement-app/{name}-{id}/{port}.sock\"\n",
		"[service.api]\ncommand = \"/bin/x\"\nisolation = \"process\"\nsocket = \"/tmp/tenement/{name}-{id}.sock\"\n",
		"[service.api]\ncommand = \"/bin/x\"\nsocket = \"/tmp/tenement/{name}-{id}.sock\"\n",
		"[service.api]\ncommand = \"/bin/x\"\nsocket = \"/run/myapp/app.sock\"\n",
	} {
		if _, err := Parse("t.toml", []byte(in)); err != nil {
			t.Errorf("refused:\n%s\n%v", in, err)
		}
	}
}

// TestListenOnPort: `ten serve -p PORT` changes the port of settings.listen
// and keeps its address, so a config that listens on loopback only is not
// exposed on every interface by -p.
func TestListenOnPort(t *testing.T) {
	for listen, want := range map[string]string{
		":8080":          ":9090",
		"127.0.0.1:8080": "127.0.0.1:9090",
		"[::1]:8080":     "[::1]:9090",
		"0.0.0.0:8080":   "0.0.0.0:9090",
	} {
		s := Settings{Listen: listen}
		if got := s.ListenOnPort(9090); got != want {
			t.Errorf("listen %q, port 9090: %q, want %q", listen, got, want)
		}
	}
}

// TestRestartNever: tenement's restart policies are always, on-failure and
// never; never is systemd's "no".
func TestRestartNever(t *testing.T) {
	cfg, err := Parse("t.toml", []byte("[service.api]\ncommand = \"/bin/x\"\nrestart = \"never\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Services["api"].Restart; r != "no" {
		t.Errorf("restart = %q, want \"no\"", r)
	}
}

func TestTrustedProxiesSetting(t *testing.T) {
	c, err := Parse("t.toml", []byte("[service.a]\ncommand = \"/bin/x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Settings.TrustedProxy() != nil {
		t.Errorf("default: someone is trusted")
	}
	c, err = Parse("t.toml", []byte("[settings]\ntrusted_proxies = [\"127.0.0.1\", \"::1\", \"10.1.0.0/16\", \"fd00::/8\"]\n[service.a]\ncommand = \"/bin/x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	trusted := c.Settings.TrustedProxy()
	for ip, want := range map[string]bool{
		"127.0.0.1": true, "::1": true, "10.1.2.3": true, "fd12::1": true, "::ffff:127.0.0.1": true,
		"127.0.0.2": false, "10.2.0.1": false, "192.0.2.1": false, "fe80::1": false, "": false, "junk": false,
	} {
		if got := trusted(ip); got != want {
			t.Errorf("trusted(%q) = %v, want %v", ip, got, want)
		}
	}
	for _, in := range []string{`["localhost"]`, `["10.0.0.0/33"]`, `["1.2.3.4", ""]`} {
		_, err := Parse("t.toml", []byte("[settings]\ntrusted_proxies = "+in+"\n"))
		if err == nil || !strings.Contains(err.Error(), "t.toml:2: settings.trusted_proxies[") || !strings.Contains(err.Error(), "is not an IP address or CIDR prefix") {
			t.Errorf("%s: %v", in, err)
		}
	}
	many := strings.Repeat(`"1.2.3.4", `, 65)
	if _, err := Parse("t.toml", []byte("[settings]\ntrusted_proxies = ["+many+"]\n")); err == nil || !strings.Contains(err.Error(), "at most 64") {
		t.Errorf("65 entries: %v", err)
	}
}

// An explicit 0 in the restart settings is 0, as in tenement (its
// end-to-end suite sets backoff_base_ms = 0 for restarts without delay);
// absent keys get the defaults; an interval of 0 is refused.
func TestExplicitZeroRestartSettings(t *testing.T) {
	c, err := Parse("t.toml", []byte("[settings]\nbackoff_base_ms = 0\nbackoff_max_ms = 0\nmax_restarts = 0\nrestart_window = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Settings
	if s.BackoffBaseMs != 0 || s.BackoffMaxMs != 0 || s.MaxRestarts != 0 || s.RestartWindow != 0 || s.HealthCheckInterval != 10 {
		t.Errorf("explicit zeros: %+v", s)
	}
	c, err = Parse("t.toml", []byte("settings = { backoff_base_ms = 0 }\n"))
	if err != nil || c.Settings.BackoffBaseMs != 0 || c.Settings.BackoffMaxMs != 60000 {
		t.Errorf("inline table: %v %+v", err, c)
	}
	c, err = Parse("t.toml", []byte("[settings]\ndata_dir = \"d\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	s = c.Settings
	if s.BackoffBaseMs != 1000 || s.BackoffMaxMs != 60000 || s.MaxRestarts != 3 || s.RestartWindow != 300 || s.HealthCheckInterval != 10 {
		t.Errorf("defaults: %+v", s)
	}
	for in, want := range map[string]string{
		"health_check_interval = 0":  "t.toml:2: settings.health_check_interval: must be 1 to 86400",
		"health_check_interval = -1": "settings.health_check_interval",
		"backoff_base_ms = -5":       "settings.backoff_base_ms",
		"restart_window = -1":        "settings.restart_window",
	} {
		if _, err := Parse("t.toml", []byte("[settings]\n"+in+"\n")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}

// TestMounts: a relative mounts source is taken against the config file's
// directory (as a relative workdir is; systemd takes only absolute paths),
// and a missing or relative destination is refused naming the entry.
func TestMounts(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tenement.toml")
	c, err := Parse(file, []byte("[service.a]\ncommand = \"/bin/a\"\n[[service.a.mounts]]\nsource = \"./shared\"\ndestination = \"/mnt/shared/\"\nreadonly = true\n[[service.a.mounts]]\nsource = \"/srv/x\"\ndestination = \"/x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Services["a"].Mounts
	want := []Mount{{Source: filepath.Join(dir, "shared"), Destination: "/mnt/shared", Readonly: true}, {Source: "/srv/x", Destination: "/x"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mounts = %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ in, want string }{
		{"[[service.a.mounts]]\ndestination = \"/x\"\n", "service.a.mounts[0].source: is missing"},
		{"[[service.a.mounts]]\nsource = \"/srv\"\n", "service.a.mounts[0].destination: is missing"},
		{"[[service.a.mounts]]\nsource = \"/srv\"\ndestination = \"/y\"\n[[service.a.mounts]]\nsource = \"/srv\"\ndestination = \"data\"\n", "service.a.mounts[1].destination: \"data\" must be an absolute path"},
		{"[[service.a.mounts]]\nsource = \"/srv\"\ndestination = \"/\"\n", "service.a.mounts[0].destination: must not be \"/\""},
	} {
		_, err := Parse(file, []byte("[service.a]\ncommand = \"/bin/a\"\n"+tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := Parse("", []byte("[service.a]\ncommand = \"/bin/a\"\n[[service.a.mounts]]\nsource = \"rel\"\ndestination = \"/y\"\n")); err == nil || !strings.Contains(err.Error(), "is relative and there is no config file") {
		t.Errorf("relative source without a file: %v", err)
	}
}

func TestCheckDomain(t *testing.T) {
	for _, d := range []string{"localhost", "example.com", "Example.COM", "a-b.c_d.example", "127.0.0.1", "xn--bcher-kva.example"} {
		if err := CheckDomain(d); err != nil {
			t.Errorf("CheckDomain(%q) = %v", d, err)
		}
	}
	for _, d := range []string{"", ".", "a..b", ".a", "a b", "a/b", "*.example.com", "[::1]", "ex:ample:x", "localhost:80a", "http://example.com", "example.com/x", "h\u00e9.example", strings.Repeat("a", 64) + ".com", strings.Repeat("a.", 127) + "com"} {
		if err := CheckDomain(d); err == nil {
			t.Errorf("CheckDomain(%q) accepted", d)
		}
	}
}

// TestShellExpansionIsNotAPlaceholder: ${PORT} in a command or args is a
// shell's (sh -c '... ${PORT}'), passed through as tenement does; a bare
// {PORT} is still refused as an unknown placeholder.
func TestShellExpansionIsNotAPlaceholder(t *testing.T) {
	c, err := Parse("t.toml", []byte("[service.a]\ncommand = \"sh -c 'exec app --port ${PORT} --id {id}'\"\n[service.b]\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"exec app --port ${PORT}\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := (Vars{ID: "x"}).Expand(c.Services["a"].Command); got != "sh -c 'exec app --port ${PORT} --id x'" {
		t.Errorf("expanded command = %q", got)
	}
	if _, err := Parse("t.toml", []byte("[service.a]\ncommand = \"/bin/app --port {PORT}\"\n")); err == nil || !strings.Contains(err.Error(), "unknown placeholder {PORT}") {
		t.Errorf("{PORT} without $: %v", err)
	}
}

// An unknown key is refused naming its line; tenement's older spellings
// say what they are now, and a near miss of a known key is suggested.
func TestUnknownKeyHints(t *testing.T) {
	cases := []struct{ in, want string }{
		{"[service.api]\ncommand = \"/bin/x\"\nidel_timeout = 5\n", "t.toml:3: service.api.idel_timeout: unknown key; did you mean idle_timeout?"},
		{"[settings]\nhealth_check_intervall = 5\n", "t.toml:2: settings.health_check_intervall: unknown key; did you mean health_check_interval?"},
		{"[service.api]\ncommand = \"/bin/x\"\n[[service.api.mounts]]\nsourse = \"/srv\"\ndestination = \"/srv\"\n", "service.api.mounts.sourse: unknown key; did you mean source?"},
		{"[service.api]\ncommand = \"/bin/x\"\nfrobnicate = 1\n", "t.toml:3: service.api.frobnicate: unknown key"},
		{"[servce.api]\ncommand = \"/bin/x\"\n", "t.toml:1: servce.api: unknown key; did you mean service?"},
		{"[process.api]\ncommand = \"/bin/x\"\n", "rename [process.api] to [service.api]"},
		{"[service.api]\ncommand = \"/bin/x\"\nruntime = \"process\"\n", "t.toml:3: service.api.runtime: unknown key: tenement's older name for isolation"},
		{"[service.api]\ncommand = \"/bin/x\"\nport = 3000\n", "t.toml:3: service.api.port: unknown key: tenement's older fixed TCP port"},
	}
	for _, c := range cases {
		_, err := Parse("t.toml", []byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.in, err, c.want)
		}
	}
	// A key far from every known one gets no guess.
	if _, err := Parse("t.toml", []byte("[service.api]\ncommand = \"/bin/x\"\nfrobnicate = 1\n")); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("frobnicate: %v", err)
	}
	for _, c := range []struct {
		a, b string
		want int
	}{{"idel_timeout", "idle_timeout", 2}, {"", "abc", 3}, {"abc", "abc", 0}, {"kitten", "sitting", 3}, {"a", "abcdefgh", 3}} {
		if got := editDistance(c.a, c.b, 3); got != c.want {
			t.Errorf("editDistance(%q, %q, 3) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
