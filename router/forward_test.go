package router

import (
	"bufio"
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

// A fleet peer's router (its address a live node's, HopHeader set) keeps
// its X-Forwarded-* so the app sees the original client first; anyone else
// gets them dropped, on the fast path and on the fallback alike.
func TestFleetPeerForwardedHeaders(t *testing.T) {
	var peer atomic.Bool
	r := New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)),
		Options{FleetPeer: func(ip string) bool { return peer.Load() && ip == "127.0.0.1" }})
	twoInstances(t, r)
	addr := serveFast(t, r, testLimits)
	const host = "a.api.example.test"
	for _, tc := range []struct {
		name      string
		peer, hop bool
		want      string
	}{
		{"peer", true, true, "a host=" + host + " xff=6.6.6.6, 127.0.0.1 xfh=front.example xfp=https"},
		{"peer address without hop header", true, false, "a host=" + host + " xff=127.0.0.1 xfh=" + host + " xfp=http"},
		{"hop header from elsewhere", false, true, "a host=" + host + " xff=127.0.0.1 xfh=" + host + " xfp=http"},
	} {
		for _, path := range []string{"fast", "fallback"} {
			peer.Store(tc.peer)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			head := "GET / HTTP/1.1\r\nHost: " + host + "\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: front.example\r\nX-Forwarded-Proto: https\r\n"
			if tc.hop {
				head += HopHeader + ": n2\r\n"
			}
			req := head + "\r\n"
			if path == "fallback" { // a chunked body goes to the fallback
				req = strings.Replace(head, "GET", "POST", 1) + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
			}
			resp, body := roundTrip(t, c, bufio.NewReader(c), req)
			c.Close()
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("%s, %s path: %d %q, want %q", tc.name, path, resp.StatusCode, body, tc.want)
			}
		}
	}
}

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
