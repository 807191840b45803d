package units

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tenhq/ten/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestParseInstance(t *testing.T) {
	inst, err := ParseInstance("api:prod")
	if err != nil || inst.Service != "api" || inst.ID != "prod" {
		t.Fatalf("got %v %v", inst, err)
	}
	if inst.SocketUnit() != "tenement-api@prod.socket" || inst.ServiceUnit() != "tenement-api@prod.service" || inst.Base() != "tenement-api@prod" {
		t.Errorf("unit names: %s %s", inst.SocketUnit(), inst.ServiceUnit())
	}
	for _, bad := range []string{"api", "api:", ":prod", "api:../x", "api:a/b", "api:" + strings.Repeat("x", 64), "api:pr od", "api:a\\b", "API:prod", "api:prod:x", "a.b:c"} {
		if _, err := ParseInstance(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFromUnit(t *testing.T) {
	inst, kind, ok := FromUnit("tenement-my-api@prod-2.service")
	if !ok || inst.Service != "my-api" || inst.ID != "prod-2" || kind != KindService {
		t.Errorf("got %v %s %v", inst, kind, ok)
	}
	for _, n := range []string{"tenement-api@prod.timer", "other-api@prod.service", "tenement-api.service", "tenement.socket", "tenement-api@.service"} {
		if _, _, ok := FromUnit(n); ok {
			t.Errorf("%q parsed as an instance unit", n)
		}
	}
}

// TestGolden renders the planned units for each config in testdata/*.toml
// and compares with testdata/*.golden (go test ./units -update rewrites them).
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.toml")
	if len(files) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse("/etc/ten/tenement.toml", data)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, name := range cfg.ServiceNames() {
				opts := Options{Port: 20001, Shim: "/run/tenement/.bin/ten", Cat: "/usr/bin/systemd-cat"}
				if filepath.Base(f) == "sandbox.toml" {
					// limits.toml shows the error without runsc.
					opts.Runsc = "/usr/bin/runsc"
				}
				if svc := cfg.Services[name]; len(svc.Listen) > 0 {
					// What ten assigns: the address as written (a test
					// input names single addresses) and one internal socket.
					opts.Listen = svc.Listen
					opts.L4Sockets = []string{"127.0.0.1:30001"}
				}
				p, err := Build(cfg, cfg.Services[name], "prod", opts)
				if err != nil {
					b.WriteString("# " + name + ": error: " + err.Error() + "\n")
					continue
				}
				b.WriteString("# " + p.Instance.SocketUnit() + "\n")
				b.WriteString(Describe(p.Socket))
				b.WriteString("# " + p.Instance.ServiceUnit() + "\n")
				b.WriteString(Describe(p.Service))
			}
			golden := strings.TrimSuffix(f, ".toml") + ".golden"
			if *update {
				os.WriteFile(golden, []byte(b.String()), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./units -update)", err)
			}
			if b.String() != string(want) {
				t.Errorf("%s differs from the plan:\n%s", golden, b.String())
			}
		})
	}
}

