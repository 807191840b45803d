package system

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// ten follows systemd's unit changes over systemd's private socket, which
// systemd closes when it re-executes (daemon-reexec, as a package upgrade
// of systemd does). ten connects again, resynchronises, and goes on
// seeing every change: an instance started and stopped behind its back
// (systemctl), after the re-exec, shows in `ten ps` as running and then
// asleep, within a moment and well before ten's 10 s health tick could
// have read it.
func TestStateFollowsAcrossDaemonReexec(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
isolation = "process"
start = "lazy"

[instances]
web = ["a"]
`)
	s.waitState("web:a", "sleeping", 5*time.Second)
	if !strings.Contains(s.log.String(), "over=/run/systemd/private") {
		t.Fatalf("ten does not follow systemd over its private socket:\n%s", s.log.String())
	}
	if out, err := exec.Command("systemctl", "daemon-reexec").CombinedOutput(); err != nil {
		t.Fatalf("systemctl daemon-reexec: %v %s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(s.log.String(), "connection lost; connecting again") {
		if time.Now().After(deadline) {
			t.Fatalf("ten did not see its signal connection close:\n%s", s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Connected again once systemd is back: a change is seen.
	for _, step := range []struct{ verb, state string }{{"start", "running"}, {"stop", "sleeping"}, {"start", "running"}, {"stop", "sleeping"}} {
		if out, err := exec.Command("systemctl", step.verb, "tenement-web@a.service").CombinedOutput(); err != nil {
			t.Fatalf("systemctl %s: %v %s", step.verb, err, out)
		}
		s.waitState("web:a", step.state, 3*time.Second)
	}
	// And the router still wakes it.
	s.mustGet("a.web.localhost", "/")
}
