package fastpath

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/router/fleet"
)

// A fleet peer's router (its address a live node's, router.HopHeader set,
// and the fleet's token in fleet.AuthHeader) keeps its X-Forwarded-* so the
// app sees the original client first; anyone else gets them dropped (an
// app on the peer node connects from the peer's address too, but has no
// token), on the fast path and on the fallback alike. The token never
// reaches the app.
func TestFleetPeerForwardedHeaders(t *testing.T) {
	var peer atomic.Bool
	auth := fleet.NewPeerAuth([]byte("the fleet's secret, from etcd"))
	r := router.New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)),
		router.Options{FleetPeer: func(ip string) bool { return peer.Load() && ip == "127.0.0.1" }, FleetAuth: auth})
	twoInstances(t, r)
	addr := serveFast(t, r, testLimits)
	const host = "a.api.example.test"
	good := fleet.AuthHeader + ": " + auth.Token() + "\r\n"
	kept := "a host=" + host + " xff=6.6.6.6, 7.7.7.7, 127.0.0.1 xfh=front.example xfp=https fwd=for=6.6.6.6;proto=https"
	dropped := "a host=" + host + " xff=127.0.0.1 xfh=" + host + " xfp=http"
	for _, tc := range []struct {
		name      string
		peer, hop bool
		auth      string
		want      string
	}{
		{"peer", true, true, good, kept},
		{"peer address without hop header", true, false, good, dropped},
		{"hop header from elsewhere", false, true, good, dropped},
		{"peer address without the token", true, true, "", dropped},
		{"peer address with a wrong token", true, true, fleet.AuthHeader + ": " + strings.Repeat("0", len(auth.Token())) + "\r\n", dropped},
		{"peer address with another fleet's token", true, true, fleet.AuthHeader + ": " + fleet.NewPeerAuth([]byte("another fleet")).Token() + "\r\n", dropped},
		{"the token twice", true, true, good + good, dropped},
	} {
		for _, path := range []string{"fast", "fallback"} {
			peer.Store(tc.peer)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			head := "GET / HTTP/1.1\r\nHost: " + host + "\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-Host: front.example\r\nX-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\n" + tc.auth
			if tc.hop {
				head += router.HopHeader + ": n2\r\n"
			}
			req := head + "X-Show: " + fleet.AuthHeader + "\r\n\r\n"
			if path == "fallback" { // a chunked body goes to the fallback
				req = strings.Replace(head, "GET", "POST", 1) + "X-Show: " + fleet.AuthHeader + "\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
			}
			resp, body := roundTrip(t, c, bufio.NewReader(c), req)
			c.Close()
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("%s, %s path: %d %q, want %q", tc.name, path, resp.StatusCode, body, tc.want)
			}
		}
	}
}

// A trusted proxy (settings.trusted_proxies: Caddy in front) keeps its
// X-Forwarded-* without a hop header, ten appending the proxy's address to
// X-Forwarded-For; from any other address they are replaced, on the fast
// path and on the fallback alike.
func TestTrustedProxyForwardedHeaders(t *testing.T) {
	var trusted atomic.Bool
	r := router.New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)),
		router.Options{TrustedProxy: func(ip string) bool { return trusted.Load() && ip == "127.0.0.1" }})
	twoInstances(t, r)
	addr := serveFast(t, r, testLimits)
	const host = "a.api.example.test"
	for _, tc := range []struct {
		name    string
		trusted bool
		want    string
	}{
		{"trusted proxy", true, "a host=" + host + " xff=6.6.6.6, 7.7.7.7, 127.0.0.1 xfh=front.example xfp=https fwd=for=6.6.6.6;proto=https"},
		{"anyone else", false, "a host=" + host + " xff=127.0.0.1 xfh=" + host + " xfp=http"},
	} {
		for _, path := range []string{"fast", "fallback"} {
			trusted.Store(tc.trusted)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			head := "GET / HTTP/1.1\r\nHost: " + host + "\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-Host: front.example\r\nX-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\n"
			req := head + "\r\n"
			if path == "fallback" {
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
