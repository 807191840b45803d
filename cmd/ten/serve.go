package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/tenhq/ten/server"
	"github.com/tenhq/ten/shim"
)

// ServeCmd is `ten serve`.
type ServeCmd struct {
	Port   int    `short:"p" help:"Port to listen on (overrides settings.listen)."`
	Listen string `help:"Address to listen on, e.g. 127.0.0.1:8080 (overrides settings.listen)."`
	Domain string `short:"d" help:"Base domain for Host routing (overrides settings.domain)."`
}

// Run starts the server. When systemd passes a listening socket (ten
// installed with `ten install`, port held by tenement.socket) it serves on
// that, so a restart of ten drops no connection.
func (c *ServeCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	if g.DataDir != "" {
		cfg.SetDataDir(g.DataDir)
	}
	listen := c.Listen
	if listen == "" && c.Port != 0 {
		listen = fmt.Sprintf(":%d", c.Port)
	}
	s, err := server.New(ctx, server.Options{Config: cfg, Listen: listen, Domain: c.Domain, Log: log})
	if err != nil {
		return err
	}
	ln, err := shim.Listener()
	switch {
	case err == nil:
		log.Info("serving on the socket systemd passed", "addr", ln.Addr().String())
	case errors.Is(err, shim.ErrNoListenFDs):
		ln, err = net.Listen("tcp", s.Listen())
		if err != nil {
			return fmt.Errorf("listen on %s: %w (another program holds the port? use --listen or settings.listen)", s.Listen(), err)
		}
	default:
		return err
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		log.Info("ten is up", "try", fmt.Sprintf("curl -H 'Host: {id}.{service}.%s' http://127.0.0.1:%d/", cfg.Settings.Domain, a.Port))
	}
	return s.Run(ctx, ln)
}
