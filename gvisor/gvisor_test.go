package gvisor

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestSpec(t *testing.T) {
	data, err := Spec(Options{Argv: []string{"/bin/app", "-x"}, Env: []string{"A=1"}, Binds: []string{"/var/lib/tenement/a/b"}, BindsRO: []string{"/srv"}})
	if err != nil {
		t.Fatal(err)
	}
	var s spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	if !s.Root.Readonly || s.Root.Path != "/" || !s.Process.NoNewPrivileges || s.Process.Cwd != "/" {
		t.Errorf("root/process: %s", data)
	}
	if c := s.Process.Capabilities; len(c.Bounding)+len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 || c.Bounding == nil {
		t.Errorf("capabilities must be present and empty: %+v", c)
	}
	var rw, ro bool
	for _, m := range s.Mounts {
		rw = rw || m.Destination == "/var/lib/tenement/a/b" && slices.Contains(m.Options, "rw")
		ro = ro || m.Destination == "/srv" && slices.Contains(m.Options, "ro")
	}
	if !rw || !ro {
		t.Errorf("binds: %+v", s.Mounts)
	}
	if _, err := Spec(Options{}); err != ErrNoCommand {
		t.Errorf("empty argv: %v", err)
	}
}

func TestRunscArgs(t *testing.T) {
	args := RunscArgs(Options{Runsc: "/usr/bin/runsc", ID: "a-b", Dir: "/run/x"})
	for _, want := range []string{"--ignore-cgroups", "--host-uds=create", "--network=none", "--root=/run/x/runsc", "--bundle=/run/x/bundle"} {
		if !slices.Contains(args, want) {
			t.Errorf("runsc args %v lack %s", args, want)
		}
	}
}

func TestAppEnv(t *testing.T) {
	env := AppEnv([]string{"LISTEN_FDS=1", "NOTIFY_SOCKET=/x", "PORT=1"})
	if slices.Contains(env, "LISTEN_FDS=1") || slices.Contains(env, "NOTIFY_SOCKET=/x") || !slices.Contains(env, "PORT=1") {
		t.Errorf("AppEnv = %v", env)
	}
}
