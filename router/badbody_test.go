package router

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenhq/ten/units"
)

// A client whose chunked body is malformed gets 400, not a 502 that blames
// the instance, and ten does not log a proxy error naming the instance for
// it (anyone could fill ten's log with warnings about any tenant).
func TestMalformedClientBodyIs400(t *testing.T) {
	var logs bytes.Buffer
	r := New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(&logs, nil)), Options{MaxBodyBytes: 1 << 20})
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		_, err := io.Copy(io.Discard, req.Body)
		if err != nil {
			return
		}
		io.WriteString(w, "read it all")
	})
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: 5 * time.Second}, true)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	for name, body := range map[string]string{
		"chunk size overflow":  "fffffffffffffffff1\r\nabc\r\n",
		"negative chunk size":  "-1\r\nabc\r\n",
		"huge chunk extension": "1;" + strings.Repeat("e", 1<<20) + "\r\na\r\n0\r\n\r\n",
		"endless trailers":     "1\r\na\r\n0\r\n" + strings.Repeat("X-T: "+strings.Repeat("t", 1000)+"\r\n", 2000) + "\r\n",
	} {
		logs.Reset()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go io.WriteString(c, "POST / HTTP/1.1\r\nHost: a.api.example.test\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, resp.StatusCode)
		}
		if strings.Contains(logs.String(), "level=WARN") {
			t.Errorf("%s: ten logged a warning: %s", name, logs.String())
		}
	}
}
