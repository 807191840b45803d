// Command tenbox boots a private systemd in fresh namespaces and runs a
// command inside it, so that ten (and its tests) can use a real systemd on a
// host where systemd is not PID 1. It needs root. See internal/box.
//
//	tenbox run [--rw DIR]... -- CMD [ARGS...]
//	tenbox shell [--rw DIR]...
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kong"

	"github.com/tenhq/ten/internal/box"
)

// cli is tenbox's command line.
type cli struct {
	Run   runCmd   `cmd:"" help:"Boot a box, run a command inside it and exit with its status."`
	Shell shellCmd `cmd:"" help:"Boot a box and run $SHELL inside it."`
}

func main() {
	box.MaybeStage() // tenbox re-executes itself as the box's first process
	var c cli
	k := kong.Parse(&c,
		kong.Name("tenbox"),
		kong.Description("Boot a private systemd in fresh namespaces and run a command inside it."),
		kong.UsageOnError(),
		kong.BindTo(context.Background(), (*context.Context)(nil)),
	)
	err := k.Run()
	var ex exitError
	switch {
	case errors.As(err, &ex):
		os.Exit(int(ex))
	case err != nil:
		fmt.Fprintf(os.Stderr, "tenbox: %v\n", err)
		os.Exit(125)
	}
}

// exitError carries the exit status of the command run in the box, so that
// main exits with it after every deferred Close has run.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
