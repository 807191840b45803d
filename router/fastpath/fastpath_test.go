package fastpath

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// serveFast runs r behind a ConnServer on a loopback TCP listener, with an
// http.Server (HTTP/1.1 and h2c) as fallback, as ten serve does.
func serveFast(t testing.TB, r *router.Router, lim Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fb := &chanListener{ch: make(chan net.Conn), addr: ln.Addr(), done: make(chan struct{})}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: r, Protocols: p}
	go srv.Serve(fb)
	cs := &ConnServer{Router: r, Fallback: func(c net.Conn) {
		select {
		case fb.ch <- c:
		case <-fb.done:
			c.Close()
		}
	}, Limits: lim}
	// As front.Serve: HTTP/2 streams, and a trusted proxy's requests,
	// count against their clients in the connections handed off.
	srv.Handler = cs.Cap().Streams(r)
	go cs.Serve(ln)
	t.Cleanup(func() { ln.Close(); srv.Close() })
	return ln.Addr().String()
}

type chanListener struct {
	ch   chan net.Conn
	addr net.Addr
	done chan struct{}
	once sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

var testLimits = Limits{IdleTimeout: 5 * time.Second, HeaderTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10}

// twoInstances puts api:a and api:b, each answering its id and what it saw.
func twoInstances(t *testing.T, r *router.Router) {
	for _, id := range []string{"a", "b"} {
		sock := app(t, func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprintf(w, "%s host=%s xff=%s xfh=%s xfp=%s", id, req.Host, strings.Join(req.Header.Values("X-Forwarded-For"), "|"), req.Header.Get("X-Forwarded-Host"), req.Header.Get("X-Forwarded-Proto"))
			if f := req.Header.Values("Forwarded"); len(f) > 0 {
				fmt.Fprintf(w, " fwd=%s", strings.Join(f, "|"))
			}
			// X-Show names a header the test wants to know arrived.
			if h := req.Header.Get("X-Show"); h != "" && len(req.Header.Values(h)) > 0 {
				fmt.Fprintf(w, " LEAKED %s=%s", h, strings.Join(req.Header.Values(h), "|"))
			}
		})
		r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: id}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	}
}

func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", raw, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// A proxy in front (Caddy) sends requests for many instances on one
// upstream connection: each must be routed by its own Host.
func TestOneConnectionManyHosts(t *testing.T) {
	r, rec := newTestRouter(t)
	twoInstances(t, r)
	addr := serveFast(t, r, testLimits)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 10; i++ {
		id := []string{"a", "b"}[i%2]
		host := id + ".api.example.test"
		resp, body := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: "+host+"\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
		want := fmt.Sprintf("%s host=%s xff=127.0.0.1 xfh=%s xfp=http", id, host, host)
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
	}
	// One mid-stream request the fast path hands over (a chunked body):
	// the same connection goes on, routed per request all the same.
	resp, body := roundTrip(t, c, br, "POST / HTTP/1.1\r\nHost: b.api.example.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "b ") {
		t.Fatalf("handed-over request: %d %q", resp.StatusCode, body)
	}
	resp, body = roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "a ") {
		t.Fatalf("after hand-over: %d %q", resp.StatusCode, body)
	}
	// A request is observed once its answer is out: the client may read
	// the last answer a moment before the router counts it.
	seen := func() map[int]int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return maps.Clone(rec.requests)
	}
	for deadline := time.Now().Add(2 * time.Second); seen()[200] != 12 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := seen(); got[200] != 12 {
		t.Fatalf("observer saw %v, want 12 × 200", got)
	}
}

