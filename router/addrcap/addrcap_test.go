package addrcap

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

type fakeConn struct {
	net.Conn
	remote net.Addr
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) Close() error         { return nil }

func from(ip string) *fakeConn {
	return &fakeConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1234}}
}

// Each address has its own count; a mapped IPv4 address counts as the
// IPv4 one; Close gives the place back once, however often it is called.
func TestAdmit(t *testing.T) {
	c := New(2)
	a1, ok1 := c.Admit(from("10.0.0.1"))
	_, ok2 := c.Admit(from("::ffff:10.0.0.1"))
	_, ok3 := c.Admit(from("10.0.0.1"))
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("admits %v %v %v, want true true false", ok1, ok2, ok3)
	}
	if _, ok := c.Admit(from("10.0.0.2")); !ok {
		t.Error("another address refused")
	}
	a1.Close()
	a1.Close()
	if n := c.Open(netip.MustParseAddr("10.0.0.1")); n != 1 {
		t.Errorf("open after two closes of one connection: %d, want 1", n)
	}
	if _, ok := c.Admit(from("10.0.0.1")); !ok {
		t.Error("a place given back was not reused")
	}
	if _, ok := c.Admit(from("10.0.0.1")); ok {
		t.Error("admitted past the cap after a reuse")
	}
	raw := from("10.0.0.3")
	if got, ok := New(0).Admit(raw); !ok || got != net.Conn(raw) {
		t.Error("a cap of 0 must admit the connection as it is")
	}
	var nilCap *Cap
	if _, ok := nilCap.Admit(raw); !ok {
		t.Error("a nil Cap must admit")
	}
}

// An IPv6 client counts by its /64: another address in the same /64 shares
// the count, another /64 does not; the names in messages say which.
func TestIPv6CountsByNetwork(t *testing.T) {
	c := New(2)
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff::7"} {
		if _, ok := c.Admit(from(ip)); !ok {
			t.Fatalf("%s refused under the cap", ip)
		}
	}
	if _, ok := c.Admit(from("2001:db8:1:2:abcd::1")); ok {
		t.Error("a third address of the same /64 was admitted past the cap")
	}
	if _, ok := c.Admit(from("2001:db8:1:3::1")); !ok {
		t.Error("another /64 was refused")
	}
	if n := c.Open(netip.MustParseAddr("2001:db8:1:2::99")); n != 2 {
		t.Errorf("open in 2001:db8:1:2::/64: %d, want 2", n)
	}
	for in, want := range map[string]string{
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"192.0.2.7":            "192.0.2.7",
		"::1":                  "::/64",
	} {
		if got := Name(Key(from(in).RemoteAddr())); got != want {
			t.Errorf("Name(Key(%s)) = %q, want %q", in, got, want)
		}
	}
	if got := Name(Key(&net.UnixAddr{Name: "@x", Net: "unix"})); got != "a local peer" {
		t.Errorf("unix peer: %q", got)
	}
}

// An HTTP/2 stream in flight counts against its address like a connection:
// one h2c connection carried 250 requests at once (Go's default stream
// bound), so one address could hold 250 times its cap of instance
// connections, past ten's descriptor limit.
func TestStreams(t *testing.T) {
	c := New(3)
	held, _ := c.Admit(from("10.0.0.1")) // the HTTP/2 connection itself
	block := make(chan struct{})
	entered := make(chan struct{}, 10)
	h := c.Streams(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-block
	}))
	serve := func(proto int, addr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "http://a.api.example/", nil)
		r.ProtoMajor, r.RemoteAddr = proto, addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	done := make(chan int, 2)
	for range 2 {
		go func() { done <- serve(2, "10.0.0.1:5000").Code }()
		<-entered
	}
	if w := serve(2, "10.0.0.1:5000"); w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "10.0.0.1") {
		t.Errorf("a stream past the cap: %d %q, want 429", w.Code, w.Body.String())
	}
	go func() { serve(1, "10.0.0.1:5001"); done <- 0 }() // HTTP/1: its connection counted already
	<-entered
	go func() { serve(2, "10.0.0.2:5000"); done <- 0 }() // another address
	<-entered
	close(block)
	for range 4 {
		<-done
	}
	if n := c.Open(netip.MustParseAddr("10.0.0.1")); n != 1 {
		t.Errorf("%d places held after the streams ended, want 1 (the connection)", n)
	}
	held.Close()
}

