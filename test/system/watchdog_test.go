package system

import (
	"bytes"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// testLimit is the longest a system test may run. The slowest take about
// 3 minutes under -race on two busy cores; one that runs over this limit is
// stuck, and the run ends with what it was doing rather than at go test's
// -timeout, whose dump shows no test's ten serve.
const testLimit = 12 * time.Minute

// watchdog ends the test binary when t runs over testLimit. It writes, last
// (a CI log is read from its end): the goroutines of ten serve (SIGQUIT) and
// its log, the test binary's goroutines that run the test's code, and which
// test hung. The box the binary runs in is closed by the process that
// booted it.
func watchdog(t *testing.T, s *tenServer) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		select {
		case <-done:
			return
		case <-time.After(testLimit):
		}
		var stacks bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 2)
		log := "(ten serve not started)"
		if s.log != nil {
			log = s.quit()
		}
		fmt.Fprintf(os.Stderr, "\n=== %s ran over %v: ten serve's log, then its goroutines (SIGQUIT):\n%s\n", t.Name(), testLimit, log)
		fmt.Fprintf(os.Stderr, "\n=== %s: the test's goroutines:\n%s\n", t.Name(), testGoroutines(stacks.String()))
		fmt.Fprintf(os.Stderr, "FAIL: %s hung: it ran over %v (see above)\n", t.Name(), testLimit)
		os.Exit(1)
	}()
}

// testGoroutines keeps the stacks of a goroutine dump that pass through
// this package's code.
func testGoroutines(dump string) string {
	var keep []string
	for _, g := range strings.Split(dump, "\n\n") {
		if strings.Contains(g, "/test/system/") && !strings.Contains(g, "watchdog_test.go") {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}