// Requests that two parsers could frame differently are refused with 400
// and the connection is closed, before anything reaches an instance.
func TestSmugglingRefused(t *testing.T) {
	r, _ := newTestRouter(t)
	var hits atomic.Int32
	sock := app(t, func(w http.ResponseWriter, req *http.Request) { hits.Add(1) })
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	addr := serveFast(t, r, testLimits)
	h := "Host: a.api.example.test\r\n"
	for name, raw := range map[string]string{
		"CL and TE":       "POST / HTTP/1.1\r\n" + h + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"two CL":          "POST / HTTP/1.1\r\n" + h + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"obs-fold":        "GET / HTTP/1.1\r\n" + h + "X-A: 1\r\n  folded\r\n\r\n",
		"bare LF":         "GET / HTTP/1.1\n" + h + "\r\n",
		"bare LF header":  "GET / HTTP/1.1\r\n" + h + "X-A: 1\n\r\n",
		"two Host":        "GET / HTTP/1.1\r\n" + h + h + "\r\n",
		"space before :":  "GET / HTTP/1.1\r\n" + h + "Content-Length : 5\r\n\r\n",
		"TE not chunked":  "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: identity\r\n\r\n",
		"TE in HTTP/1.0":  "POST / HTTP/1.0\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n",
		"CL sign":         "POST / HTTP/1.1\r\n" + h + "Content-Length: +1\r\n\r\na",
		"NUL in value":    "GET / HTTP/1.1\r\n" + h + "X-A: a\x00b\r\n\r\n",
		"no Host":         "GET / HTTP/1.1\r\n\r\n",
		"HTTP/1.2":        "GET / HTTP/1.2\r\n" + h + "\r\n",
		"bad method char": "G(T / HTTP/1.1\r\n" + h + "\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.StatusCode != 400 || !resp.Close {
			t.Errorf("%s: %d (close %v), want 400 and close", name, resp.StatusCode, resp.Close)
		}
		c.Close()
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d refused requests reached the instance", n)
	}
}

// A GET whose kept-alive connection to the app ends without a byte of an
// answer (the app was killed as the request came: kill -9, then the first
// request) is sent again once, on a new connection, and the client gets
// the answer. A GET that went out on a new connection, and a POST, are
// never sent again; a GET the app drops every time reaches it twice at
// most and gets a 502. The same on the net/http path.
func TestResendOnKeptAliveClose(t *testing.T) {
	r, _ := newTestRouter(t)
	var hits, dropHits atomic.Int32
	var dropNext atomic.Bool
	drop := func(w http.ResponseWriter) {
		c, _, _ := http.NewResponseController(w).Hijack()
		c.Close()
	}
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/crash":
			hits.Add(1)
			drop(w)
		case "/drop-once":
			dropHits.Add(1)
			if dropNext.CompareAndSwap(true, false) {
				drop(w)
				return
			}
			io.WriteString(w, "second try")
		default:
			io.WriteString(w, "ok")
		}
	})
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	addr := serveFast(t, r, testLimits)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	get := func(path string) (*http.Response, string) {
		return roundTrip(t, c, br, "GET "+path+" HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
	}
	for _, pathName := range []string{"fast path", "net/http path"} {
		if pathName == "net/http path" {
			// Expect sends the client connection there for good.
			for i := 0; i < 2; i++ {
				if resp, _ := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\nExpect: 100-continue\r\n\r\n"); resp.StatusCode != 200 {
					t.Fatalf("%s: warm-up: %d", pathName, resp.StatusCode)
				}
			}
		}
		// A first request leaves a kept-alive connection in the pool.
		if resp, _ := get("/"); resp.StatusCode != 200 {
			t.Fatalf("%s: warm-up: %d", pathName, resp.StatusCode)
		}
		dropHits.Store(0)
		dropNext.Store(true)
		if resp, body := get("/drop-once"); resp.StatusCode != 200 || body != "second try" || dropHits.Load() != 2 {
			t.Fatalf("%s: GET dropped once on a kept-alive connection: %d %q after %d tries, want 200 on the second", pathName, resp.StatusCode, body, dropHits.Load())
		}
		// The connection of the second try is kept: a GET the app drops
		// every time goes on it, then once on a new one.
		hits.Store(0)
		if resp, body := get("/crash"); resp.StatusCode != 502 || hits.Load() != 2 {
			t.Fatalf("%s: GET dropped every time: %d %q after %d tries, want 502 after 2", pathName, resp.StatusCode, body, hits.Load())
		}
		// Both connections are gone: the next goes on a new one, once.
		hits.Store(0)
		if resp, body := get("/crash"); resp.StatusCode != 502 || hits.Load() != 1 {
			t.Fatalf("%s: GET dropped on a new connection: %d %q after %d tries, want 502 after 1", pathName, resp.StatusCode, body, hits.Load())
		}
		if resp, _ := get("/"); resp.StatusCode != 200 {
			t.Fatalf("%s: warm-up: %d", pathName, resp.StatusCode)
		}
		hits.Store(0)
		if resp, body := roundTrip(t, c, br, "POST /crash HTTP/1.1\r\nHost: a.api.example.test\r\nContent-Length: 1\r\n\r\nx"); resp.StatusCode != 502 || hits.Load() != 1 {
			t.Fatalf("%s: POST dropped on a kept-alive connection: %d %q after %d tries, want 502 after 1", pathName, resp.StatusCode, body, hits.Load())
		}
		// The connection and the instance go on.
		if resp, _ := get("/"); resp.StatusCode != 200 {
			t.Fatalf("%s: after: %d", pathName, resp.StatusCode)
		}
	}
}

