package system

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tenhq/ten/internal/tentest"
)

type logEntry struct {
	Time     time.Time `json:"time"`
	Instance string    `json:"instance"`
	Unit     string    `json:"unit"`
	Stream   string    `json:"stream"`
	Priority int       `json:"priority"`
	PID      int       `json:"pid"`
	Message  string    `json:"message"`
}

// waitLogs runs `ten logs ARGS` until its output contains want.
func (s *tenServer) waitLogs(want string, args ...string) string {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	out := ""
	for time.Now().Before(deadline) {
		out = s.mustTen(append([]string{"logs"}, args...)...)
		if strings.Contains(out, want) {
			return out
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("ten logs %v: no %q within 10s:\n%s", args, want, out)
	return ""
}

// Logs come from journald: per instance, stdout and stderr told apart,
// search, limit, since, every instance at once; and they outlive a kill -9
// of ten serve.
func TestLogsFromJournal(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"

[service.web]
command = "ECHO --mode activation"
activation = "socket"

[instances]
api = ["prod"]
web = ["prod"]
`)
	tag := fmt.Sprint(time.Now().UnixNano())
	out1, err1, mixed := "out-"+tag, "err-"+tag, "Mixed-CASE-"+tag
	s.mustGet("prod.api.localhost", "/log?msg="+out1)
	s.mustGet("prod.api.localhost", "/log?stream=stderr&msg="+err1)
	s.mustGet("prod.api.localhost", "/log?msg="+mixed)
	s.mustGet("prod.web.localhost", "/log?msg=web-"+tag)

	out := s.waitLogs(mixed, "api:prod")
	if !strings.Contains(out, out1) || !strings.Contains(out, "[ERR] api:prod "+err1) || !strings.Contains(out, "[OUT] api:prod "+out1) || strings.Contains(out, "web-"+tag) {
		t.Errorf("ten logs api:prod:\n%s", out)
	}
	// A message with a newline and an escape sequence in it (journald's
	// native protocol keeps both) stays one line of api:prod's, escaped: it
	// cannot print a line that reads as web:prod's, or clear the screen.
	forged := "forge-" + tag + "\n2026-01-01 00:00:00.000 [OUT] web:prod forged-" + tag + "\x1b[2J"
	s.mustGet("prod.api.localhost", "/journal?msg="+url.QueryEscape(forged))
	seen := s.waitLogs("forge-"+tag, "--search", "forge")
	if want := `[OUT] api:prod forge-` + tag + `\n2026-01-01 00:00:00.000 [OUT] web:prod forged-` + tag + `\x1b[2J`; !strings.Contains(seen, want) || strings.Count(seen, "\n") != 1 || strings.Contains(seen, "\x1b") {
		t.Errorf("ten logs printed an app's control characters; want one line holding %s:\n%q", want, seen)
	}
	// The app's start-up line is there too (it was written before any request).
	if !strings.Contains(out, "echoapp api:prod pid") {
		t.Errorf("ten logs api:prod misses the start-up line:\n%s", out)
	}

	var entries []logEntry
	if err := json.Unmarshal([]byte(s.mustTen("--json", "logs", "api:prod")), &entries); err != nil || len(entries) == 0 {
		t.Fatalf("logs --json: %v", err)
	}
	pid := mainPID(t, "api:prod")
	for _, e := range entries {
		switch e.Message {
		case out1:
			if e.Stream != "stdout" || e.Priority != 6 || e.Instance != "api:prod" || e.Unit != "tenement-api@prod.service" || e.PID != pid || time.Since(e.Time) > time.Minute {
				t.Errorf("stdout entry %+v (pid %d)", e, pid)
			}
		case err1:
			if e.Stream != "stderr" || e.Priority != 3 {
				t.Errorf("stderr entry %+v", e)
			}
		}
	}

	// --level
	if out := s.mustTen("logs", "api:prod", "--level", "stderr"); !strings.Contains(out, err1) || strings.Contains(out, out1) {
		t.Errorf("--level stderr:\n%s", out)
	}
	if out := s.mustTen("logs", "api:prod", "--level", "stdout"); strings.Contains(out, err1) || !strings.Contains(out, out1) {
		t.Errorf("--level stdout:\n%s", out)
	}
	// --search: literal text (a regexp character in it is not special),
	// case-insensitive when it is all lower case.
	if out := s.mustTen("logs", "api:prod", "--search", err1); !strings.Contains(out, err1) || strings.Contains(out, out1) || strings.Count(out, "\n") != 1 {
		t.Errorf("--search %s:\n%s", err1, out)
	}
	if out := s.mustTen("logs", "api:prod", "--search", strings.ToLower(mixed)); !strings.Contains(out, mixed) {
		t.Errorf("--search lower case:\n%s", out)
	}
	if out := s.mustTen("logs", "api:prod", "--search", "out-."+tag[1:]); strings.Contains(out, out1) {
		t.Errorf("--search treated '.' as a pattern:\n%s", out)
	}
	// --limit
	if out := s.mustTen("logs", "api:prod", "--limit", "1"); strings.Count(out, "\n") != 1 {
		t.Errorf("--limit 1:\n%s", out)
	}
	// --since: a window in the past that ends before the lines were written.
	time.Sleep(1100 * time.Millisecond)
	if out := s.mustTen("logs", "api:prod", "--since", "1s"); strings.Contains(out, out1) {
		t.Errorf("--since 1s shows older lines:\n%s", out)
	}
	if out := s.mustTen("logs", "api:prod", "--since", "1h"); !strings.Contains(out, out1) {
		t.Errorf("--since 1h:\n%s", out)
	}
	if out, err := s.ten("logs", "api:prod", "--since", "yesterdayish"); err == nil || !strings.Contains(out, "since") {
		t.Errorf("bad --since: %v %q", err, out)
	}
	// Every instance at once, each line naming its instance.
	all := s.waitLogs("web-"+tag, "--limit", "1000")
	if !strings.Contains(all, "api:prod "+out1) || !strings.Contains(all, "web:prod web-"+tag) {
		t.Errorf("ten logs (all):\n%s", all)
	}
	// The API answers the same, with tenement's process/id parameters too.
	code, body, _ := s.apiCall("GET", "/api/logs?process=api&id=prod&search="+err1, s.adminToken(), "")
	if code != 200 || !strings.Contains(body, err1) || strings.Contains(body, out1) {
		t.Errorf("GET /api/logs: %d %s", code, body)
	}
	code, body, _ = s.apiCall("GET", "/api/logs?level=both", s.adminToken(), "")
	if code != 400 || !strings.Contains(errorOf(t, "bad level", body), "stdout or stderr") {
		t.Errorf("bad level: %d %s", code, body)
	}
	// A service the config does not declare, or an instance that is not
	// there and never logged, is an error, not an empty answer.
	if out, err := s.ten("logs", "nosuch:prod"); err == nil || !strings.Contains(out, `unknown service "nosuch"`) {
		t.Errorf("ten logs nosuch:prod: %v %q", err, out)
	}
	if out, err := s.ten("logs", "api:never"); err == nil || !strings.Contains(out, "no instance api:never") {
		t.Errorf("ten logs api:never: %v %q", err, out)
	}

	// The journal, not ten, holds the lines: a kill -9 of ten serve and a
	// restart lose none, and a crash of the app is logged by systemd.
	s.kill()
	s.start()
	if out := s.mustTen("logs", "api:prod"); !strings.Contains(out, out1) || !strings.Contains(out, err1) {
		t.Errorf("after kill -9 and restart of ten serve:\n%s", out)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	s.waitLogs("status=9/KILL", "api:prod")
}

// ten logs -f and GET /api/logs/stream deliver lines printed after the
// stream started, for one instance and for all (including an instance
// spawned after the stream began); Ctrl-C ends ten logs -f.
func TestLogsFollow(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"

[instances]
api = ["prod"]
`)
	tag := fmt.Sprint(time.Now().UnixNano())
	s.mustGet("prod.api.localhost", "/log?msg=before-"+tag)
	s.waitLogs("before-"+tag, "api:prod")

	// The CLI: replays the last lines, then follows.
	cmd := exec.Command(tenBin, "--server", "http://"+s.addr, "--data-dir", s.dir+"/data", "logs", "-f", "api:prod")
	stdout, _ := cmd.StdoutPipe()
	var stderr tentest.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("ten logs -f ended before %q: %s", want, stderr.String())
				}
				if strings.Contains(l, want) {
					return
				}
			case <-timeout:
				t.Fatalf("ten logs -f: no %q within 10s; stderr %s", want, stderr.String())
			}
		}
	}
	waitLine("before-" + tag)
	s.mustGet("prod.api.localhost", "/log?stream=stderr&msg=after-"+tag)
	waitLine("[ERR] api:prod after-" + tag)
	// Ctrl-C ends it, cleanly.
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ten logs -f after Ctrl-C: %v %s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Error("ten logs -f did not stop on Ctrl-C")
	}

	// SSE straight from the API, without replay: only new lines.
	sse := func(path string) (<-chan logEntry, func()) {
		req, _ := http.NewRequest("GET", "http://"+s.addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+s.adminToken())
		ctx, cancel := withTimeout(30 * time.Second)
		resp, err := client.Do(req.WithContext(ctx))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, err, resp)
		}
		rd := bufio.NewReader(resp.Body)
		// The stream is open once its first comment arrives.
		if l, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(l, ":") {
			t.Fatalf("stream start %q %v", l, err)
		}
		ch := make(chan logEntry, 100)
		go func() {
			defer close(ch)
			for {
				l, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				if d, ok := strings.CutPrefix(l, "data: "); ok {
					var e logEntry
					json.Unmarshal([]byte(d), &e)
					ch <- e
				}
			}
		}()
		return ch, func() { cancel(); resp.Body.Close() }
	}
	expect := func(ch <-chan logEntry, inst, msg string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case e, ok := <-ch:
				if !ok {
					t.Fatalf("stream ended before %s %q", inst, msg)
				}
				if strings.Contains(e.Message, "before-"+tag) {
					t.Errorf("limit=0 stream replayed an old line: %+v", e)
				}
				if e.Instance == inst && strings.Contains(e.Message, msg) {
					return
				}
			case <-timeout:
				t.Fatalf("stream: no %s %q within 10s", inst, msg)
			}
		}
	}
	one, stop1 := sse("/api/logs/stream?instance=api:prod&limit=0")
	defer stop1()
	all, stop2 := sse("/api/logs/stream?limit=0")
	defer stop2()
	s.mustGet("prod.api.localhost", "/log?msg=sse-"+tag)
	expect(one, "api:prod", "sse-"+tag)
	expect(all, "api:prod", "sse-"+tag)
	// An instance spawned after the stream began shows up in the stream of all.
	s.mustTen("spawn", "api:late")
	expect(all, "api:late", "echoapp api:late pid")
}
