package units

import (
	"slices"
	"testing"

	"github.com/tenhq/ten/config"
)

// An app that binds PORT behind L4 addresses is told to listen with plain
// TCP (GODEBUG=multipathtcp=0), which a sockmap takes; an app that takes its
// sockets from systemd, or has no L4 address, is not; a service's own
// GODEBUG is kept.
func TestL4AppListensPlainTCP(t *testing.T) {
	cfg, err := config.Parse("/etc/ten/tenement.toml", []byte(`
[service.web]
command = "/bin/app"
listen = ["tcp://127.0.0.1:7000"]
[service.dbg]
command = "/bin/app"
listen = ["tcp://127.0.0.1:7001"]
env = { GODEBUG = "http2debug=1" }
[service.own]
command = "/bin/app"
listen = ["tcp://127.0.0.1:7002"]
env = { GODEBUG = "multipathtcp=1" }
[service.act]
command = "/bin/app"
activation = "socket"
listen = ["tcp://127.0.0.1:7003"]
[service.plain]
command = "/bin/app"
[service.gv]
command = "/bin/app"
isolation = "sandbox"
listen = ["tcp://127.0.0.1:7004"]
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"web":   "GODEBUG=multipathtcp=0",
		"dbg":   "GODEBUG=http2debug=1,multipathtcp=0",
		"own":   "GODEBUG=multipathtcp=1",
		"act":   "",
		"plain": "",
		"gv":    "",
	} {
		svc := cfg.Services[name]
		opts := Options{Port: 20001, Shim: "/run/tenement/.bin/ten", Runsc: "/usr/bin/runsc"}
		if len(svc.Listen) > 0 {
			opts.Listen, opts.L4Sockets = []string{"tcp://127.0.0.1:7000"}, []string{"127.0.0.1:30000"}
		}
		p, err := Build(cfg, svc, "a", opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		i := slices.IndexFunc(p.Env, func(kv string) bool { return len(kv) > 8 && kv[:8] == "GODEBUG=" })
		got := ""
		if i >= 0 {
			got = p.Env[i]
		}
		if got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

// Which apps ten may reach without a relay (L4 clients steered to the app's
// socket, the router to its address), and which keep the shim's relay.
func TestAppListens(t *testing.T) {
	for _, c := range []struct {
		svc  config.Service
		want bool
	}{
		{config.Service{Activation: config.ActivationShim, Isolation: config.IsolationNamespace}, true},
		{config.Service{Activation: config.ActivationShim, Isolation: config.IsolationProcess, Listen: []string{"tcp://127.0.0.1:7000"}}, true},
		{config.Service{Activation: config.ActivationSocket, Isolation: config.IsolationNamespace}, false},
		{config.Service{Activation: config.ActivationShim, Isolation: config.IsolationSandbox}, false},
		// The router dials into the private namespace, or over loopback,
		// which the allow-list then holds...
		{config.Service{Activation: config.ActivationShim, Isolation: config.IsolationNamespace, Network: "none"}, true},
		{config.Service{Activation: config.ActivationShim, Isolation: config.IsolationNamespace, IPAllow: []string{"10.0.0.0/8"}}, true},
		// ...but L4 clients cannot be steered to such an app's socket.
		{config.Service{Activation: config.ActivationShim, Isolation: config.IsolationNamespace, Network: "none", Listen: []string{"tcp://127.0.0.1:7000"}}, false},
		{config.Service{Activation: config.ActivationShim, Isolation: config.IsolationNamespace, IPAllow: []string{"10.0.0.0/8"}, Listen: []string{"tcp://127.0.0.1:7000"}}, false},
	} {
		if got := AppListens(&c.svc); got != c.want {
			t.Errorf("AppListens(%+v) = %v, want %v", c.svc, got, c.want)
		}
		if got, want := Direct(&c.svc), c.want && len(c.svc.Listen) == 0; got != want {
			t.Errorf("Direct(%+v) = %v, want %v", c.svc, got, want)
		}
	}
}