// h2c with prior knowledge (Caddy's `versions h2c`) is served, routed by
// each request's :authority.
func TestH2C(t *testing.T) {
	r, _ := newTestRouter(t)
	twoInstances(t, r)
	addr := serveFast(t, r, testLimits)
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for _, id := range []string{"a", "b", "a"} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = id + ".api.example.test"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || !strings.HasPrefix(string(body), id+" ") {
			t.Fatalf("h2c to %s: %s %d %q", id, resp.Proto, resp.StatusCode, body)
		}
	}
}

// h2c requests reach the app over kept-alive connections too (and the
// net/http path resends as the fast path: TestResendOnKeptAliveClose).
func TestH2CReusesUpstream(t *testing.T) {
	r, _ := newTestRouter(t)
	sock := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { io.WriteString(w, "ok") }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}}
	go srv.Serve(l)
	defer srv.Close()
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	addr := serveFast(t, r, testLimits)
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = "a.api.example.test"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("request %d: %s %d", i, resp.Proto, resp.StatusCode)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential h2c requests opened %d connections to the app, want 1", n)
	}
}

// A streamed response streams through the fast path: the client gets the
// first part before the app writes the second.
func TestFastPathStreamsResponse(t *testing.T) {
	r, _ := newTestRouter(t)
	release := make(chan struct{})
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	})
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	addr := serveFast(t, r, testLimits)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first part: %q %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(rest), "second") {
		t.Fatalf("rest: %q", rest)
	}
	_ = context.Background
}

// {service}.{domain} of a declared service with no instances is no 404:
// the service exists, nothing runs it (503, saying so). An undeclared one
// is a 404 naming it.
func TestDeclaredServiceWithoutInstances(t *testing.T) {
	r, _ := newTestRouter(t)
	r.SetServices([]string{"empty", "api"})
	twoInstances(t, r)
	addr := serveFast(t, r, testLimits)
	for host, want := range map[string]struct {
		code int
		body string
	}{
		"empty.example.test":   {503, "service empty has no instances: start one with `ten spawn empty:ID`"},
		"nosuch.example.test":  {404, "no service nosuch on this server"},
		"x.empty.example.test": {404, "no instance empty:x on this server"},
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want.code || !strings.Contains(string(body), want.body) {
			t.Errorf("%s: %d %q, want %d %q", host, resp.StatusCode, body, want.code, want.body)
		}
	}
}

// A pooled connection whose app went away with the next request unread in
// it (killed while the connection sat idle) is reset, not closed: that
// request never reached the app, so it goes once more on a new connection
// and the client gets the answer, not a 502.
func TestResendWhatTheAppNeverRead(t *testing.T) {
	r, _ := newTestRouter(t)
	sock := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var served atomic.Int32
	go func() {
		for first := true; ; first = false {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn, first bool) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					served.Add(1)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					if first {
						// Killed with the next request unread in the
						// socket: the kernel resets the connection.
						// (Wait for it without reading it.)
						waitUnread(t, c)
						_ = req
						return
					}
				}
			}(c, first)
		}
	}()
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	addr := serveFast(t, r, testLimits)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i, path := range []string{"/one", "/two"} {
		resp, body := roundTrip(t, c, br, "GET "+path+" HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i+1, resp.StatusCode, body)
		}
	}
	if n := served.Load(); n != 2 {
		t.Fatalf("the app read %d requests, want 2 (each once)", n)
	}
}

// waitUnread waits until data is in c's socket, without reading it.
func waitUnread(t *testing.T, c net.Conn) {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Error(err)
		return
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		n := 0
		_ = rc.Read(func(fd uintptr) bool {
			var b [1]byte
			n, _, _ = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return true
		})
		if n > 0 {
			return
		}
	}
	t.Error("no second request came")
}