func TestSlice(t *testing.T) {
	for _, tc := range []struct{ inst, slice, cgroup, svcSlice, legacy string }{
		{"api:prod", "tenement-api-b:34-prod.slice", "/tenement.slice/tenement-api.slice/tenement-api-b:34.slice/tenement-api-b:34-prod.slice", "tenement-api.slice",
			"/tenement.slice/tenement-api.slice/tenement-api-prod.slice"},
		// '-' is systemd's nesting mark: escaped inside names, so that
		// my-api:prod-2 and my:api-prod get different slices.
		{"my-api:prod-2", `tenement-my\x2dapi-b:0b-prod\x2d2.slice`, `/tenement.slice/tenement-my\x2dapi.slice/tenement-my\x2dapi-b:0b.slice/tenement-my\x2dapi-b:0b-prod\x2d2.slice`, `tenement-my\x2dapi.slice`,
			`/tenement.slice/tenement-my\x2dapi.slice/tenement-my\x2dapi-prod\x2d2.slice`},
		{"my:api-prod", `tenement-my-b:13-api\x2dprod.slice`, `/tenement.slice/tenement-my.slice/tenement-my-b:13.slice/tenement-my-b:13-api\x2dprod.slice`, "tenement-my.slice",
			`/tenement.slice/tenement-my.slice/tenement-my-api\x2dprod.slice`},
	} {
		inst, err := ParseInstance(tc.inst)
		if err != nil {
			t.Fatal(err)
		}
		if got := inst.Slice(); got != tc.slice {
			t.Errorf("%s: slice %s, want %s", tc.inst, got, tc.slice)
		}
		if got := inst.SliceCgroup(); got != tc.cgroup {
			t.Errorf("%s: cgroup %s, want %s", tc.inst, got, tc.cgroup)
		}
		if got := ServiceSlice(inst.Service); got != tc.svcSlice {
			t.Errorf("%s: service slice %s, want %s", tc.inst, got, tc.svcSlice)
		}
		if got := inst.LegacySliceCgroup(); got != tc.legacy {
			t.Errorf("%s: legacy cgroup %s, want %s", tc.inst, got, tc.legacy)
		}
	}
}

// TestBuckets: ids spread over every bucket, evenly enough that no bucket
// slice holds more than twice its share of 10,000 instances.
func TestBuckets(t *testing.T) {
	count := map[string]int{}
	for i := range 10000 {
		count[Instance{Service: "d", ID: fmt.Sprintf("i%04d", i)}.Bucket()]++
	}
	if len(count) != Buckets {
		t.Fatalf("10,000 ids fell in %d buckets, want %d", len(count), Buckets)
	}
	for b, n := range count {
		if n > 2*10000/Buckets {
			t.Errorf("bucket %s holds %d of 10,000", b, n)
		}
	}
}

func TestDynamicUserName(t *testing.T) {
	seen := map[string]string{}
	for _, in := range []string{"a-b:c", "a:b-c", "t:a", "t:b", "svc:" + strings.Repeat("x", 40), "svc:" + strings.Repeat("x", 41)} {
		inst, err := ParseInstance(in)
		if err != nil {
			t.Fatal(err)
		}
		n := DynamicUserName(inst)
		if len(n) > 31 {
			t.Errorf("%s: user %q is longer than 31 characters", in, n)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s share the user %q", in, other, n)
		}
		seen[n] = in
	}
}

