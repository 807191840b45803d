package system

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestServeThreads: ten serve runs its Go code on half the CPUs (rounded
// up), leaving the rest to its apps, unless GOMAXPROCS in its environment
// says otherwise; /metrics (go_sched_gomaxprocs_threads) and its log show
// the number.
func TestServeThreads(t *testing.T) {
	const body = `
[service.web]
command = "ECHO --mode activation"
activation = "socket"
start = "eager"

[instances]
web = ["a"]
`
	want := max(1, (runtime.GOMAXPROCS(0)+1)/2)
	if os.Getenv("GOMAXPROCS") != "" {
		want = runtime.GOMAXPROCS(0) // passed on to ten serve, which keeps it
	}
	s := startTen(t, body)
	s.mustGet("a.web.localhost", "/")
	if got := s.scrape().value("go_sched_gomaxprocs_threads"); got != float64(want) {
		t.Errorf("go_sched_gomaxprocs_threads = %v with %d CPUs, want %d", got, runtime.NumCPU(), want)
	}
	if log := s.log.String(); !strings.Contains(log, "threads=") {
		t.Errorf("ten serve's log does not say its thread count:\n%s", log)
	}
	s.kill()

	s = startTen(t, body, "GOMAXPROCS=3")
	s.mustGet("a.web.localhost", "/")
	if got := s.scrape().value("go_sched_gomaxprocs_threads"); got != 3 {
		t.Errorf("go_sched_gomaxprocs_threads = %v with GOMAXPROCS=3", got)
	}
	if log := s.log.String(); !strings.Contains(log, "Go threads set by GOMAXPROCS") || !strings.Contains(log, "threads=3") {
		t.Errorf("ten serve's log with GOMAXPROCS=3:\n%s", log)
	}
}
