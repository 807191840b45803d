// Command ten-shim is ten's activation shim as a small binary of its own:
// the main process of a shim-mode instance's service, started at every wake,
// so it links nothing but the shim (a Go binary starts faster the less it
// has to load and initialise than all of ten). It takes the same arguments
// as `ten shim`, which ten uses where ten-shim is not installed next to it.
//
// `ten-shim wait` (same flags, no command) is the waiter of a directly run
// app: it exits once the app listens, or fails after the startup timeout.
// `ten-shim standby` (same flags and command, and --fds, --extend) is the
// main process of a service that can stand by: it waits for a connection
// on the systemd sockets and then becomes the app (see shim.Standby).
// `ten-shim launch` (same flags and command) starts `ten-shim relay` for a
// service's L4 sockets and then becomes the app; the relay serves the L4
// connections that arrive before the app listens and exits once ten
// steers them to the app's own socket.
// `ten-shim cat --identifier=NAME -- APP [ARGS...]` gives a directly run
// app its two journal streams (stdout at info, stderr at err) and becomes
// it: what systemd-cat did in front of it, for less at every wake. In a cgo
// build for Linux (make build, the amd64 Debian package) a C constructor
// (cat_linux.c) does this before Go's runtime starts, for exactly the
// command line ten writes into a unit; anything else, and any failure, is
// left to shim.Cat, which reports it.
//
//	ten-shim standby --instance=api:prod --socket=PATH --port=N --startup-timeout=10s --fds=1 [--extend=10s] [--identifier=NAME] -- APP [ARGS...]
//	ten-shim [shim|launch] --instance=api:prod --socket=PATH --port=N --startup-timeout=10s [--identifier=NAME] -- APP [ARGS...]
//	ten-shim cat --instance=api:prod --identifier=NAME -- APP [ARGS...]
//	ten-shim wait|relay --instance=api:prod --socket=PATH --port=N --startup-timeout=10s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/tenhq/ten/shim"
)

func main() {
	args := os.Args[1:]
	verb := "shim"
	if len(args) > 0 {
		switch args[0] {
		case "shim", "wait", "launch", "relay", "standby", "cat":
			verb = args[0]
			args = args[1:]
		}
	}
	fs := flag.NewFlagSet("ten-shim", flag.ExitOnError)
	var o shim.Options
	fs.StringVar(&o.Instance, "instance", "", "instance name, for messages")
	fs.StringVar(&o.Socket, "socket", "", "SOCKET_PATH the app may bind")
	fs.IntVar(&o.Port, "port", 0, "PORT the app may bind on 127.0.0.1")
	fs.DurationVar(&o.StartupTimeout, "startup-timeout", 10*time.Second, "how long the app may take to listen")
	identifier := fs.String("identifier", "", "journal identifier of the app's output (stdout at priority info, stderr at err)")
	journal := fs.String("journal", shim.JournalStdout, "cat: journald's stream socket (for tests)")
	var so shim.StandbyOptions
	fs.IntVar(&so.Fds, "fds", 0, "standby: how many systemd sockets (fds 3 on) a connection on wakes the app")
	fs.DurationVar(&so.Extend, "extend", 0, "standby: the start timeout to extend while waiting (a Type=notify service)")
	_ = fs.Parse(args)
	o.Log = shim.Log()
	switch verb {
	case "wait", "relay":
		run := shim.Wait
		if verb == "relay" {
			run = shim.Relay
		}
		if err := run(context.Background(), o); err != nil {
			fmt.Fprintln(os.Stderr, "ten-shim:", err)
			os.Exit(1)
		}
		return
	}
	o.Argv = fs.Args()
	if len(o.Argv) == 0 {
		fmt.Fprintln(os.Stderr, "ten-shim: no app command after --")
		os.Exit(2)
	}
	if verb == "cat" {
		shim.Cat(o, *identifier, *journal)
	}
	if verb == "standby" {
		so.Identifier = *identifier
		shim.Standby(o, so)
	}
	if verb == "launch" {
		exe, err := os.Executable()
		if err != nil {
			exe = "/proc/self/exe"
		}
		shim.Launch(o, append([]string{exe, "relay"}, shim.Flags(o)...))
	}
	shim.Exec(o, *identifier)
}
