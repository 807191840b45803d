package system

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// zeroBody is a request body of n bytes made as it is read.
type zeroBody struct{ n int64 }

func (z *zeroBody) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

// rssKiB is VmRSS of a process.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// TestBodyLimit: settings.max_body_mb through a real ten serve with Go's
// HTTP client. A Content-Length over the bound is 413 naming the key and
// never reaches the app, nor wakes a sleeping one; a chunked body is cut
// where it passes the bound (the app's journal shows it got exactly the
// bound and an unexpected end) and the client gets 413; a body within the
// bound arrives whole. Sending 64 MiB bodies again and again leaves ten's
// RSS where it was (nothing is buffered).
func TestBodyLimit(t *testing.T) {
	const limit = 1 << 20
	s := startTen(t, `max_body_mb = 1

[service.up]
command = "ECHO --mode activation"
activation = "socket"
isolation = "process"
start = "eager"

[service.nap]
command = "ECHO --mode activation"
activation = "socket"
isolation = "process"
start = "lazy"

[instances]
up = ["a"]
nap = ["z"]
`)
	s.mustGet("a.up.localhost", "/")
	s.waitState("nap:z", "sleeping", 20*time.Second)
	post := func(host string, size int64, chunked bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+s.addr+"/count", &zeroBody{size})
		req.Host = host
		req.ContentLength = size
		if chunked {
			req.ContentLength = -1
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %d bytes (chunked %v) to %s: %v", size, chunked, host, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	counts := func() []string {
		var out []string
		for _, l := range strings.Split(journal(t, "tenement-up@a.service"), "\n") {
			if i := strings.Index(l, "count: "); i >= 0 {
				out = append(out, l[i:])
			}
		}
		return out
	}

	if code, body := post("a.up.localhost", limit, false); code != 200 || body != fmt.Sprintf("got %d\n", limit) {
		t.Errorf("a body of exactly max_body_mb: %d %q", code, body)
	}
	if code, body := post("a.up.localhost", limit, true); code != 200 || body != fmt.Sprintf("got %d\n", limit) {
		t.Errorf("a chunked body of exactly max_body_mb: %d %q", code, body)
	}
	code, body := post("a.up.localhost", 64<<20, false)
	if want := "request body of 67108864 bytes is larger than settings.max_body_mb (1 MiB)"; code != 413 || !strings.Contains(body, want) {
		t.Errorf("Content-Length 64 MiB: %d %q, want 413 %q", code, body, want)
	}
	code, body = post("a.up.localhost", 64<<20, true)
	if want := "request body larger than settings.max_body_mb (1 MiB)"; code != 413 || !strings.Contains(body, want) {
		t.Errorf("chunked 64 MiB: %d %q, want 413 %q", code, body, want)
	}
	time.Sleep(300 * time.Millisecond)
	want := []string{
		fmt.Sprintf("count: %d bytes, err=<nil>", limit),
		fmt.Sprintf("count: %d bytes, err=<nil>", limit),
		fmt.Sprintf("count: %d bytes, err=unexpected EOF", limit),
	}
	if got := counts(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the app's journal: %q, want %q (the oversized Content-Length never reaching it, the chunked one cut at the bound)", got, want)
	}

	// A sleeping instance is not woken for a body it would not get.
	if code, body := post("z.nap.localhost", 64<<20, false); code != 413 {
		t.Errorf("Content-Length 64 MiB to a sleeping instance: %d %q", code, body)
	}
	time.Sleep(500 * time.Millisecond)
	if st := s.psState("nap:z"); st != "sleeping" {
		t.Errorf("nap:z is %q after a refused body, want sleeping", st)
	}

	// Memory: oversized bodies, again and again.
	pid := s.cmd.Process.Pid
	before := rssKiB(t, pid)
	for i := 0; i < 8; i++ {
		if code, _ := post("a.up.localhost", 64<<20, i%2 == 0); code != 413 {
			t.Fatalf("round %d: %d, want 413", i, code)
		}
	}
	after := rssKiB(t, pid)
	t.Logf("ten's RSS %d KiB before 8 oversized bodies of 64 MiB, %d KiB after", before, after)
	if after-before > 8<<10 {
		t.Errorf("ten's RSS grew from %d to %d KiB over 8 oversized bodies (512 MiB sent)", before, after)
	}
	if code, body := post("a.up.localhost", 1000, false); code != 200 || body != "got 1000\n" {
		t.Errorf("after the oversized bodies: %d %q", code, body)
	}
}
