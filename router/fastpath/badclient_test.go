package fastpath

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// otherTenant checks that a well-behaved client from another address gets
// its answer promptly while a bad client does its worst.
func otherTenant(t *testing.T, addr string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("other tenant: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	start := time.Now()
	resp, body := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: b.api.example.test\r\n\r\n")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "b ") {
		t.Fatalf("other tenant: %d %q", resp.StatusCode, body)
	}
	t.Logf("other tenant answered in %s", time.Since(start))
}

// A client that trickles its head (slowloris) gets 408 and is closed after
// the header timeout; others are served meanwhile.
func TestSlowlorisGets408(t *testing.T) {
	r, _ := newTestRouter(t)
	twoInstances(t, r)
	lim := testLimits
	lim.HeaderTimeout = 300 * time.Millisecond
	addr := serveFast(t, r, lim)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	go func() {
		for _, p := range []string{"GET / HT", "TP/1.1\r\n", "Host: a.api", ".example.test\r\n", "X-A: 1\r\n", "X-B: 2\r\n"} {
			if _, err := io.WriteString(c, p); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	otherTenant(t, addr)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 408 || !resp.Close {
		t.Fatalf("slowloris: %d close=%v, want 408 and close", resp.StatusCode, resp.Close)
	}
	io.Copy(io.Discard, resp.Body)
	// Closed: an orderly close, or a reset where the rest of the trickled
	// head arrived after ten stopped reading (unread data at close).
	if _, err := br.ReadByte(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection not closed after 408: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("408 after %s, header timeout 300ms", d)
	}
}

// A head over MaxHeaderBytes gets 431 without being read to its end.
func TestHugeHeadersGet431(t *testing.T) {
	r, _ := newTestRouter(t)
	twoInstances(t, r)
	addr := serveFast(t, r, testLimits)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n")
		for i := 0; i < 1000; i++ {
			if _, err := io.WriteString(c, "X-Filler: "+strings.Repeat("x", 100)+"\r\n"); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 431 {
		t.Fatalf("huge head: %d, want 431", resp.StatusCode)
	}
	otherTenant(t, addr)
}

// A client that never reads a large response holds nothing beyond the
// write timeout: its connection is closed, the request no longer counts as
// in flight (which would keep the instance awake for ever), and the
// connection to the instance is dropped.
func TestNeverReadingClientReleased(t *testing.T) {
	r, _ := newTestRouter(t)
	big := strings.Repeat("x", 64<<20)
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "b ok")
	})
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(router.Backend{Instance: inst, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "b"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	lim := testLimits
	lim.WriteTimeout = 300 * time.Millisecond
	addr := serveFast(t, r, lim)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
	deadline := time.Now().Add(5 * time.Second)
	for seen := false; ; {
		st, _ := r.Stat(inst)
		if st.Inflight > 0 {
			seen = true
		} else if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("request in flight %v (seen %v) 5s after it was sent; write timeout 300ms", st.Inflight, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
	otherTenant(t, addr)
	// The connection is closed: reading drains what was sent, then ends.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if (err != nil && !errors.Is(err, syscall.ECONNRESET)) || n >= int64(len(big)) {
		t.Fatalf("read %d bytes, %v; want the connection closed (or reset) before the whole body", n, err)
	}
}

// Idle keep-alive connections are closed after the idle timeout.
func TestIdleConnectionsClosed(t *testing.T) {
	r, _ := newTestRouter(t)
	twoInstances(t, r)
	lim := testLimits
	lim.IdleTimeout = 300 * time.Millisecond
	addr := serveFast(t, r, lim)
	var conns []net.Conn
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if resp, _ := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("conn %d: %d", i, resp.StatusCode)
		}
		conns = append(conns, c)
	}
	otherTenant(t, addr)
	start := time.Now()
	for i, c := range conns {
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("idle conn %d: %v, want EOF", i, err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("idle connections closed after %s (idle timeout 300ms)", d)
	}
}

// One address cannot hold more than MaxConnsPerAddr connections; another
// address is served all the same.
func TestConnectionsPerAddressCapped(t *testing.T) {
	r, _ := newTestRouter(t)
	twoInstances(t, r)
	lim := testLimits
	lim.MaxConnsPerAddr = 5
	addr := serveFast(t, r, lim)
	var conns []net.Conn
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || !strings.Contains(string(body), "too many connections from 127.0.0.1") {
		t.Fatalf("6th connection: %d %q, want 429", resp.StatusCode, body)
	}
	otherTenant(t, addr)
	// Closing one makes room again.
	conns[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, _ := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
		c.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after closing a connection: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Drain and CloseIdle (ten stopping) close idle connections, counted
// against their address's cap, and later answers close theirs.
func TestDrainClosesConnections(t *testing.T) {
	r, _ := newTestRouter(t)
	twoInstances(t, r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lim := testLimits
	lim.MaxConnsPerAddr = 10
	cs := &ConnServer{Router: r, Limits: lim}
	go cs.Serve(ln)
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	br := bufio.NewReader(busy)
	if resp, _ := roundTrip(t, busy, br, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("before drain: %d close=%v", resp.StatusCode, resp.Close)
	}
	for cs.Active() != 2 {
		time.Sleep(time.Millisecond)
	}
	cs.Drain()
	if resp, _ := roundTrip(t, busy, br, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n"); resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("draining: %d close=%v, want Connection: close", resp.StatusCode, resp.Close)
	}
	done := make(chan struct{})
	go func() { cs.CloseIdle(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("CloseIdle did not return")
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection after CloseIdle: %v, want EOF", err)
	}
	for end := time.Now().Add(5 * time.Second); cs.Active() > 0; {
		if time.Now().After(end) {
			t.Fatalf("%d connections still served after drain", cs.Active())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An instance has at most MaxInflight requests in flight: a flood of slow
// requests to it gets 503 with Retry-After past the bound, at once, while
// another instance is served; once the slow ones end it is served again.
func TestMaxInflightPerInstance(t *testing.T) {
	r, rec := newTestRouter(t)
	release := make(chan struct{})
	var entered sync.WaitGroup
	slow := app(t, func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/slow" {
			entered.Done()
			<-release
		}
		io.WriteString(w, "a done")
	})
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: slow, Weight: 100,
		StartupTimeout: 5 * time.Second, RequestTimeout: 30 * time.Second, MaxInflight: 3}, true)
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "b"}, Socket: app(t, func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, "b ok")
	}), Weight: 100, StartupTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second, MaxInflight: 3}, true)
	addr := serveFast(t, r, testLimits)

	var held []net.Conn
	var readers []*bufio.Reader
	entered.Add(3)
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
		held, readers = append(held, c), append(readers, bufio.NewReader(c))
	}
	entered.Wait()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, body := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "instance api:a has 3 requests in flight, its max_inflight") {
		t.Fatalf("4th request in flight: %d %q (Retry-After %q), want 503 naming max_inflight", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	otherTenant(t, addr)
	close(release)
	for i, c := range held {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(readers[i], nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("slow request %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}
	// The count went down: the same connection is served again.
	if resp, body := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n"); resp.StatusCode != 200 || body != "a done" {
		t.Fatalf("after the slow requests ended: %d %q", resp.StatusCode, body)
	}
	rec.mu.Lock()
	n503 := rec.requests[503]
	rec.mu.Unlock()
	if n503 != 1 {
		t.Errorf("503s observed in the request metrics: %d, want 1", n503)
	}
}

// A Host whose port is not a TCP port gets 400 on both paths (the fast
// path's parser, and net/http's, which checks only Host's characters), and
// the connection's other requests are not routed by it.
func TestHostPortOutOfRangeGets400(t *testing.T) {
	r, _ := newTestRouter(t)
	twoInstances(t, r)
	addr := serveFast(t, r, testLimits)
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: a.api.example.test:99999999\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.api.example.test:65536\r\n\r\n",
		// Expect sends the request down net/http's path
		"POST / HTTP/1.1\r\nHost: a.api.example.test:99999999\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, body := roundTrip(t, c, bufio.NewReader(c), req)
		c.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.HasPrefix(body, "a ") {
			t.Errorf("%q: %d %q, want 400", req, resp.StatusCode, body)
		}
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if resp, body := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: a.api.example.test:8080\r\n\r\n"); resp.StatusCode != 200 || !strings.HasPrefix(body, "a ") {
		t.Errorf("a valid port: %d %q", resp.StatusCode, body)
	}
	otherTenant(t, addr)
}
