package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tenhq/ten/shim"
)

// ShimCmd is `ten shim`, the main process of a shim-mode instance's service.
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
	l, err := shim.Listener()
	if err != nil {
		return err
	}
	o := shim.Options{Instance: c.Instance, Socket: c.Socket, Port: c.Port, StartupTimeout: c.StartupTimeout, Argv: argv, Log: log}
	if c.Identifier != "" {
		// Without journald the app keeps the shim's output (one priority).
		if f, err := shim.JournalStream(shim.JournalStdout, c.Identifier, shim.PriorityInfo); err == nil {
			o.Stdout = f
		} else {
			log.Warn("app stdout stays with the shim's", "err", err)
		}
		if f, err := shim.JournalStream(shim.JournalStdout, c.Identifier, shim.PriorityErr); err == nil {
			o.Stderr = f
		} else {
			log.Warn("app stderr stays with the shim's", "err", err)
		}
	}
	exit, err := shim.Run(context.Background(), l, o)
	if err != nil {
		log.Error("shim", "err", err)
		if exit.Code == 0 {
			exit.Code = 1
		}
	}
	if exit.Signal != 0 {
		// End the way the app ended. When systemd stops the service (the
		// idle reaper putting the instance to sleep), the shim passes the
		// SIGTERM on and the app dies of it; exiting 143 instead would
		// leave every sleeping shim-mode instance "failed".
		signal.Reset(exit.Signal)
		_ = syscall.Kill(os.Getpid(), exit.Signal)
		time.Sleep(time.Second) // a signal that does not kill (say SIGCHLD) falls through
	}
	os.Exit(exit.Code)
	return nil
}
