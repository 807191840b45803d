package system

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An answer's body streams for as long as the app sends it: request_timeout
// bounds only the wait for the head. A stream of chunks (an app that
// flushes: Transfer-Encoding: chunked) that outlasts request_timeout
// arrives whole, on a fresh connection to an awake instance (the router's
// fast path) and on the connection that woke it (net/http's path); both
// kinds of app.
func TestStreamOutlivesRequestTimeout(t *testing.T) {
	s := startTen(t, `
[service.sock]
command = "ECHO --mode activation"
activation = "socket"
request_timeout = 1

[service.port]
command = "ECHO --mode port"
request_timeout = 1

[instances]
sock = ["a"]
port = ["a"]
`)
	for _, svc := range []string{"sock", "port"} {
		host := "a." + svc + ".localhost"
		stream := func(why string) {
			t.Helper()
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			// 5 chunks 600 ms apart: 2.4 s, past request_timeout (1 s).
			fmt.Fprintf(c, "GET /stream?n=5&ms=600 HTTP/1.1\r\nHost: %s\r\n\r\n", host)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("%s %s: %v", svc, why, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || strings.Count(string(body), "chunk") != 5 {
				t.Errorf("%s %s: %d %v, %d of 5 chunks: %q", svc, why, resp.StatusCode, err, strings.Count(string(body), "chunk"), body)
			}
		}
		stream("waking the instance")
		s.mustGet(host, "/")
		stream("awake")
	}
}
