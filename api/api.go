// Package api is ten serve's admin API over HTTP: the endpoints under
// /api/ (instances, deploy and route, health, storage, logs, tokens,
// features, TLS status), the bearer-token check and tenant scope in front
// of them (auth.go), GET /health and GET /metrics, and the dashboard at the
// bare domain. Every JSON body is bounded and decoded strictly
// (decode.go). It owns no instance state: it talks to the server through
// Backend, given at New.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/logs"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/strictjson"
	"github.com/tenhq/ten/tlsfront"
	"github.com/tenhq/ten/units"
)

// Backend is what the API asks of the server. Errors that wrap
// registry.ErrNotFound or registry.ErrUnknownService answer 404,
// registry.ErrExists or registry.ErrBusy 409, strictjson.ErrBadInput 400,
// a *DeployError 504; any other error 500.
type Backend interface {
	// List is every instance's row (GET /api/instances); in a fleet, the
	// other nodes' instances too.
	List(ctx context.Context) ([]apitype.Row, error)
	// Row is one instance's row.
	Row(ctx context.Context, inst units.Instance) (apitype.Row, error)
	// Create spawns inst (in a fleet on node, or where placement picks when
	// node is "") and returns its row.
	Create(ctx context.Context, inst units.Instance, node string) (apitype.Row, error)
	// Remove stops inst and removes its units (in a fleet, wherever it runs).
	Remove(ctx context.Context, inst units.Instance) error
	// Restart restarts inst's service.
	Restart(ctx context.Context, inst units.Instance) error
	// SetWeight changes inst's routing weight (0..100).
	SetWeight(inst units.Instance, w int) error
	// Deploy is POST /api/deploy.
	Deploy(ctx context.Context, req apitype.DeployRequest) (apitype.DeployResult, error)
	// Route is POST /api/route.
	Route(req apitype.RouteRequest) (apitype.RouteResult, error)
	// Health is inst's health.
	Health(ctx context.Context, inst units.Instance) (apitype.Health, error)
	// Storage measures inst's state directory.
	Storage(ctx context.Context, inst units.Instance) (apitype.Storage, error)
	// Features are the optional features in use, and why one is off.
	Features() []apitype.Feature
	// TLSStatus is GET /api/tls/status.
	TLSStatus() tlsfront.Status
	// NewToken makes an API token (strictjson.ErrBadInput for a bad
	// tenant or description); in a fleet, a token of the whole fleet.
	NewToken(ctx context.Context, tenant, description string) (secret string, tok auth.Token, err error)
	// RevokeFleetToken revokes a token of the fleet; done is false when
	// there is none with that id (and always outside a fleet).
	RevokeFleetToken(ctx context.Context, id string) (done bool, err error)
	// ForwardAPI answers r, an authorized call of p, from another node
	// when it is about an instance that node runs (fleet mode); it reports
	// whether it answered.
	ForwardAPI(w http.ResponseWriter, r *http.Request, p auth.Principal) bool
}

// DeployError is a deploy that did not become healthy (504); Msg says what
// happened and what was undone.
type DeployError struct{ Msg string }

// Error returns Msg.
func (e *DeployError) Error() string { return e.Msg }

// Options configure an API.
type Options struct {
	Backend Backend
	// Config gives the config's path and services (for hints) and
	// settings.metrics_listen and metrics_auth.
	Config *config.Config
	// Guard checks every bearer token.
	Guard *auth.Guard
	// Streams bounds the open log streams (shared with the dashboard).
	Streams *logs.Slots
	// Dashboard serves / and /dashboard/.
	Dashboard http.Handler
	// Metrics serves the Prometheus registry (GET /metrics).
	Metrics http.Handler
	// RequestStats reads the instances' request counters (GET
	// /api/telemetry); nil: none counted.
	RequestStats func() map[string]apitype.RequestStats
	Log          *slog.Logger
}

