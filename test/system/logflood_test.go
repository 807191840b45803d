package system

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLogFloodBounded: a tenant that floods its output gets at most its log
// rate limit into the journal (log_rate_limit_burst lines every
// log_rate_limit_interval seconds, systemd's LogRateLimitBurst and
// LogRateLimitIntervalSec on its unit, which journald scales up a few times
// with its free space), and every line another tenant logs meanwhile is
// there. An instance without the keys gets the defaults, 1000 per 10 s.
func TestLogFloodBounded(t *testing.T) {
	s := startTen(t, `
[service.flood]
command = "ECHO --mode port"
log_rate_limit_burst = 100
log_rate_limit_interval = 600

[service.quiet]
command = "ECHO --mode port"
`)
	s.mustTen("spawn", "flood:a")
	s.mustTen("spawn", "quiet:a")
	for unit, want := range map[string][2]string{
		"tenement-flood@a.service": {"100", "10min"},
		"tenement-quiet@a.service": {"1000", "10s"},
	} {
		if b, i := show(t, unit, "LogRateLimitBurst"), show(t, unit, "LogRateLimitIntervalUSec"); b != want[0] || i != want[1] {
			t.Errorf("%s: LogRateLimitBurst=%s LogRateLimitIntervalUSec=%s, want %s and %s", unit, b, i, want[0], want[1])
		}
	}

	tag := fmt.Sprint(time.Now().UnixNano())
	const flood, quiet = 20000, 50
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if body := s.mustGet("a.flood.localhost", fmt.Sprintf("/flood?n=%d&msg=flood-%s", flood, tag)); !strings.Contains(body, fmt.Sprint("flooded ", flood)) {
			t.Errorf("flood: %q", body)
		}
	}()
	for i := 0; i < quiet; i++ {
		s.mustGet("a.quiet.localhost", fmt.Sprintf("/log?msg=quiet-%s-%d", tag, i))
	}
	wg.Wait()
	s.waitLogs(fmt.Sprintf("quiet-%s-%d", tag, quiet-1), "quiet:a", "--limit", "1000")

	got := 0
	for _, line := range strings.Split(journal(t, "tenement-flood@a.service"), "\n") {
		if strings.HasPrefix(line, "flood-"+tag+" ") {
			got++
		}
	}
	// journald multiplies the burst by (log2(free bytes) - 16) / 4: 6 for
	// a terabyte free.
	if got == 0 || got > 100*6 {
		t.Errorf("%d of %d flooded lines reached the journal, want 1..%d (burst 100)", got, flood, 100*6)
	}
	t.Logf("%d of %d flooded lines reached the journal (burst 100)", got, flood)
	out := journal(t, "tenement-quiet@a.service")
	for i := 0; i < quiet; i++ {
		if !strings.Contains(out, fmt.Sprintf("quiet-%s-%d\n", tag, i)) {
			t.Errorf("quiet:a's line %d is missing from the journal", i)
		}
	}
}
