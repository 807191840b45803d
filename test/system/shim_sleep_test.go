package system

import (
	"os/exec"
	"testing"
	"time"
)

// A shim-mode instance put to sleep by the idle reaper is inactive, not
// failed (the app gets systemd's SIGTERM itself; where the shim runs in
// front it passes the signal on and dies of the same signal, where exiting
// 143 would make systemd record a failure on every sleep), and stays asleep
// until the next request.
func TestShimSleepIsClean(t *testing.T) {
	for _, app := range []struct{ name, toml string }{
		{"go", `command = "ECHO"
args = ["--mode", "port"]`},
		{"python", `command = "/usr/bin/python3"
args = ["-m", "http.server", "{port}", "--bind", "127.0.0.1"]`},
	} {
		t.Run(app.name, func(t *testing.T) {
			s := startTen(t, "[service.web]\n"+app.toml+"\nisolation = \"process\"\nidle_timeout = 1\n\n[instances]\nweb = [\"a\"]\n")
			for i := 0; i < 2; i++ {
				s.mustGet("a.web.localhost", "/")
				s.waitState("web:a", "sleeping", 15*time.Second)
				for prop, want := range map[string]string{"ActiveState": "inactive", "Result": "success"} {
					if got := show(t, "tenement-web@a.service", prop); got != want {
						t.Errorf("after sleep %d: %s=%s, want %s\n%s", i, prop, got, want, journal(t, "tenement-web@a.service"))
					}
				}
				// The router's wake connection to the systemd socket is never
				// accepted (the app binds PORT itself); FlushPending drops it,
				// so it does not start the service again after the sleep.
				time.Sleep(1500 * time.Millisecond)
				if got := show(t, "tenement-web@a.service", "ActiveState"); got != "inactive" {
					t.Errorf("after sleep %d: the service started again by itself: ActiveState=%s\n%s", i, got, journal(t, "tenement-web@a.service"))
				}
			}
		})
	}
}

// A PORT app stopped while it starts (its waiter still waits for it to
// listen) ends inactive with Result=success, not failed: a sleep or `ten
// stop` at that moment is no failed start.
func TestDirectStopWhileStarting(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO"
args = ["--mode", "port", "--start-delay", "3s"]
isolation = "process"
start = "lazy"

[instances]
web = ["a"]
`)
	go s.get("a.web.localhost", "/") // wakes it; its answer does not matter
	unit := "tenement-web@a.service"
	deadline := time.Now().Add(10 * time.Second)
	for show(t, unit, "ActiveState") != "activating" {
		if time.Now().After(deadline) {
			t.Fatalf("%s never activating: %s", unit, show(t, unit, "ActiveState"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if out, err := exec.Command("systemctl", "stop", unit).CombinedOutput(); err != nil {
		t.Fatalf("systemctl stop: %v %s", err, out)
	}
	for prop, want := range map[string]string{"ActiveState": "inactive", "Result": "success"} {
		if got := show(t, unit, prop); got != want {
			t.Errorf("%s=%s, want %s\n%s", prop, got, want, journal(t, unit))
		}
	}
}
