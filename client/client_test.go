package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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

// A server that took the request and does not answer in time is not
// reported as one that cannot be reached ("is it running?"): it is, and may
// still be at work on the request. One that refuses connections is.
func TestTimeoutIsNotUnreachable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := New(srv.URL, "")
	c.HTTP.Timeout = 200 * time.Millisecond
	err := c.Do(context.Background(), "POST", "/api/instances/spawn", map[string]string{"instance": "api:prod"}, nil)
	if err == nil || !strings.Contains(err.Error(), "did not answer POST /api/instances/spawn within 200ms") || strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("slow server: %v", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	err = New(addr, "").Do(context.Background(), "GET", "/api/instances", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot reach ten serve at http://"+addr) {
		t.Errorf("closed port: %v", err)
	}
}
