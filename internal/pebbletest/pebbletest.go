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
	"golang.org/x/crypto/ocsp"

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
	// ocspServed counts the OCSP responses served, by serial number.
	ocspServed map[string]int
}

// Options change how StartWith runs pebble.
type Options struct {
	// HTTPPort and TLSPort of 127.0.0.1 are where pebble validates HTTP-01
	// and TLS-ALPN-01.
	HTTPPort, TLSPort int
	// Validity of the certificates it issues (pebble's default when 0).
	Validity time.Duration
	// DNS is HOST:PORT of the DNS server pebble asks (for DNS-01 records
	// and addresses); "" starts pebble's challenge test server, which
	// resolves every name to 127.0.0.1.
	DNS string
	// OCSP runs an OCSP responder on loopback, named in every certificate
	// pebble issues, that answers "good" for them, signed by pebble's
	// intermediate (pebble itself serves no OCSP). Pebble's CA keys are
	// RSA then.
	OCSP bool
}

// Start runs pebble until the test ends; it validates HTTP-01 on httpPort
// and TLS-ALPN-01 on tlsPort of 127.0.0.1 and issues certificates valid
// for validity.
func Start(t testing.TB, httpPort, tlsPort int, validity time.Duration) *CA {
	t.Helper()
	return StartWith(t, Options{HTTPPort: httpPort, TLSPort: tlsPort, Validity: validity})
}

// StartWith runs pebble until the test ends, as o says.
func StartWith(t testing.TB, o Options) *CA {
	t.Helper()
	httpPort, tlsPort, validity := o.HTTPPort, o.TLSPort, o.Validity
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

	dnsAddr := o.DNS
	if dnsAddr == "" {
		dnsAddr = fmt.Sprintf("127.0.0.1:%d", tentest.FreePort(t))
		chall, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{dnsAddr}, Log: log.New(logw, "challtestsrv ", log.Lmicroseconds)})
		if err != nil {
			t.Fatal(err)
		}
		chall.SetDefaultDNSIPv4("127.0.0.1")
		chall.SetDefaultDNSIPv6("")
		go chall.Run()
		t.Cleanup(chall.Shutdown)
	}

	p := &CA{ocspServed: map[string]int{}}
	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "short-lived for the test", ValidityPeriod: uint64(validity.Seconds())}}
	ocspURL, keyAlg := "", "ecdsa"
	var authority *ca.CAImpl
	if o.OCSP {
		ocspURL, keyAlg = p.ocspResponder(t, store, func() *ca.CAImpl { return authority }), "rsa"
	}
	authority = ca.New(logger, store, ocspURL, keyAlg, 0, 1, profiles)
	validator := va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

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

// ocspResponder serves OCSP on loopback for the certificates in store:
// "good", signed by the CA's intermediate (an RSA key), valid until the
// certificate expires at the latest. It returns its URL.
func (p *CA) ocspResponder(t testing.TB, store *db.MemoryStore, authority func() *ca.CAImpl) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var der []byte
		switch r.Method {
		case http.MethodPost:
			der, _ = io.ReadAll(io.LimitReader(r.Body, 10<<10))
		case http.MethodGet:
			der, _ = base64.StdEncoding.DecodeString(strings.TrimPrefix(r.URL.Path, "/"))
		}
		req, err := ocsp.ParseRequest(der)
		if err != nil {
			http.Error(w, "bad OCSP request", http.StatusBadRequest)
			return
		}
		a := authority()
		issuer, key := a.GetIntermediateCert(0), a.GetIntermediateKey(0)
		leaf := store.GetCertificateBySerial(req.SerialNumber)
		if issuer == nil || key == nil || leaf == nil {
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write(ocsp.UnauthorizedErrorResponse)
			return
		}
		now := time.Now()
		next := now.Add(time.Hour)
		if leaf.Cert.NotAfter.Before(next) {
			next = leaf.Cert.NotAfter
		}
		resp, err := ocsp.CreateResponse(issuer.Cert, issuer.Cert, ocsp.Response{
			Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: now.Add(-time.Minute), NextUpdate: next,
		}, key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		p.mu.Lock()
		p.ocspServed[req.SerialNumber.String()]++
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(resp)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// OCSPServed returns how many OCSP responses the responder (Options.OCSP)
// served for the certificate with this serial number.
func (p *CA) OCSPServed(serial *big.Int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ocspServed[serial.String()]
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
