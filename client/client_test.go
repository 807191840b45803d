package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestServerWithoutScheme: --server localhost:8080 (no http://) reaches the
// server, as curl would, instead of failing to parse.
func TestServerWithoutScheme(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"path":"` + r.URL.Path + `"}`))
	}))
	defer srv.Close()
	for _, server := range []string{srv.URL, srv.URL + "/", strings.TrimPrefix(srv.URL, "http://")} {
		var out struct{ Path string }
		if err := New(server, "").Do(context.Background(), "GET", "/api/instances", nil, &out); err != nil {
			t.Errorf("server %q: %v", server, err)
		} else if out.Path != "/api/instances" {
			t.Errorf("server %q: the request went to %q", server, out.Path)
		}
	}
}
