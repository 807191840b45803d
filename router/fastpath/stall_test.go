package fastpath

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// stallingApp is a hostile instance: it answers every request with head
// (and the start of a body), then sends nothing more. closed gets a value
// when its end of a connection sees the router close it; rest, once sent
// a string, makes it send that and keep the connection.
func stallingApp(t *testing.T, head string) (sock string, closed <-chan struct{}, rest chan<- string) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cl := make(chan struct{}, 16)
	more := make(chan string, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go func() {
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						cl <- struct{}{}
						return
					}
					if l == "\r\n" {
						break
					}
				}
				io.WriteString(c, head)
				go func() {
					if s, ok := <-more; ok {
						io.WriteString(c, s)
					}
				}()
				if _, err := br.ReadByte(); err != nil {
					cl <- struct{}{}
				}
			}()
		}
	}()
	return sock, cl, more
}

// A stalled answer: the instance sent a head and part of a body and then
// nothing. While its client waits, the router waits with it (a stream may
// pause for as long as it likes); once the client has gone, the router
// notices within Limits.StallCheck and closes both connections, so that a
// hostile instance cannot pin the router's descriptors and goroutines, or a
// shared front proxy's per-address connection slots, after its clients
// left. Each framing: Content-Length, chunked, until close; through the
// fast path (HTTP/1.1) and the net/http path it hands over (HTTP/1.0).
func TestStalledAnswerClientGone(t *testing.T) {
	heads := map[string][2]string{
		"content-length": {"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial", "-more-"},
		"chunked":        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n", "6\r\n-more-\r\n"},
		"until close":    {"HTTP/1.1 200 OK\r\n\r\npartial", "-more-"},
	}
	for name, answer := range heads {
		head, more := answer[0], answer[1]
		for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
			t.Run(name+" "+proto, func(t *testing.T) {
				r, _ := newTestRouter(t)
				sock, closed, rest := stallingApp(t, head)
				inst := units.Instance{Service: "api", ID: "a"}
				r.Put(router.Backend{Instance: inst, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
				lim := testLimits
				lim.StallCheck = 100 * time.Millisecond
				addr := serveFast(t, r, lim)
				req := "GET / " + proto + "\r\nHost: a.api.example.test\r\n\r\n"

				// A client that waits keeps its stream through many checks.
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				io.WriteString(c, req)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				waitFor(t, br, "partial")
				select {
				case <-closed:
					t.Fatal("the router closed the instance's connection while its client waited")
				case <-time.After(1500 * time.Millisecond): // past request_timeout too
				}
				rest <- more
				waitFor(t, br, "more")
				c.Close()

				// A client that leaves: the router closes the stalled
				// instance's connection soon after.
				c, err = net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(c, req)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				waitFor(t, bufio.NewReader(c), "partial")
				c.Close()
				select {
				case <-closed:
				case <-time.After(5 * time.Second):
					t.Fatal("the instance's connection stayed open 5s after its client left (stall check every 100ms)")
				}
				st, _ := r.Stat(inst)
				deadline := time.Now().Add(5 * time.Second)
				for st.Inflight > 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
					st, _ = r.Stat(inst)
				}
				if st.Inflight > 0 {
					t.Fatalf("%d requests still in flight after the client left", st.Inflight)
				}
			})
		}
	}
}

// waitFor reads from br until it has seen s.
func waitFor(t *testing.T, br *bufio.Reader, s string) {
	t.Helper()
	var got strings.Builder
	for !strings.Contains(got.String(), s) {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatalf("waiting for %q: %v; got %q", s, err, got.String())
		}
		got.WriteByte(b)
	}
}

// An answer whose body turns out malformed before any of it has reached
// the client gets the client a 502 naming the instance, not a connection
// closed without a word.
func TestMalformedBodyBeforeAnythingSent(t *testing.T) {
	for name, answer := range map[string]string{
		"chunk longer than its size": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab\r\n\r\n0\r\n\r\n",
		"chunk size not hex":         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
		"bad trailer":                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n bad\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			r, _ := newTestRouter(t)
			sock, _, _ := stallingApp(t, answer)
			r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
			addr := serveFast(t, r, testLimits)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			resp, body := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
			if resp.StatusCode != 502 || !strings.Contains(body, "instance api:a") || !resp.Close {
				t.Fatalf("%d %q (close %v), want a 502 naming api:a that closes the connection", resp.StatusCode, body, resp.Close)
			}
		})
	}
}

// An app that sends interim answers without end gets its client a 502
// after a few; the ones before it are relayed.
func TestEndlessInterimAnswers(t *testing.T) {
	r, _ := newTestRouter(t)
	sock, _, _ := stallingApp(t, strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", 100))
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: 5 * time.Second}, true)
	addr := serveFast(t, r, testLimits)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
	br := bufio.NewReader(c)
	hints := 0
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %d interim answers: %v", hints, err)
		}
		if resp.StatusCode == 103 {
			hints++
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 502 || !strings.Contains(string(body), "interim") || hints > maxInterim {
			t.Fatalf("%d %q after %d interim answers, want 502 after at most %d", resp.StatusCode, body, hints, maxInterim)
		}
		return
	}
}

// An interim answer (103 Early Hints) reaches the client at once, while
// the app is still working on its answer: the app here answers only once
// the client has the hint.
func TestEarlyHintsArriveEarly(t *testing.T) {
	r, _ := newTestRouter(t)
	sock, _, rest := stallingApp(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: 5 * time.Second}, true)
	addr := serveFast(t, r, testLimits)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
	br := bufio.NewReader(c)
	hint, err := http.ReadResponse(br, nil)
	if err != nil || hint.StatusCode != 103 || hint.Header.Get("Link") == "" {
		t.Fatalf("the hint did not arrive before the answer: %v %v", hint, err)
	}
	rest <- "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("answer after the hint: %v %v", resp, err)
	}
}

// Streamed answers from one instance to many clients at once: each
// connection to the app is back in the pool, where another request takes
// it, only once its answer's stall check has ended (run with -race).
func TestStreamedAnswersShareThePool(t *testing.T) {
	r, _ := newTestRouter(t)
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, "part one,")
		w.(http.Flusher).Flush() // chunked
		io.WriteString(w, "part two")
	})
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	lim := testLimits
	lim.StallCheck = time.Millisecond
	addr := serveFast(t, r, lim)
	const clients = 16
	errs := make(chan error, clients)
	for g := 0; g < clients; g++ {
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for i := 0; i < 100; i++ {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil || string(body) != "part one,part two" || len(resp.TransferEncoding) == 0 {
					errs <- fmt.Errorf("answer %d: %q %v (%v)", i, body, err, resp.TransferEncoding)
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < clients; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// The check that a stalled answer's client is still there works after the
// client connection's read deadline (the header timeout, set as the
// request came) has passed, as it has by the first check with ten's
// limits (15 s each).
func TestStalledAnswerClientGoneAfterHeaderTimeout(t *testing.T) {
	r, _ := newTestRouter(t)
	sock, closed, _ := stallingApp(t, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	lim := testLimits
	lim.HeaderTimeout = 50 * time.Millisecond
	lim.StallCheck = 300 * time.Millisecond
	addr := serveFast(t, r, lim)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	waitFor(t, bufio.NewReader(c), "partial")
	c.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the instance's connection stayed open 5s after its client left (stall check every 300ms, header timeout 50ms)")
	}
}
