package router

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tenhq/ten/units"
)

// A request another node forwarded is never forwarded again (loop guard),
// and a forward reaches the other router with the hop header and the
// client's address.
func TestForwardAndLoopGuard(t *testing.T) {
	var got atomic.Value
	other := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got.Store(fmt.Sprintf("host=%s hop=%s xff=%s", req.Host, req.Header.Get(HopHeader), req.Header.Get("X-Forwarded-For")))
		fmt.Fprint(w, "from n2")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go other.Serve(ln)
	t.Cleanup(func() { other.Close() })
	r := New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{
		Create: func(_ context.Context, inst units.Instance, _ string) error {
			return &Forward{Node: "n2", Addr: ln.Addr().String()}
		},
	})
	w := get(r, "x.api.example.test", "/")
	if w.Code != 200 || w.Body.String() != "from n2" {
		t.Fatalf("forward: %d %q", w.Code, w.Body.String())
	}
	if g := got.Load(); g != "host=x.api.example.test hop=n2 xff=192.0.2.1" {
		t.Fatalf("the other node saw %v", g)
	}
	req := httptest.NewRequest("GET", "http://x.api.example.test/", nil)
	req.Header.Set(HopHeader, "n3")
	rw := httptest.NewRecorder()
	r.ServeHTTP(rw, req)
	if rw.Code != http.StatusBadGateway || !strings.Contains(rw.Body.String(), "not forwarding again") {
		t.Fatalf("forwarded request: %d %q, want 502 (loop guard)", rw.Code, rw.Body.String())
	}
}
