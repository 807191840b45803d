// Package gvisor runs an instance's app under gVisor (runsc) for isolation =
// "sandbox". The unit's main process is ten's shim; its child is
// `ten sandbox`, which writes an OCI bundle into the instance's private
// runtime directory and execs `runsc run` on it. runsc runs with
// --ignore-cgroups, so gVisor's sentry, gofer and the app all stay in the
// instance's cgroup and its MemoryMax, CPUQuota and TasksMax hold.
//
// runsc 20221219 (Debian 12) cannot hand a host file descriptor such as
// the systemd-activated socket to the app, so the app listens inside gVisor
// on SOCKET_PATH (bound through the gofer, --host-uds=create) or on PORT
// (--network=host), and the shim outside relays to it. An app that takes
// LISTEN_FDS gets them from `ten sandbox-listen` (ListenExec), which runs
// inside gVisor, binds SOCKET_PATH and execs the app with the socket as fd 3.
package gvisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Options describe one sandboxed app.
type Options struct {
	// Runsc is the path of runsc.
	Runsc string
	// ID names the container (unique per instance).
	ID string
	// Dir is a private, writable directory for runsc's state and the
	// bundle; the app does not see it.
	Dir string
	// Network is "host" (the unit's network namespace, through gVisor's
	// hostinet) or "none" (loopback inside gVisor only).
	Network string
	// Cwd is the app's working directory.
	Cwd string
	// Binds are host directories the app sees read-write at the same path;
	// BindsRO read-only. Everything else is the host's root, read-only.
	Binds, BindsRO []string
	// Env is the app's environment.
	Env []string
	// Argv is the app's command line.
	Argv []string
}

// ErrNoCommand means Argv is empty.
var ErrNoCommand = errors.New("sandbox: no app command")

type spec struct {
	OCIVersion string  `json:"ociVersion"`
	Process    process `json:"process"`
	Root       struct {
		Path     string `json:"path"`
		Readonly bool   `json:"readonly"`
	} `json:"root"`
	Hostname string  `json:"hostname"`
	Mounts   []mount `json:"mounts"`
	Linux    struct {
		Namespaces []struct {
			Type string `json:"type"`
		} `json:"namespaces"`
	} `json:"linux"`
}

type process struct {
	User struct {
		UID uint32 `json:"uid"`
		GID uint32 `json:"gid"`
	} `json:"user"`
	Args            []string `json:"args"`
	Env             []string `json:"env"`
	Cwd             string   `json:"cwd"`
	NoNewPrivileges bool     `json:"noNewPrivileges"`
	// Capabilities are all empty: the app is root in gVisor's kernel but
	// with no privilege beyond owning its files.
	Capabilities struct {
		Bounding    []string `json:"bounding"`
		Effective   []string `json:"effective"`
		Inheritable []string `json:"inheritable"`
		Permitted   []string `json:"permitted"`
		Ambient     []string `json:"ambient"`
	} `json:"capabilities"`
}

type mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

// Spec renders the OCI runtime config (config.json) of the app.
func Spec(o Options) ([]byte, error) {
	if len(o.Argv) == 0 {
		return nil, ErrNoCommand
	}
	var s spec
	s.OCIVersion = "1.0.2"
	s.Process.Args = o.Argv
	s.Process.Env = o.Env
	s.Process.Cwd = o.Cwd
	if s.Process.Cwd == "" {
		s.Process.Cwd = "/"
	}
	s.Process.NoNewPrivileges = true
	empty := []string{}
	c := &s.Process.Capabilities
	c.Bounding, c.Effective, c.Inheritable, c.Permitted, c.Ambient = empty, empty, empty, empty, empty
	s.Root.Path = "/"
	s.Root.Readonly = true
	s.Hostname = "sandbox"
	s.Mounts = []mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
	}
	for _, b := range o.Binds {
		s.Mounts = append(s.Mounts, mount{Destination: b, Type: "bind", Source: b, Options: []string{"rbind", "rw"}})
	}
	for _, b := range o.BindsRO {
		s.Mounts = append(s.Mounts, mount{Destination: b, Type: "bind", Source: b, Options: []string{"rbind", "ro"}})
	}
	// A directory before the ones inside it (the config's directory, read
	// only, holds the data directory, read-write): a later mount on a
	// parent would hide the nested one.
	binds := s.Mounts[2:]
	sort.SliceStable(binds, func(i, j int) bool {
		return strings.Count(binds[i].Destination, "/") < strings.Count(binds[j].Destination, "/")
	})
	namespaces := []string{"pid", "ipc", "uts", "mount", "network"}
	if o.Network == "host" {
		// With a network namespace in the spec runsc makes a new, empty
		// one even with --network=host, and an app listening on PORT on
		// 127.0.0.1 is out of the shim's reach.
		namespaces = namespaces[:4]
	}
	for _, ns := range namespaces {
		s.Linux.Namespaces = append(s.Linux.Namespaces, struct {
			Type string `json:"type"`
		}{ns})
	}
	return json.MarshalIndent(s, "", "  ")
}

// RunscArgs is the runsc command line that runs the bundle in dir/bundle.
func RunscArgs(o Options) []string {
	network := o.Network
	if network == "" {
		network = "none"
	}
	return []string{o.Runsc,
		"--root=" + filepath.Join(o.Dir, "runsc"),
		// Stay in the unit's cgroup: its limits are the instance's limits.
		"--ignore-cgroups",
		"--network=" + network,
		// The app may bind its SOCKET_PATH on the host, but not connect to
		// host sockets (another instance's, D-Bus, journald).
		"--host-uds=create",
		"run", "--bundle=" + filepath.Join(o.Dir, "bundle"), o.ID,
	}
}

// AppEnv is the app's environment: the given one without what belongs to
// the unit's own processes (socket activation, notify, journal stream).
func AppEnv(env []string) []string {
	var out []string
	hasPath := false
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "LISTEN_"), k == "NOTIFY_SOCKET", k == "JOURNAL_STREAM", k == "INVOCATION_ID", k == "WATCHDOG_USEC", k == "WATCHDOG_PID":
			continue
		case k == "PATH":
			hasPath = true
		}
		out = append(out, kv)
	}
	if !hasPath {
		out = append(out, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return out
}

func errorf(format string, a ...any) error { return fmt.Errorf("sandbox: "+format, a...) }
