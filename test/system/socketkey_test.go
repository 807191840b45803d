package system

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSocketKey: apps that bind the path of tenement's socket key are
// reached there. Under the default isolation, a socket in the instance's
// data directory ({data_dir} is settings.data_dir), and tenement's own
// /tmp/tenement/{name}-{id}.sock (two instances); under process, one in a
// directory that does not exist yet (as tenement's default
// /tmp/tenement/{name}-{id}.sock on a fresh host): ten makes it, and the
// app answers again after a kill -9.
func TestSocketKey(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "tenement")
	s := startTen(t, fmt.Sprintf(`
[service.d]
command = "ECHO --mode socket"
socket = "{data_dir}/{name}/{id}/app.sock"

[service.p]
command = "ECHO --mode socket"
isolation = "process"
socket = "%s/{name}-{id}.sock"

[service.n]
command = "ECHO --mode socket"
socket = "/tmp/tenement/{name}-{id}.sock"
`, shared))
	for _, inst := range []string{"d:a", "p:a", "n:a", "n:b"} {
		// An app on its socket: no tenement "Listening on" line (it is
		// not on 127.0.0.1:PORT).
		if out := s.mustTen("spawn", inst); !strings.HasPrefix(out, "Spawned "+inst+"\n") || strings.Contains(out, "Listening on") {
			t.Errorf("spawn %s printed %q", inst, out)
		}
		svc, id, _ := strings.Cut(inst, ":")
		if body := s.mustGet(id+"."+svc+".localhost", "/"); !strings.HasPrefix(body, "hello from "+inst+" ") {
			t.Fatalf("%s answered %q", inst, body)
		}
	}
	if env := show(t, "tenement-d@a.service", "Environment"); !strings.Contains(env, "SOCKET_PATH="+filepath.Join(s.dir, "data", "d", "a", "app.sock")) {
		t.Errorf("d:a's SOCKET_PATH is not in its data directory: %s", env)
	}
	// tenement's own socket path under the default isolation: the app
	// binds it in its namespace, where the instance's runtime directory is
	// bound over /tmp/tenement; each instance has its own.
	if env := show(t, "tenement-n@a.service", "Environment"); !strings.Contains(env, "SOCKET_PATH=/tmp/tenement/n-a.sock") {
		t.Errorf("n:a's SOCKET_PATH: %s", env)
	}
	s.mustTen("stop", "n:b")
	if body := s.mustGet("a.n.localhost", "/"); !strings.HasPrefix(body, "hello from n:a ") {
		t.Errorf("n:a after n:b stopped: %q", body)
	}
	pid := mainPID(t, "p:a")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if body := s.mustGet("a.p.localhost", "/"); !strings.HasPrefix(body, "hello from p:a ") || strings.Contains(body, fmt.Sprintf("pid %d\n", pid)) {
		t.Errorf("after kill -9 of pid %d: %q", pid, body)
	}
	// ten stop removes the socket file the app left, as tenement's stop
	// does.
	sock := filepath.Join(shared, "p-a.sock")
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("p:a's socket while it runs: %v", err)
	}
	s.mustTen("stop", "p:a")
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("p:a's socket %s is still there after ten stop (%v)", sock, err)
	}
}
