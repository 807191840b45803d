package system

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/tenhq/ten/internal/dnstest"
	"github.com/tenhq/ten/internal/pebbletest"
)

// Wildcard certificates through DNS-01 as a user sets them up:
// dns_provider = "rfc2136" with the TSIG secret in dns_credentials and the
// name server in ten's environment. ten puts the challenge records in a
// DNS server on loopback with signed dynamic updates, pebble reads them
// there, and every instance host is served by *.SERVICE.DOMAIN with no
// order of its own. An unknown provider and a missing credential stop ten
// from starting, naming the key and the variable. The CA offers OCSP
// (a responder on loopback named in pebble's certificates), so the
// handshake carries a stapled "good" response.
func TestTLSWildcardDNS01(t *testing.T) {
	install(t)
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := base64.StdEncoding.EncodeToString(raw)
	zone := dnstest.Start(t, "example.test", "ten-acme", secret)
	httpsPort, httpPort := freePort(t), freePort(t)
	pb := pebbletest.StartWith(t, pebbletest.Options{HTTPPort: httpPort, TLSPort: httpsPort, DNS: zone.Addr, OCSP: true})
	creds := filepath.Join(t.TempDir(), "dns.env")
	if err := os.WriteFile(creds, []byte("RFC2136_TSIG_KEY=ten-acme\nRFC2136_TSIG_SECRET="+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsSection := func(provider, credentials string) string {
		return fmt.Sprintf(`
[settings.tls]
enabled = true
domain = "example.test"
acme_email = "ops@example.test"
https_port = %d
http_port = %d
ca = %q
ca_root = %q
dns_provider = %q
dns_credentials = %q
dns_resolvers = [%q]
`, httpsPort, httpPort, pb.Dir, pb.TLSRoot, provider, credentials, zone.Addr)
	}
	services := `
[service.app]
command = "ECHO --mode activation"
activation = "socket"

[instances]
app = ["one", "two"]
`
	// Refused configs first: ten serve exits naming what is wrong.
	for _, c := range []struct{ provider, credentials, want string }{
		{"route53", creds, `settings.tls.dns_provider: "route53" is not a DNS provider ten supports; use one of cloudflare, rfc2136`},
		{"rfc2136", filepath.Join(t.TempDir(), "absent.env"), "settings.tls.dns_credentials"},
		{"cloudflare", creds, "settings.tls.dns_provider cloudflare: CLOUDFLARE_API_TOKEN not set"},
	} {
		_, path, _ := writeConfig(t, tlsSection(c.provider, c.credentials)+services)
		cmd := exec.Command(tenBin, "serve", "--config", path)
		cmd.Env = append(os.Environ(), "RFC2136_NAMESERVER="+zone.Addr)
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("dns_provider %s: ten serve still running after 30s\n%s", c.provider, out)
		}
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("dns_provider %s, credentials %s: %v, want an error with %q:\n%s", c.provider, c.credentials, err, c.want, out)
		}
	}
	if units := tenUnits(t); len(units) != 0 {
		t.Fatalf("a refused config left units: %v", units)
	}

	s := startTen(t, tlsSection("rfc2136", creds)+services, "RFC2136_NAMESERVER="+zone.Addr)
	c := tlsClient(fmt.Sprintf("127.0.0.1:%d", httpsPort), pb.Roots)
	wildcards := []string{"example.test", "*.example.test", "*.app.example.test"}
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, body := s.adminGet("/api/tls/status")
		var st tlsStatus
		json.Unmarshal(body, &st)
		have := map[string]bool{}
		for _, cert := range st.Certificates {
			if cert.Error == "" && !cert.NotAfter.IsZero() {
				for _, n := range cert.Names {
					have[n] = true
				}
			}
		}
		if code == 200 && have[wildcards[0]] && have[wildcards[1]] && have[wildcards[2]] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wildcard certificates not there 90s after start: %d %s\norders %v", code, body, pb.Orders())
		}
		time.Sleep(300 * time.Millisecond)
	}
	for host, want := range map[string]string{"one.app.example.test": "*.app.example.test", "two.app.example.test": "*.app.example.test", "app.example.test": "*.example.test"} {
		resp, err := c.Get("https://" + host + "/")
		if err != nil {
			t.Fatalf("GET https://%s/: %v", host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "hello from app:") {
			t.Errorf("GET https://%s/: %d %s", host, resp.StatusCode, body)
		}
		if got := resp.TLS.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != want {
			t.Errorf("%s served the certificate for %v, want %s", host, got, want)
		}
	}
	// The OCSP staple: fetched after the certificate, so it may take a
	// handshake or two.
	var staple []byte
	for deadline := time.Now().Add(30 * time.Second); len(staple) == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := c.Get("https://one.app.example.test/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if staple = resp.TLS.OCSPResponse; len(staple) > 0 {
			chain := resp.TLS.PeerCertificates
			r, err := ocsp.ParseResponseForCert(staple, chain[0], chain[1])
			if err != nil || r.Status != ocsp.Good {
				t.Errorf("stapled OCSP response: %v, status %v", err, r)
			}
		}
	}
	if len(staple) == 0 {
		t.Errorf("no OCSP response stapled within 30s")
	}
	orders := pb.Orders()
	for _, h := range []string{"one.app.example.test", "two.app.example.test", "app.example.test"} {
		if slices.Contains(orders, h) {
			t.Errorf("an order for %s: the wildcard covers it (orders %v)", h, orders)
		}
	}
	if applied, refused := zone.Updates(); applied < 2*len(wildcards) || refused != 0 {
		t.Errorf("DNS updates: %d applied, %d refused", applied, refused)
	}
}
