package system

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unitPort returns the PORT ten gave an instance's service.
func unitPort(t *testing.T, unit string) string {
	t.Helper()
	for _, kv := range strings.Fields(show(t, unit, "Environment")) {
		if v, ok := strings.CutPrefix(kv, "PORT="); ok {
			return v
		}
	}
	t.Fatalf("%s has no PORT", unit)
	return ""
}

// tryBinds has the tenant behind host bind each address and reports which
// it could.
func (s *tenServer) tryBinds(host string, addrs ...string) (bound []string, errs []string) {
	s.t.Helper()
	for _, a := range addrs {
		r := s.try(host, "/bind?addr="+url.QueryEscape(a))
		if r.OK {
			bound = append(bound, a)
		}
		errs = append(errs, r.Err)
	}
	return bound, errs
}

// TestPortGuard: a tenant cannot take another instance's PORT. While a
// PORT app sleeps nothing holds its 127.0.0.1:PORT; another instance's app
// that binds it (on that address, on 0.0.0.0 or on ::) gets EPERM from
// ten's cgroup bind programs, so the sleeping app still starts on the next
// request. The guard holds across a restart of ten serve (pinned), the
// refusals are counted in ten_port_guard_denied_total, and the port of a
// stopped instance is anyone's again.
func TestPortGuard(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO"
args = ["--mode", "port"]
idle_timeout = 1
startup_timeout = 5

[service.evil]
command = "TENANT"

[instances]
web = ["a"]
evil = ["b"]
`)
	if body := s.mustGet("a.web.localhost", "/"); !strings.Contains(body, "hello from web:a") {
		t.Fatalf("first answer %q", body)
	}
	_, feats, _ := s.apiCall("GET", "/api/features", s.adminToken(), "")
	if !strings.Contains(feats, `"name":"port-guard","on":true`) {
		t.Fatalf("port-guard is not on: %s", feats)
	}
	s.waitState("web:a", "sleeping", 15*time.Second)
	port := unitPort(t, "tenement-web@a.service")

	// A port no instance holds: the tenant can bind it (the attempts
	// below can succeed, so a refusal means something).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	if bound, errs := s.tryBinds("b.evil.localhost", "127.0.0.1:"+free); len(bound) != 1 {
		t.Fatalf("the tenant cannot bind a free port %s: %v", free, errs)
	}

	squat := []string{"127.0.0.1:" + port, "0.0.0.0:" + port, "[::]:" + port}
	bound, errs := s.tryBinds("b.evil.localhost", squat...)
	if len(bound) > 0 {
		t.Errorf("HOLE: evil:b bound web:a's PORT %s while it slept: %v", port, bound)
	}
	for i, e := range errs[:2] {
		if !strings.Contains(e, "operation not permitted") {
			t.Errorf("bind %s: %q, want EPERM from the port guard", squat[i], e)
		}
	}
	if body := s.mustGet("a.web.localhost", "/"); !strings.Contains(body, "hello from web:a") {
		t.Errorf("web:a after the attempts: %q", body)
	}
	_, metrics, _ := s.apiCall("GET", "/metrics", "", "")
	if !strings.Contains(metrics, "ten_port_guard_denied_total 3") {
		t.Errorf("ten_port_guard_denied_total is not 3:\n%s", grepLines(metrics, "port_guard"))
	}

	// ten down and up again: the pinned guard holds meanwhile and after.
	s.waitState("web:a", "sleeping", 15*time.Second)
	s.kill()
	if bound, _ := s.tryBindsDirect(t, port); bound {
		t.Errorf("HOLE: with ten down, evil:b bound web:a's PORT")
	}
	s.start()
	if bound, _ := s.tryBinds("b.evil.localhost", "127.0.0.1:"+port); len(bound) > 0 {
		t.Errorf("HOLE: after a restart of ten, evil:b bound web:a's PORT")
	}
	if body := s.mustGet("a.web.localhost", "/"); !strings.Contains(body, "hello from web:a") {
		t.Errorf("web:a after the restart: %q", body)
	}

	// A stopped instance's port is free again.
	s.mustTen("stop", "web:a")
	if bound, errs := s.tryBinds("b.evil.localhost", "127.0.0.1:"+port); len(bound) != 1 {
		t.Errorf("after web:a was stopped its port %s is still refused: %v", port, errs)
	}
}

// tryBindsDirect asks evil:b's app, straight on its own socket (ten's
// router is down), to bind 127.0.0.1:port.
func (s *tenServer) tryBindsDirect(t *testing.T, port string) (bool, string) {
	t.Helper()
	sock := ""
	for _, kv := range strings.Fields(show(t, "tenement-evil@b.service", "Environment")) {
		if v, ok := strings.CutPrefix(kv, "SOCKET_PATH="); ok {
			sock = v
		}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	resp, err := c.Get("http://evil/bind?addr=" + url.QueryEscape("127.0.0.1:"+port))
	if err != nil {
		t.Fatalf("evil:b on its own socket %s: %v", sock, err)
	}
	defer resp.Body.Close()
	var r report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	t.Logf("with ten down, evil:b tried %s: ok=%v err=%q", r.Tried, r.OK, r.Err)
	return r.OK, r.Err
}