// A trusted proxy's connections are not counted against its address: one
// client behind it holding the cap must not shut out the others. Its
// requests, HTTP/1 and HTTP/2, count against the client it names instead,
// while they run; a client it does not name (no X-Forwarded-For) is the
// proxy. An untrusted peer's X-Forwarded-For is not believed.
func TestTrustedProxy(t *testing.T) {
	c := New(2)
	c.Trust(func(ip string) bool { return ip == "10.0.0.9" })
	// The proxy's own connections do not take its clients' places; they
	// are bounded apart, at ProxyFactor times the cap, so that whatever
	// shares the proxy's address cannot hold every descriptor.
	var held []net.Conn
	for i := range 2 * ProxyFactor {
		ac, ok := c.Admit(from("10.0.0.9"))
		if !ok {
			t.Fatalf("trusted proxy's connection %d refused", i+1)
		}
		held = append(held, ac)
	}
	if n := c.Open(netip.MustParseAddr("10.0.0.9")); n != 0 {
		t.Fatalf("trusted proxy holds %d places of its clients, want 0", n)
	}
	if _, ok := c.Admit(from("10.0.0.9")); ok {
		t.Fatalf("trusted proxy's connection %d admitted, want the bound of %d", 2*ProxyFactor+1, 2*ProxyFactor)
	}
	if got := c.LimitOf(from("10.0.0.9").RemoteAddr()); got != 2*ProxyFactor {
		t.Errorf("LimitOf(trusted proxy) = %d, want %d", got, 2*ProxyFactor)
	}
	if got := c.LimitOf(from("10.0.0.1").RemoteAddr()); got != 2 {
		t.Errorf("LimitOf(a client) = %d, want 2", got)
	}
	held[0].Close()
	if _, ok := c.Admit(from("10.0.0.9")); !ok {
		t.Fatal("trusted proxy's connection refused after one of its connections closed")
	}
	block := make(chan struct{})
	entered := make(chan struct{}, 10)
	h := c.Streams(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-block
	}))
	serve := func(proto int, addr, xff string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "http://a.api.example/", nil)
		r.ProtoMajor, r.RemoteAddr = proto, addr
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	done := make(chan int, 10)
	// The hostile client behind the proxy takes its two places (HTTP/1
	// and HTTP/2 alike) ...
	for _, proto := range []int{1, 2} {
		go func() { done <- serve(proto, "10.0.0.9:4000", "192.0.2.66").Code }()
		<-entered
	}
	w := serve(1, "10.0.0.9:4001", "203.0.113.5, 192.0.2.66")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "192.0.2.66") {
		t.Errorf("a third request of the client behind the proxy: %d %q, want 429 naming 192.0.2.66", w.Code, w.Body.String())
	}
	// ... and every other client behind the proxy still gets through.
	for _, xff := range []string{"192.0.2.7", "192.0.2.8", ""} {
		go func() { done <- serve(1, "10.0.0.9:4002", xff).Code }()
		<-entered
	}
	// An untrusted peer claiming to forward for someone else counts as
	// itself.
	go func() { done <- serve(2, "10.0.0.1:5000", "192.0.2.77").Code }()
	<-entered
	if n := c.Open(netip.MustParseAddr("10.0.0.1")); n != 1 {
		t.Errorf("untrusted peer with X-Forwarded-For: %d places of its own, want 1", n)
	}
	if n := c.Open(netip.MustParseAddr("192.0.2.77")); n != 0 {
		t.Errorf("the client an untrusted peer named holds %d places, want 0", n)
	}
	if n := c.Open(netip.MustParseAddr("10.0.0.9")); n != 1 {
		t.Errorf("the proxy itself (a request naming no client) holds %d places, want 1", n)
	}
	close(block)
	for range 6 {
		<-done
	}
	for _, ip := range []string{"192.0.2.66", "192.0.2.7", "10.0.0.9", "10.0.0.1"} {
		if n := c.Open(netip.MustParseAddr(ip)); n != 0 {
			t.Errorf("%s holds %d places after its requests ended, want 0", ip, n)
		}
	}
}
