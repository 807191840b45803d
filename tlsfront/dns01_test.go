package tlsfront

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/cloudflare"
	"github.com/libdns/libdns"

	"github.com/tenhq/ten/internal/dnstest"
	"github.com/tenhq/ten/internal/pebbletest"
	"github.com/tenhq/ten/internal/tentest"
)

// serveHTTPS serves TLSConfig on a loopback port until the test ends and
// returns a client that sends every request there, trusting roots.
func serveHTTPS(t *testing.T, f *Front, port int, ca *pebbletest.CA) *http.Client {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello over https") })}
	go srv.Serve(tls.NewListener(ln, f.TLSConfig()))
	t.Cleanup(func() { srv.Close() })
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", port))
		},
		TLSClientConfig: &tls.Config{RootCAs: ca.Roots},
	}}
}

func testLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Wildcard certificates through DNS-01 with the rfc2136 provider: ten
// signs dynamic updates with TSIG to a DNS server on loopback (as to a
// self-hosted BIND), pebble reads the challenge records from that server,
// and *.DOMAIN and *.SERVICE.DOMAIN serve every service and instance host.
// HTTP-01 and TLS-ALPN-01 are off and no name routes on demand, so every
// certificate served came through DNS-01.
func TestWildcardDNS01(t *testing.T) {
	start := time.Now()
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := base64.StdEncoding.EncodeToString(raw)
	zone := dnstest.Start(t, "example.test", "ten-acme", secret)
	httpsPort := tentest.FreePort(t)
	const validity = 30 * time.Second
	ca := pebbletest.StartWith(t, pebbletest.Options{HTTPPort: tentest.FreePort(t), TLSPort: httpsPort, DNS: zone.Addr, Validity: validity})
	roots, err := os.ReadFile(ca.TLSRoot)
	if err != nil {
		t.Fatal(err)
	}
	// The secret in the credentials file, the rest in the environment.
	credFile := filepath.Join(t.TempDir(), "dns.env")
	if err := os.WriteFile(credFile, []byte("# rfc2136\nRFC2136_TSIG_SECRET=\""+secret+"\"\nRFC2136_TSIG_KEY=from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"RFC2136_NAMESERVER": zone.Addr, "RFC2136_TSIG_KEY": "ten-acme"}
	get, err := Credentials(credFile, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	prov, err := DNSProvider("rfc2136", get)
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Options{
		// An explicit contact: with none, certmagic finds one in storage and
		// keeps it process-wide ("default" after a racing obtain), which
		// pebble refuses, and the next test in this process would inherit it.
		Email:  "ops@example.test",
		Domain: "example.test", CA: ca.Dir, CARoots: roots, CacheDir: t.TempDir(),
		HTTPSPort: httpsPort, HTTPPort: tentest.FreePort(t),
		Routes:          func(string) bool { return false },
		NoHTTPChallenge: true, NoTLSALPNChallenge: true,
		DNS01: prov, DNSResolvers: []string{zone.Addr}, Services: []string{"app", "web"},
		RenewCheck: time.Second,
		Log:        testLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	want := []string{"example.test", "*.example.test", "*.app.example.test", "*.web.example.test"}
	if got := f.Managed(); !slices.Equal(got, want) {
		t.Fatalf("Managed() = %v, want %v", got, want)
	}
	client := serveHTTPS(t, f, httpsPort, ca)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f.Prefetch(ctx)

	deadline := time.Now().Add(90 * time.Second)
	for {
		have := map[string]bool{}
		for _, c := range f.Status().Certificates {
			if c.Error == "" && !c.NotAfter.IsZero() {
				for _, n := range c.Names {
					have[n] = true
				}
			}
		}
		if have["example.test"] && have["*.example.test"] && have["*.app.example.test"] && have["*.web.example.test"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wildcards not obtained within 90s: status %+v", f.Status())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for host, cert := range map[string]string{
		"one.app.example.test": "*.app.example.test", "two.app.example.test": "*.app.example.test",
		"a.web.example.test": "*.web.example.test", "app.example.test": "*.example.test", "example.test": "example.test",
	} {
		resp, err := client.Get("https://" + host + "/")
		if err != nil {
			t.Fatalf("HTTPS to %s: %v", host, err)
		}
		resp.Body.Close()
		if got := resp.TLS.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != cert {
			t.Errorf("%s got the certificate for %v, want %s", host, got, cert)
		}
	}
	orders := ca.Orders()
	for _, n := range want {
		if !slices.Contains(orders, n) {
			t.Errorf("no order for %s: %v", n, orders)
		}
	}
	// The certificates live 30 s and are renewed with a third of that
	// left: each name may have been renewed once per 15 s the test ran (a
	// loaded machine makes it run longer), and never more.
	renewals := 1 + int(time.Since(start)/(15*time.Second))
	if n := len(orders); n < len(want) || n > (1+renewals)*len(want) {
		t.Errorf("orders %v, want one each for %v (instance hosts need none of their own), and at most %d renewals each in the %s the test ran", orders, want, renewals, time.Since(start).Round(time.Second))
	}
	for _, o := range orders {
		if !slices.Contains(want, o) {
			t.Errorf("an order for %s", o)
		}
	}

	// Renewal: the 30-second wildcards are renewed through DNS-01 too (an
	// issuer without it could not renew a wildcard) while they serve.
	old := map[string]time.Time{}
	for _, c := range f.Status().Certificates {
		old[c.Names[0]] = c.NotAfter
	}
	for deadline := time.Now().Add(2 * validity); ; time.Sleep(200 * time.Millisecond) {
		renewed := 0
		for _, c := range f.Status().Certificates {
			if c.Renewals > 0 && c.Error == "" && c.NotAfter.After(old[c.Names[0]]) {
				renewed++
			}
		}
		if renewed == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d certificates renewed within %s: %+v", renewed, len(want), 2*validity, f.Status())
		}
	}
	resp, err := client.Get("https://three.app.example.test/")
	if err != nil {
		t.Fatalf("HTTPS after renewal: %v", err)
	}
	resp.Body.Close()
	if got := resp.TLS.PeerCertificates[0]; got.DNSNames[0] != "*.app.example.test" || !got.NotAfter.After(old["*.app.example.test"]) {
		t.Errorf("after renewal served %v until %s", got.DNSNames, got.NotAfter)
	}
	applied, refused := zone.Updates()
	if applied < 2*len(want) || refused != 0 {
		t.Errorf("DNS updates: %d applied, %d refused; want a signed add and delete per name", applied, refused)
	}
	// No challenge record stays behind. The 30-second certificates keep
	// renewing, so a record of a renewal in flight may be there at any one
	// moment: each must be gone once its challenge is over (a second or
	// so), and the zone is seen without any within a few validity periods.
	names := []string{"_acme-challenge.example.test", "_acme-challenge.app.example.test"}
	for deadline := time.Now().Add(3 * validity); ; time.Sleep(50 * time.Millisecond) {
		var left []string
		for _, n := range names {
			if v := zone.TXT(n); len(v) != 0 {
				left = append(left, fmt.Sprintf("%s: %v", n, v))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("challenge records left behind for %s: %v", 3*validity, left)
			break
		}
	}

	// An update signed with another secret is refused by the server.
	env["RFC2136_TSIG_SECRET"] = base64.StdEncoding.EncodeToString([]byte("not the secret at all, not at all"))
	bad, err := DNSProvider("rfc2136", get)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.(libdns.RecordAppender).AppendRecords(ctx, "example.test.", []libdns.Record{libdns.TXT{Name: "_acme-challenge.x", Text: "forged"}})
	if err == nil {
		t.Error("an update with the wrong TSIG secret was accepted")
	}
	if _, r := zone.Updates(); r != 1 {
		t.Errorf("refused updates %d, want 1", r)
	}
	if v := zone.TXT("_acme-challenge.x.example.test"); len(v) != 0 {
		t.Errorf("forged record stored: %v", v)
	}
}

// DNSProvider names what is missing; Credentials reads the file and lets
// the environment win.
func TestDNSProviderConfig(t *testing.T) {
	none := func(string) string { return "" }
	if _, err := DNSProvider("route53", none); err == nil || !strings.Contains(err.Error(), `"route53" is not a DNS provider ten supports`) {
		t.Errorf("unknown provider: %v", err)
	}
	if _, err := DNSProvider("cloudflare", none); err == nil || !strings.Contains(err.Error(), "CLOUDFLARE_API_TOKEN not set") {
		t.Errorf("cloudflare without a token: %v", err)
	}
	// tenement's name for the token, when CLOUDFLARE_API_TOKEN is not set.
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CF_API_TOKEN": "cf"}, "cf"},
		{map[string]string{"CF_API_TOKEN": "cf", "CLOUDFLARE_API_TOKEN": "own"}, "own"},
	} {
		p, err := DNSProvider("cloudflare", func(k string) string { return tc.env[k] })
		if cf, ok := p.(*cloudflare.Provider); err != nil || !ok || cf.APIToken != tc.want {
			t.Errorf("cloudflare with %v: %v %+v, want the token %q", tc.env, err, p, tc.want)
		}
	}
	if _, err := DNSProvider("cloudflare", none); err == nil || !strings.Contains(err.Error(), "CF_API_TOKEN is read as CLOUDFLARE_API_TOKEN too") {
		t.Errorf("cloudflare without a token does not name tenement's variable: %v", err)
	}
	if _, err := DNSProvider("rfc2136", func(k string) string { return map[string]string{"RFC2136_NAMESERVER": "ns.example.test"}[k] }); err == nil ||
		!strings.Contains(err.Error(), "RFC2136_TSIG_KEY, RFC2136_TSIG_SECRET not set") {
		t.Errorf("rfc2136 without a key: %v", err)
	}
	for name, vars := range DNSVars {
		vals := map[string]string{}
		for _, v := range vars {
			vals[strings.TrimPrefix(v, "*")] = "x"
		}
		vals["RFC2136_TSIG_ALGORITHM"] = "hmac-sha512"
		if _, err := DNSProvider(name, func(k string) string { return vals[k] }); err != nil {
			t.Errorf("%s with every credential: %v", name, err)
		}
	}
	file := filepath.Join(t.TempDir(), "dns.env")
	os.WriteFile(file, []byte("\n# comment\nexport CLOUDFLARE_API_TOKEN = 'from-file'\nCLOUDFLARE_ZONE_TOKEN=zone\n"), 0o600)
	get, err := Credentials(file, func(k string) string { return map[string]string{"CLOUDFLARE_ZONE_TOKEN": "from-env"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	if get("CLOUDFLARE_API_TOKEN") != "from-file" || get("CLOUDFLARE_ZONE_TOKEN") != "from-env" {
		t.Errorf("credentials: %q %q", get("CLOUDFLARE_API_TOKEN"), get("CLOUDFLARE_ZONE_TOKEN"))
	}
	os.WriteFile(file, []byte("NOEQUALS\n"), 0o600)
	if _, err := Credentials(file, none); err == nil || !strings.Contains(err.Error(), "dns.env:1: want KEY=VALUE") {
		t.Errorf("bad line: %v", err)
	}
	if _, err := Credentials(filepath.Join(t.TempDir(), "absent"), none); err == nil || !strings.Contains(err.Error(), "settings.tls.dns_credentials") {
		t.Errorf("absent file: %v", err)
	}
}
