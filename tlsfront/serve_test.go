package tlsfront

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// serveLimited serves h on a loopback listener the way Serve does one of
// its listeners, with lim; it returns the address.
func serveLimited(t *testing.T, f *Front, h http.Handler, tc *tls.Config, lim ConnLimits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, sln := f.server(ln, h, tc, lim)
	go srv.Serve(sln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stillOpen reports whether the server has left c open: a read that times
// out (nothing sent, nothing closed) rather than EOF or a reset.
func stillOpen(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	c.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// The redirect listener (plain HTTP) keeps the plain listener's bounds:
// connections per address (429 past it, a place given back on close), the
// idle keep-alive timeout and the head size.
func TestRedirectListenerLimits(t *testing.T) {
	f := newTestFront(t, 443)
	addr := serveLimited(t, f, f.RedirectHandler(), nil, ConnLimits{
		IdleTimeout: 500 * time.Millisecond, HeaderTimeout: 5 * time.Second, MaxHeaderBytes: 4 << 10, MaxConnsPerAddr: 3,
	})
	held := []net.Conn{dial(t, addr), dial(t, addr), dial(t, addr)}
	over := dial(t, addr)
	over.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatalf("4th connection: %v, want a 429", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || !strings.Contains(string(b), "too many connections from 127.0.0.1 (at most 3 open at once)") {
		t.Errorf("4th connection: %d %q, want 429 naming the address and the cap", resp.StatusCode, b)
	}
	for i, c := range held {
		if !stillOpen(c) {
			t.Errorf("held connection %d was closed by the refusal of another", i)
		}
	}

	// A closed connection gives its place back.
	held[0].Close()
	var c net.Conn
	var br *bufio.Reader
	for end := time.Now().Add(10 * time.Second); ; {
		c = dial(t, addr)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: prod.api.example.com\r\n\r\n")
		br = bufio.NewReader(c)
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 429 || time.Now().After(end) {
			break
		}
		c.Close() // the server has not seen the close yet
		time.Sleep(20 * time.Millisecond)
	}
	if resp.StatusCode != 308 {
		t.Fatalf("after a close: %d, want the redirect", resp.StatusCode)
	}

	// An idle keep-alive connection is closed after IdleTimeout.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("idle keep-alive connection: %v, want it closed by the server", err)
	}

	// A head over MaxHeaderBytes gets 431.
	held[1].Close()
	time.Sleep(100 * time.Millisecond)
	big := dial(t, addr)
	big.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(big, "GET / HTTP/1.1\r\nHost: prod.api.example.com\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 16<<10))
	if resp, err := http.ReadResponse(bufio.NewReader(big), nil); err != nil || resp.StatusCode != 431 {
		t.Errorf("16 KiB header: %v %v, want 431", resp, err)
	}
}

// The HTTPS listener caps connections per address before the handshake: a
// connection over the cap is closed without a byte, the held ones still
// complete their handshakes, and another address is not affected.
func TestHTTPSListenerCap(t *testing.T) {
	f := newTestFront(t, 443)
	tc := &tls.Config{Certificates: []tls.Certificate{selfSigned(t, "prod.api.example.com")}}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	addr := serveLimited(t, f, ok, tc, ConnLimits{IdleTimeout: time.Minute, HeaderTimeout: 30 * time.Second, MaxHeaderBytes: 4 << 10, MaxConnsPerAddr: 2})
	held := []net.Conn{dial(t, addr), dial(t, addr)}
	over := dial(t, addr)
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := over.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("3rd connection: read %d, %v; want it closed at once", n, err)
	}
	// Another address (127.0.0.2 is loopback too) is served.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	if c, err := d.Dial("tcp", addr); err != nil {
		t.Fatal(err)
	} else {
		defer c.Close()
		if !stillOpen(c) {
			t.Error("another address was refused while one was at its cap")
		}
	}
	for i, c := range held {
		tlc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "prod.api.example.com"})
		tlc.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(tlc, "GET / HTTP/1.1\r\nHost: prod.api.example.com\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(tlc), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("held connection %d: %v %v, want 200 over TLS", i, resp, err)
		}
	}
}

func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
