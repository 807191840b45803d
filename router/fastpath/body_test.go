package fastpath

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// zeros is a body of n bytes produced as it is read (no memory held).
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

// bodyApp is an instance that reads each request body to its end before
// answering, and records how much of it arrived and how reading ended.
type bodyApp struct {
	mu   sync.Mutex
	seen []string // "N ok" or "N err"
}

func (a *bodyApp) handler(w http.ResponseWriter, req *http.Request) {
	n, err := io.Copy(io.Discard, req.Body)
	a.mu.Lock()
	if err != nil {
		a.seen = append(a.seen, fmt.Sprintf("%d err", n))
	} else {
		a.seen = append(a.seen, fmt.Sprintf("%d ok", n))
	}
	a.mu.Unlock()
	fmt.Fprintf(w, "got %d", n)
}

func (a *bodyApp) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.seen
	a.seen = nil
	return s
}

// waitSeen waits for the app to record n requests.
func (a *bodyApp) waitSeen(t *testing.T, n int) []string {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		a.mu.Lock()
		k := len(a.seen)
		a.mu.Unlock()
		if k >= n {
			break
		}
	}
	return a.take()
}

// The router's bound on request bodies, through the fast path and the
// net/http path, with a real client over TCP: a Content-Length over it is
// 413 before anything reaches (or wakes) the instance, also for a client
// that waits for 100-continue; a chunked body is cut where it passes the
// bound (the instance sees an unexpected end, the client 413); bodies
// within the bound pass whole.
func TestMaxBody(t *testing.T) {
	const limit = 64 << 10
	rec := &recorder{requests: map[int]int{}}
	r := router.New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), router.Options{Observer: rec, MaxBodyBytes: limit})
	a := &bodyApp{}
	sock := app(t, a.handler)
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(router.Backend{Instance: inst, Socket: sock, Weight: 100, StartupTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second}, true)
	addr := serveFast(t, r, testLimits)

	post := func(body io.Reader, size int64, hdr map[string]string) (int, string, error) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/", body)
		req.Host = "a.api.example.test"
		req.ContentLength = size // -1: chunked
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: 5 * time.Second}}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}

	for _, tc := range []struct {
		name    string
		size    int64 // the body's real size
		chunked bool
		hdr     map[string]string
		code    int
		want    string // in the answer
		seen    string // what the app saw ("": nothing reached it)
	}{
		{name: "content-length within", size: limit, code: 200, want: fmt.Sprintf("got %d", limit), seen: fmt.Sprintf("%d ok", limit)},
		{name: "content-length over", size: 32 << 20, code: 413, want: "request body of 33554432 bytes is larger than the router's bound (65536 bytes)"},
		{name: "content-length over, expect 100-continue", size: 32 << 20, hdr: map[string]string{"Expect": "100-continue"}, code: 413, want: "larger than"},
		{name: "chunked within", size: limit, chunked: true, code: 200, want: fmt.Sprintf("got %d", limit), seen: fmt.Sprintf("%d ok", limit)},
		{name: "chunked over", size: 32 << 20, chunked: true, code: 413, want: "request body larger than the router's bound (65536 bytes)", seen: fmt.Sprintf("%d err", limit)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size := tc.size
			if tc.chunked {
				size = -1
			}
			code, body, err := post(&zeros{tc.size}, size, tc.hdr)
			if err != nil || code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %q %v, want %d %q", code, body, err, tc.code, tc.want)
			}
			var want []string
			if tc.seen != "" {
				want = []string{tc.seen}
			}
			if got := a.waitSeen(t, len(want)); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("the instance saw %v, want %v", got, want)
			}
		})
	}

	// The net/http path alone (as behind TLS, or h2c): the same answers.
	srv := httptest.NewServer(r)
	defer srv.Close()
	plain := strings.TrimPrefix(srv.URL, "http://")
	for _, chunked := range []bool{false, true} {
		fast := addr
		addr = plain
		size := int64(32 << 20)
		if chunked {
			size = -1
		}
		code, body, err := post(&zeros{32 << 20}, size, nil)
		addr = fast
		if err != nil || code != 413 || !strings.Contains(body, "larger than the router's bound") {
			t.Errorf("net/http path, chunked %v: %d %q %v, want 413", chunked, code, body, err)
		}
		var want []string
		if chunked {
			want = []string{fmt.Sprintf("%d err", limit)}
		}
		if got := a.waitSeen(t, len(want)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("net/http path, chunked %v: the instance saw %v, want %v", chunked, got, want)
		}
	}

	// An oversized body on a kept-alive connection: the answer closes it.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, _ := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("warm-up: %d", resp.StatusCode)
	}
	resp, body := roundTrip(t, c, br, fmt.Sprintf("POST / HTTP/1.1\r\nHost: a.api.example.test\r\nContent-Length: %d\r\n\r\npartial", limit+1))
	if resp.StatusCode != 413 || !resp.Close || !strings.Contains(body, "65537 bytes") {
		t.Errorf("over the bound on a kept connection: %d close=%v %q, want 413 closing", resp.StatusCode, resp.Close, body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the 413: %v, want the connection closed", err)
	}
	a.take() // the warm-up GET

	// A sleeping instance is not woken for a body it cannot take, and a
	// chunked body for one that wakes (the http.Transport path) is cut too.
	r.SetAwake(inst, false)
	if code, body, err := post(&zeros{1 << 20}, 1<<20, nil); code != 413 || err != nil {
		t.Errorf("sleeping, content-length over: %d %q %v", code, body, err)
	}
	if st, _ := r.Stat(inst); st.Awake {
		t.Errorf("a refused body woke the instance")
	}
	if code, body, err := post(&zeros{1 << 20}, -1, nil); code != 413 || err != nil {
		t.Errorf("waking, chunked over: %d %q %v", code, body, err)
	}
	if got := a.waitSeen(t, 1); fmt.Sprint(got) != fmt.Sprintf("[%d err]", limit) {
		t.Errorf("waking, chunked over: the instance saw %v", got)
	}
	rec.mu.Lock()
	n413 := rec.requests[413]
	rec.mu.Unlock()
	if n413 == 0 {
		t.Errorf("no 413 counted in the instance's request metrics: %v", rec.requests)
	}
}
