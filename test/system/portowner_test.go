package system

import (
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A process that binds a sleeping PORT app's port (another tenant's app, a
// host daemon) gets none of the instance's requests: the router takes an
// answer on 127.0.0.1:PORT for the app only when the socket belongs to the
// instance's service (its cgroup), so the request fails at the instance's
// startup_timeout with the reason instead of going to the squatter, which
// sees a connection closed without a byte. Once the port is free again
// the instance serves.
func TestPortSquatterGetsNothing(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO"
args = ["--mode", "port"]
idle_timeout = 1
startup_timeout = 3

[instances]
web = ["a"]
`)
	if body := s.mustGet("a.web.localhost", "/"); !strings.Contains(body, "hello from web:a") {
		t.Fatalf("first answer %q", body)
	}
	s.waitState("web:a", "sleeping", 15*time.Second)
	port := ""
	for _, kv := range strings.Fields(show(t, "tenement-web@a.service", "Environment")) {
		if v, ok := strings.CutPrefix(kv, "PORT="); ok {
			port = v
		}
	}
	if port == "" {
		t.Fatal("web:a has no PORT")
	}

	squat, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("bind the sleeping instance's PORT %s: %v", port, err)
	}
	var conns, bytes atomic.Int64
	go func() {
		for {
			c, err := squat.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				n, _ := io.Copy(io.Discard, io.LimitReader(c, 1<<20))
				bytes.Add(n)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsquatter")
			}()
		}
	}()
	code, body, err := s.get("a.web.localhost", "/")
	if err == nil && (code == 200 || strings.Contains(body, "squatter")) {
		t.Fatalf("the request went to the process on the instance's PORT: %d %q", code, body)
	}
	if err != nil || code < 500 || !strings.Contains(body, "another process holds its PORT") {
		t.Errorf("while another process holds PORT: %d %q %v; want a 5xx saying so", code, body, err)
	}
	time.Sleep(200 * time.Millisecond)
	if bytes.Load() != 0 {
		t.Errorf("the squatter read %d bytes of the instance's traffic", bytes.Load())
	}
	t.Logf("the squatter saw %d connections, none with a byte", conns.Load())
	squat.Close()

	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, err := s.get("a.web.localhost", "/")
		if err == nil && code == 200 && strings.Contains(body, "hello from web:a") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the port was freed: %d %q %v\n%s", code, body, err, journal(t, "tenement-web@a.service"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
