package system

import (
	"testing"
	"time"

	"github.com/tenhq/ten/units"
)

// TestSlowStopHoldsNoOtherSleep: an app that takes seconds to stop (a
// graceful shutdown) does not hold up the sleep of the other idle
// instances. ten puts instances to sleep concurrently; one stop job after
// another, fast:a would sleep only once slow:a had exited.
func TestSlowStopHoldsNoOtherSleep(t *testing.T) {
	s := startTen(t, `
[service.slow]
command = "ECHO --mode activation --stop-delay 8s"
activation = "socket"
idle_timeout = 1

[service.fast]
command = "ECHO --mode activation"
activation = "socket"
idle_timeout = 2

[instances]
slow = ["a"]
fast = ["a"]
`)
	slow := units.Instance{Service: "slow", ID: "a"}
	s.mustGet("a.slow.localhost", "/")
	s.mustGet("a.fast.localhost", "/")

	// slow:a goes idle first and the reaper begins to stop it: its app
	// takes 8 s to exit after SIGTERM.
	deadline := time.Now().Add(10 * time.Second)
	for show(t, slow.ServiceUnit(), "ActiveState") != "deactivating" {
		if time.Now().After(deadline) {
			t.Fatalf("%s never began to stop (ActiveState %s)\n%s", slow.ServiceUnit(), show(t, slow.ServiceUnit(), "ActiveState"), s.mustTen("ps", "--all"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopping := time.Now()
	// fast:a is idle a second later and sleeps while slow:a still stops.
	s.waitState("fast:a", "sleeping", 6*time.Second)
	if st := show(t, slow.ServiceUnit(), "ActiveState"); st != "deactivating" {
		t.Fatalf("fast:a slept only %s after slow:a began to stop, when slow:a was %s: its sleep waited for slow:a's stop", time.Since(stopping).Round(time.Millisecond), st)
	}
	// slow:a's stop ends as its app exits.
	s.waitState("slow:a", "sleeping", 15*time.Second)
	// Both wake on a request again.
	s.mustGet("a.slow.localhost", "/")
	s.mustGet("a.fast.localhost", "/")
}
