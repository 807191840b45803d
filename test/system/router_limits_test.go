package system

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// What the router answers and holds against a real ten serve: a declared
// service without instances is a 503 that says so; a GET that crashes the
// app on a kept-alive connection reaches it twice at most (sent once more
// on a new connection, as after a kill -9 of the app) and its client gets
// a 502, a POST that crashes it reaches it once; one client address cannot hold more than 512
// connections while another address is served.
func TestRouterTruthAndLimits(t *testing.T) {
	s := startTen(t, `max_restarts = 10

[service.lim]
command = "ECHO --mode activation"
activation = "socket"
isolation = "process"
start = "eager"

[service.empty]
command = "ECHO --mode activation"
activation = "socket"

[instances]
lim = ["a"]
`)
	code, body, err := s.get("empty.localhost", "/")
	if err != nil || code != 503 || !strings.Contains(body, "service empty has no instances") {
		t.Errorf("declared service without instances: %d %v %q, want 503", code, err, body)
	}
	if code, body, _ := s.get("nosuch.localhost", "/"); code != 404 || !strings.Contains(body, "no service nosuch") {
		t.Errorf("undeclared service: %d %q, want 404", code, body)
	}

	// One keep-alive client connection, so ten has a kept-alive connection
	// to the app when the crashing request comes (the case where a proxy
	// sends it again).
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	var sendRaw func(raw string) int
	send := func(path string) int {
		return sendRaw(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: a.lim.localhost\r\n\r\n", path))
	}
	sendRaw = func(raw string) int {
		io.WriteString(c, raw)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 3; i++ {
		if code := send("/"); code != 200 {
			t.Fatalf("warm-up: %d", code)
		}
	}
	if code := send("/crash"); code != 502 {
		t.Errorf("crashing GET: %d, want 502", code)
	}
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(journal(t, "tenement-lim@a.service"), "crashing on request"); n != 2 {
		t.Errorf("the crashing GET reached the app %d times, want twice (once more on a new connection)", n)
	}
	// The next request starts the app again (socket activation).
	if code := send("/"); code != 200 {
		t.Errorf("after the crash: %d", code)
	}
	if code := sendRaw("POST /crash HTTP/1.1\r\nHost: a.lim.localhost\r\nContent-Length: 2\r\n\r\nhi"); code != 502 {
		t.Errorf("crashing POST: %d, want 502", code)
	}
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(journal(t, "tenement-lim@a.service"), "crashing on request"); n != 3 {
		t.Errorf("the crashing POST reached the app %d times, want once", n-2)
	}
	if code := send("/"); code != 200 {
		t.Errorf("after the second crash: %d", code)
	}

	// Per-address cap.
	// From an address of its own: the harness's and this test's other
	// clients keep connections from 127.0.0.1 open.
	dialMany(t, s.addr, capClient, 512)
	wantOverCap(t, s.addr, capClient, 512)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	other, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(other, "GET / HTTP/1.1\r\nHost: a.lim.localhost\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(other), nil); err != nil || resp.StatusCode != 200 {
		t.Errorf("another address while one is at its cap: %v %v", resp, err)
	}
}

// settings.max_conns_per_address sets the per-address cap of a real ten
// serve: the connection past it gets 429 naming the setting's value, a
// closed connection gives its place back, and requests on the held
// connections are served. A service's max_inflight bounds its instance's
// requests in flight, upgraded connections included: past it 503 with
// Retry-After, and served again once one ends.
func TestMaxConnsPerAddressSetting(t *testing.T) {
	s := startTen(t, `max_conns_per_address = 4

[service.cap]
command = "ECHO --mode activation"
activation = "socket"
isolation = "process"
start = "eager"
max_inflight = 2

[instances]
cap = ["a"]
`)
	held := dialMany(t, s.addr, capClient, 4)
	wantOverCap(t, s.addr, capClient, 4)
	for i, c := range held[1:] {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a.cap.localhost\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection %d: %v %v, want 200", i+1, resp, err)
		}
		resp.Body.Close()
	}
	held[0].Close()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := dialFrom(s.addr, capClient)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a.cap.localhost\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			break
		}
		if resp.StatusCode != 429 || time.Now().After(end) {
			t.Fatalf("after closing a held connection: %d, want 200", resp.StatusCode)
		}
	}

	// max_inflight = 2: two upgraded connections hold both places.
	// From another address, so that the cap's connections above, closing
	// now, cannot get in the way.
	for _, c := range held {
		c.Close()
	}
	held = dialMany(t, s.addr, "127.0.0.4", 2)
	var upReaders []*bufio.Reader
	for _, c := range held {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "GET /upgrade HTTP/1.1\r\nHost: a.cap.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade %d: %v %v", len(upReaders)+1, resp, err)
		}
		upReaders = append(upReaders, br)
	}
	get := func() (*http.Response, string) {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a.cap.localhost\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get(); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "instance cap:a has 2 requests in flight, its max_inflight") {
		t.Errorf("with two upgrades open: %d %q (Retry-After %q), want 503 naming max_inflight", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	// The upgraded connections still work.
	fmt.Fprintf(held[0], "ping\n")
	if line, err := upReaders[0].ReadString('\n'); err != nil || line != "echo: ping\n" {
		t.Errorf("upgraded connection: %q %v", line, err)
	}
	held[0].Close()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, _ := get()
		if resp.StatusCode == 200 {
			break
		}
		if resp.StatusCode != 503 || time.Now().After(end) {
			t.Fatalf("after closing an upgrade: %d, want 200", resp.StatusCode)
		}
	}
}

