package system

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tenement's hello-world example, as its README runs it: a shell loop
// around nc that serves one connection at a time, with `health = "/"`.
const helloServer = `#!/bin/bash
# Simple HTTP server using netcat
# Reads PORT from environment (set by tenement)

PORT="${PORT:-8000}"

echo "Starting server on port $PORT"

while true; do
    echo -e "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nHello, World!" | nc -l -p "$PORT" -q 1
done
`

// The test's settings: its own listen address, and no periodic check
// within the test (one landing in nc's pause after another connection
// would fail, in tenement too; the checks this test is about are those
// right after a start).
const helloConfig = `[settings]
listen = "LISTEN"
health_check_interval = 3600

[service.hello]
command = "./server.sh"
health = "/"
isolation = "process"  # Use "namespace" on Linux for PID isolation
`

// tenement's hello-world example runs unchanged: ten spawn hello --id
// world prints tenement's two lines, the app (which serves one connection
// at a time, so ten's own readiness connection keeps it busy for a moment)
// is healthy at once rather than degraded by the check right after its
// start, and answers through the router and at the address spawn printed.
func TestTenementExampleHelloWorld(t *testing.T) {
	if _, err := os.Stat("/usr/bin/nc"); err != nil {
		t.Fatalf("this test runs tenement's example as it is, which needs nc (netcat-openbsd): %v", err)
	}
	install(t)
	dir, addr := tenementSetup(t, helloConfig)
	if err := os.WriteFile(filepath.Join(dir, "server.sh"), []byte(helloServer), 0o755); err != nil {
		t.Fatal(err)
	}
	s := startServeIn(t, dir, addr)

	out := s.mustTn("spawn", "hello", "--id", "world")
	lines := strings.Split(out, "\n")
	var port int
	if len(lines) < 3 || lines[0] != "Spawned hello:world" {
		t.Fatalf("spawn printed %q", out)
	}
	if _, err := fmt.Sscanf(lines[1], "Listening on 127.0.0.1:%d", &port); err != nil {
		t.Errorf("spawn's second line %q: %v", lines[1], err)
	}
	if row := lines[3]; !strings.Contains(row, " healthy ") {
		t.Errorf("spawn's row: %q, want healthy (the check right after the start must not count ten's own readiness connection)", row)
	}
	if h := s.mustTn("health", "hello:world"); !strings.HasPrefix(h, "hello:world: healthy") {
		t.Errorf("health right after spawn:\n%s", h)
	}
	if body := s.waitGet("world.hello.localhost", "/", 10*time.Second); body != "Hello, World!\n" {
		t.Errorf("through the router: %q", body)
	}
	if port > 0 {
		// nc takes the next connection a moment after the last one ended
		// (-q 1): tried again meanwhile, as any client of this app must.
		var body []byte
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			var resp *http.Response
			if resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				break
			}
		}
		if err != nil || string(body) != "Hello, World!\n" {
			t.Errorf("at the address spawn printed: %v %q", err, body)
		}
	}
	if out := s.mustTn("restart", "hello:world"); out != "Restarted hello:world\n" {
		t.Errorf("restart printed %q", out)
	}
	if h := s.mustTn("health", "hello:world"); !strings.HasPrefix(h, "hello:world: healthy") {
		t.Errorf("health right after restart:\n%s", h)
	}
}
