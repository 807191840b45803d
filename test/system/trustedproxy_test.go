package system

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTrustedProxyClients runs ten with settings.trusted_proxies naming
// 127.0.0.1 (a Caddy on the same host) and checks that the clients behind
// it are told apart by the X-Forwarded-For it sends: ten bad tokens from
// one client lock out that client only, and the per-client creation rate
// counts each client. From 127.0.0.2, which is not trusted, the same
// header changes nothing: a forger is counted by its own address.
func TestTrustedProxyClients(t *testing.T) {
	s := startTen(t, `trusted_proxies = ["127.0.0.1"]
spawn_rate_per_client = 2

[service.web]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
isolation = "process"
`)
	_, port, _ := net.SplitHostPort(s.addr)
	from := func(local string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
			}}}
	}
	proxy, other := from("127.0.0.1"), from("127.0.0.2")
	call := func(c *http.Client, host, path, token, xff string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+s.addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s%s (X-Forwarded-For %q): %v", host, path, xff, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	lockOut := func(c *http.Client, xff func(i int) string) int {
		t.Helper()
		for i := 1; i <= 12; i++ {
			if code, _ := call(c, "", "/api/instances", fmt.Sprintf("ten_bad%d_wrong", i), xff(i)); code == 429 {
				return i
			}
		}
		return 0
	}

	// One client behind the proxy guesses tokens: locked out at the 11th.
	if n := lockOut(proxy, func(int) string { return "203.0.113.7" }); n != 11 {
		t.Fatalf("client 203.0.113.7 behind the trusted proxy: 429 at attempt %d, want 11", n)
	}
	_, fresh := s.newToken("--description", "never used before")
	if code, body := call(proxy, "", "/api/instances", fresh, "203.0.113.7"); code != 429 {
		t.Errorf("the locked-out client with a right token: %d %q, want 429", code, body)
	}
	// Another client behind the same proxy is not locked out; a client
	// that forges the proxy's header in front of its own is counted by
	// the address the proxy appended.
	if code, body := call(proxy, "", "/api/instances", fresh, "198.51.100.1"); code != 200 {
		t.Errorf("another client behind the proxy: %d %q, want 200", code, body)
	}
	// (A token that verified once passes a lockout, so a second one.)
	_, fresh2 := s.newToken("--description", "never used either")
	if code, body := call(proxy, "", "/api/instances", fresh2, "198.51.100.1, 203.0.113.7"); code != 429 {
		t.Errorf("the locked-out client claiming to be 198.51.100.1: %d %q, want 429", code, body)
	}

	// Creation by request: two per client per minute.
	for i, tc := range []struct {
		xff  string
		want int
	}{{"203.0.113.7", 200}, {"203.0.113.7", 200}, {"203.0.113.7", 429}, {"198.51.100.1", 200}} {
		code, body := call(proxy, fmt.Sprintf("n%d.web.localhost", i), "/", "", tc.xff)
		if code != tc.want || (code == 429 && !strings.Contains(body, "spawn_rate_per_client")) {
			t.Errorf("creation %d for %s behind the proxy: %d %q, want %d", i, tc.xff, code, body, tc.want)
		}
	}

	// Not trusted: X-Forwarded-For is not believed. 127.0.0.2 counts as
	// loopback, whatever it claims.
	if n := lockOut(other, func(i int) string { return fmt.Sprintf("192.0.2.%d", i) }); n != 11 {
		t.Errorf("untrusted 127.0.0.2 with a new X-Forwarded-For each time: 429 at attempt %d, want 11", n)
	}
	for i, want := range []int{200, 200, 429} {
		code, body := call(other, fmt.Sprintf("u%d.web.localhost", i), "/", "", fmt.Sprintf("192.0.2.%d", i))
		if code != want {
			t.Errorf("creation %d from untrusted 127.0.0.2: %d %q, want %d", i, code, body, want)
		}
	}
}
