package fastpath

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/router/addrcap"
	"github.com/tenhq/ten/router/fleet"
	"github.com/tenhq/ten/units"
)

// Behind a trusted proxy (Caddy on the same machine), every client comes
// from the proxy's address. One hostile client there holding the cap's
// worth of slow requests must not shut out the others: the proxy's
// connections are not counted, its requests count against the client it
// names in X-Forwarded-For. The hostile client's next request gets 429
// with Retry-After, on a connection that then still serves another
// client; an untrusted peer's X-Forwarded-For is not believed.
//
// Another node's router in a fleet carries its clients' requests the same
// way (it forwards those for instances this node runs): it is counted
// like a trusted proxy, so that one client of another node cannot shut
// out every client that node forwards.
func TestTrustedProxyCountsItsClients(t *testing.T) {
	local := func(ip string) bool { return ip == "127.0.0.1" }
	t.Run("trusted proxy", func(t *testing.T) {
		proxyCountsItsClients(t, router.Options{TrustedProxy: local}, "")
	})
	t.Run("fleet peer", func(t *testing.T) {
		auth := fleet.NewPeerAuth([]byte("k"))
		proxyCountsItsClients(t, router.Options{FleetPeer: local, FleetAuth: auth}, router.HopHeader+": n2\r\n"+fleet.AuthHeader+": "+auth.Token()+"\r\n")
	})
}

// proxyCountsItsClients is TestTrustedProxyCountsItsClients for a router
// built with o that trusts 127.0.0.1; the proxy's requests carry the
// header lines hop.
func proxyCountsItsClients(t *testing.T, o router.Options, hop string) {
	r := router.New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), o)
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	held := make(chan struct{}, 16)
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/hold" {
			held <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok "+req.Header.Get("X-Forwarded-For"))
	})
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: 30 * time.Second}, true)
	lim := testLimits
	lim.MaxConnsPerAddr = 3
	addr := serveFast(t, r, lim)

	dial := func(local string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	req := func(path, xff string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: a.api.example.test\r\n" + hop + "X-Forwarded-For: " + xff + "\r\n\r\n"
	}
	// The hostile client behind the proxy fills its cap with requests
	// that do not end, each on its own proxy connection.
	hostile := make(chan *http.Response, 3)
	for range 3 {
		c := dial("127.0.0.1")
		io.WriteString(c, req("/hold", "192.0.2.66"))
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Errorf("held request: %v", err)
				resp = &http.Response{}
			}
			hostile <- resp
		}()
		<-held
	}
	// Its fourth gets 429, naming it, on a proxy connection that goes on
	// serving another client.
	c := dial("127.0.0.1")
	br := bufio.NewReader(c)
	resp, body := roundTrip(t, c, br, req("/", "192.0.2.66"))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "192.0.2.66") {
		t.Fatalf("the hostile client's 4th request: %d %q (Retry-After %q), want 429 naming 192.0.2.66", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if resp, body := roundTrip(t, c, br, req("/", "192.0.2.7")); resp.StatusCode != 200 || body != "ok 192.0.2.7, 127.0.0.1" {
		t.Fatalf("another client on the same proxy connection: %d %q", resp.StatusCode, body)
	}
	// Other clients behind the proxy, on new proxy connections (more than
	// the cap of them), are served.
	for i := range 5 {
		c := dial("127.0.0.1")
		if resp, body := roundTrip(t, c, bufio.NewReader(c), req("/", "198.51.100.1")); resp.StatusCode != 200 {
			t.Fatalf("client behind the proxy, proxy connection %d: %d %q", i+1, resp.StatusCode, body)
		}
	}
	// An untrusted peer naming someone else counts as itself: its 4th
	// connection is refused at once.
	for range 3 {
		dial("127.0.0.2")
	}
	u := dial("127.0.0.2")
	if resp, err := http.ReadResponse(bufio.NewReader(u), nil); err != nil || resp.StatusCode != 429 {
		t.Fatalf("untrusted peer's 4th connection: %v %v, want 429", resp, err)
	}
	close(release)
	for range 3 {
		if resp := <-hostile; resp.StatusCode != 200 {
			t.Errorf("held request after release: %d", resp.StatusCode)
		}
	}
	// The places are given back (each just after its answer is written):
	// the client is served again.
	c = dial("127.0.0.1")
	br = bufio.NewReader(c)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, body := roundTrip(t, c, br, req("/", "192.0.2.66"))
		if resp.StatusCode == 200 {
			break
		}
		if resp.StatusCode != 429 || time.Now().After(deadline) {
			t.Fatalf("the client after its requests ended: %d %q", resp.StatusCode, body)
		}
	}
}

