package server

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/units"
)

// TokenFile is the admin token's file name in the data dir (tenement's name).
const TokenFile = auth.AdminTokenFile

// Auth checks bearer tokens against the token store and locks out clients
// that keep sending bad ones.
type Auth struct {
	store   *auth.Store
	limiter *auth.Limiter
	log     *slog.Logger
}

// LoadAuth opens the token store of dataDir (creating {dataDir}/api_token,
// mode 0600, when missing).
func LoadAuth(dataDir string, log *slog.Logger) (*Auth, error) {
	st, err := auth.Open(dataDir, auth.Options{})
	if err != nil {
		return nil, err
	}
	return &Auth{store: st, limiter: auth.NewLimiter(nil), log: log}, nil
}

type principalKey struct{}

// principalOf returns who the request's token speaks for (set by authorize).
func principalOf(r *http.Request) auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(auth.Principal)
	return p
}

// clientKey is what failures are counted by: the peer's IP address.
// X-Forwarded-For is not trusted: a local tenant could forge it to escape
// the lockout. Behind a proxy every client shares the proxy's count, as in
// tenement.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authorize checks the bearer token and the tenant scope of every /api/
// request. It answers the request itself (401, 403, 429) when it is not
// allowed, and otherwise returns it with the principal in its context.
//
// Tenant tokens are denied by default: they reach only the endpoints listed
// here, which either carry the instance in the path (checked here) or scope
// themselves with principalOf (list, spawn, logs). A new endpoint is
// admin-only until it is added here.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	a := s.auth
	key := clientKey(r)
	if locked, left := a.limiter.Locked(key); locked {
		secs := int(math.Ceil(left.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSON(w, http.StatusTooManyRequests, APIError{Error: fmt.Sprintf("too many requests with a bad token from %s; try again in %ds", key, secs)})
		return nil, false
	}
	tok, ok := auth.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ten"`)
		writeJSON(w, http.StatusUnauthorized, APIError{Error: "missing bearer token: send \"Authorization: Bearer TOKEN\" (the ten CLI takes --token, TENEMENT_TOKEN, or reads " + TokenFile + " in the data dir)"})
		return nil, false
	}
	p, err := a.store.Verify(tok)
	if err != nil {
		if a.limiter.Fail(key) {
			a.log.Warn("locking out a client after repeated bad tokens", "client", key, "for", auth.Lockout)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="ten", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, APIError{Error: "invalid token: it is unknown or was revoked (an admin can list tokens with `ten token list`)"})
		return nil, false
	}
	a.limiter.Succeed(key)
	if !p.Admin() {
		if msg := tenantDenied(p, r); msg != "" {
			writeJSON(w, http.StatusForbidden, APIError{Error: msg})
			return nil, false
		}
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), true
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
		len(segs) == 3 && segs[1] == "logs" && segs[2] == "stream":
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
		writeJSON(w, http.StatusForbidden, APIError{Error: msg})
		return false
	}
	return true
}

// scopeRows keeps the rows the request's token may see.
func scopeRows(r *http.Request, rows []Row) []Row {
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
		writeJSON(w, http.StatusForbidden, APIError{Error: fmt.Sprintf("%s %s needs an admin token; this token belongs to tenant %q", r.Method, r.URL.Path, p.Tenant)})
		return false
	}
	return true
}
