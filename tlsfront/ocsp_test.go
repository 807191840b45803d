package tlsfront

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/tenhq/ten/internal/pebbletest"
	"github.com/tenhq/ten/internal/tentest"
)

// OCSP stapling where the CA offers it: pebble names an OCSP responder in
// the certificates it issues (pebble serves none itself, so the test runs
// one on loopback that signs with pebble's intermediate), certmagic fetches
// the response from it, and the TLS handshake carries it: a "good"
// response for the served certificate, signed by its issuer.
func TestOCSPStapled(t *testing.T) {
	httpsPort, httpPort := tentest.FreePort(t), tentest.FreePort(t)
	ca := pebbletest.StartWith(t, pebbletest.Options{HTTPPort: httpPort, TLSPort: httpsPort, OCSP: true})
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
		Routes:             func(name string) bool { return name == "a.web.example.test" },
		NoTLSALPNChallenge: true,
		Log:                testLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	serveHTTPS(t, f, httpsPort, ca)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f.RedirectHandler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dial := func() tls.ConnectionState {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 60 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", httpsPort),
			&tls.Config{ServerName: "a.web.example.test", RootCAs: ca.Roots})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState()
	}
	st := dial()
	// The first handshake obtained the certificate; the staple may come
	// with it or, fetched in the background, with a later one.
	for deadline := time.Now().Add(30 * time.Second); len(st.OCSPResponse) == 0 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		st = dial()
	}
	if len(st.OCSPResponse) == 0 {
		t.Fatalf("no OCSP response stapled; status %+v", f.Status())
	}
	if len(st.PeerCertificates) < 2 {
		t.Fatalf("chain of %d certificates, want the leaf and its issuer", len(st.PeerCertificates))
	}
	leaf, issuer := st.PeerCertificates[0], st.PeerCertificates[1]
	resp, err := ocsp.ParseResponseForCert(st.OCSPResponse, leaf, issuer)
	if err != nil {
		t.Fatalf("stapled OCSP response: %v", err)
	}
	if resp.Status != ocsp.Good || resp.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("stapled OCSP response: status %d serial %s, want good for %s", resp.Status, resp.SerialNumber, leaf.SerialNumber)
	}
	if n := ca.OCSPServed(leaf.SerialNumber); n < 1 {
		t.Errorf("the responder served %d responses for the certificate", n)
	}
	stapled := false
	for _, c := range f.Status().Certificates {
		if len(c.Names) == 1 && c.Names[0] == "a.web.example.test" {
			stapled = c.OCSP
		}
	}
	if !stapled {
		t.Errorf("status does not say the staple is there: %+v", f.Status())
	}
}
