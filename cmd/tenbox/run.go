package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tenhq/ten/internal/box"
)

// boxFlags are the options every command that boots a box takes.
type boxFlags struct {
	RW          []string      `name:"rw" sep:"none" placeholder:"DIR" type:"existingdir" help:"Bind DIR read-write into the box at the same path (repeatable)."`
	Publish     []string      `short:"p" sep:"none" placeholder:"[HOSTIP:]HOSTPORT:BOXPORT" help:"Forward a TCP port of the host (127.0.0.1 unless HOSTIP) to 127.0.0.1:BOXPORT in the box, whose network is its own (repeatable)."`
	Name        string        `default:"tenbox" help:"Box name, also its host name."`
	KeepConsole bool          `help:"Copy systemd's console output to stderr."`
	BootTimeout time.Duration `default:"60s" help:"Give up booting after this long."`
	Verbose     bool          `short:"v" help:"Log the boot."`
}

// runCmd is "tenbox run".
type runCmd struct {
	boxFlags
	Command []string `arg:"" passthrough:"partial" name:"cmd" help:"Command and arguments to run inside the box."`
}

// Run boots the box, runs the command and returns its status as exitError.
func (r *runCmd) Run(ctx context.Context) error {
	// kong keeps the "--" that ends tenbox's own flags.
	argv := r.Command
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	return runInBox(ctx, r.boxFlags, argv)
}

// stopGrace is how long the command has to exit after tenbox forwards
// SIGTERM or SIGHUP before the box is torn down under it.
const stopGrace = 10 * time.Second

func runInBox(ctx context.Context, f boxFlags, argv []string) error {
	if len(argv) == 0 {
		return errors.New("no command")
	}
	var pubs []publish
	for _, s := range f.Publish {
		p, err := parsePublish(s)
		if err != nil {
			return err
		}
		pubs = append(pubs, p)
	}
	level := slog.LevelWarn
	if f.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	opts := box.Options{
		Name:        f.Name,
		RW:          f.RW,
		Log:         log,
		BootTimeout: f.BootTimeout,
	}
	if f.KeepConsole {
		opts.Stdout, opts.Stderr = os.Stderr, os.Stderr
	}
	// Until the command runs, SIGINT and SIGTERM abort the boot.
	bootCtx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	b, err := box.Boot(bootCtx, opts)
	stop()
	if err != nil {
		return err
	}
	defer b.Close()
	for _, p := range pubs {
		stop, err := p.serve(b, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	cmd := b.Command(context.Background(), argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return err
	}
	// A terminal's ^C reaches the command directly (same process group);
	// anything else is forwarded, with a grace period before the box goes.
	tty := isTerminal(0)
	var once sync.Once
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == os.Interrupt && tty {
					continue
				}
				_ = cmd.Process.Signal(s)
				once.Do(func() { time.AfterFunc(stopGrace, func() { _ = cmd.Process.Kill() }) })
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			return exitError(128 + int(ws.Signal()))
		}
		return exitError(ws.ExitStatus())
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", argv[0], err)
	}
	return nil
}
