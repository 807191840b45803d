package dashboard

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/units"
)

// fakeBackend records actions; the server's real one is tested end to end
// in test/system/dashboard_test.go.
type fakeBackend struct{ restarted []string }

func (f *fakeBackend) Instances(context.Context) ([]Instance, error) {
	return []Instance{{Instance: "web:a", Service: "web", ID: "a", State: "running"}, {Instance: "web:b", Service: "web", ID: "b", State: "sleeping"}}, nil
}
func (f *fakeBackend) Restart(_ context.Context, i units.Instance) error {
	f.restarted = append(f.restarted, i.String())
	return nil
}
func (f *fakeBackend) Stop(context.Context, units.Instance) error { return nil }
func (f *fakeBackend) SetWeight(units.Instance, int) error        { return nil }
func (f *fakeBackend) FollowLogs(context.Context, auth.Principal, units.Instance, int, func(LogLine) error) error {
	return nil
}
func (f *fakeBackend) SignIn(_ *http.Request, tok string) (auth.Principal, error) {
	switch tok {
	case "admin":
		return auth.Principal{}, nil
	case "tenant-a":
		return auth.Principal{Tenant: "a"}, nil
	}
	return auth.Principal{}, errors.New("invalid token")
}

func signIn(t *testing.T, h http.Handler, tok string) *http.Cookie {
	t.Helper()
	req := httptest.NewRequest("POST", "http://ten.example/dashboard/signin", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://ten.example")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Errorf("cookie %+v", c)
			}
			return c
		}
	}
	return nil
}

func TestSignInScopeAndCSRF(t *testing.T) {
	fb := &fakeBackend{}
	d := New(fb, NewHistory(), "example.com", slog.New(slog.DiscardHandler))
	if c := signIn(t, d, "wrong"); c != nil {
		t.Fatal("a wrong token got a session")
	}
	// A sign-in POST from another origin is refused (login CSRF).
	req := httptest.NewRequest("POST", "http://ten.example/dashboard/signin", strings.NewReader("token=admin"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	w := httptest.NewRecorder()
	d.ServeHTTP(w, req)
	if w.Code != http.StatusForbidden {
		t.Errorf("cross-origin sign-in: %d", w.Code)
	}

	c := signIn(t, d, "tenant-a")
	get := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "http://ten.example"+path, nil)
		req.AddCookie(c)
		w := httptest.NewRecorder()
		d.ServeHTTP(w, req)
		return w
	}
	w = get("/dashboard/api/instances")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"web:a"`) || strings.Contains(w.Body.String(), `"web:b"`) {
		t.Errorf("tenant a's list: %d %s", w.Code, w.Body)
	}
	if w := get("/dashboard/api/instances/web:b/history"); w.Code != http.StatusNotFound {
		t.Errorf("tenant a reads web:b's history: %d", w.Code)
	}
	se := d.current(func() *http.Request { r := httptest.NewRequest("GET", "/", nil); r.AddCookie(c); return r }())
	post := func(origin, csrf string) int {
		req := httptest.NewRequest("POST", "http://ten.example/dashboard/api/instances/web:a/restart", nil)
		req.AddCookie(c)
		req.Header.Set("Origin", origin)
		req.Header.Set("X-CSRF-Token", csrf)
		w := httptest.NewRecorder()
		d.ServeHTTP(w, req)
		return w.Code
	}
	if code := post("http://ten.example", ""); code != http.StatusForbidden {
		t.Errorf("no CSRF token: %d", code)
	}
	if code := post("http://evil.example", se.csrf); code != http.StatusForbidden {
		t.Errorf("other origin: %d", code)
	}
	if code := post("http://ten.example", se.csrf); code != 200 || len(fb.restarted) != 1 {
		t.Errorf("good POST: %d, restarted %v", code, fb.restarted)
	}
}

func TestSessionsBoundedAndExpiring(t *testing.T) {
	s := newSessions()
	now := time.Now()
	first, _ := s.create(auth.Principal{}, now)
	for i := 0; i < MaxSessions+10; i++ {
		s.create(auth.Principal{}, now.Add(time.Duration(i+1)*time.Millisecond))
	}
	if len(s.by) > MaxSessions {
		t.Fatalf("%d sessions", len(s.by))
	}
	if s.get(first, now) != nil {
		t.Error("the oldest session survived the bound")
	}
	id, _ := s.create(auth.Principal{}, now)
	if s.get(id, now.Add(SessionIdle+time.Second)) != nil {
		t.Error("an idle session did not expire")
	}
}

// A tenant who signs in over and over drops only its own oldest sessions:
// before the per-token bound, 1,000 sign-ins of one tenant token (nine
// seconds of curl) signed the admin and every other tenant out.
func TestSessionsPerTokenBound(t *testing.T) {
	s := newSessions()
	now := time.Now()
	admin, _ := s.create(auth.Principal{TokenID: auth.FileTokenID}, now)
	other, _ := s.create(auth.Principal{TokenID: "b1", Tenant: "b"}, now)
	var mine []string
	for i := range MaxSessions + 10 {
		id, _ := s.create(auth.Principal{TokenID: "a1", Tenant: "a"}, now.Add(time.Duration(i+1)*time.Millisecond))
		mine = append(mine, id)
	}
	at := now.Add(time.Second)
	if s.get(admin, at) == nil || s.get(other, at) == nil {
		t.Fatal("a tenant's sign-ins dropped another token's session")
	}
	if len(s.by) != MaxSessionsPerToken+2 {
		t.Errorf("%d sessions, want %d", len(s.by), MaxSessionsPerToken+2)
	}
	if s.get(mine[len(mine)-1], at) == nil || s.get(mine[len(mine)-MaxSessionsPerToken-1], at) != nil {
		t.Error("the tenant's newest sessions should stay and its older ones go")
	}
}

func TestSignInPageShowsNoTextFromTheLink(t *testing.T) {
	d := New(&fakeBackend{}, NewHistory(), "example.com", slog.New(slog.DiscardHandler))
	for q, want := range map[string]string{"invalid": "unknown or was revoked", "paste+it+at+evil.example": ""} {
		w := httptest.NewRecorder()
		d.ServeHTTP(w, httptest.NewRequest("GET", "http://ten.example/dashboard?error="+q, nil))
		body := w.Body.String()
		if strings.Contains(body, "evil.example") || (want != "" && !strings.Contains(body, want)) {
			t.Errorf("error=%s: page %s", q, body)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("CSP %q", csp)
		}
	}
}
