// Package metrics is ten serve's Prometheus side: the registry GET /metrics
// serves (Registry, Handler), the per-instance counters ten keeps itself
// (Instances: requests and wakes from the router, restarts from the health
// loop), the collectors that read the instances' state, memory, CPU, OOM
// kills and quota use at scrape time (NewStateCollector, over a Source the
// server implements), and the listener of settings.metrics_listen (Serve).
// Every name is ten_* (prometheus.BuildFQName); tenement's names are derived
// from them at scrape time (WithTenementNames).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is the registry behind GET /metrics, with Go's and the
// process's collectors. Features add theirs to it.
func Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler serves reg in the Prometheus text format, with tenement's metric
// names beside ten's (WithTenementNames). A collector that fails is
// reported in the output (and logged), not as a 500, so the other metrics
// still reach the scraper.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(WithTenementNames(reg), promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		ErrorLog:          slogPrinter{log},
		EnableOpenMetrics: false,
	})
}

type slogPrinter struct{ log *slog.Logger }

// Println logs a collector's failure.
func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics", "err", v) }

// Listen opens settings.metrics_listen, when set (nil, nil when addr is "").
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (settings.metrics_listen): %w", addr, err)
	}
	return ln, nil
}

// Serve serves endpoint as GET /metrics on ln until ctx ends, and returns
// once the scrapes under way have ended (they read the BPF maps, which the
// server closes after).
func Serve(ctx context.Context, ln net.Listener, endpoint http.Handler, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", endpoint)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	log.Info("serving metrics", "listen", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics listener", "err", err)
	}
	<-stopped
}
