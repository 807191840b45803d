package system

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// /metrics moves with real requests, wakes and systemd's accounting, and
// passes the Prometheus linter (promtool check metrics where installed).
func TestMetrics(t *testing.T) {
	s := startTen(t, `
health_check_interval = 1

[service.m]
command = "ECHO --mode activation"
activation = "socket"
health = "/health"
# Long enough that the scrape after the requests (several CLI calls, slow
# under -race on a loaded machine) finds the instance still awake.
idle_timeout = 8
start = "lazy"
`)
	s.mustTen("spawn", "m:a")
	if st := s.psState("m:a"); st != "sleeping" {
		t.Fatalf("lazy instance: %q", st)
	}
	m := s.scrape()
	if v := m.value("ten_instances", "state", "sleeping"); v != 1 {
		t.Errorf("ten_instances{state=sleeping} = %v", v)
	}
	if v := m.value("tenement_instances_up"); v != 0 {
		t.Errorf("tenement_instances_up with the instance asleep = %v", v)
	}
	if v := m.value("ten_instance_health", "instance", "m:a", "state", "sleeping"); v != 1 {
		t.Errorf("ten_instance_health{state=sleeping} = %v", v)
	}

	for i := 0; i < 10; i++ {
		s.mustGet("a.m.localhost", "/")
	}
	if code, _, _ := s.get("a.m.localhost", "/sethealth?code=x"); code != 400 {
		t.Fatalf("bad /sethealth: %d", code)
	}
	s.waitHealth("m:a", 5*time.Second, "healthy", func(h health) bool { return h.Health == "healthy" })
	m = s.scrape()
	for _, c := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"ten_requests_total", []string{"instance", "m:a", "code", "2xx"}, 10},
		{"ten_requests_total", []string{"instance", "m:a", "code", "4xx"}, 1},
		{"ten_request_duration_seconds_count", []string{"instance", "m:a", "code", "2xx"}, 10},
		{"ten_request_duration_seconds_bucket", []string{"instance", "m:a", "code", "2xx", "le", "+Inf"}, 10},
		{"ten_wakes_total", []string{"instance", "m:a", "result", "ok"}, 1},
		{"ten_wake_duration_seconds_count", []string{"instance", "m:a"}, 1},
		{"ten_instances", []string{"state", "running"}, 1},
		{"ten_instances", []string{"state", "sleeping"}, 0},
		{"ten_instance_health", []string{"instance", "m:a", "state", "healthy"}, 1},
		{"ten_instance_health", []string{"instance", "m:a", "state", "sleeping"}, 0},
		{"ten_instance_weight", []string{"instance", "m:a"}, 100},
	} {
		if got := m.value(c.name, c.kv...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.kv, got, c.want)
		}
	}
	// tenement's names, for dashboards and alerts written against tenement.
	for _, c := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"tenement_requests_total", []string{"process", "m", "instance", "a"}, 11},
		{"tenement_request_duration_ms_count", []string{"process", "m", "instance", "a"}, 11},
		{"tenement_request_duration_ms_bucket", []string{"process", "m", "instance", "a", "le", "+Inf"}, 11},
		{"tenement_instances_up", nil, 1},
	} {
		if got := m.value(c.name, c.kv...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.kv, got, c.want)
		}
	}
	if ms, s := m.value("tenement_request_duration_ms_sum", "process", "m", "instance", "a"), m.value("ten_request_duration_seconds_sum", "instance", "m:a", "code", "2xx"); ms < s*1000 {
		t.Errorf("tenement_request_duration_ms_sum %v, ten's 2xx alone %v s", ms, s)
	}
	if v := m.value("ten_request_duration_seconds_sum", "instance", "m:a", "code", "2xx"); v <= 0 || v > 10 {
		t.Errorf("request duration sum %v", v)
	}
	if v := m.value("ten_instance_memory_bytes", "instance", "m:a"); v < 1<<20 {
		t.Errorf("ten_instance_memory_bytes = %v", v)
	}
	if v := m.value("ten_instance_cpu_seconds_total", "instance", "m:a"); v <= 0 {
		t.Errorf("ten_instance_cpu_seconds_total = %v", v)
	}
	lint(t, m.text)

	// It falls asleep; the next request is a second wake.
	s.waitState("m:a", "sleeping", 30*time.Second)
	s.mustGet("a.m.localhost", "/")
	// A request is counted once its answer is out, which the client may
	// read a moment before.
	m = s.scrape()
	for deadline := time.Now().Add(2 * time.Second); m.value("ten_requests_total", "instance", "m:a", "code", "2xx") != 11 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		m = s.scrape()
	}
	if v := m.value("ten_wakes_total", "instance", "m:a", "result", "ok"); v != 2 {
		t.Errorf("wakes after the second wake: %v", v)
	}
	if v := m.value("ten_requests_total", "instance", "m:a", "code", "2xx"); v != 11 {
		t.Errorf("requests: %v", v)
	}

	// A removed instance's series go away.
	s.mustTen("stop", "m:a")
	m = s.scrape()
	if strings.Contains(m.text, `instance="m:a"`) {
		t.Errorf("series of a removed instance remain:\n%s", grepLines(m.text, `instance="m:a"`))
	}
	lint(t, m.text)
}

