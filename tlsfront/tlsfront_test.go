package tlsfront

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func newTestFront(t *testing.T, httpsPort int) *Front {
	t.Helper()
	f, err := New(Options{
		Domain: "example.com", CA: "https://ca.invalid/dir", CacheDir: t.TempDir(),
		HTTPSPort: httpsPort, HTTPPort: 80,
		Routes: func(name string) bool { return name == "prod.api.example.com" || name == "api.example.com" },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

func TestRoutable(t *testing.T) {
	f := newTestFront(t, 443)
	for name, want := range map[string]bool{
		"example.com": true, "EXAMPLE.com.": true, "prod.api.example.com": true, "api.example.com": true,
		"nope.api.example.com": false, "example.org": false, "127.0.0.1": false, "xexample.com": false, "": false,
	} {
		if got := f.Routable(name); got != want {
			t.Errorf("Routable(%q) = %v, want %v", name, got, want)
		}
	}
	if err := f.decide(t.Context(), "evil.example.com"); err == nil {
		t.Error("decision allowed a name that routes nowhere")
	}
	if err := f.decide(t.Context(), "prod.api.example.com"); err != nil {
		t.Errorf("decision refused a routed name: %v", err)
	}
	if st := f.Status(); st.Refused != 1 {
		t.Errorf("refused = %d", st.Refused)
	}
}

func TestRedirect(t *testing.T) {
	for _, c := range []struct {
		port           int
		host, url, loc string
		code           int
	}{
		{443, "prod.api.example.com", "/a?b=1", "https://prod.api.example.com/a?b=1", 308},
		{8443, "prod.api.example.com:80", "/", "https://prod.api.example.com:8443/", 308},
		{443, "nope.api.example.com", "/", "", 404},
	} {
		f := newTestFront(t, c.port)
		req := httptest.NewRequest("GET", "http://"+c.host+c.url, nil)
		w := httptest.NewRecorder()
		f.RedirectHandler().ServeHTTP(w, req)
		if w.Code != c.code || w.Header().Get("Location") != c.loc {
			t.Errorf("%s%s: %d %q, want %d %q", c.host, c.url, w.Code, w.Header().Get("Location"), c.code, c.loc)
		}
	}
	_ = http.StatusOK
}
