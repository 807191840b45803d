package system

import (
	"strings"
	"testing"
	"time"
)

// TestStopLetsRequestsFinish: `ten stop` lets a request in flight finish
// (tenement's stop waits up to 5 s for open connections) instead of
// cutting its answer, and the instance is gone afterwards.
func TestStopLetsRequestsFinish(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode port"
`)
	s.mustTen("spawn", "api:a")
	s.mustGet("a.api.localhost", "/")
	type answer struct {
		code int
		body string
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		code, body, err := s.get("a.api.localhost", "/stream?n=4&ms=500")
		done <- answer{code, body, err}
	}()
	time.Sleep(300 * time.Millisecond)
	t0 := time.Now()
	s.mustTen("stop", "api:a")
	took := time.Since(t0)
	a := <-done
	if a.err != nil || a.code != 200 || strings.Count(a.body, "chunk ") != 4 {
		t.Errorf("request in flight during the stop: %d %v, %d chunks of 4:\n%s", a.code, a.err, strings.Count(a.body, "chunk "), a.body)
	}
	if took < time.Second || took > 5*time.Second {
		t.Errorf("stop took %s; the request had about 1.7s left", took)
	}
	if out := s.mustTen("ps"); strings.Contains(out, "api:a") {
		t.Errorf("api:a still listed after stop:\n%s", out)
	}

	// A request for the instance while a stop drains it waits for the
	// stop, then creates it anew (wake on request), as a request after
	// the stop would: no 5xx for "being changed".
	s.mustTen("spawn", "api:a")
	s.mustGet("a.api.localhost", "/")
	go func() {
		code, body, err := s.get("a.api.localhost", "/stream?n=2&ms=500")
		done <- answer{code, body, err}
	}()
	time.Sleep(300 * time.Millisecond)
	stopped := make(chan string, 1)
	go func() { out, _ := s.ten("stop", "api:a"); stopped <- out }()
	time.Sleep(300 * time.Millisecond)
	code, body, err := s.get("a.api.localhost", "/")
	if err != nil || code != 200 || !strings.HasPrefix(body, "hello from api:a ") {
		t.Errorf("request during the stop: %d %v %q", code, err, body)
	}
	if out := <-stopped; !strings.Contains(out, "Stopped api:a") {
		t.Errorf("ten stop: %s", out)
	}
	<-done
}
