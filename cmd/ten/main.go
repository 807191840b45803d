// Command ten manages many small app instances on one Linux server as
// systemd units: it routes by Host, lets idle instances sleep and wakes them
// by socket activation, and reads tenement.toml.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

// Globals are the flags every command shares.
type Globals struct {
	Server  string `help:"URL of the ten server (host:port alone means http://host:port)." env:"TENEMENT_SERVER" default:"http://localhost:8080"`
	Token   string `help:"API token (default: TENEMENT_TOKEN, then the api_token file in the data dir)." env:"TENEMENT_TOKEN"`
	DataDir string `help:"Data directory (default: settings.data_dir of the config)." env:"TENEMENT_DATA_DIR" type:"path"`
	Config  string `help:"Path of tenement.toml (default: found by walking up from the working directory)." short:"c" type:"path"`
	Debug   bool   `help:"Log debug messages."`
	JSON    bool   `help:"Print JSON for scripts instead of tables."`
}

// CLI is the whole command line.
type CLI struct {
	Globals

	Serve         ServeCmd             `cmd:"" help:"Run the router, the idle reaper and the admin API (as root, with systemd)."`
	Spawn         SpawnCmd             `cmd:"" help:"Create an instance: a socket and a service unit (one that exists is left as it is)."`
	Stop          StopCmd              `cmd:"" help:"Remove an instance's units."`
	Restart       RestartCmd           `cmd:"" help:"Restart an instance's service."`
	Ps            PsCmd                `cmd:"" aliases:"ls" help:"List instances."`
	Nodes         NodesCmd             `cmd:"" help:"List the fleet's live nodes, their leases and load (fleet mode: [fleet] in the config)."`
	Weight        WeightCmd            `cmd:"" help:"Set an instance's routing weight (0-100)."`
	Deploy        DeployCmd            `cmd:"" help:"Run a new version SERVICE:VERSION, wait until its health check passes, then route traffic to it (--replace drains and removes the old ones)."`
	Route         RouteCmd             `cmd:"" help:"Move a service's traffic from one instance to another in one step (weight swap)."`
	Health        HealthCmd            `cmd:"" help:"Show an instance's health, restarts and failed mark."`
	Init          InitCmd              `cmd:"" help:"Write a starter tenement.toml for the app in this directory."`
	Config_       ConfigCmd            `cmd:"" name:"config" help:"Print tenement's summary of the config (as comments), then the loaded config with defaults filled in."`
	Doctor        DoctorCmd            `cmd:"" help:"Check systemd, cgroups, BPF, gVisor: what is on and why one is off."`
	Install       InstallCmd           `cmd:"" help:"Install ten as a hardened systemd service whose port tenement.socket holds."`
	Uninstall     UninstallCmd         `cmd:"" help:"Remove ten's own units (instances keep running)."`
	Caddy         CaddyCmd             `cmd:"" help:"Print a Caddyfile with a wildcard site per service."`
	Logs          LogsCmd              `cmd:"" help:"Show instances' output from journald: search, follow (-f), time window."`
	TokenGen      TokenGenCmd          `cmd:"" name:"token-gen" help:"Create an API token (admin, or --tenant X for one tenant's instances); prints it once."`
	Token         TokenCmd             `cmd:"" help:"List or revoke API tokens."`
	Version       VersionCmd           `cmd:"" help:"Print ten's version (the package's), commit and build date."`
	Completion    CompletionCmd        `cmd:"" help:"Print a shell completion script: source <(ten completion bash)."`
	CompleteInsts CompleteInstancesCmd `cmd:"" name:"complete-instances" hidden:"" help:"Print instance names (for completion)."`
	Shim          ShimCmd              `cmd:"" hidden:"" help:"Activation shim (run by systemd, not by people)."`
	ShimWait      ShimWaitCmd          `cmd:"" hidden:"" name:"shim-wait" help:"Wait for a directly run app to listen (run by systemd, not by people)."`
	ShimLaunch    ShimLaunchCmd        `cmd:"" hidden:"" name:"shim-launch" help:"Start an L4 service's relay, then become its app (run by systemd, not by people)."`
	ShimStandby   ShimStandbyCmd       `cmd:"" hidden:"" name:"shim-standby" help:"Wait for a connection on the systemd sockets, then become the app (run by systemd, not by people)."`
	ShimRelay     ShimRelayCmd         `cmd:"" hidden:"" name:"shim-relay" help:"Relay an L4 service's connections until its app takes them (run by the launcher, not by people)."`
	Sandbox       SandboxCmd           `cmd:"" hidden:"" help:"Run an app under gVisor (run by the shim, not by people)."`
	SandboxListen SandboxListenCmd     `cmd:"" name:"sandbox-listen" hidden:"" help:"Inside gVisor: bind SOCKET_PATH and exec a LISTEN_FDS app."`
}

// kongOptions are the parser's options; the man pages are made from the
// same model (man_test.go).
func kongOptions() []kong.Option {
	return []kong.Option{
		kong.Name("ten"),
		kong.Description("ten runs many small app instances as systemd units: Host routing, sleep when idle, wake on request."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	}
}

// versionArgs turns `ten --version` and `ten -V` (tenement's, and most
// tools') into `ten version`. A global flag cannot do it: `ten deploy
// SERVICE --version VERSION` is tenement's older deploy.
func versionArgs(args []string) []string {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-V") {
		return []string{"version"}
	}
	return args
}

func main() {
	var cli CLI
	parser := kong.Must(&cli, kongOptions()...)
	kctx, err := parser.Parse(versionArgs(os.Args[1:]))
	parser.FatalIfErrorf(err)
	level := slog.LevelInfo
	if cli.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	kctx.BindTo(ctx, (*context.Context)(nil))
	kctx.Bind(&cli.Globals, log)
	err = kctx.Run()
	stdout.Flush()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ten: %v\n", err)
		os.Exit(1)
	}
}
