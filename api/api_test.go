package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/logs"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/tlsfront"
	"github.com/tenhq/ten/units"
)

// backend answers from a fixed list: what is under test is the API's
// routing, token scope and error mapping (the real server behind it is
// the system tests', test/system).
type backend struct{ removed []string }

func (b *backend) List(context.Context) ([]apitype.Row, error) {
	return []apitype.Row{{Instance: "api:acme"}, {Instance: "api:other"}}, nil
}
func (b *backend) Row(_ context.Context, inst units.Instance) (apitype.Row, error) {
	return apitype.Row{}, fmt.Errorf("%s: %w", inst, registry.ErrNotFound)
}
func (b *backend) Create(_ context.Context, inst units.Instance, _ string) (apitype.Row, error) {
	if inst.Service != "api" {
		return apitype.Row{}, fmt.Errorf("spawn %s: %w %q", inst, registry.ErrUnknownService, inst.Service)
	}
	return apitype.Row{Instance: inst.String()}, nil
}
func (b *backend) Remove(_ context.Context, inst units.Instance) error {
	b.removed = append(b.removed, inst.String())
	return nil
}
func (b *backend) Restart(context.Context, units.Instance) error { return registry.ErrBusy }
func (b *backend) SetWeight(units.Instance, int) error           { return nil }
func (b *backend) Deploy(context.Context, apitype.DeployRequest) (apitype.DeployResult, error) {
	return apitype.DeployResult{}, &DeployError{Msg: "deploy api:v2: not healthy"}
}
func (b *backend) Route(apitype.RouteRequest) (apitype.RouteResult, error) {
	return apitype.RouteResult{}, nil
}
func (b *backend) Health(context.Context, units.Instance) (apitype.Health, error) {
	return apitype.Health{}, nil
}
func (b *backend) Storage(context.Context, units.Instance) (apitype.Storage, error) {
	return apitype.Storage{}, nil
}
func (b *backend) NewToken(context.Context, string, string) (string, auth.Token, error) {
	return "", auth.Token{}, errors.New("not in this test")
}
func (b *backend) RevokeFleetToken(context.Context, string) (bool, error) { return false, nil }
func (b *backend) ForwardAPI(w http.ResponseWriter, r *http.Request, _ auth.Principal) bool {
	if r.URL.Path != "/api/instances/api:elsewhere" {
		return false
	}
	writeJSON(w, http.StatusBadGateway, apitype.APIError{Error: "forwarded"})
	return true
}
func (b *backend) Features() []apitype.Feature { return nil }
func (b *backend) TLSStatus() tlsfront.Status  { return tlsfront.Status{} }

func TestHandler(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	g, err := LoadGuard(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := os.ReadFile(filepath.Join(dir, "api_token"))
	if err != nil {
		t.Fatal(err)
	}
	tenant, _, err := g.Store().Create("acme", "test")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{}
	cfg := &config.Config{Path: "/etc/tenement.toml", Services: map[string]*config.Service{"api": {Name: "api"}}}
	h := New(Options{Backend: b, Config: cfg, Guard: g, Streams: &logs.Slots{}, Log: log,
		Dashboard: http.NotFoundHandler(), Metrics: http.NotFoundHandler()}).Handler()
	do := func(method, path, token, body string) (int, string) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:5000"
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	for _, c := range []struct {
		method, path, token, body string
		status                    int
		has                       string
	}{
		{"GET", "/api/instances", "", "", 401, "missing bearer token"},
		{"GET", "/api/instances", "nope", "", 401, "invalid token"},
		{"GET", "/api/instances", tenant, "", 200, `"api:acme"`},
		{"DELETE", "/api/instances/api:other", tenant, "", 403, `tenant \"acme\"`},
		{"GET", "/api/tokens", tenant, "", 403, "needs an admin token"},
		{"POST", "/api/instances/spawn", string(admin), `{"instance":"db:x"}`, 404, "declares services api"},
		{"POST", "/api/instances/spawn", tenant, `{"instance":"db:acme"}`, 404, "unknown service"},
		{"POST", "/api/instances/spawn", string(admin), `{"instance":"api:x","extra":1}`, 400, "extra"},
		{"POST", "/api/instances/spawn", string(admin), `{"instance":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, 413, "larger than"},
		{"GET", "/api/instances/api:x", string(admin), "", 404, "no such instance"},
		{"POST", "/api/instances/api:x/restart", string(admin), "", 409, "being changed"},
		{"PUT", "/api/instances/api:x/weight", string(admin), `{}`, 400, `\"weight\" is missing`},
		{"POST", "/api/deploy", string(admin), `{"service":"api","version":"v2"}`, 504, "not healthy"},
		{"GET", "/api/nothing", string(admin), "", 404, "no API endpoint"},
		{"PATCH", "/api/instances", string(admin), "", 405, "use GET"},
		{"GET", "/api/logs?level=debug", string(admin), "", 400, "level"},
		{"GET", "/api/logs?instance=api:other", tenant, "", 403, "may touch only"},
		{"GET", "/api/logs?instance=nosuch:x", string(admin), "", 404, `unknown service \"nosuch\": /etc/tenement.toml declares services api`},
		{"GET", "/api/logs?process=nosuch", tenant, "", 404, `unknown service \"nosuch\"`},
		{"GET", "/api/logs/stream?process=nosuch", string(admin), "", 404, "unknown service"},
		{"GET", "/api/instances/api:elsewhere", "", "", 401, "missing bearer token"},
		{"GET", "/api/instances/api:elsewhere", string(admin), "", 502, "forwarded"},
	} {
		status, body := do(c.method, c.path, c.token, c.body)
		if status != c.status || !strings.Contains(body, c.has) {
			t.Errorf("%s %s: %d %s, want %d with %q", c.method, c.path, status, body, c.status, c.has)
		}
		if status >= 400 {
			var e apitype.APIError
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
				t.Errorf("%s %s: error body %q is not an APIError", c.method, c.path, body)
			}
		}
	}
	// A tenant sees only its rows, and removes only its instances.
	if _, body := do("GET", "/api/instances", tenant, ""); strings.Contains(body, "api:other") {
		t.Errorf("tenant sees another tenant's row: %s", body)
	}
	if status, _ := do("DELETE", "/api/instances/api:acme", tenant, ""); status != 204 || len(b.removed) != 1 || b.removed[0] != "api:acme" {
		t.Errorf("tenant remove: %d, removed %v", status, b.removed)
	}
}
