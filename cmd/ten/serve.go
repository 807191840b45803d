package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/tenhq/ten/server"
)

// ServeCmd is `ten serve`.
type ServeCmd struct {
	Port   int    `short:"p" help:"Port to listen on (overrides settings.listen)."`
	Listen string `help:"Address to listen on, e.g. 127.0.0.1:8080 (overrides settings.listen)."`
	Domain string `short:"d" help:"Base domain for Host routing (overrides settings.domain)."`
}

// Run starts the server.
func (c *ServeCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	if g.DataDir != "" {
		cfg.Settings.DataDir = g.DataDir
	}
	listen := c.Listen
	if listen == "" && c.Port != 0 {
		listen = fmt.Sprintf(":%d", c.Port)
	}
	s, err := server.New(ctx, server.Options{Config: cfg, Listen: listen, Domain: c.Domain, Log: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.Listen())
	if err != nil {
		return fmt.Errorf("listen on %s: %w (another program holds the port? use --listen or settings.listen)", s.Listen(), err)
	}
	host := ln.Addr().(*net.TCPAddr)
	d := cfg.Settings.Domain
	log.Info("ten is up", "try", strings.Join([]string{
		fmt.Sprintf("curl -H 'Host: {id}.{service}.%s' http://127.0.0.1:%d/", d, host.Port),
	}, " "))
	return s.Run(ctx, ln)
}
