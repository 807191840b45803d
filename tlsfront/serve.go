package tlsfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/router/addrcap"
)

// EnvRenewCheck sets how often certificates are checked for renewal (a Go
// duration; certmagic's default of 10 minutes when unset). Tests with
// short-lived certificates shorten it.
const EnvRenewCheck = "TEN_TLS_RENEW_CHECK"

// FromSettings makes the Front of cfg's [settings.tls] (t.Enabled is the
// caller's to check), with its cache under the data dir by default and the
// DNS-01 provider of dns_provider (credentials from the environment); routes
// says which names exist (certificates are requested only for those).
func FromSettings(cfg *config.Config, routes func(host string) bool, log *slog.Logger) (*Front, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := cfg.Settings.TLS
	var dns01 certmagic.DNSProvider
	if t.DNSProvider != "" {
		get, err := Credentials(t.DNSCredentials, os.Getenv)
		if err != nil {
			return nil, err
		}
		if dns01, err = DNSProvider(t.DNSProvider, get); err != nil {
			return nil, err
		}
	}
	var roots []byte
	if t.CARoot != "" {
		b, err := os.ReadFile(t.CARoot)
		if err != nil {
			return nil, fmt.Errorf("settings.tls.ca_root: %w", err)
		}
		roots = b
	}
	var renew time.Duration
	if v := os.Getenv(EnvRenewCheck); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s=%q: want a duration such as 30s", EnvRenewCheck, v)
		}
		renew = d
	}
	return New(Options{
		Domain:       cfg.Settings.Domain,
		Email:        t.AcmeEmail,
		CA:           t.CA,
		Staging:      t.Staging,
		CARoots:      roots,
		CacheDir:     CacheDir(t.CacheDir, cfg.DataDirAbs()),
		HTTPSPort:    t.HTTPSPort,
		HTTPPort:     t.HTTPPort,
		Routes:       routes,
		RenewCheck:   renew,
		DNS01:        dns01,
		DNSResolvers: t.DNSResolvers,
		Services:     cfg.ServiceNames(),
		Log:          log.With("component", "tls"),
	})
}

// ConnLimits are the bounds of the HTTPS listener's and the redirect
// listener's connections (the plain listener's, package front).
type ConnLimits struct {
	// Grace is how long a stopping ten answers on open connections.
	Grace time.Duration
	// IdleTimeout closes a keep-alive connection without a request.
	IdleTimeout time.Duration
	// HeaderTimeout bounds the TLS handshake and then each request head.
	HeaderTimeout time.Duration
	// MaxHeaderBytes bounds a request head (431 beyond).
	MaxHeaderBytes int
	// MaxConnsPerAddr bounds the connections one client address holds
	// open on each listener (0: no bound); one over it is closed at once
	// (with a 429 on the redirect listener; before any handshake on the
	// HTTPS one, where no answer can be read).
	MaxConnsPerAddr int
	// TrustedProxy reports a proxy in front of ten by its IP
	// (settings.trusted_proxies; nil: none): its connections are not
	// counted, its requests count against the clients it names
	// (addrcap.Cap.Trust).
	TrustedProxy func(ip string) bool
}

// Serve serves handler over HTTPS on httpsLn and the redirect to HTTPS
// (and the HTTP-01 challenge) on httpLn until ctx ends; the returned
// function waits until both have drained and closes f. When ctx ends each
// listener stops accepting, so that new connections wait in the backlog
// (systemd's, when ten is installed), answers on its open connections for
// at most lim.Grace, then shuts down.
func (f *Front) Serve(ctx context.Context, handler http.Handler, httpsLn, httpLn net.Listener, lim ConnLimits) (wait func()) {
	f.Prefetch(ctx)
	var wg sync.WaitGroup
	for _, x := range []struct {
		ln  net.Listener
		h   http.Handler
		tls *tls.Config
	}{{httpsLn, handler, f.TLSConfig()}, {httpLn, f.RedirectHandler(), nil}} {
		srv, ln := f.server(x.ln, x.h, x.tls, lim)
		var open atomic.Int64
		srv.ConnState = func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
				f.log.Error("tls: serve", "listen", x.ln.Addr().String(), "err", err)
			}
		}()
		go func() {
			defer wg.Done()
			<-ctx.Done()
			ln.Close()
			time.Sleep(50 * time.Millisecond)
			for end := time.Now().Add(lim.Grace); open.Load() > 0 && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond)
			}
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	f.log.Info("serving HTTPS", "https", httpsLn.Addr().String(), "http_redirect", httpLn.Addr().String(), "domain", f.o.Domain, "ca", f.CA())
	return func() { wg.Wait(); f.Close() }
}

// server makes the http.Server of one listener with lim's bounds, and the
// listener it serves: ln capped per client address, then TLS when tc is
// set (a connection over the cap costs no handshake).
func (f *Front) server(ln net.Listener, h http.Handler, tc *tls.Config, lim ConnLimits) (*http.Server, net.Listener) {
	srv := &http.Server{Handler: h, TLSConfig: tc, ReadHeaderTimeout: lim.HeaderTimeout, IdleTimeout: lim.IdleTimeout,
		MaxHeaderBytes: lim.MaxHeaderBytes, ErrorLog: slog.NewLogLogger(f.log.Handler(), slog.LevelDebug)}
	refuse := addrcap.Refuse429
	if tc != nil {
		refuse = nil // closed at once: no answer can be read before a handshake
	}
	// HTTP/2 streams count against their client's address as connections.
	c := addrcap.New(lim.MaxConnsPerAddr)
	c.Trust(lim.TrustedProxy)
	srv.Handler = c.Streams(h)
	ln = c.Listener(ln, refuse)
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return srv, ln
}
