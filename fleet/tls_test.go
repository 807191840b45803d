package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tenhq/ten/config"
)

// pki is a CA made for one test, with a server and a client certificate.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

// writePEM writes one PEM block to dir/name and returns the path.
func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newPKI makes a CA and, signed by it, a server certificate for 127.0.0.1
// and a client certificate, as PEM files in a test directory.
func newPKI(t *testing.T, name string) pki {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: ips,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, cn+".pem", "CERTIFICATE", der), writePEM(t, dir, cn+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := pki{ca: writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf(2, "server", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCert, p.clientKey = leaf(3, "client", x509.ExtKeyUsageClientAuth, nil)
	return p
}

// startEtcdTLS runs etcd serving clients over TLS only, asking them for a
// certificate signed by p's CA, and returns its https:// client URL.
func startEtcdTLS(t *testing.T, p pki) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("TEN_REQUIRE_SYSTEM") == "1" {
			t.Fatal("etcd not found (install etcd-server); TEN_REQUIRE_SYSTEM=1")
		}
		t.Skip("etcd not found (install etcd-server)")
	}
	for attempt := 0; attempt < 5; attempt++ {
		client, peer := freePort(t), freePort(t)
		cu, pu := "https://"+client, "http://"+peer
		cmd := exec.Command(bin, "--name", "t", "--data-dir", t.TempDir(),
			"--listen-client-urls", cu, "--advertise-client-urls", cu,
			"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu, "--initial-cluster", "t="+pu,
			"--cert-file", p.serverCert, "--key-file", p.serverKey, "--trusted-ca-file", p.ca, "--client-cert-auth",
			"--log-level", "error", "--logger", "zap")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() { _ = cmd.Process.Kill(); <-exited }
		cli, err := Connect(config.Fleet{EtcdEndpoints: []string{cu}, CA: p.ca, Cert: p.clientCert, Key: p.clientKey})
		if err != nil {
			stop()
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			select {
			case <-exited:
				deadline = time.Time{} // port taken: try others
				continue
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := cli.Get(ctx, "ready")
			cancel()
			if err == nil {
				cli.Close()
				t.Cleanup(stop)
				return cu
			}
			time.Sleep(50 * time.Millisecond)
		}
		cli.Close()
		stop()
	}
	t.Fatal("etcd with TLS did not start")
	return ""
}

// A node configured with ca, cert and key joins a fleet whose etcd speaks
// TLS only and asks for client certificates; without a client
// certificate, with another CA, or over plain http it gets nothing.
func TestTLSToEtcd(t *testing.T) {
	p := newPKI(t, "fleet")
	url := startEtcdTLS(t, p)
	ctx := testCtx(t)
	cfg, err := config.Parse("n1.toml", []byte(fmt.Sprintf(`
[service.api]
command = "./api"
[fleet]
etcd_endpoints = [%q]
node = "n1"
lease_ttl = 2
fence_margin = 1
ca = %q
cert = %q
key = %q
`, url, p.ca, p.clientCert, p.clientKey)))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Connect(cfg.Fleet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s, err := Start(ctx, cli, cfg, nil, nil)
	if err != nil {
		t.Fatalf("join over TLS: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(ctx) })
	nodes, err := Nodes(ctx, cli)
	if err != nil || len(nodes) != 1 || nodes[0].Node != "n1" {
		t.Fatalf("nodes over TLS: %+v %v", nodes, err)
	}

	other := newPKI(t, "other")
	for _, c := range []struct {
		why string
		f   config.Fleet
	}{
		{"no client certificate", config.Fleet{EtcdEndpoints: []string{url}, CA: p.ca}},
		{"a client certificate of another CA", config.Fleet{EtcdEndpoints: []string{url}, CA: p.ca, Cert: other.clientCert, Key: other.clientKey}},
		{"a server the CA did not sign", config.Fleet{EtcdEndpoints: []string{url}, CA: other.ca, Cert: p.clientCert, Key: p.clientKey}},
		{"plain http to the TLS port", config.Fleet{EtcdEndpoints: []string{"http://" + url[len("https://"):]}}},
	} {
		bad, err := Connect(c.f)
		if err != nil {
			t.Fatalf("%s: connect: %v", c.why, err)
		}
		gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		r, err := bad.Get(gctx, NodeKey("n1"))
		cancel()
		bad.Close()
		if err == nil {
			t.Fatalf("%s: read etcd: %+v, want an error", c.why, r.Kvs)
		}
		t.Logf("%s: %v", c.why, err)
	}
}
