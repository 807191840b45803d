package server

import (
	"context"
	"net"
	"net/http"

	"github.com/tenhq/ten/front"
	"github.com/tenhq/ten/tlsfront"
	"github.com/tenhq/ten/units"
)

// initTLS sets up the HTTPS front when [settings.tls] enabled = true.
func (s *Server) initTLS() error {
	if !s.cfg.Settings.TLS.Enabled {
		return nil
	}
	routes := tlsfront.Routes(s.cfg, func(svc, id string) bool { return s.reg.Has(units.Instance{Service: svc, ID: id}) },
		func(svc string) bool { return s.reg.ServiceCount(svc) > 0 })
	f, err := tlsfront.FromSettings(s.cfg, routes, s.log)
	if err != nil {
		return err
	}
	s.tls = f
	s.metrics.MustRegister(f.Collector())
	return nil
}

// TLSStatus is GET /api/tls/status.
func (s *Server) TLSStatus() tlsfront.Status {
	if s.tls == nil {
		return tlsfront.Status{Enabled: false, Domain: s.cfg.Settings.Domain, HTTPSPort: s.cfg.Settings.TLS.HTTPSPort, HTTPPort: s.cfg.Settings.TLS.HTTPPort, Certificates: []tlsfront.Cert{}}
	}
	return s.tls.Status()
}

// UseTLSListeners hands ten the HTTPS and HTTP listeners systemd passed
// (tenement.socket holds https_port and http_port too); ten listens itself
// on whichever is nil.
func (s *Server) UseTLSListeners(https, http net.Listener) {
	s.tlsLn, s.httpLn = https, http
}

// TLSPorts returns https_port and http_port when TLS is on (else 0, 0).
func (s *Server) TLSPorts() (https, http int) {
	if !s.cfg.Settings.TLS.Enabled {
		return 0, 0
	}
	return s.cfg.Settings.TLS.HTTPSPort, s.cfg.Settings.TLS.HTTPPort
}

// serveTLS serves handler over HTTPS on https_port and the redirect on
// http_port until ctx ends; the returned function waits until both have
// drained. Without TLS it does nothing.
func (s *Server) serveTLS(ctx context.Context, handler http.Handler) (wait func(), err error) {
	if s.tls == nil {
		return func() {}, nil
	}
	hl, pl, err := tlsfront.Listen(s.cfg, s.tlsLn, s.httpLn)
	if err != nil {
		return nil, err
	}
	// As for the plain listener (front.Serve): stop accepting, answer on
	// the open connections for a moment, then shut down.
	return s.tls.Serve(ctx, handler, hl, pl, tlsfront.ConnLimits{Grace: front.DrainGrace,
		IdleTimeout: front.IdleTimeout, HeaderTimeout: front.HeaderTimeout, MaxHeaderBytes: front.MaxHeaderBytes,
		MaxConnsPerAddr: s.cfg.Settings.ConnsPerAddress(), TrustedProxy: s.cfg.Settings.TrustedProxy()}), nil
}