// workdir takes the placeholders too (a per-instance checkout, say).
func TestWorkdirInterpolated(t *testing.T) {
	cfg, err := config.Parse("/etc/ten/tenement.toml", []byte("[service.api]\ncommand = \"/bin/app\"\nworkdir = \"/srv/{name}/{id}\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(cfg, cfg.Services["api"], "prod", Options{Port: 20001, Shim: "/run/tenement/.bin/ten"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Workdir != "/srv/api/prod" || !strings.Contains(Describe(p.Service), "WorkingDirectory=s /srv/api/prod\n") {
		t.Errorf("workdir %q\n%s", p.Workdir, Describe(p.Service))
	}
}

// An isolation = "process" app gets ten's HOME and PATH, as tenement's
// apps inherit its environment; a sandboxed one does not (it runs as its
// own user); the service's env wins.
func TestProcessAppHomeAndPath(t *testing.T) {
	cfg, err := config.Parse("/etc/ten/tenement.toml", []byte(`
[service.gorun]
command = "/usr/local/go/bin/go run app.go"
isolation = "process"

[service.own]
command = "/bin/app"
isolation = "process"
[service.own.env]
HOME = "/srv/own"

[service.boxed]
command = "/bin/app"
`))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Port: 20001, Shim: "/run/tenement/.bin/ten", Home: "/root", Path: "/usr/local/go/bin:/usr/bin:/bin"}
	for name, want := range map[string][]string{
		"gorun": {"HOME=/root", "PATH=/usr/local/go/bin:/usr/bin:/bin"},
		"own":   {"HOME=/srv/own", "PATH=/usr/local/go/bin:/usr/bin:/bin"},
		"boxed": {},
	} {
		p, err := Build(cfg, cfg.Services[name], "a", opts)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, kv := range p.Env {
			if strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "PATH=") {
				got = append(got, kv)
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

// TestTenementDataDirAndWorkdir: with data_dir set, {data_dir} is data_dir,
// the instance's data is {data_dir}/{name}/{id}, bound over the state
// directory (DataBind) and into the sandbox; without workdir
// the app runs in the config file's directory, bound in when under /tmp.
func TestTenementDataDirAndWorkdir(t *testing.T) {
	cfg, err := config.Parse("/tmp/app/tenement.toml", []byte(`
[settings]
data_dir = "./data"
[service.api]
command = "./run.sh --db {data_dir}/{name}/{id}/app.db"
[service.raw]
command = "./run.sh"
isolation = "process"
`))
	if err != nil {
		t.Fatal(err)
	}
	resolve := func(cmd, wd string) (string, error) { return filepath.Join(wd, cmd), nil }
	p, err := Build(cfg, cfg.Services["api"], "wr_a", Options{Shim: "/run/tenement/.bin/ten", Resolve: resolve})
	if err != nil {
		t.Fatal(err)
	}
	if p.DataDir != "/tmp/app/data/api/wr_a" || p.Workdir != "/tmp/app" {
		t.Errorf("data dir %s, workdir %s", p.DataDir, p.Workdir)
	}
	if strings.Join(p.Argv, " ") != "/tmp/app/run.sh --db /tmp/app/data/api/wr_a/app.db" {
		t.Errorf("argv %q", p.Argv)
	}
	d := Describe(p.Service)
	for _, want := range []string{
		"RequiresMountsFor=as [/var/lib/private/tenement/api/wr_a]",
		"BindPaths=a(ssbt) [{/tmp/app/data/api/wr_a /tmp/app/data/api/wr_a false 0}]",
		"BindReadOnlyPaths=a(ssbt) [{/tmp/app /tmp/app false 0}]",
		"WorkingDirectory=s /tmp/app\n",
		"DATA_DIR=/tmp/app/data/api/wr_a",
		"User=s ten_api_wr_a\n",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("missing %s in\n%s", want, d)
		}
	}
	p, err = Build(cfg, cfg.Services["raw"], "x", Options{Shim: "/run/tenement/.bin/ten", Resolve: resolve})
	if err != nil {
		t.Fatal(err)
	}
	d = Describe(p.Service)
	if strings.Contains(d, "BindPaths") || strings.Contains(d, "BindReadOnlyPaths") || strings.Contains(d, "RequiresMountsFor") || !strings.Contains(d, "DATA_DIR=/tmp/app/data/raw/x") {
		t.Errorf("process isolation: want no binds:\n%s", d)
	}
	if what, where, ok := DataBind(cfg, cfg.Services["api"], Instance{Service: "api", ID: "wr_a"}); !ok || what != "/tmp/app/data/api/wr_a" || where != "/var/lib/private/tenement/api/wr_a" {
		t.Errorf("DataBind: %s %s %v", what, where, ok)
	}
	if inst := (Instance{Service: "api", ID: "wr_a"}); inst.ServiceUnit() != "tenement-api@wr_a.service" || inst.Slice() != `tenement-api-b:18-wr_a.slice` {
		t.Errorf("unit names %s %s", inst.ServiceUnit(), inst.Slice())
	}
}

// TestConfigUnderHome: a sandboxed app whose config lives in a home
// directory (hidden by ProtectHome) runs in its data directory, and a
// relative command there is refused with the reason.
func TestConfigUnderHome(t *testing.T) {
	cfg, err := config.Parse("/root/app/tenement.toml", []byte("[service.api]\ncommand = \"/usr/bin/app\"\n[service.rel]\ncommand = \"./run.sh\"\n[service.raw]\ncommand = \"./run.sh\"\nisolation = \"process\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Shim: "/run/tenement/.bin/ten"}
	if p, err := Build(cfg, cfg.Services["api"], "a", o); err != nil || p.Workdir != "/var/lib/tenement/api/a" {
		t.Errorf("api: %v %v", p, err)
	}
	if _, err := Build(cfg, cfg.Services["rel"], "a", o); err == nil || !strings.Contains(err.Error(), "service.rel.command: relative command \"./run.sh\" is taken in the config file's directory /root/app, which isolation = \"namespace\" hides") {
		t.Errorf("rel: %v", err)
	}
	if p, err := Build(cfg, cfg.Services["raw"], "a", o); err != nil || p.Workdir != "/root/app" {
		t.Errorf("raw: %v %v", p, err)
	}
}

// TestShimBin: with the small ten-shim installed, the unit runs it as the
// shim, with the same arguments, and no systemd-cat in front (the shim
// opens the journal streams itself).
func TestShimBin(t *testing.T) {
	cfg, err := config.Parse("/etc/ten/tenement.toml", []byte("[service.web]\ncommand = \"/opt/web --port {port}\"\n\n[service.priv]\ncommand = \"/opt/web --port {port}\"\nnetwork = \"none\"\nlisten = [\"tcp://127.0.0.1:7000\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Port: 20001, Shim: "/run/tenement/.bin/ten", ShimBin: "/run/tenement/.bin/ten-shim", Cat: "/usr/bin/systemd-cat"}
	// A PORT app on the host network runs directly, with no process of
	// ten's beside it: ten sends READY=1 for it once it listens.
	p, err := Build(cfg, cfg.Services["web"], "a", opts)
	if err != nil {
		t.Fatal(err)
	}
	d := Describe(p.Service)
	for _, want := range []string{
		// ten-shim gives it its journal streams (systemd-cat only where
		// ten-shim is not installed: the golden files).
		"ExecStart=a(sasb) [{/run/tenement/.bin/ten-shim [/run/tenement/.bin/ten-shim cat --instance=web:a --identifier=web -- /opt/web --port 20001] false}]",
		"Type=s notify",
		"NotifyAccess=s all",
		"TimeoutStartUSec=t 10000000",
		"UnsetEnvironment=as [LISTEN_FDS LISTEN_PID LISTEN_FDNAMES]",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("got\n%s\nwant a line\n%s", d, want)
		}
	}
	if s := Describe(p.Socket); !strings.Contains(s, "FlushPending=b true") {
		t.Errorf("socket of a directly run app without FlushPending:\n%s", s)
	}
	// With a private network and an L4 address, the shim stays in front
	// (sk_lookup cannot steer into the instance's namespace).
	p, err = Build(cfg, cfg.Services["priv"], "a", opts)
	if err != nil {
		t.Fatal(err)
	}
	d = Describe(p.Service)
	want := "ExecStart=a(sasb) [{/run/tenement/.bin/ten-shim [/run/tenement/.bin/ten-shim shim --instance=priv:a --socket=/run/tenement-app/priv-a/app.sock --port=20001 --startup-timeout=10s --identifier=web -- /opt/web --port 20001] false}]"
	if !strings.Contains(d, want) || strings.Contains(d, "ExecStartPost") {
		t.Errorf("got\n%s\nwant a line\n%s", d, want)
	}
	if s := Describe(p.Socket); strings.Contains(s, "FlushPending") {
		t.Errorf("socket of a shimmed app with FlushPending:\n%s", s)
	}
}

// TestStandbyExecStart: with Options.Standby (settings.standby), a PORT app
// and one that takes systemd's socket run behind the standby waiter, which
// opens the journal streams itself (no systemd-cat) and, for the PORT app
// (Type=notify), extends the start timeout while it waits. An L4 service
// and a shim-mode one keep their own main process.
func TestStandbyExecStart(t *testing.T) {
	cfg, err := config.Parse("/etc/ten/tenement.toml", []byte(`[settings]
standby = 4

[service.web]
command = "/opt/web --port {port}"

[service.act]
command = "/opt/act"
activation = "socket"

[service.l4]
command = "/opt/web --port {port}"
listen = ["tcp://127.0.0.1:7000"]
`))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Port: 20001, Shim: "/run/tenement/.bin/ten", ShimBin: "/run/tenement/.bin/ten-shim", Cat: "/usr/bin/systemd-cat", Standby: true}
	for svc, want := range map[string]string{
		"web": "ExecStart=a(sasb) [{/run/tenement/.bin/ten-shim [/run/tenement/.bin/ten-shim standby --instance=web:a --socket=/run/tenement-app/web-a/app.sock --port=20001 --startup-timeout=10s --fds=1 --extend=10s --identifier=web -- /opt/web --port 20001] false}]",
		"act": "ExecStart=a(sasb) [{/run/tenement/.bin/ten-shim [/run/tenement/.bin/ten-shim standby --instance=act:a --socket=/run/tenement-app/act-a/app.sock --port=20001 --startup-timeout=10s --fds=1 --identifier=act -- /opt/act] false}]",
	} {
		p, err := Build(cfg, cfg.Services[svc], "a", opts)
		if err != nil {
			t.Fatal(err)
		}
		if d := Describe(p.Service); !strings.Contains(d, want) {
			t.Errorf("%s: got\n%s\nwant a line\n%s", svc, d, want)
		}
	}
	p, err := Build(cfg, cfg.Services["l4"], "a", opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := Describe(p.Service); strings.Contains(d, "standby") {
		t.Errorf("an L4 service behind the standby waiter:\n%s", d)
	}
	// Without settings.standby nothing changes: ten-shim cat in front.
	opts.Standby = false
	p, err = Build(cfg, cfg.Services["act"], "a", opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := Describe(p.Service); strings.Contains(d, "standby") || !strings.Contains(d, "/run/tenement/.bin/ten-shim cat --instance=act:a --identifier=act -- ") {
		t.Errorf("standby off:\n%s", d)
	}
}

// TestAppSocketPathMatchesPlan: the path the router dials (AppSocketPath)
// is SOCKET_PATH of the plan, with {data_dir} as settings.data_dir in both.
func TestAppSocketPathMatchesPlan(t *testing.T) {
	cfg, err := config.Parse("/srv/app/tenement.toml", []byte(`
[settings]
data_dir = "/srv/app/data"
[service.d]
command = "/bin/app"
socket = "{data_dir}/{name}/{id}/app.sock"
[service.p]
command = "/bin/app"
socket = "/run/tenement-app/{name}-{id}/{port}.sock"
[service.none]
command = "/bin/app"
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"d":    "/srv/app/data/d/x/app.sock",
		"p":    "/run/tenement-app/p-x/20001.sock",
		"none": "/run/tenement-app/none-x/app.sock",
	} {
		svc := cfg.Services[name]
		p, err := Build(cfg, svc, "x", Options{Port: 20001, Shim: "/run/tenement/.bin/ten"})
		if err != nil {
			t.Fatal(err)
		}
		if got := AppSocketPath(cfg, svc, "x", 20001); got != want || p.AppSocket != want {
			t.Errorf("service %s: AppSocketPath %s, plan's SOCKET_PATH %s; want %s", name, got, p.AppSocket, want)
		}
	}
}

// TestSocketKeyInTmpUnderNamespace: tenement's /tmp/tenement/{name}-{id}.sock
// under isolation = "namespace": the app is told that path (SOCKET_PATH,
// {socket}), the instance's runtime directory is bound over its directory
// inside the namespace, and ten dials the socket in the runtime directory.
func TestSocketKeyInTmpUnderNamespace(t *testing.T) {
	cfg, err := config.Parse("/srv/app/tenement.toml", []byte(`
[service.t]
command = "/bin/app --listen {socket}"
socket = "/tmp/tenement/{name}-{id}.sock"
`))
	if err != nil {
		t.Fatal(err)
	}
	svc := cfg.Services["t"]
	p, err := Build(cfg, svc, "x", Options{Port: 20001, Shim: "/run/tenement/.bin/ten"})
	if err != nil {
		t.Fatal(err)
	}
	if p.AppSocket != "/run/tenement-app/t-x/t-x.sock" || AppSocketPath(cfg, svc, "x", 20001) != p.AppSocket || p.AppSocketInside != "/tmp/tenement/t-x.sock" {
		t.Errorf("ten dials %s (AppSocketPath %s), the app binds %s", p.AppSocket, AppSocketPath(cfg, svc, "x", 20001), p.AppSocketInside)
	}
	d := Describe(p.Service)
	for _, want := range []string{
		"BindPaths=a(ssbt) [{/run/tenement-app/t-x /tmp/tenement false 0}]",
		"SOCKET_PATH=/tmp/tenement/t-x.sock",
		"/bin/app --listen /tmp/tenement/t-x.sock",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("missing %s in\n%s", want, d)
		}
	}
	// Under process the path is the path: no bind.
	svc.Isolation = config.IsolationProcess
	p, err = Build(cfg, svc, "x", Options{Port: 20001, Shim: "/run/tenement/.bin/ten"})
	if err != nil {
		t.Fatal(err)
	}
	if p.AppSocket != "/tmp/tenement/t-x.sock" || p.AppSocketInside != p.AppSocket || strings.Contains(Describe(p.Service), "BindPaths") {
		t.Errorf("process: ten dials %s, the app binds %s\n%s", p.AppSocket, p.AppSocketInside, Describe(p.Service))
	}
}

// TestLiteralArgv: every "$" of ExecStart is doubled, so that systemd's
// expansion at start gives the app its words as written; argv itself is
// not changed.
func TestLiteralArgv(t *testing.T) {
	argv := []string{"/opt/app", "pa$$word", "$NOPE", "a${X}b", "plain"}
	got := literalArgv(argv)
	want := []string{"/opt/app", "pa$$$$word", "$$NOPE", "a$${X}b", "plain"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("literalArgv = %q, want %q", got, want)
	}
	if argv[1] != "pa$$word" {
		t.Errorf("literalArgv changed its argument: %q", argv)
	}
	if plain := []string{"/opt/app", "--port", "1"}; &literalArgv(plain)[0] != &plain[0] {
		t.Error("literalArgv copied an argv without a $")
	}
}

// TestRestartPause: systemd's pause before restarting a crashed app is
// backoff_base_ms, capped by backoff_max_ms as every later pause is
// (tenement: the base doubled per restart, at most the max); an explicit
// backoff_max_ms = 0 means no pause.
func TestRestartPause(t *testing.T) {
	for _, c := range []struct {
		settings string
		want     string
	}{
		{"", "RestartUSec=t 1000000"},
		{"backoff_base_ms = 250\n", "RestartUSec=t 250000"},
		{"backoff_base_ms = 5000\nbackoff_max_ms = 2000\n", "RestartUSec=t 2000000"},
		{"backoff_max_ms = 0\n", "RestartUSec=t 0"},
		{"backoff_base_ms = 0\n", "RestartUSec=t 0"},
	} {
		cfg, err := config.Parse("/etc/ten/tenement.toml", []byte("[settings]\n"+c.settings+"\n[service.web]\ncommand = \"/opt/web\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := Build(cfg, cfg.Services["web"], "a", Options{Port: 20001, Shim: "/run/tenement/.bin/ten", ShimBin: "/run/tenement/.bin/ten-shim"})
		if err != nil {
			t.Fatal(err)
		}
		if d := Describe(p.Service); !strings.Contains(d, c.want+"\n") {
			t.Errorf("[settings] %q: got\n%s\nwant a line %s", c.settings, d, c.want)
		}
	}
}
