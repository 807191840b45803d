package tlsfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/tenhq/ten/internal/pebbletest"
	"github.com/tenhq/ten/internal/tentest"
)

// Each ACME challenge type works on its own, answered by the Front's own
// listeners: HTTP-01 by RedirectHandler on the HTTP port, TLS-ALPN-01 by
// TLSConfig on the HTTPS port. Pebble (Let's Encrypt's test CA) runs in
// the test on loopback.
func TestChallenges(t *testing.T) {
	for _, c := range []struct {
		name           string
		noHTTP, noALPN bool
	}{{"http-01", false, true}, {"tls-alpn-01", true, false}} {
		t.Run(c.name, func(t *testing.T) {
			httpsPort, httpPort := tentest.FreePort(t), tentest.FreePort(t)
			ca := pebbletest.Start(t, httpPort, httpsPort, 0)
			roots, err := os.ReadFile(ca.TLSRoot)
			if err != nil {
				t.Fatal(err)
			}
			f, err := New(Options{
				// An explicit contact: with none, certmagic finds one in storage and
				// keeps it process-wide ("default" after a racing obtain), which
				// pebble refuses, and the next test in this process would inherit it.
				Email:  "ops@example.test",
				Domain: "example.test", CA: ca.Dir, CARoots: roots, CacheDir: t.TempDir(),
				HTTPSPort: httpsPort, HTTPPort: httpPort,
				Routes:          func(name string) bool { return name == "a.web.example.test" },
				NoHTTPChallenge: c.noHTTP, NoTLSALPNChallenge: c.noALPN,
				Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(f.Close)
			serve := func(port int, h http.Handler, tc *tls.Config) {
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					t.Fatal(err)
				}
				if tc != nil {
					ln = tls.NewListener(ln, tc)
				}
				srv := &http.Server{Handler: h}
				go srv.Serve(ln)
				t.Cleanup(func() { srv.Close() })
			}
			serve(httpsPort, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello over https") }), f.TLSConfig())
			serve(httpPort, f.RedirectHandler(), nil)

			d := &net.Dialer{Timeout: 5 * time.Second}
			client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", httpsPort))
				},
				TLSClientConfig: &tls.Config{RootCAs: ca.Roots},
			}}
			resp, err := client.Get("https://a.web.example.test/")
			if err != nil {
				t.Fatalf("HTTPS with a certificate by %s only: %v", c.name, err)
			}
			resp.Body.Close()
			if got := resp.TLS.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "a.web.example.test" {
				t.Errorf("certificate for %v", got)
			}
			var ve *tls.CertificateVerificationError
			if _, err := client.Get("https://b.web.example.test/"); err == nil || errors.As(err, &ve) {
				t.Errorf("a name that routes nowhere: %v, want a refused handshake", err)
			}
			if orders := ca.Orders(); len(orders) != 1 || orders[0] != "a.web.example.test" {
				t.Errorf("orders %v", orders)
			}
		})
	}
}
