package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/tenhq/ten/tlsfront"
	"github.com/tenhq/ten/units"
)

// EnvRenewCheck sets how often certificates are checked for renewal (a Go
// duration; certmagic's default of 10 minutes when unset). Tests with
// short-lived certificates shorten it.
const EnvRenewCheck = "TEN_TLS_RENEW_CHECK"

// initTLS sets up the HTTPS front when [settings.tls] enabled = true.
func (s *Server) initTLS() error {
	t := s.cfg.Settings.TLS
	if !t.Enabled {
		return nil
	}
	var dns01 certmagic.DNSProvider
	if t.DNSProvider != "" {
		get, err := tlsfront.Credentials(t.DNSCredentials, os.Getenv)
		if err != nil {
			return err
		}
		if dns01, err = tlsfront.DNSProvider(t.DNSProvider, get); err != nil {
			return err
		}
	}
	var roots []byte
	if t.CARoot != "" {
		b, err := os.ReadFile(t.CARoot)
		if err != nil {
			return fmt.Errorf("settings.tls.ca_root: %w", err)
		}
		roots = b
	}
	var renew time.Duration
	if v := os.Getenv(EnvRenewCheck); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s=%q: want a duration such as 30s", EnvRenewCheck, v)
		}
		renew = d
	}
	f, err := tlsfront.New(tlsfront.Options{
		Domain:       s.cfg.Settings.Domain,
		Email:        t.AcmeEmail,
		CA:           t.CA,
		Staging:      t.Staging,
		CARoots:      roots,
		CacheDir:     tlsfront.CacheDir(t.CacheDir, s.cfg.DataDirAbs()),
		HTTPSPort:    t.HTTPSPort,
		HTTPPort:     t.HTTPPort,
		Routes:       s.routesTo,
		RenewCheck:   renew,
		DNS01:        dns01,
		DNSResolvers: t.DNSResolvers,
		Services:     s.cfg.ServiceNames(),
		Log:          s.log.With("component", "tls"),
	})
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

// registerTLS serves GET /api/tls/status (admin).
func (s *Server) registerTLS(api *http.ServeMux) {
	api.HandleFunc("GET /api/tls/status", func(w http.ResponseWriter, r *http.Request) {
		if s.tls == nil {
			writeJSON(w, http.StatusOK, tlsfront.Status{Enabled: false, Domain: s.cfg.Settings.Domain, HTTPSPort: s.cfg.Settings.TLS.HTTPSPort, HTTPPort: s.cfg.Settings.TLS.HTTPPort, Certificates: []tlsfront.Cert{}})
			return
		}
		writeJSON(w, http.StatusOK, s.tls.Status())
	})
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
	s.tls.Prefetch(ctx)
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	var wg sync.WaitGroup
	for _, x := range []struct {
		ln  net.Listener
		h   http.Handler
		tls *tls.Config
	}{{hl, handler, s.tls.TLSConfig()}, {pl, s.tls.RedirectHandler(), nil}} {
		srv := &http.Server{Handler: x.h, TLSConfig: x.tls, ReadHeaderTimeout: 30 * time.Second, ErrorLog: errLog}
		var open atomic.Int64
		srv.ConnState = func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}
		ln := x.ln
		if x.tls != nil {
			ln = tls.NewListener(ln, x.tls)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
				s.log.Error("tls: serve", "listen", x.ln.Addr().String(), "err", err)
			}
		}()
		go func() {
			// As for the plain listener (Run): stop accepting, so new
			// connections wait in the backlog systemd holds, answer on the
			// open connections for a moment (the handler closes each after
			// its answer), then shut down.
			defer wg.Done()
			<-ctx.Done()
			ln.Close()
			time.Sleep(50 * time.Millisecond)
			for end := time.Now().Add(drainGrace); open.Load() > 0 && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond)
			}
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	s.log.Info("serving HTTPS", "https", hl.Addr().String(), "http_redirect", pl.Addr().String(), "domain", s.cfg.Settings.Domain, "ca", s.tls.CA())
	return func() { wg.Wait(); s.tls.Close() }, nil
}
