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

// Serve serves handler over HTTPS on httpsLn and the redirect to HTTPS
// (and the HTTP-01 challenge) on httpLn until ctx ends; the returned
// function waits until both have drained and closes f. When ctx ends each
// listener stops accepting, so that new connections wait in the backlog
// (systemd's, when ten is installed), answers on its open connections for
// at most grace, then shuts down.
func (f *Front) Serve(ctx context.Context, handler http.Handler, httpsLn, httpLn net.Listener, grace time.Duration) (wait func()) {
	f.Prefetch(ctx)
	errLog := slog.NewLogLogger(f.log.Handler(), slog.LevelDebug)
	var wg sync.WaitGroup
	for _, x := range []struct {
		ln  net.Listener
		h   http.Handler
		tls *tls.Config
	}{{httpsLn, handler, f.TLSConfig()}, {httpLn, f.RedirectHandler(), nil}} {
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
				f.log.Error("tls: serve", "listen", x.ln.Addr().String(), "err", err)
			}
		}()
		go func() {
			defer wg.Done()
			<-ctx.Done()
			ln.Close()
			time.Sleep(50 * time.Millisecond)
			for end := time.Now().Add(grace); open.Load() > 0 && time.Now().Before(end); {
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