// API is the admin API; Handler serves it.
type API struct {
	b       Backend
	cfg     *config.Config
	guard   *auth.Guard
	streams *logs.Slots
	reads   *logs.Slots // GET /api/logs
	dash    http.Handler
	metrics http.Handler
	log     *slog.Logger
	// requestStats is Options.RequestStats.
	requestStats func() map[string]apitype.RequestStats
	// trusted: settings.trusted_proxies (ClientKey).
	trusted func(ip string) bool
}

// New returns the API over o.Backend.
func New(o Options) *API {
	a := &API{b: o.Backend, cfg: o.Config, guard: o.Guard, streams: o.Streams, reads: logs.NewReadSlots(), dash: o.Dashboard, metrics: o.Metrics, log: o.Log, requestStats: o.RequestStats}
	if o.Config != nil {
		a.trusted = o.Config.Settings.TrustedProxy()
	}
	return a
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	if e, ok := v.(apitype.APIError); ok {
		v = apitype.APIError{Error: strictjson.ClipError(e.Error)}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var de *DeployError
	switch {
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrUnknownService):
		status = http.StatusNotFound
	case errors.Is(err, registry.ErrExists), errors.Is(err, registry.ErrBusy):
		status = http.StatusConflict
	case errors.Is(err, strictjson.ErrBadInput):
		status = http.StatusBadRequest
	case errors.As(err, &de):
		status = http.StatusGatewayTimeout
	}
	writeJSON(w, status, apitype.APIError{Error: err.Error()})
}

// badInput is err as a 400.
func badInput(err error) error { return fmt.Errorf("%w: %v", strictjson.ErrBadInput, err) }

// unknownServiceHint adds, for an admin, which services the config
// declares to an ErrUnknownService. A tenant is told only that the service
// is unknown: the config's path and the other services are not its business.
func (a *API) unknownServiceHint(r *http.Request, err error) error {
	if !errors.Is(err, registry.ErrUnknownService) || !principalOf(r).Admin() {
		return err
	}
	return fmt.Errorf("%w: %s declares services %s", err, a.cfg.Path, strings.Join(a.cfg.ServiceNames(), ", "))
}

// withInst parses the {id} of the path as an instance (400 when it is not one).
func withInst(f func(w http.ResponseWriter, r *http.Request, inst units.Instance)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		inst, err := units.ParseInstance(r.PathValue("id"))
		if err != nil {
			writeErr(w, badInput(err))
			return
		}
		f(w, r, inst)
	}
}

// Handler serves the admin host: GET /health, GET /metrics, the dashboard,
// and /api/ behind a token.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", a.MetricsEndpoint(true))
	// The bare domain is the dashboard.
	mux.Handle("GET /{$}", a.dash)
	mux.Handle("/dashboard", a.dash)
	mux.Handle("/dashboard/", a.dash)
	api := http.NewServeMux()
	// Each concern registers its endpoints from its own file.
	for _, register := range []func(*http.ServeMux){
		a.registerInstances,
		a.registerTokens,
		a.registerLogs,
		a.registerDeploy,
		a.registerTelemetry,
		a.registerNotFound,
	} {
		register(api)
	}
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, ok := a.authorize(w, r)
		if !ok {
			return
		}
		if a.b.ForwardAPI(w, r, principalOf(r)) { // another node runs it
			return
		}
		api.ServeHTTP(w, r)
	}))
	return mux
}

// MetricsEndpoint is GET /metrics as configured: on settings.listen unless
// settings.metrics_listen names another address (onMain tells which
// listener asks), and behind an admin token when settings.metrics_auth is
// set. By default it is public, as in tenement: it shows every instance's
// name, state, memory, CPU, restarts and traffic counters, of every tenant.
func (a *API) MetricsEndpoint(onMain bool) http.Handler {
	set := a.cfg.Settings
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if onMain && set.MetricsListen != "" {
			writeJSON(w, http.StatusNotFound, apitype.APIError{Error: "metrics are served on another address (settings.metrics_listen)"})
			return
		}
		if set.MetricsAuth {
			r2, ok := a.authorize(w, r)
			if !ok {
				return
			}
			r = r2
		}
		a.metrics.ServeHTTP(w, r)
	})
}
