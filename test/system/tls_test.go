package system

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenhq/ten/internal/pebbletest"
)

// tlsClient speaks HTTPS to ten's https_port whatever the URL's host (the
// names are test names no resolver knows) and trusts only roots.
func tlsClient(httpsAddr string, roots *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, httpsAddr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// adminGet sends an authenticated GET to ten's API.
func (s *tenServer) adminGet(path string) (int, []byte) {
	s.t.Helper()
	tok, err := os.ReadFile(filepath.Join(s.dir, "data", "api_token"))
	if err != nil {
		s.t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+s.addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type tlsStatus struct {
	Enabled      bool   `json:"enabled"`
	Domain       string `json:"domain"`
	Refused      uint64 `json:"refused"`
	Certificates []struct {
		Names     []string  `json:"names"`
		NotAfter  time.Time `json:"not_after"`
		ExpiresIn float64   `json:"expires_in_seconds"`
		Renewals  int       `json:"renewals"`
		Error     string    `json:"error"`
	} `json:"certificates"`
}

// HTTPS against a real ACME server (pebble) on loopback: certificates for
// several tenant hosts on first use, verified against pebble's root; no
// order at all for a name that routes nowhere; the redirect on http_port;
// /api/tls/status, /metrics and `ten doctor`; renewal of short-lived
// certificates while serving.
func TestTLSWithPebble(t *testing.T) {
	install(t)
	httpsPort, httpPort := freePort(t), freePort(t)
	const validity = 30 * time.Second
	pb := pebbletest.Start(t, httpPort, httpsPort, validity)
	s := startTen(t, fmt.Sprintf(`
[settings.tls]
enabled = true
domain = "example.test"
acme_email = "ops@example.test"
https_port = %d
http_port = %d
ca = %q
ca_root = %q

[service.app]
command = "ECHO --mode activation"
activation = "socket"

[instances]
app = ["one", "two", "three"]
`, httpsPort, httpPort, pb.Dir, pb.TLSRoot), "TEN_TLS_RENEW_CHECK=2s")
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	c := tlsClient(httpsAddr, pb.Roots)

	// The bare domain's certificate is fetched at start, before anyone
	// asks for it.
	for deadline := time.Now().Add(30 * time.Second); !slices.Contains(pb.Orders(), "example.test"); {
		if time.Now().After(deadline) {
			t.Fatalf("no order for the bare domain 30s after start: %v", pb.Orders())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Several tenant hosts, each issued on its first request.
	hosts := []string{"one.app.example.test", "two.app.example.test", "three.app.example.test", "app.example.test"}
	for _, h := range hosts {
		resp, err := c.Get("https://" + h + "/")
		if err != nil {
			t.Fatalf("GET https://%s/: %v", h, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET https://%s/: %d %s", h, resp.StatusCode, body)
		}
		leaf := resp.TLS.PeerCertificates[0]
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
		t.Logf("%s: %d, certificate for %v from %q, valid until %s", h, resp.StatusCode, leaf.DNSNames, leaf.Issuer.CommonName, leaf.NotAfter.Format(time.TimeOnly))
	}
	// The bare domain reaches ten's own pages.
	resp, err := c.Get("https://example.test/health")
	if err != nil {
		t.Fatalf("bare domain over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("https://example.test/health: %d", resp.StatusCode)
	}

	// The dashboard over HTTPS: its session cookie is Secure as well.
	tok, err := os.ReadFile(filepath.Join(s.dir, "data", "api_token"))
	if err != nil {
		t.Fatal(err)
	}
	origin := fmt.Sprintf("https://example.test:%d", httpsPort)
	req, _ := http.NewRequest("POST", origin+"/dashboard/signin", strings.NewReader("token="+strings.TrimSpace(string(tok))))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "ten_session" {
			cookie = ck
		}
	}
	if resp.StatusCode != http.StatusSeeOther || cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("dashboard sign-in over HTTPS: %d, cookie %+v", resp.StatusCode, cookie)
	}

	// Names that route nowhere get no certificate and no order at the CA.
	for _, h := range []string{"nope.app.example.test", "nothing.example.test", "evil.example.com", "a.b.c.example.test"} {
		_, err := c.Get("https://" + h + "/")
		if err == nil {
			t.Errorf("https://%s/ answered; want a failed handshake", h)
		} else {
			t.Logf("%s refused: %v", h, err)
		}
	}
	orders := pb.Orders()
	t.Logf("orders at pebble: %v", orders)
	for _, h := range hosts {
		if !slices.Contains(orders, h) {
			t.Errorf("no order for %s", h)
		}
	}
	for _, bad := range []string{"nope.app.example.test", "nothing.example.test", "evil.example.com", "a.b.c.example.test"} {
		if slices.Contains(orders, bad) {
			t.Errorf("ten ordered a certificate for %s, which routes nowhere", bad)
		}
	}
	if !strings.Contains(s.log.String(), "refusing a certificate for a name that routes nowhere") {
		t.Errorf("no refusal logged")
	}

	// http_port redirects to HTTPS (and 404s a name that routes nowhere).
	for host, want := range map[string]int{"one.app.example.test": 308, "nope.app.example.test": 404} {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/x?y=1", httpPort), nil)
		req.Host = host
		resp, err := (&http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != want {
			t.Errorf("http://%s/x: %d %s, want %d", host, resp.StatusCode, loc, want)
		}
		if want == 308 && loc != fmt.Sprintf("https://%s:%d/x?y=1", host, httpsPort) {
			t.Errorf("redirect to %q", loc)
		}
	}

	// Status, metrics, doctor.
	code, body := s.adminGet("/api/tls/status")
	var st tlsStatus
	if code != 200 || json.Unmarshal(body, &st) != nil {
		t.Fatalf("/api/tls/status: %d %s", code, body)
	}
	t.Logf("/api/tls/status: %s", body)
	if !st.Enabled || st.Domain != "example.test" || st.Refused < 2 {
		t.Errorf("status: %+v", st)
	}
	have := map[string]bool{}
	for _, cert := range st.Certificates {
		for _, n := range cert.Names {
			have[n] = true
		}
		if cert.Error != "" || cert.ExpiresIn <= 0 || cert.ExpiresIn > validity.Seconds() {
			t.Errorf("certificate %v: error %q, expires in %.0fs", cert.Names, cert.Error, cert.ExpiresIn)
		}
	}
	for _, h := range append(hosts, "example.test") {
		if !have[h] {
			t.Errorf("status lacks %s", h)
		}
	}
	_, metrics, _ := s.get("127.0.0.1", "/metrics")
	for _, h := range hosts {
		if !strings.Contains(metrics, fmt.Sprintf("ten_tls_certificate_expiry_seconds{name=%q}", h)) {
			t.Errorf("metrics lack the expiry of %s", h)
		}
	}
	lint(t, metrics)
	doc, _ := s.ten("doctor", "--config", s.config)
	if !strings.Contains(doc, "one.app.example.test") {
		t.Errorf("ten doctor does not list the certificates:\n%s", doc)
	}

	// Renewal while serving: keep requesting one host; its certificate
	// must change before the first one expires, and no request may fail.
	first, err := c.Get("https://one.app.example.test/")
	if err != nil {
		t.Fatal(err)
	}
	first.Body.Close()
	serial := first.TLS.PeerCertificates[0].SerialNumber
	expiry := first.TLS.PeerCertificates[0].NotAfter
	renewed := false
	for time.Now().Before(expiry.Add(5 * time.Second)) {
		resp, err := c.Get("https://one.app.example.test/")
		if err != nil {
			t.Fatalf("while waiting for renewal: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("while waiting for renewal: %d", resp.StatusCode)
		}
		if leaf := resp.TLS.PeerCertificates[0]; leaf.SerialNumber.Cmp(serial) != 0 {
			t.Logf("renewed %.0fs before the old certificate's expiry: new one valid until %s", time.Until(expiry).Seconds(), leaf.NotAfter.Format(time.TimeOnly))
			if time.Now().After(expiry) {
				t.Errorf("renewed only after expiry")
			}
			renewed = true
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !renewed {
		t.Fatalf("certificate of one.app.example.test not renewed before it expired at %s", expiry.Format(time.TimeOnly))
	}
	_, body = s.adminGet("/api/tls/status")
	st = tlsStatus{}
	json.Unmarshal(body, &st)
	renewals := 0
	for _, cert := range st.Certificates {
		if slices.Contains(cert.Names, "one.app.example.test") {
			renewals = cert.Renewals
		}
	}
	if renewals < 1 {
		t.Errorf("status shows %d renewals of one.app.example.test: %s", renewals, body)
	}
}

// ten install with [settings.tls]: tenement.socket holds https_port and
// http_port too, and three restarts of tenement.service under steady HTTPS
// load fail no request.
func TestInstallHTTPSRestartDropsNothing(t *testing.T) {
	install(t)
	httpsPort, httpPort := freePort(t), freePort(t)
	// 90 days, as Let's Encrypt: pebble's renewal window (ARI) of a short
	// certificate would start at once and renew it during the test.
	pb := pebbletest.Start(t, httpPort, httpsPort, 90*24*time.Hour)
	_, cfg, _ := writeConfig(t, fmt.Sprintf(`
[settings.tls]
enabled = true
domain = "example.test"
https_port = %d
http_port = %d
ca = %q
ca_root = %q

[service.web]
command = "ECHO --mode activation"
activation = "socket"

[instances]
web = ["a"]
`, httpsPort, httpPort, pb.Dir, pb.TLSRoot))
	port := freePort(t)
	bin := filepath.Join(binDir, "ten-installed")
	out, err := exec.Command(tenBin, "install", "--runtime", "-d", "example.test", "-p", fmt.Sprint(port), "--address", "127.0.0.1", "--binary", bin, "-c", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("ten install: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		exec.Command(tenBin, "uninstall", "--runtime").Run()
		removeAllUnits(t)
	})
	listen := show(t, "tenement.socket", "Listen")
	t.Logf("tenement.socket listens on: %s", listen)
	for _, p := range []int{port, httpsPort, httpPort} {
		if !strings.Contains(listen, fmt.Sprintf("127.0.0.1:%d", p)) {
			t.Errorf("tenement.socket does not hold port %d: %s", p, listen)
		}
	}
	c := tlsClient(fmt.Sprintf("127.0.0.1:%d", httpsPort), pb.Roots)
	get := func() (int, error) {
		resp, err := c.Get("https://a.web.example.test/")
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, err := get()
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			j, _ := exec.Command("journalctl", "-u", "tenement.service", "--no-pager").CombinedOutput()
			t.Fatalf("installed ten does not serve HTTPS: %d %v\n%s", code, err, j)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The redirect port is held too.
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", httpPort), nil)
	req.Host = "a.web.example.test"
	resp, err := (&http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil || resp.StatusCode != http.StatusPermanentRedirect {
		t.Fatalf("http_port of the installed ten: %v %v", resp, err)
	}
	resp.Body.Close()
	// ten also orders the bare domain's certificate at start; a restart
	// while that order is in flight cancels it, and the next start
	// rightly orders again. Restart only once both are in the cache.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		exec.Command("journalctl", "--sync").Run()
		j, _ := exec.Command("journalctl", "-u", "tenement.service", "--no-pager", "-o", "cat", "--grep", "certificate obtained").CombinedOutput()
		if strings.Count(string(j), "certificate obtained") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("installed ten did not obtain both certificates within 60 s:\n%s", j)
		}
	}

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, err := get()
				if err != nil || code != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %v", code, err))
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 3; i++ {
		time.Sleep(700 * time.Millisecond)
		if out, err := exec.Command("systemctl", "restart", "tenement.service").CombinedOutput(); err != nil {
			t.Fatalf("restart: %v %s", err, out)
		}
	}
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("3 restarts of tenement.service under HTTPS load: %d requests answered, %d failed; orders at the CA: %v", ok.Load(), failed.Load(), pb.Orders())
	if failed.Load() != 0 {
		t.Errorf("%d HTTPS requests failed across restarts; first: %v", failed.Load(), firstErr.Load())
	}
	if ok.Load() < 30 {
		t.Errorf("only %d requests made it", ok.Load())
	}
	j, _ := exec.Command("journalctl", "-u", "tenement.service", "--no-pager", "-o", "cat", "--grep", "tls|certificate|certmagic").CombinedOutput()
	t.Logf("tenement.service about certificates:\n%s", j)
	// Each certificate came from the cache after each restart: one order
	// per name (the bare domain and a.web).
	if n := len(pb.Orders()); n > 2 {
		t.Errorf("%d orders at the CA across restarts; the cached certificate should be reused", n)
	}
	if n := strings.Count(string(j), "certificate obtained"); n > 2 {
		t.Errorf("certificates obtained %d times across restarts; want one per name", n)
	}
}
