package system

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// apiCall sends an API request with a bearer token ("" for none) and
// returns the status, the body and the headers.
func (s *tenServer) apiCall(method, path, token, body string) (int, string, http.Header) {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+s.addr+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// adminToken is the api_token file's token, as the CLI reads it.
func (s *tenServer) adminToken() string {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "data", "api_token"))
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// newToken makes a token with `ten token-gen` and returns its id and secret.
func (s *tenServer) newToken(args ...string) (id, secret string) {
	s.t.Helper()
	var tok struct {
		ID     string `json:"id"`
		Tenant string `json:"tenant"`
		Token  string `json:"token"`
	}
	out := s.mustTen(append([]string{"--json", "token-gen"}, args...)...)
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.ID == "" || !strings.HasPrefix(tok.Token, "ten_"+tok.ID+"_") {
		s.t.Fatalf("token-gen %v: %v\n%s", args, err, out)
	}
	return tok.ID, tok.Token
}

// errorOf returns the "error" of a JSON error body, failing when there is none.
func errorOf(t *testing.T, what, body string) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Errorf("%s: want a JSON error body, got %q", what, body)
	}
	return e.Error
}

// Auth edge cases: no token, a wrong token, the admin token, lockout after
// repeated failures, and recovery once it ends.
func TestAuthTokensAndLockout(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"

[instances]
api = ["prod"]
`)
	admin := s.adminToken()
	st, _ := os.Stat(filepath.Join(s.dir, "data", "api_token"))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("api_token mode %v, want 0600", st.Mode().Perm())
	}

	code, body, hdr := s.apiCall("GET", "/api/instances", "", "")
	if code != 401 || !strings.Contains(errorOf(t, "no token", body), "missing bearer token") || hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d %q", code, body)
	}
	code, body, _ = s.apiCall("GET", "/api/instances", "ten_0123456789abcdef_nope", "")
	if code != 401 || !strings.Contains(errorOf(t, "wrong token", body), "invalid token") {
		t.Errorf("wrong token: %d %q", code, body)
	}
	code, body, _ = s.apiCall("GET", "/api/instances", admin, "")
	if code != 200 || !strings.Contains(body, `"api:prod"`) {
		t.Errorf("admin token: %d %q", code, body)
	}
	// Unknown endpoints and wrong methods answer JSON too.
	code, body, _ = s.apiCall("GET", "/api/nothing", admin, "")
	if code != 404 || !strings.Contains(errorOf(t, "unknown endpoint", body), "no API endpoint") {
		t.Errorf("unknown endpoint: %d %q", code, body)
	}
	code, body, hdr = s.apiCall("DELETE", "/api/tokens", admin, "")
	if code != 405 || hdr.Get("Allow") != "GET, POST" || errorOf(t, "wrong method", body) == "" {
		t.Errorf("wrong method: %d %q %q", code, hdr.Get("Allow"), body)
	}
	// The CLI reads the api_token file by itself.
	if out := s.mustTen("ps", "--all"); !strings.Contains(out, "api:prod") {
		t.Errorf("ps with the token file: %q", out)
	}
	// Public endpoints need no token.
	if code, _, _ := s.apiCall("GET", "/health", "", ""); code != 200 {
		t.Errorf("/health without token: %d", code)
	}

	// An admin token from token-gen works as well as the file's, for the CLI too.
	_, extra := s.newToken("--description", "ci")
	if code, _, _ := s.apiCall("GET", "/api/instances", extra, ""); code != 200 {
		t.Errorf("generated admin token: %d", code)
	}
	if out, err := s.ten("--token", extra, "ps", "--all"); err != nil || !strings.Contains(out, "api:prod") {
		t.Errorf("ps --token: %v %q", err, out)
	}

	// 10 failures in a row lock this client out for 5 s, then it recovers
	// by itself. (The successes above reset the count of the first wrong
	// token.)
	_, unused := s.newToken("--description", "not used before the lockout")
	locked := time.Time{}
	for i := 1; i <= 11; i++ {
		code, body, hdr = s.apiCall("GET", "/api/instances", "wrong-"+string(rune('a'+i)), "")
		if code == 429 {
			locked = time.Now()
			if i != 11 || hdr.Get("Retry-After") == "" || !strings.Contains(errorOf(t, "429", body), "try again") {
				t.Errorf("lockout at failure %d, Retry-After %q, body %q", i, hdr.Get("Retry-After"), body)
			}
			break
		}
		if code != 401 {
			t.Fatalf("wrong token #%d: %d %q", i, code, body)
		}
	}
	if locked.IsZero() {
		t.Fatal("no 429 after 10 wrong tokens")
	}
	// A token that needs checking waits out the lockout; one known without
	// work (the api_token file's, or one that verified before) does not:
	// a lockout stops guessing, not the holders of good tokens.
	if code, body, _ := s.apiCall("GET", "/api/instances", unused, ""); code != 429 {
		t.Errorf("never-verified right token while locked out: %d %q", code, body)
	}
	if out, err := s.ten("--token", unused, "ps"); err == nil || !strings.Contains(out, "try again") {
		t.Errorf("CLI while locked out: %v %q", err, out)
	}
	if code, body, _ := s.apiCall("GET", "/api/instances", admin, ""); code != 200 {
		t.Errorf("api_token file's token while locked out: %d %q", code, body)
	}
	if code, body, _ := s.apiCall("GET", "/api/instances", extra, ""); code != 200 {
		t.Errorf("verified token while locked out: %d %q", code, body)
	}
	time.Sleep(time.Until(locked.Add(5*time.Second + 200*time.Millisecond)))
	if code, body, _ := s.apiCall("GET", "/api/instances", unused, ""); code != 200 {
		t.Errorf("after the lockout: %d %q", code, body)
	}
	// And counting starts over: one wrong token is a 401 again.
	if code, _, _ := s.apiCall("GET", "/api/instances", "wrong", ""); code != 401 {
		t.Errorf("wrong token after the lockout: %d", code)
	}
}

// A tenant token reaches only its own instances (instance id == tenant) on
// every endpoint, the log stream included; deploy, route and tokens are
// admin-only. Token list and revoke.
func TestAuthTenantScope(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"
health = "/health"

[service.web]
command = "ECHO --mode activation"
activation = "socket"

[instances]
api = ["acme", "other"]
`)
	admin := s.adminToken()
	acmeID, acme := s.newToken("--tenant", "acme", "--description", "acme's bot")

	// Bad tenant names are refused with a reason, and make no token.
	if out, err := s.ten("token-gen", "--tenant", "Acme Corp"); err == nil || !strings.Contains(out, "tenant") {
		t.Errorf("token-gen bad tenant: %v %q", err, out)
	}

	// The list shows only acme's instances.
	code, body, _ := s.apiCall("GET", "/api/instances", acme, "")
	if code != 200 || !strings.Contains(body, "api:acme") || strings.Contains(body, "api:other") {
		t.Errorf("tenant list: %d %s", code, body)
	}
	if out, err := s.ten("--token", acme, "ps", "--all"); err != nil || !strings.Contains(out, "api:acme") || strings.Contains(out, "api:other") {
		t.Errorf("tenant ps: %v %q", err, out)
	}

	otherPID := mainPID(t, "api:other")
	type req struct{ method, path, body string }
	for _, r := range []req{
		{"GET", "/api/instances/api:other", ""},
		{"GET", "/api/instances/api:other/health", ""},
		{"GET", "/api/instances/api:other/storage", ""},
		{"PUT", "/api/instances/api:other/weight", `{"weight": 0}`},
		{"POST", "/api/instances/api:other/restart", ""},
		{"DELETE", "/api/instances/api:other", ""},
		{"POST", "/api/instances/spawn", `{"instance": "web:other"}`},
		{"GET", "/api/logs?instance=api:other", ""},
		{"GET", "/api/logs?process=api&id=other", ""},
		{"GET", "/api/logs/stream?instance=api:other", ""},
	} {
		code, body, _ := s.apiCall(r.method, r.path, acme, r.body)
		if code != 403 || !strings.Contains(errorOf(t, r.path, body), `tenant "acme"`) {
			t.Errorf("tenant token, %s %s: %d %q, want 403 naming the tenant", r.method, r.path, code, body)
		}
	}
	for _, r := range []req{
		{"POST", "/api/deploy", `{"service": "api", "version": "v2"}`},
		{"POST", "/api/route", `{"service": "api", "from": "acme", "to": "other"}`},
		{"GET", "/api/tokens", ""},
		{"POST", "/api/tokens", `{"tenant": "acme"}`},
		{"DELETE", "/api/tokens/" + acmeID, ""},
	} {
		code, body, _ := s.apiCall(r.method, r.path, acme, r.body)
		if code != 403 || !strings.Contains(errorOf(t, r.path, body), "admin token") {
			t.Errorf("tenant token, %s %s: %d %q, want 403 asking for an admin token", r.method, r.path, code, body)
		}
	}
	// Refused requests changed nothing.
	if p := mainPID(t, "api:other"); p != otherPID {
		t.Errorf("api:other restarted by a refused request: pid %d -> %d", otherPID, p)
	}
	if got := show(t, "tenement-api@other.socket", "ActiveState"); got != "active" {
		t.Errorf("api:other's socket after refused requests: %s", got)
	}
	if got := show(t, "tenement-web@other.service", "LoadState"); got != "not-found" {
		t.Errorf("refused spawn made web:other: LoadState %s", got)
	}
	if out, err := s.ten("--token", acme, "stop", "api:other"); err == nil || !strings.Contains(out, "tenant") {
		t.Errorf("tenant CLI stop of another tenant: %v %q", err, out)
	}

	// Its own instances: every endpoint works.
	for _, r := range []req{
		{"GET", "/api/instances/api:acme", ""},
		{"GET", "/api/instances/api:acme/health", ""},
		{"GET", "/api/instances/api:acme/storage", ""},
		{"PUT", "/api/instances/api:acme/weight", `{"weight": 50}`},
		{"POST", "/api/instances/api:acme/restart", ""},
		{"POST", "/api/instances/spawn", `{"instance": "web:acme"}`},
		{"DELETE", "/api/instances/web:acme", ""},
		{"GET", "/api/logs?instance=api:acme", ""},
		{"GET", "/api/logs", ""},
	} {
		code, body, _ := s.apiCall(r.method, r.path, acme, r.body)
		if code >= 300 {
			t.Errorf("tenant token on its own instance, %s %s: %d %q", r.method, r.path, code, body)
		}
	}
	// Logs without an instance are acme's only.
	s.mustGet("other.api.localhost", "/log?msg=secret-of-other")
	s.mustGet("acme.api.localhost", "/log?msg=news-of-acme")
	var entries []struct{ Instance, Message string }
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body, _ := s.apiCall("GET", "/api/logs?limit=1000", acme, "")
		json.Unmarshal([]byte(body), &entries)
		if strings.Contains(body, "news-of-acme") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	seenAcme := false
	for _, e := range entries {
		if e.Instance != "api:acme" && e.Instance != "web:acme" {
			t.Errorf("tenant logs show %s: %q", e.Instance, e.Message)
		}
		seenAcme = seenAcme || e.Message == "news-of-acme"
	}
	if !seenAcme {
		t.Errorf("tenant logs miss its own line: %v", entries)
	}
	// Its stream opens, and carries only its lines.
	if code, ev := s.streamFor("/api/logs/stream?instance=api:acme&limit=5", acme, 1500*time.Millisecond); code != 200 || !strings.Contains(ev, "news-of-acme") {
		t.Errorf("tenant stream of its own instance: %d %q", code, ev)
	}
	if code, ev := s.streamFor("/api/logs/stream?limit=50", acme, 1500*time.Millisecond); code != 200 || !strings.Contains(ev, "news-of-acme") || strings.Contains(ev, "api:other") {
		t.Errorf("tenant stream of all: %d %q", code, ev)
	}

	// token list: ids, tenants, descriptions, never a secret.
	out := s.mustTen("token", "list")
	if !strings.HasPrefix(out, "ID") || !strings.Contains(out, "api_token") || !strings.Contains(out, acmeID) || !strings.Contains(out, "acme's bot") {
		t.Errorf("token list: %q", out)
	}
	js := s.mustTen("--json", "token", "list")
	for _, secret := range []string{acme, strings.TrimPrefix(acme, "ten_"+acmeID+"_"), admin} {
		if strings.Contains(out, secret) || strings.Contains(js, secret) {
			t.Errorf("token list shows a secret")
		}
	}
	var list []struct {
		ID, Tenant string
		LastUsed   string `json:"last_used"`
	}
	json.Unmarshal([]byte(js), &list)
	found := false
	for _, tk := range list {
		if tk.ID == acmeID {
			found = tk.Tenant == "acme" && tk.LastUsed != ""
		}
	}
	if !found {
		t.Errorf("token list --json: %s", js)
	}
	// Hashed at rest.
	raw, _ := os.ReadFile(filepath.Join(s.dir, "data", "tokens.json"))
	if len(raw) == 0 || strings.Contains(string(raw), strings.TrimPrefix(acme, "ten_"+acmeID+"_")) {
		t.Errorf("tokens.json missing or holding a secret")
	}

	// Revoke: the token stops working at once; revoking again says so.
	if out := s.mustTen("token", "revoke", acmeID); !strings.Contains(out, acmeID) {
		t.Errorf("revoke: %q", out)
	}
	if code, body, _ := s.apiCall("GET", "/api/instances", acme, ""); code != 401 {
		t.Errorf("revoked token: %d %q", code, body)
	}
	if out, err := s.ten("token", "revoke", acmeID); err == nil || !strings.Contains(out, "no such token") {
		t.Errorf("second revoke: %v %q", err, out)
	}
	if out, err := s.ten("token", "revoke", "api_token"); err == nil || !strings.Contains(out, "cannot be revoked") {
		t.Errorf("revoke api_token: %v %q", err, out)
	}
	// A restart of ten keeps tokens and revocations.
	_, keep := s.newToken("--tenant", "acme")
	s.kill()
	s.start()
	if code, _, _ := s.apiCall("GET", "/api/instances/api:acme", keep, ""); code != 200 {
		t.Errorf("token after restart of ten: %d", code)
	}
	if code, _, _ := s.apiCall("GET", "/api/instances", acme, ""); code != 401 {
		t.Errorf("revoked token after restart of ten: %d", code)
	}
}

// streamFor opens an SSE endpoint and returns the status and the data
// lines it sent within d (or the error body).
func (s *tenServer) streamFor(path, token string, d time.Duration) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	ctx, cancel := withTimeout(d)
	defer cancel()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		s.t.Errorf("stream content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var data strings.Builder
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") {
			data.WriteString(sc.Text() + "\n")
		}
	}
	return resp.StatusCode, data.String()
}
