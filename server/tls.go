package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/tenhq/ten/front"
	"github.com/tenhq/ten/tlsfront"
	"github.com/tenhq/ten/units"
)

// initTLS sets up the HTTPS front when [settings.tls] enabled = true.
func (s *Server) initTLS() error {
	if !s.cfg.Settings.TLS.Enabled {
		return nil
	}
	f, err := tlsfront.FromSettings(s.cfg, s.routesTo, s.log)
	if err != nil {
		return err
	}
	s.tls = f
	s.metrics.MustRegister(f.Collector())
	return nil
}

// routesTo reports whether host (under the domain) is an existing
// instance ({id}.{service}) or a service with instances or declared in the
// config ({service}). A never-spawned id of a declared service does not
// count: certificates are only requested for names that exist.
func (s *Server) routesTo(host string) bool {
	sub, ok := strings.CutSuffix(host, "."+s.cfg.Settings.Domain)
	if !ok {
		return false
	}
	labels := strings.Split(sub, ".")
	switch len(labels) {
	case 1:
		if _, ok := s.cfg.Services[labels[0]]; ok {
			return true
		}
		for _, inst := range s.reg.Instances() {
			if inst.Service == labels[0] {
				return true
			}
		}
	case 2:
		return s.reg.Has(units.Instance{Service: labels[1], ID: labels[0]})
	}
	return false
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
	t := s.cfg.Settings.TLS
	host, _, _ := net.SplitHostPort(s.cfg.Settings.Listen)
	listen := func(ln net.Listener, port int, key string) (net.Listener, error) {
		if ln != nil {
			return ln, nil
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s (settings.tls.%s): %w", addr, key, err)
		}
		return l, nil
	}
	hl, err := listen(s.tlsLn, t.HTTPSPort, "https_port")
	if err != nil {
		return nil, err
	}
	pl, err := listen(s.httpLn, t.HTTPPort, "http_port")
	if err != nil {
		hl.Close()
		return nil, err
	}
	// As for the plain listener (front.Serve): stop accepting, answer on
	// the open connections for a moment, then shut down.
	return s.tls.Serve(ctx, handler, hl, pl, front.DrainGrace), nil
}
