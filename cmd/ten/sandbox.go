package main

import (
	"os"

	"github.com/tenhq/ten/gvisor"
)

// SandboxCmd is `ten sandbox`: run an app under gVisor (isolation =
// "sandbox"). The shim starts it; it writes the OCI bundle and execs runsc.
type SandboxCmd struct {
	Runsc   string   `help:"Path of runsc." required:""`
	ID      string   `help:"Container ID." required:""`
	Dir     string   `help:"Private directory for runsc's state and the bundle." required:""`
	Network string   `help:"host or none." default:"none" enum:"host,none"`
	Cwd     string   `help:"The app's working directory."`
	Bind    []string `help:"Host directory the app sees read-write (repeatable)."`
	BindRO  []string `name:"bind-ro" help:"Host directory the app sees read-only (repeatable)."`
	Argv    []string `arg:"" passthrough:"" help:"The app's command line."`
}

// Run execs runsc; it returns only on error.
func (c *SandboxCmd) Run() error {
	return gvisor.Exec(gvisor.Options{Runsc: c.Runsc, ID: c.ID, Dir: c.Dir, Network: c.Network, Cwd: c.Cwd,
		Binds: c.Bind, BindsRO: c.BindRO, Env: gvisor.AppEnv(os.Environ()), Argv: dashless(c.Argv)})
}

// SandboxListenCmd is `ten sandbox-listen`: inside gVisor, bind SOCKET_PATH
// and exec an app that takes its socket by LISTEN_FDS.
type SandboxListenCmd struct {
	Socket string   `help:"Unix socket path to bind." required:""`
	Argv   []string `arg:"" passthrough:"" help:"The app's command line."`
}

// Run execs the app; it returns only on error.
func (c *SandboxListenCmd) Run() error {
	return gvisor.ListenExec(c.Socket, dashless(c.Argv))
}

func dashless(argv []string) []string {
	if len(argv) > 0 && argv[0] == "--" {
		return argv[1:]
	}
	return argv
}
