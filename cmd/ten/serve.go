package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"

	"github.com/tenhq/ten/server"
	"github.com/tenhq/ten/shim"
)

// ServeCmd is `ten serve`.
type ServeCmd struct {
	Port   int    `short:"p" help:"Port to listen on (replaces the port of settings.listen; its address stays)."`
	Listen string `help:"Address to listen on, e.g. 127.0.0.1:8080 (overrides settings.listen)."`
	Domain string `short:"d" help:"Base domain for Host routing (overrides settings.domain)."`
	// tenement's serve flags for [settings.tls].
	TLS     bool   `name:"tls" help:"Serve HTTPS with certificates from Let's Encrypt (sets settings.tls.enabled)."`
	Email   string `help:"ACME account email (settings.tls.acme_email)."`
	Staging bool   `help:"Use Let's Encrypt's staging CA (settings.tls.staging)."`
}

// Help is the longer help of `ten serve` (its man page's description).
func (c *ServeCmd) Help() string {
	return "ten serve runs its Go code on half the CPUs (rounded up; of its cgroup's CPU limit when tenement.service has one), " +
		"leaving the rest to the apps it serves. GOMAXPROCS in its environment (Environment=GOMAXPROCS=N in a drop-in of tenement.service, systemctl edit tenement.service) sets that number instead."
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
	if c.TLS {
		cfg.Settings.TLS.Enabled = true
	}
	if c.Email != "" {
		cfg.Settings.TLS.AcmeEmail = c.Email
	}
	if c.Staging {
		cfg.Settings.TLS.Staging = true
	}
	listen := c.Listen
	if listen == "" && c.Port != 0 {
		listen = cfg.Settings.ListenOnPort(c.Port)
	}
	setServeProcs(log)
	if addr := os.Getenv("TEN_PPROF_LISTEN"); addr != "" {
		servePprof(addr, log)
	}
	s, err := server.New(ctx, server.Options{Config: cfg, Listen: listen, Domain: c.Domain, Log: log})
	if err != nil {
		return err
	}
	lns, err := shim.Listeners()
	var ln net.Listener
	switch {
	case err == nil:
		// tenement.socket holds settings.listen and, with TLS, https_port
		// and http_port: tell them apart by port.
		var rest []net.Listener
		https, http := s.TLSPorts()
		var tlsLn, httpLn net.Listener
		for _, l := range lns {
			switch p := port(l); {
			case p != 0 && p == https:
				tlsLn = l
			case p != 0 && p == http:
				httpLn = l
			default:
				rest = append(rest, l)
			}
		}
		if len(rest) != 1 {
			return fmt.Errorf("systemd passed %d sockets besides https_port and http_port; want exactly one for settings.listen", len(rest))
		}
		ln = rest[0]
		s.UseTLSListeners(tlsLn, httpLn)
		log.Info("serving on the socket systemd passed", "addr", ln.Addr().String(), "sockets", len(lns))
	case errors.Is(err, shim.ErrNoListenFDs):
		ln, err = net.Listen("tcp", s.Listen())
		if err != nil {
			return fmt.Errorf("listen on %s: %w (another program holds the port? use --listen or settings.listen)", s.Listen(), err)
		}
	default:
		return err
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		log.Info("listening; adopting instances from systemd next", "addr", ln.Addr().String(), "try", fmt.Sprintf("curl -H 'Host: {id}.{service}.%s' http://127.0.0.1:%d/", cfg.Settings.Domain, a.Port))
	}
	return s.Run(ctx, ln)
}

// servePprof serves Go's profiler on addr (TEN_PPROF_LISTEN, for
// benchmarks: the router's CPU profile under load). It is off unless asked.
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() {
		if err := http.ListenAndServe(addr, mux); err != nil {
			log.Error("pprof listener (TEN_PPROF_LISTEN)", "addr", addr, "err", err)
		}
	}()
}

// port is a TCP listener's port (0 for other listeners).
func port(l net.Listener) int {
	if a, ok := l.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}