// capClient is the loopback address the per-address cap tests connect
// from, which no other client of the test's ten uses.
const capClient = "127.0.0.3"

func dialFrom(addr, from string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return d.Dial("tcp", addr)
}

// dialMany opens n connections to addr from the address from, closed when
// the test ends.
func dialMany(t *testing.T, addr, from string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for len(conns) < n {
		c, err := dialFrom(addr, from)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

// wantOverCap checks that one more connection from the address from gets
// 429 naming it and the cap of limit connections.
func wantOverCap(t *testing.T, addr, from string, limit int) {
	t.Helper()
	over, err := dialFrom(addr, from)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatalf("connection %d: %v", limit+1, err)
	}
	b, _ := io.ReadAll(resp.Body)
	want := fmt.Sprintf("too many connections from %s (at most %d open at once)", from, limit)
	if resp.StatusCode != 429 || !strings.Contains(string(b), want) {
		t.Errorf("connection %d: %d %q, want 429 saying %q", limit+1, resp.StatusCode, b, want)
	}
}

// Behind a trusted proxy every client shares the proxy's address: one
// client there holding WebSockets up to max_conns_per_address must not shut
// out the others. ten does not count the proxy's connections; each request
// it carries (an upgrade while it is open, an h2c stream) counts, while it
// runs, against the client it names.
func TestTrustedProxyConnectionCap(t *testing.T) {
	const proxy = "127.0.0.5"
	s := startTen(t, `max_conns_per_address = 3
trusted_proxies = ["`+proxy+`"]

[service.tp]
command = "ECHO --mode activation"
activation = "socket"
isolation = "process"
start = "eager"

[instances]
tp = ["a"]
`)
	do := func(c net.Conn, br *bufio.Reader, req string) (*http.Response, string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		if resp.StatusCode == 101 {
			return resp, ""
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	upgrade := func(client string) string {
		return "GET /upgrade HTTP/1.1\r\nHost: a.tp.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Forwarded-For: " + client + "\r\n\r\n"
	}
	// The hostile client behind the proxy holds three upgraded
	// connections, each over a proxy connection of its own.
	var ups []net.Conn
	var upReaders []*bufio.Reader
	for _, c := range dialMany(t, s.addr, proxy, 3) {
		br := bufio.NewReader(c)
		if resp, body := do(c, br, upgrade("192.0.2.66")); resp.StatusCode != 101 {
			t.Fatalf("upgrade %d of the client behind the proxy: %d %q", len(ups)+1, resp.StatusCode, body)
		}
		ups, upReaders = append(ups, c), append(upReaders, br)
	}
	// Its fourth gets 429 naming it, with Retry-After.
	c := dialMany(t, s.addr, proxy, 1)[0]
	br := bufio.NewReader(c)
	resp, body := do(c, br, upgrade("192.0.2.66"))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "192.0.2.66") {
		t.Fatalf("4th upgrade of the client behind the proxy: %d %q (Retry-After %q), want 429 naming 192.0.2.66", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	// Every other client behind the proxy is served, over more proxy
	// connections than the cap, and on the one that carried the 429.
	if resp, body := do(c, br, "GET / HTTP/1.1\r\nHost: a.tp.localhost\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("another client on the connection of the 429: %d %q", resp.StatusCode, body)
	}
	for i, c := range dialMany(t, s.addr, proxy, 5) {
		resp, body := do(c, bufio.NewReader(c), fmt.Sprintf("GET / HTTP/1.1\r\nHost: a.tp.localhost\r\nX-Forwarded-For: 198.51.100.%d\r\n\r\n", i+1))
		if resp.StatusCode != 200 {
			t.Fatalf("client %d behind the proxy: %d %q", i+1, resp.StatusCode, body)
		}
	}
	// Over h2c (Caddy's `versions h2c`), one connection carries every
	// client: each stream counts against the client it names.
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p, MaxConnsPerHost: 1, DialContext: func(context.Context, string, string) (net.Conn, error) {
		return dialFrom(s.addr, proxy)
	}}
	defer tr.CloseIdleConnections()
	h2 := func(client string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
		req.Host = "a.tp.localhost"
		req.Header.Set("X-Forwarded-For", client)
		resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("h2c request for %s: %v", client, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 {
			t.Errorf("answered over HTTP/%d, want h2c", resp.ProtoMajor)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := h2("192.0.2.66"); code != 429 || !strings.Contains(body, "192.0.2.66") {
		t.Errorf("h2c stream of the client holding its cap: %d %q, want 429", code, body)
	}
	if code, body := h2("192.0.2.8"); code != 200 {
		t.Errorf("h2c stream of another client: %d %q, want 200", code, body)
	}

	// The upgraded connections still work; closing one gives its place
	// back to its client.
	fmt.Fprintf(ups[1], "ping\n")
	if line, err := upReaders[1].ReadString('\n'); err != nil || line != "echo: ping\n" {
		t.Errorf("upgraded connection: %q %v", line, err)
	}
	ups[0].Close()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c := dialMany(t, s.addr, proxy, 1)[0]
		resp, body := do(c, bufio.NewReader(c), upgrade("192.0.2.66"))
		c.Close()
		if resp.StatusCode == 101 {
			break
		}
		if resp.StatusCode != 429 || time.Now().After(end) {
			t.Fatalf("after closing an upgrade: %d %q, want 101", resp.StatusCode, body)
		}
	}
}
