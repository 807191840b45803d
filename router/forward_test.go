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

	"github.com/tenhq/ten/router/fleet"
	"github.com/tenhq/ten/units"
)

// otherNode serves h as another node's router on a loopback port, until
// the test ends, and returns its address.
func otherNode(t *testing.T, h http.HandlerFunc) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	other := &http.Server{Handler: h}
	go other.Serve(ln)
	t.Cleanup(func() { other.Close() })
	return ln.Addr().String()
}

// A request another node forwarded is never forwarded again (loop guard),
// and a forward reaches the other router with the hop header, the fleet's
// token (whatever the client sent in its place) and the client's address.
func TestForwardAndLoopGuard(t *testing.T) {
	var got atomic.Value
	auth := fleet.NewPeerAuth([]byte("k"))
	addr := otherNode(t, func(w http.ResponseWriter, req *http.Request) {
		got.Store(fmt.Sprintf("host=%s hop=%s xff=%s auth=%v", req.Host, req.Header.Get(HopHeader), req.Header.Get("X-Forwarded-For"), req.Header.Values(fleet.AuthHeader)))
		fmt.Fprint(w, "from n2")
	})
	r := New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{
		Create: func(_ context.Context, inst units.Instance, _ string) error {
			return &Forward{Node: "n2", Addr: addr}
		},
		FleetAuth: auth,
	})
	fwd := httptest.NewRequest("GET", "http://x.api.example.test/", nil)
	fwd.Header.Set(fleet.AuthHeader, "forged")
	w := httptest.NewRecorder()
	r.ServeHTTP(w, fwd)
	if w.Code != 200 || w.Body.String() != "from n2" {
		t.Fatalf("forward: %d %q", w.Code, w.Body.String())
	}
	if g := got.Load(); g != "host=x.api.example.test hop=n2 xff=192.0.2.1 auth=["+auth.Token()+"]" {
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

// Creation on request is counted per client as the connection cap counts
// clients: an IPv4 address as it is, an IPv6 one by its /64 (so that one
// client cannot get a fresh rate for each of its 2^64 addresses).
func TestCreateClientKey(t *testing.T) {
	var got []string
	r := New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{
		Create: func(_ context.Context, inst units.Instance, client string) error {
			got = append(got, client)
			return &Refused{Status: http.StatusTooManyRequests, Msg: "slow down"}
		},
	})
	for _, remote := range []string{"192.0.2.7:1234", "[2001:db8:1:2::5]:1234", "[2001:db8:1:2:ffff::9]:80", "[::ffff:192.0.2.8]:1"} {
		req := httptest.NewRequest("GET", "http://new.api.example.test/", nil)
		req.RemoteAddr = remote
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusTooManyRequests {
			t.Fatalf("%s: %d %q", remote, w.Code, w.Body.String())
		}
	}
	want := []string{"192.0.2.7", "2001:db8:1:2::/64", "2001:db8:1:2::/64", "192.0.2.8"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("clients %q, want %q", got, want)
	}
}

// Behind a trusted proxy or another node's router, the client a creation
// counts against is the one it names in X-Forwarded-For, not the proxy
// (whose every client would share one rate); anyone else's
// X-Forwarded-For is not believed, nor a fleet peer's address's without
// the fleet's token.
func TestCreateClientBehindProxy(t *testing.T) {
	auth := fleet.NewPeerAuth([]byte("k"))
	var got []string
	r := New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{
		Create: func(_ context.Context, inst units.Instance, client string) error {
			got = append(got, client)
			return &Refused{Status: http.StatusTooManyRequests, Msg: "slow down"}
		},
		TrustedProxy: func(ip string) bool { return ip == "10.0.0.1" },
		FleetPeer:    func(ip string) bool { return ip == "10.0.0.2" },
		FleetAuth:    auth,
	})
	for i, remote := range []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.2:2"} {
		req := httptest.NewRequest("GET", "http://new.api.example.test/", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", "198.51.100.9, 10.0.0.1")
		req.Header.Set(HopHeader, "n2")
		if i < 3 {
			// The last: an app on node 10.0.0.2, without the fleet's token.
			req.Header.Set(fleet.AuthHeader, auth.Token())
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusTooManyRequests {
			t.Fatalf("%s: %d %q", remote, w.Code, w.Body.String())
		}
	}
	want := []string{"198.51.100.9", "198.51.100.9", "10.0.0.3", "10.0.0.2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("clients %q, want %q", got, want)
	}
}

// A request a trusted proxy sent (Caddy in front of every node) reaches
// the node that runs its instance with the proxy's X-Forwarded-* kept and
// this node's view appended, so that the app there sees the proxy's client
// and scheme as an app on this node does; anyone else's are replaced.
func TestForwardKeepsTrustedProxyHeaders(t *testing.T) {
	var got atomic.Value
	addr := otherNode(t, func(w http.ResponseWriter, req *http.Request) {
		got.Store(fmt.Sprintf("xff=%s xfh=%s xfp=%s", req.Header.Get("X-Forwarded-For"), req.Header.Get("X-Forwarded-Host"), req.Header.Get("X-Forwarded-Proto")))
	})
	r := New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{
		Create: func(_ context.Context, inst units.Instance, _ string) error {
			return &Forward{Node: "n2", Addr: addr}
		},
		TrustedProxy: func(ip string) bool { return ip == "10.0.0.1" },
	})
	for remote, want := range map[string]string{
		"10.0.0.1:1":  "xff=203.0.113.5, 10.0.0.1 xfh=front.example xfp=https",
		"192.0.2.1:1": "xff=192.0.2.1 xfh=x.api.example.test xfp=http",
	} {
		req := httptest.NewRequest("GET", "http://x.api.example.test/", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", "203.0.113.5")
		req.Header.Set("X-Forwarded-Host", "front.example")
		req.Header.Set("X-Forwarded-Proto", "https")
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != 200 || got.Load() != want {
			t.Errorf("from %s: %d, the other node saw %v; want %s", remote, w.Code, got.Load(), want)
		}
	}
}
