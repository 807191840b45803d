package system

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLogReadBounded: a tenant that fills its journal with long lines and
// asks for 10,000 of them does not make ten hold them all. Before the
// bound, 6,000 lines of 60 KB and one GET /api/logs?limit=10000 took ten
// from 34 MiB to 1.5 GiB, and nothing bounded how many such reads ran at
// once. A message sent over journald's native protocol (not cut at
// journald's LineMax) comes back cut at 64 KiB.
func TestLogReadBounded(t *testing.T) {
	s := startTen(t, `
[service.flood]
command = "ECHO --mode port"
log_rate_limit_burst = 0

[instances]
flood = ["acme"]
`)
	_, acme := s.newToken("--tenant", "acme")
	if code, _, _ := s.apiCall("GET", "/api/instances", acme, ""); code != 200 {
		t.Fatalf("acme's token: %d", code)
	}
	pid := s.cmd.Process.Pid
	tag := fmt.Sprint(time.Now().UnixNano())
	// 2,000 lines of 40 KB: 80 MB of journal.
	for range 4 {
		if body := s.mustGet("acme.flood.localhost", fmt.Sprintf("/flood?n=500&pad=40000&msg=long-%s", tag)); !strings.Contains(body, "flooded 500") {
			t.Fatalf("flood: %q", body)
		}
	}
	if body := s.mustGet("acme.flood.localhost", fmt.Sprintf("/journal?bytes=150000&msg=native-%s", tag)); !strings.Contains(body, "sent") {
		t.Fatalf("native journal entry: %q", body)
	}
	s.waitLogs("native-"+tag, "flood:acme")

	rss0 := rssBytes(t, pid)
	stop := rssWatch(t, pid)
	var wg sync.WaitGroup
	codes := make([]int, 4)
	sizes := make([]int, 4)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, _ := s.apiCall("GET", "/api/logs?instance=flood:acme&limit=10000", acme, "")
			codes[i], sizes[i] = code, len(body)
			if code != 200 {
				return
			}
			var entries []struct{ Message string }
			if err := json.Unmarshal([]byte(body), &entries); err != nil {
				t.Errorf("read %d: %v", i, err)
				return
			}
			native := false
			for _, e := range entries {
				if strings.HasPrefix(e.Message, "native-"+tag) {
					native = true
					if len(e.Message) > 64<<10 || !strings.HasSuffix(e.Message, "…") {
						t.Errorf("native entry of 150 KB: %d bytes back, want it cut at 64 KiB", len(e.Message))
					}
				}
			}
			if !native {
				t.Errorf("read %d: the newest entry (the native one) is missing from %d entries", i, len(entries))
			}
		}()
	}
	wg.Wait()
	peak := stop()
	t.Logf("4 reads of limit=10000: codes %v, bytes %v; ten RSS %d MiB before, peak %d MiB", codes, sizes, rss0>>20, peak>>20)
	for i, c := range codes {
		if c != 200 && c != 429 {
			t.Errorf("read %d: %d, want 200 or 429 (a tenant runs 2 reads at once)", i, c)
		}
		if sizes[i] > 8<<20 {
			t.Errorf("read %d: %d bytes back, want at most about 4 MiB", i, sizes[i])
		}
	}
	if peak-rss0 > 100<<20 {
		t.Errorf("ten's RSS grew by %d MiB for 4 log reads", (peak-rss0)>>20)
	}
}
