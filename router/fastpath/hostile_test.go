package fastpath

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// hostileAnswers are what a hostile app might answer with: smuggled second
// answers, framing conflicts, interim answers, stalls and lies.
var hostileAnswers = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	// a second answer after the first, to be taken for the next request's
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nb host=SPOOF",
	"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nb host=SPOOF",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 40\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nb host=SPOOF",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nb host=SPOOF",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-Trailer: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-Trai\x8cer: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-Trailer : 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-Trailer: a\x01b\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=\"\r\nHTTP/1.1 200\"\r\nab\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nX: a\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: a\r\n folded: b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nraw bytes",
	"HTTP/1.1 100 Continue\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
	"HTTP/1.1 200 OK\r\n\r\nuntil close",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nConnection: close, Content-Length\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
	"",
	"garbage",
	"HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nContent-Length: 0\r\n\r\n",
}

// FuzzHostileInstance plays a hostile app behind the router: whatever it
// answers a request with (any bytes; then closing its connection or not),
// the client gets an answer it can read as HTTP (the app's, or the
// router's 502 or 504), whose body may be cut short only where the app cut
// it; and when the connection stays open, the next
// request on it, for another tenant's instance, gets that instance's own
// answer. A proxy in front (Caddy) sends many tenants' requests on one
// connection: no app may write into another tenant's answer. Both the fast
// path and the net/http path it hands connections to.
func FuzzHostileInstance(f *testing.F) {
	for _, a := range hostileAnswers {
		for _, closeAfter := range []bool{false, true} {
			f.Add([]byte(a), closeAfter, false)
			f.Add([]byte(a), closeAfter, true)
		}
	}
	r, _ := newTestRouter(f)
	honest := app(f, func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "b host=%s", req.Host)
	})
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "b"}, Socket: honest, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)

	type answer struct {
		b     []byte
		close bool
	}
	var current atomic.Pointer[answer]
	sock := filepath.Join(f.TempDir(), "evil.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if l == "\r\n" {
							break
						}
					}
					a := current.Load()
					c.Write(a.b)
					if a.close {
						return
					}
				}
			}()
		}
	}()
	r.Put(router.Backend{Instance: units.Instance{Service: "api", ID: "evil"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: 100 * time.Millisecond}, true)
	lim := testLimits
	lim.StallCheck = 50 * time.Millisecond
	addr := serveFast(f, r, lim)

	f.Fuzz(func(t *testing.T, data []byte, closeAfter, netHTTP bool) {
		// netHTTP: a Connection header naming another header makes the
		// fast path hand the connection, both requests, to net/http.
		extra := ""
		if netHTTP {
			extra = "Connection: X-Hop\r\nX-Hop: 1\r\n"
		}
		current.Store(&answer{b: data, close: closeAfter})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: evil.api.example.test\r\n"+extra+"\r\n")
		rc := &countingReader{r: c}
		br := bufio.NewReader(rc)
		var resp *http.Response
		for {
			resp, err = http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return // still waiting for the app
				}
				if netHTTP && rc.n == 0 && errors.Is(err, io.ErrUnexpectedEOF) {
					// net/http's ReverseProxy ends a connection without
					// a word when the body it was about to copy fails.
					return
				}
				t.Fatalf("the client could not read what the router sent for %q: %v", data, err)
			}
			if resp.StatusCode >= 200 || resp.StatusCode == 101 {
				break
			}
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrDeadlineExceeded) ||
				err.Error() == "http: unexpected EOF reading trailer" {
				// A cut or stalled body: the client sees it (net/http
				// reports a cut after the last chunk's size line with an
				// error of its own).
				return
			}
			t.Fatalf("body of the answer to %q: %v", data, err)
		}
		if resp.Close || resp.StatusCode == 101 {
			return
		}
		// The connection goes on: the next tenant's answer is its own.
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: b.api.example.test\r\n"+extra+"\r\n")
		next, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatalf("after the hostile answer %q (%d), the next answer: %v", data, resp.StatusCode, err)
		}
		body, err := io.ReadAll(next.Body)
		next.Body.Close()
		if err != nil || next.StatusCode != 200 || string(body) != "b host=b.api.example.test" {
			t.Fatalf("after the hostile answer %q (%d), another tenant got %d %q (%v)", data, resp.StatusCode, next.StatusCode, body, err)
		}
		if strings.Contains(string(body), "SPOOF") {
			t.Fatalf("spoofed: %q", body)
		}
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
