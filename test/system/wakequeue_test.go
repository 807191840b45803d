package system

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricPlain returns the value of an unlabelled sample of /metrics, or -1.
func (s *tenServer) metricPlain(name string) float64 {
	s.t.Helper()
	_, body, err := s.get(s.addr, "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}

type wakeResult struct {
	code       int
	retryAfter string
	body       string
	took       time.Duration
	err        error
}

func (s *tenServer) wakeGet(host string) <-chan wakeResult {
	ch := make(chan wakeResult, 1)
	go func() {
		start := time.Now()
		req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			ch <- wakeResult{err: err, took: time.Since(start)}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- wakeResult{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b), took: time.Since(start)}
	}()
	return ch
}

func (s *tenServer) waitMetric(name string, want float64, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := s.metricPlain(name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s = %v after %s, want %v", name, got, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWakeQueue: with max_concurrent_wakes = 1 and wake_queue = 1, three
// sleeping instances hit at once: the first wakes, the second waits for it
// and then wakes within its own startup_timeout (although it was answered
// later than startup_timeout after it arrived), the third gets 503 with
// Retry-After at once. A second request for an instance whose wake runs
// joins it. The ten_wake_queue_* metrics show each step.
func TestWakeQueue(t *testing.T) {
	// Keys before the first table belong to the harness's [settings].
	s := startTen(t, `
max_concurrent_wakes = 1
wake_queue = 1

[service.slow]
command = "ECHO"
args = ["--mode", "port", "--start-delay", "3s"]
startup_timeout = 5
start = "lazy"
isolation = "process" # the queue is the point; a sandbox's start on a busy machine only eats the 2 s margin
`)
	for _, id := range []string{"a", "b", "c"} {
		s.mustTen("spawn", "slow:"+id)
	}
	for _, n := range []string{"ten_wake_queue_waiting", "ten_wake_queue_in_progress", "ten_wake_queue_rejected_total"} {
		if v := s.metricPlain(n); v != 0 {
			t.Fatalf("%s = %v before any wake", n, v)
		}
	}
	a := s.wakeGet("a.slow.localhost")
	s.waitMetric("ten_wake_queue_in_progress", 1, 5*time.Second)
	a2 := s.wakeGet("a.slow.localhost") // joins a's wake
	b := s.wakeGet("b.slow.localhost")
	s.waitMetric("ten_wake_queue_waiting", 1, 5*time.Second)
	if v := s.metricPlain("ten_wake_queue_in_progress"); v != 1 {
		t.Errorf("in_progress %v with a waking (a second request for a must not take a place)", v)
	}
	c := <-s.wakeGet("c.slow.localhost")
	if c.err != nil || c.code != http.StatusServiceUnavailable {
		t.Fatalf("c with the queue full: %d %v %q, want 503", c.code, c.err, c.body)
	}
	if c.took > time.Second {
		t.Errorf("c's 503 took %s, want it at once", c.took)
	}
	if n, err := strconv.Atoi(c.retryAfter); err != nil || n < 1 {
		t.Errorf("c's Retry-After %q, want a number of seconds >= 1", c.retryAfter)
	}
	if !strings.Contains(c.body, "max_concurrent_wakes") {
		t.Errorf("c's 503 says %q; want it to name the settings", c.body)
	}
	if v := s.metricPlain("ten_wake_queue_rejected_total"); v != 1 {
		t.Errorf("rejected_total %v, want 1", v)
	}
	for name, ch := range map[string]<-chan wakeResult{"a": a, "a (second request)": a2, "b": b} {
		r := <-ch
		t.Logf("%s: %d after %s", name, r.code, r.took)
		if r.err != nil || r.code != 200 {
			t.Errorf("%s: %d %v %q, want 200", name, r.code, r.err, r.body)
		}
		if name == "b" && r.took < 5*time.Second {
			t.Errorf("b answered after %s: it should have waited for a's 3 s wake, then taken 3 s of its own", r.took)
		}
	}
	s.waitMetric("ten_wake_queue_in_progress", 0, 5*time.Second)
	if v := s.metricPlain("ten_wake_queue_waiting"); v != 0 {
		t.Errorf("waiting %v after all answered", v)
	}
	if n := s.metricPlain("ten_wake_queue_wait_seconds_count"); n != 2 {
		t.Errorf("wait_seconds_count %v, want 2 (a at once, b after a)", n)
	}
	if sum := s.metricPlain("ten_wake_queue_wait_seconds_sum"); sum < 2 {
		t.Errorf("wait_seconds_sum %v, want >= 2 (b waited for a's 3 s wake)", sum)
	}
	// c comes up on the retry.
	if body := s.mustGet("c.slow.localhost", "/"); !strings.Contains(body, "hello from slow:c") {
		t.Errorf("c on retry: %q", body)
	}
}

// TestWakeQueueTimeout: with max_concurrent_wakes = 1 and
// wake_queue_timeout = 2, an instance whose wake takes 3 s holds the one
// place. Before any wake has finished, a second instance's wake queues and,
// after 2 s in the queue, gets 503 with Retry-After (not a 504 and not a
// hang). Once the pace is known (3 s a wake), a request whose wake would
// wait longer than 2 s behind a running one gets 503 at once. The wait
// bound is the queue's own: startup_timeout (5 s) is not what ends it.
func TestWakeQueueTimeout(t *testing.T) {
	s := startTen(t, `
max_concurrent_wakes = 1
wake_queue_timeout = 2

[service.slow]
command = "ECHO"
args = ["--mode", "port", "--start-delay", "3s"]
startup_timeout = 5
start = "lazy"
isolation = "process" # the queue is the point; a sandbox's start on a busy machine only eats the 2 s margin
`)
	for _, id := range []string{"a", "b", "c", "d"} {
		s.mustTen("spawn", "slow:"+id)
	}
	// No pace known yet: b queues behind a and gives up after 2 s.
	a := s.wakeGet("a.slow.localhost")
	s.waitMetric("ten_wake_queue_in_progress", 1, 5*time.Second)
	b := <-s.wakeGet("b.slow.localhost")
	if b.err != nil || b.code != http.StatusServiceUnavailable || b.retryAfter == "" {
		t.Fatalf("b queued behind a's 3 s wake: %d %v Retry-After %q %q, want 503 with Retry-After", b.code, b.err, b.retryAfter, b.body)
	}
	if b.took < 1900*time.Millisecond || b.took > 2900*time.Millisecond {
		t.Errorf("b's 503 came after %s, want after wake_queue_timeout (2 s), before a's wake ended", b.took)
	}
	if !strings.Contains(b.body, "wake_queue_timeout") {
		t.Errorf("b's 503 says %q; want it to name wake_queue_timeout", b.body)
	}
	if r := <-a; r.err != nil || r.code != 200 {
		t.Fatalf("a: %d %v %q, want 200", r.code, r.err, r.body)
	}
	s.waitMetric("ten_wake_queue_in_progress", 0, 5*time.Second)
	// The pace is now 3 s a wake: c runs, d would wait ~3 s: 503 at once.
	c := s.wakeGet("c.slow.localhost")
	s.waitMetric("ten_wake_queue_in_progress", 1, 5*time.Second)
	d := <-s.wakeGet("d.slow.localhost")
	if d.err != nil || d.code != http.StatusServiceUnavailable {
		t.Fatalf("d behind c with a 3 s pace: %d %v %q, want 503", d.code, d.err, d.body)
	}
	if d.took > time.Second {
		t.Errorf("d's 503 took %s, want it at once", d.took)
	}
	if n, err := strconv.Atoi(d.retryAfter); err != nil || n < 3 {
		t.Errorf("d's Retry-After %q, want at least the 3 s c's wake takes", d.retryAfter)
	}
	if v := s.metricPlain("ten_wake_queue_rejected_total"); v != 2 {
		t.Errorf("rejected_total %v, want 2 (b after its wait, d at once)", v)
	}
	if r := <-c; r.err != nil || r.code != 200 {
		t.Fatalf("c: %d %v %q, want 200", r.code, r.err, r.body)
	}
	// Nothing was started for b and d: each comes up on its retry.
	for _, id := range []string{"b", "d"} {
		if body := s.mustGet(id+".slow.localhost", "/"); !strings.Contains(body, "hello from slow:"+id) {
			t.Errorf("%s on retry: %q", id, body)
		}
	}
}