// lint runs the checks of `promtool check metrics` (the promlint package it
// uses), and promtool itself where it is installed, on ten's own names.
// tenement's names, served beside them as tenement spelled them (such as
// tenement_request_duration_ms, which the linter would have in seconds),
// must parse in the text format.
func lint(t *testing.T, text string) {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	if _, err := parser.TextToMetricFamilies(strings.NewReader(text)); err != nil {
		t.Errorf("/metrics does not parse: %v", err)
	}
	var own []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "tenement_") && !strings.HasPrefix(l, "# HELP tenement_") && !strings.HasPrefix(l, "# TYPE tenement_") {
			own = append(own, l)
		}
	}
	text = strings.Join(own, "\n")
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if path, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed; checked with promlint only")
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A flood of scrapes and lists, as anyone who reaches the listener can send
// (GET /metrics needs no token by default): every one is answered, with
// content that began after it asked (a weight set before the flood's
// second wave is in every list of it), while each costs ten one read of
// systemd at a time (internal/coalesce; its unit test counts the reads).
func TestMetricsAndListFlood(t *testing.T) {
	s := startTen(t, `
[service.f]
command = "ECHO --mode activation"
activation = "socket"

[instances]
f = ["a", "b", "c"]
`)
	for _, id := range []string{"a", "b", "c"} {
		s.waitGet(id+".f.localhost", "/", 30*time.Second)
	}
	tok := s.adminToken()
	flood := func(n int, wantWeight string) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan string, 2*n)
		hc := &http.Client{Timeout: 60 * time.Second}
		for i := 0; i < n; i++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("GET", "http://"+s.addr+"/metrics", nil)
				req.Host = "localhost"
				resp, err := hc.Do(req)
				if err != nil {
					errs <- "scrape: " + err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(b), "\ntenement_instances_up 3\n") {
					errs <- fmt.Sprintf("scrape: %d, tenement_instances_up: %s", resp.StatusCode, grepLines(string(b), "tenement_instances_up"))
				}
			}()
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("GET", "http://"+s.addr+"/api/instances", nil)
				req.Host = "localhost"
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := hc.Do(req)
				if err != nil {
					errs <- "list: " + err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var rows []struct {
					Instance string `json:"instance"`
					Weight   int    `json:"weight"`
				}
				if resp.StatusCode != 200 || json.Unmarshal(b, &rows) != nil || len(rows) != 3 {
					errs <- fmt.Sprintf("list: %d %s", resp.StatusCode, b)
					return
				}
				for _, r := range rows {
					if r.Instance == "f:b" && fmt.Sprint(r.Weight) != wantWeight {
						errs <- fmt.Sprintf("list: f:b weight %d, want %s (set before the request)", r.Weight, wantWeight)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		n = 0
		for e := range errs {
			if n++; n <= 5 {
				t.Error(e)
			}
		}
		if n > 5 {
			t.Errorf("... %d failures in all", n)
		}
	}
	flood(150, "100")
	s.mustTen("weight", "f:b", "7")
	flood(150, "7")
}
