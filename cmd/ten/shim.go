package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/tenhq/ten/shim"
)

// ShimCmd is `ten shim`, the main process of a shim-mode instance's service
// where the small ten-shim binary is not installed (cmd/ten-shim does the
// same and starts faster).
type ShimCmd struct {
	Instance       string        `help:"Instance name, for messages."`
	Socket         string        `help:"SOCKET_PATH the app may bind."`
	Port           int           `help:"PORT the app may bind on 127.0.0.1."`
	StartupTimeout time.Duration `help:"How long the app may take to listen." default:"10s"`
	Identifier     string        `help:"Journal identifier of the app's output: its stdout is logged at priority info, its stderr at err (what systemd-cat --stderr-priority=err does)."`
	Argv           []string      `arg:"" passthrough:"" help:"The app's command line."`
}

// Run relays the systemd socket to the app until the app exits.
func (c *ShimCmd) Run(ctx context.Context, log *slog.Logger) error {
	argv := c.Argv
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	shim.Exec(shim.Options{Instance: c.Instance, Socket: c.Socket, Port: c.Port, StartupTimeout: c.StartupTimeout, Argv: argv, Log: log}, c.Identifier)
	return nil
}

// ShimWaitCmd is `ten shim-wait`, the ExecStartPost waiter of an app that
// runs directly (no resident shim) where ten-shim is not installed: it exits
// once the app listens on SOCKET_PATH or PORT, and fails after the startup
// timeout.
type ShimWaitCmd struct {
	Instance       string        `help:"Instance name, for messages."`
	Socket         string        `help:"SOCKET_PATH the app may bind."`
	Port           int           `help:"PORT the app may bind on 127.0.0.1."`
	StartupTimeout time.Duration `help:"How long the app may take to listen." default:"10s"`
}

// Run waits for the app to listen.
func (c *ShimWaitCmd) Run(ctx context.Context, log *slog.Logger) error {
	return shim.Wait(ctx, shim.Options{Instance: c.Instance, Socket: c.Socket, Port: c.Port, StartupTimeout: c.StartupTimeout, Log: log})
}

// ShimLaunchCmd is `ten shim-launch`, the main process of a service whose
// app binds PORT/SOCKET_PATH itself and which has L4 listen addresses, where
// ten-shim is not installed: it starts `ten shim-relay` for the L4 sockets
// and then becomes the app.
type ShimLaunchCmd struct {
	Instance       string        `help:"Instance name, for messages."`
	Socket         string        `help:"SOCKET_PATH the app may bind."`
	Port           int           `help:"PORT the app may bind on 127.0.0.1."`
	StartupTimeout time.Duration `help:"How long the app may take to listen." default:"10s"`
	Argv           []string      `arg:"" passthrough:"" help:"The app's command line."`
}

// Run starts the relay and execs the app; it does not return.
func (c *ShimLaunchCmd) Run(ctx context.Context, log *slog.Logger) error {
	argv := c.Argv
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	o := shim.Options{Instance: c.Instance, Socket: c.Socket, Port: c.Port, StartupTimeout: c.StartupTimeout, Argv: argv, Log: log}
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	shim.Launch(o, append([]string{exe, "shim-relay"}, shim.Flags(o)...))
	return nil
}

// ShimStandbyCmd is `ten shim-standby`, the main process of a service that
// can stand by where ten-shim is not installed: it waits for a connection
// on the systemd sockets and then becomes the app (see shim.Standby).
type ShimStandbyCmd struct {
	Instance       string        `help:"Instance name, for messages."`
	Socket         string        `help:"SOCKET_PATH the app may bind."`
	Port           int           `help:"PORT the app may bind on 127.0.0.1."`
	StartupTimeout time.Duration `help:"How long the app may take to listen." default:"10s"`
	Identifier     string        `help:"Journal identifier of the app's output: its stdout is logged at priority info, its stderr at err."`
	Fds            int           `help:"How many systemd sockets (fds 3 on) a connection on wakes the app."`
	Extend         time.Duration `help:"The start timeout to extend while waiting (a Type=notify service)."`
	Argv           []string      `arg:"" passthrough:"" help:"The app's command line."`
}

// Run waits for a connection and execs the app; it does not return.
func (c *ShimStandbyCmd) Run(ctx context.Context, log *slog.Logger) error {
	argv := c.Argv
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	shim.Standby(shim.Options{Instance: c.Instance, Socket: c.Socket, Port: c.Port, StartupTimeout: c.StartupTimeout, Argv: argv, Log: log},
		shim.StandbyOptions{Fds: c.Fds, Identifier: c.Identifier, Extend: c.Extend})
	return nil
}

// ShimRelayCmd is `ten shim-relay`, the L4 relay `ten shim-launch` starts:
// it relays the L4 connections that arrive while the app does not listen
// yet, and exits once ten steers them to the app's own socket.
type ShimRelayCmd struct {
	Instance       string        `help:"Instance name, for messages."`
	Socket         string        `help:"SOCKET_PATH the app may bind."`
	Port           int           `help:"PORT the app may bind on 127.0.0.1."`
	StartupTimeout time.Duration `help:"How long the app may take to listen." default:"10s"`
}

// Run relays until ten hands the L4 connections to the app.
func (c *ShimRelayCmd) Run(ctx context.Context, log *slog.Logger) error {
	return shim.Relay(ctx, shim.Options{Instance: c.Instance, Socket: c.Socket, Port: c.Port, StartupTimeout: c.StartupTimeout, Log: log})
}
