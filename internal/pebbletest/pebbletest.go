// Package pebbletest runs Let's Encrypt's test ACME server, pebble, in the
// test process on loopback, with pebble's challenge test server answering
// its DNS lookups (every name resolves to 127.0.0.1), for tests of ten's
// HTTPS front (tlsfront and the system tests).
package pebbletest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"github.com/tenhq/ten/internal/tentest"
)

// CA is a running pebble.
type CA struct {
	// Dir is the ACME directory URL.
	Dir string
	// TLSRoot is the PEM file of the root pebble's own HTTPS uses (ten's
	// settings.tls.ca_root).
	TLSRoot string
	// Roots verifies the certificates pebble issues (fetched from its
	// management endpoint, as a client would be given them).
	Roots *x509.CertPool

	mu     sync.Mutex
	orders []string // names of every new order, in order
}

// Start runs pebble until the test ends; it validates HTTP-01 on httpPort
// and TLS-ALPN-01 on tlsPort of 127.0.0.1 and issues certificates valid
// for validity.
func Start(t testing.TB, httpPort, tlsPort int, validity time.Duration) *CA {
	t.Helper()
	// No random sleeps before validation, no deliberately bad nonces.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	logPath := filepath.Join(t.TempDir(), "pebble.log")
	logw, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logw.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("pebble log:\n%s", b)
		}
	})
	logger := log.New(logw, "pebble ", log.Lmicroseconds)

	dnsAddr := fmt.Sprintf("127.0.0.1:%d", tentest.FreePort(t))
	chall, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{dnsAddr}, Log: log.New(logw, "challtestsrv ", log.Lmicroseconds)})
	if err != nil {
		t.Fatal(err)
	}
	chall.SetDefaultDNSIPv4("127.0.0.1")
	chall.SetDefaultDNSIPv6("")
	go chall.Run()
	t.Cleanup(chall.Shutdown)

	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "short-lived for the test", ValidityPeriod: uint64(validity.Seconds())}}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	p := &CA{}
	certPEM, keyPEM := selfSigned(t)
	dir := t.TempDir()
	p.TLSRoot = filepath.Join(dir, "pebble-tls.pem")
	if err := os.WriteFile(p.TLSRoot, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(h http.Handler) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}}, ErrorLog: logger}
		go srv.ServeTLS(ln, "", "")
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	acme := front.Handler()
	addr := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.noteOrder(r)
		}
		acme.ServeHTTP(w, r)
	}))
	p.Dir = "https://" + addr + wfe.DirectoryPath
	mgmt := serve(front.ManagementHandler())

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + mgmt + wfe.RootCertPath + "0")
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.Roots = x509.NewCertPool()
	if !p.Roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble root is not PEM: %q", root)
	}
	return p
}

// noteOrder records the names of a new order from its JWS body (read
// and put back for pebble).
func (p *CA) noteOrder(r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	var jws struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(body, &jws) != nil {
		return
	}
	raw, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	if err != nil {
		return
	}
	var order struct {
		Identifiers []struct{ Value string } `json:"identifiers"`
	}
	if json.Unmarshal(raw, &order) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range order.Identifiers {
		p.orders = append(p.orders, id.Value)
	}
}

// Orders returns the names of every order so far.
func (p *CA) Orders() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.orders...)
}

// selfSigned makes the certificate of pebble's own HTTPS listener.
func selfSigned(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pebble test listener"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
