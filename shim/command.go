package shim

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Exec is the whole life of a shim process (`ten shim`, or the small
// `ten-shim` binary, which starts faster at every wake): it takes the
// systemd socket, gives the app journal streams of its own when identifier
// is set, runs the app and relays until it exits, then ends the way the app
// ended. It does not return.
func Exec(o Options, identifier string) {
	log := o.Log
	if identifier != "" {
		// Without journald the app keeps the shim's output (one priority).
		if f, err := JournalStream(JournalStdout, identifier, PriorityInfo); err == nil {
			o.Stdout = f
		} else {
			log.Warn("app stdout stays with the shim's", "err", err)
		}
		if f, err := JournalStream(JournalStdout, identifier, PriorityErr); err == nil {
			o.Stderr = f
		} else {
			log.Warn("app stderr stays with the shim's", "err", err)
		}
	}
	l, err := Listener()
	if err != nil {
		log.Error("shim", "err", err)
		os.Exit(1)
	}
	exit, err := Run(context.Background(), l, o)
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
}

// Log is the shim's logger: text on stderr, which systemd sends to the
// journal.
func Log() *slog.Logger { return slog.New(slog.NewTextHandler(os.Stderr, nil)) }