// A trusted proxy's own connections are not counted against its clients,
// but they are bounded too, at addrcap.ProxyFactor times the cap: anything
// else on the proxy's host shares its address, and must not be able to
// hold every descriptor ten has.
func TestTrustedProxyConnectionsBounded(t *testing.T) {
	r := router.New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), router.Options{
		TrustedProxy: func(ip string) bool { return ip == "127.0.0.1" },
	})
	sock := app(t, func(w http.ResponseWriter, req *http.Request) { io.WriteString(w, "ok") })
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: 30 * time.Second}, true)
	lim := testLimits
	lim.MaxConnsPerAddr = 1
	addr := serveFast(t, r, lim)
	// Each connection for a client of its own: a client's one place (the
	// cap is 1) is given back just after its answer is written.
	req := func(i int) string {
		return fmt.Sprintf("GET / HTTP/1.1\r\nHost: a.api.example.test\r\nX-Forwarded-For: 198.51.100.%d\r\n\r\n", i+1)
	}
	dial := func() net.Conn { return dialServer(t, addr) }
	var open []net.Conn
	for i := range addrcap.ProxyFactor {
		c := dial()
		if resp, body := roundTrip(t, c, bufio.NewReader(c), req(i)); resp.StatusCode != 200 {
			t.Fatalf("the proxy's connection %d: %d %q", i+1, resp.StatusCode, body)
		}
		open = append(open, c)
	}
	over := dial()
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatalf("the proxy's connection %d: %v, want 429", addrcap.ProxyFactor+1, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("at most %d open at once", addrcap.ProxyFactor); resp.StatusCode != 429 || !strings.Contains(string(body), want) {
		t.Fatalf("the proxy's connection %d: %d %q, want 429 saying %q", addrcap.ProxyFactor+1, resp.StatusCode, body, want)
	}
	// One closed makes room for one more.
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial()
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			break // nothing said: admitted, waiting for a request
		}
		if err == nil && resp.StatusCode != 429 || time.Now().After(deadline) {
			t.Fatalf("a new proxy connection after one closed: %v %v", resp, err)
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// An app on another node of the fleet connects from that node's address,
// as the node's router does, and can copy the hop header; without the
// fleet's token its requests count against that address, whatever client
// they name: naming a new client each time does not get it past the cap.
func TestFleetPeerAddressWithoutTokenCountsAsItself(t *testing.T) {
	auth := fleet.NewPeerAuth([]byte("k"))
	r := router.New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)),
		router.Options{FleetPeer: func(ip string) bool { return ip == "127.0.0.1" }, FleetAuth: auth})
	release := make(chan struct{})
	defer close(release)
	held := make(chan struct{}, 16)
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/hold" {
			held <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	})
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: 30 * time.Second}, true)
	lim := testLimits
	lim.MaxConnsPerAddr = 3
	addr := serveFast(t, r, lim)
	dial := func() net.Conn { return dialServer(t, addr) }
	req := func(path string, n int) string {
		return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: a.api.example.test\r\n%s: n2\r\n%s: %s\r\nX-Forwarded-For: 192.0.2.%d\r\n\r\n", path, router.HopHeader, fleet.AuthHeader, strings.Repeat("f", len(auth.Token())), n)
	}
	for i := range 3 {
		c := dial()
		io.WriteString(c, req("/hold", i+1))
		go http.ReadResponse(bufio.NewReader(c), nil)
		<-held
	}
	c := dial()
	resp, body := roundTrip(t, c, bufio.NewReader(c), req("/", 4))
	if resp.StatusCode != 429 || !strings.Contains(body, "from 127.0.0.1") {
		t.Fatalf("4th request from the peer's address without the token, naming a 4th client: %d %q, want 429 naming 127.0.0.1", resp.StatusCode, body)
	}
}

// dialServer connects to the server at addr for one test: closed when it
// ends, and bounded at 10 s of reads and writes.
func dialServer(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}
