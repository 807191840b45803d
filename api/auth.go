package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/dashboard"
	"github.com/tenhq/ten/internal/forwarded"
	"github.com/tenhq/ten/units"
)

// LoadGuard opens the token store of dataDir (creating {dataDir}/api_token,
// mode 0600, when missing) behind a guard that bounds the work and locks out
// guessers.
func LoadGuard(dataDir string, log *slog.Logger) (*auth.Guard, error) {
	st, err := auth.Open(dataDir, auth.Options{})
	if err != nil {
		return nil, err
	}
	return auth.NewGuard(st, auth.GuardOptions{OnLockout: func(key string) {
		log.Warn("locking out after repeated bad tokens", "key", key, "for", auth.Lockout)
	}}), nil
}

type principalKey struct{}

// principalOf returns who the request's token speaks for (set by authorize).
func principalOf(r *http.Request) auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(auth.Principal)
	return p
}

// ClientKey is what failures are counted by: the client's network
// (auth.ClientKey: all of loopback as one, an IPv4 /24, an IPv6 /64). The
// client is the peer, or, when the peer is a proxy of
// settings.trusted_proxies (trusted), the address that proxy names in
// X-Forwarded-For (forwarded.Client), so that one client behind Caddy
// cannot lock out every other. Anyone else's X-Forwarded-For is not
// believed: a local tenant could forge it to escape the lockout.
func ClientKey(r *http.Request, trusted func(ip string) bool) string {
	return auth.ClientKey(forwarded.Client(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted))
}

// authorize checks the bearer token and the tenant scope of every /api/
// request. It answers the request itself (401, 403, 429) when it is not
// allowed, and otherwise returns it with the principal in its context.
//
// Tenant tokens are denied by default: they reach only the endpoints listed
// here, which either carry the instance in the path (checked here) or scope
// themselves with principalOf (list, spawn, logs). A new endpoint is
// admin-only until it is added here.
func (a *API) authorize(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	key := ClientKey(r, a.trusted)
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		if locked, left := a.guard.Locked(key); locked {
			tooMany(w, &auth.LockedError{Key: key, Left: left})
			return nil, false
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="ten"`)
		writeJSON(w, http.StatusUnauthorized, apitype.APIError{Error: "missing bearer token: send \"Authorization: Bearer TOKEN\" (the ten CLI takes --token, TENEMENT_TOKEN, or reads " + auth.AdminTokenFile + " in the data dir)"})
		return nil, false
	}
	p, err := a.guard.Check(r.Context(), tok, key)
	var le *auth.LockedError
	switch {
	case errors.As(err, &le):
		tooMany(w, le)
		return nil, false
	case errors.Is(err, auth.ErrBusy):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, apitype.APIError{Error: "too many token checks at once; try again in a second"})
		return nil, false
	case err != nil:
		w.Header().Set("WWW-Authenticate", `Bearer realm="ten", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, apitype.APIError{Error: "invalid token: it is unknown or was revoked (an admin can list tokens with `ten token list`)"})
		return nil, false
	}
	if !p.Admin() {
		if msg := tenantDenied(p, r); msg != "" {
			writeJSON(w, http.StatusForbidden, apitype.APIError{Error: msg})
			return nil, false
		}
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), true
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header. The
// scheme is case-insensitive (RFC 9110 section 11.1): "bearer" and "BEARER"
// work as in tenement.
func bearer(h string) (string, bool) { return auth.BearerToken(h) }

// tooMany answers 429 for a lockout, with Retry-After in whole seconds.
func tooMany(w http.ResponseWriter, le *auth.LockedError) {
	secs := max(int(math.Ceil(le.Left.Seconds())), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	from := "from " + le.Key // a client's network
	if strings.HasPrefix(le.Key, "token id ") {
		from = "for " + le.Key
	}
	writeJSON(w, http.StatusTooManyRequests, apitype.APIError{Error: fmt.Sprintf("too many requests with a bad token %s; try again in %ds", from, secs)})
}

// tenantDenied returns why a tenant token may not make this request, or "".
func tenantDenied(p auth.Principal, r *http.Request) string {
	var segs []string
	for _, seg := range strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/") {
		u, err := url.PathUnescape(seg)
		if err != nil {
			return "bad path: " + err.Error()
		}
		segs = append(segs, u)
	}
	// segs[0] == "api"
	switch {
	case len(segs) == 2 && segs[1] == "instances",
		len(segs) == 3 && segs[1] == "instances" && segs[2] == "spawn",
		len(segs) == 2 && segs[1] == "logs",
		len(segs) == 3 && segs[1] == "logs" && segs[2] == "stream",
		len(segs) == 2 && segs[1] == "telemetry":
		return "" // the handler scopes it
	case len(segs) >= 3 && segs[1] == "instances":
		inst, err := units.ParseInstance(segs[2])
		if err != nil {
			return err.Error()
		}
		return instanceDenied(p, inst)
	}
	return fmt.Sprintf("%s %s needs an admin token; this token belongs to tenant %q and reaches only its instances (SERVICE:%s)", r.Method, r.URL.Path, p.Tenant, p.Tenant)
}

func instanceDenied(p auth.Principal, inst units.Instance) string {
	if p.MayTouch(inst.ID) {
		return ""
	}
	return fmt.Sprintf("this token belongs to tenant %q and may touch only instances SERVICE:%s, not %s", p.Tenant, p.Tenant, inst)
}

// mayTouch answers 403 and returns false when the request's token may not
// act on inst.
func mayTouch(w http.ResponseWriter, r *http.Request, inst units.Instance) bool {
	if msg := instanceDenied(principalOf(r), inst); msg != "" {
		writeJSON(w, http.StatusForbidden, apitype.APIError{Error: msg})
		return false
	}
	return true
}

// scopeRows keeps the rows the request's token may see.
func scopeRows(r *http.Request, rows []apitype.Row) []apitype.Row {
	p := principalOf(r)
	if p.Admin() {
		return rows
	}
	out := rows[:0:0]
	for _, row := range rows {
		if inst, err := units.ParseInstance(row.Instance); err == nil && p.MayTouch(inst.ID) {
			out = append(out, row)
		}
	}
	return out
}

// requireAdmin answers 403 and returns false for tenant tokens.
func requireAdmin(w http.ResponseWriter, r *http.Request) bool {
	if p := principalOf(r); !p.Admin() {
		writeJSON(w, http.StatusForbidden, apitype.APIError{Error: fmt.Sprintf("%s %s needs an admin token; this token belongs to tenant %q", r.Method, r.URL.Path, p.Tenant)})
		return false
	}
	return true
}

// SignIn verifies a token pasted into the dashboard's sign-in form, with
// the lockout of clients that keep sending bad ones that the API's bearer
// tokens have (dashboard.LockedError when the client is locked out).
func (a *API) SignIn(r *http.Request, token string) (auth.Principal, error) {
	g := a.guard
	key := ClientKey(r, a.trusted)
	if locked, left := g.Locked(key); locked {
		return auth.Principal{}, &dashboard.LockedError{RetryAfter: left}
	}
	token = strings.TrimSpace(token)
	if token == "" || len(token) > 512 {
		return auth.Principal{}, errors.New("paste a token")
	}
	p, err := g.Check(r.Context(), token, key)
	var le *auth.LockedError
	switch {
	case errors.As(err, &le):
		return auth.Principal{}, &dashboard.LockedError{RetryAfter: le.Left}
	case err != nil:
		return auth.Principal{}, fmt.Errorf("sign-in: %w", err)
	}
	return p, nil
}
