package system

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hits sends n requests to host and counts the answering instances.
func (s *tenServer) hits(host string, n int) map[string]int {
	s.t.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		body := s.mustGet(host, "/")
		// "hello from web:v1 pid 123"
		f := strings.Fields(body)
		if len(f) < 3 {
			s.t.Fatalf("body %q", body)
		}
		seen[f[2]]++
	}
	return seen
}

func (s *tenServer) weights() map[string]int {
	s.t.Helper()
	var rows []struct {
		Instance string `json:"instance"`
		Weight   int    `json:"weight"`
	}
	if err := json.Unmarshal([]byte(s.mustTen("--json", "ps", "--all")), &rows); err != nil {
		s.t.Fatal(err)
	}
	w := map[string]int{}
	for _, r := range rows {
		w[r.Instance] = r.Weight
	}
	return w
}

// healthFile makes /health of instance id of a service started with
// --health-file /run/ten-test/health-{id} answer code.
func healthFile(t *testing.T, id string, code string) {
	t.Helper()
	p := filepath.Join("/run/ten-test", "health-"+id)
	if err := os.WriteFile(p, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
}

const deployConfig = `
health_check_interval = 1

[service.web]
command = "ECHO --mode activation --health-file /run/ten-test/health-{id}"
activation = "socket"
health = "/health"

[instances]
web = ["v1"]
`

// deploy waits for health and then moves traffic; route swaps weights in
// one step; a version that never becomes healthy is removed and the old one
// keeps its traffic; weights survive kill -9 of ten serve.
func TestDeployAndRoute(t *testing.T) {
	s := startTen(t, deployConfig)
	s.waitState("web:v1", "running", 10*time.Second)

	out := s.mustTen("deploy", "web:v2", "--weight", "50", "--timeout", "20")
	if !strings.HasPrefix(out, "Deploying web:v2 with weight 50\nWaiting for health check (timeout: 20s)...\nDeployed web:v2 (healthy after") || !strings.Contains(out, "Weight: 50\nStatus: healthy") {
		t.Errorf("deploy output: %q", out)
	}
	if w := s.weights(); w["web:v1"] != 100 || w["web:v2"] != 50 {
		t.Errorf("weights after deploy: %v", w)
	}
	// Healthy at once, in health and in ps: scripts run ps right after deploy.
	if h := s.health("web:v2"); h.State != "running" || h.Health != "healthy" || !strings.Contains(h.Detail, "GET /health: 200") {
		t.Errorf("deployed instance: %+v", h)
	}
	if got := s.psHealth("web:v2"); got != "healthy" {
		t.Errorf("deployed instance's HEALTH in ps: %q", got)
	}
	if seen := s.hits("web.localhost", 60); seen["web:v1"] == 0 || seen["web:v2"] == 0 {
		t.Errorf("traffic after deploy: %v", seen)
	}

	out = s.mustTen("route", "web", "--from", "v1", "--to", "v2")
	if !strings.Contains(out, "Routed traffic: web:v1 -> web:v2\n  web:v1 weight = 0\n  web:v2 weight = 100") {
		t.Errorf("route output: %q", out)
	}
	if w := s.weights(); w["web:v1"] != 0 || w["web:v2"] != 100 {
		t.Errorf("weights after route: %v", w)
	}
	if seen := s.hits("web.localhost", 20); seen["web:v2"] != 20 {
		t.Errorf("traffic after route: %v", seen)
	}
	// A deploy script that retries its route (web:v1 has weight 0 now) keeps
	// the traffic on web:v2; the answer has tenement's fields too.
	out = s.mustTen("--json", "route", "web", "--from", "v1", "--to", "v2")
	var rr map[string]any
	if err := json.Unmarshal([]byte(out), &rr); err != nil || rr["from_instance"] != "web:v1" || rr["to_instance"] != "web:v2" ||
		rr["from_weight"] != 0.0 || rr["to_weight"] != 100.0 {
		t.Errorf("route repeated, --json: %v %q", err, out)
	}
	if w := s.weights(); w["web:v1"] != 0 || w["web:v2"] != 100 {
		t.Errorf("weights after the route is repeated: %v", w)
	}
	if seen := s.hits("web.localhost", 20); seen["web:v2"] != 20 {
		t.Errorf("traffic after the route is repeated: %v", seen)
	}
	// The deploy answer has tenement's socket and status.
	// (tenement's older form: ten deploy SERVICE --version VERSION)
	out = s.mustTen("--json", "deploy", "web", "--version", "v3", "--weight", "0")
	var dr map[string]any
	if err := json.Unmarshal([]byte(out), &dr); err != nil || dr["instance"] != "web:v3" || dr["status"] != "healthy" ||
		dr["socket"] != "/run/tenement/web/v3.sock" || dr["weight"] != 0.0 {
		t.Errorf("deploy --json: %v %q", err, out)
	}
	s.mustTen("stop", "web:v3")
	// The direct host of the instance out of rotation still works.
	s.mustGet("v1.web.localhost", "/")
	if out, err := s.ten("route", "web", "--from", "v2", "--to", "nope"); err == nil || !strings.Contains(out, "web:nope") {
		t.Errorf("route to an unknown instance: %v %q", err, out)
	}

	// A version whose health check never passes.
	healthFile(t, "bad", "500")
	start := time.Now()
	out, err := s.ten("deploy", "web:bad", "--timeout", "3")
	if err == nil || !strings.Contains(out, "not healthy within 3s") || !strings.Contains(out, "GET /health") || !strings.Contains(out, "500") ||
		!strings.Contains(out, "keep their weights") {
		t.Errorf("deploy of an unhealthy version: %v\n%s", err, out)
	}
	if d := time.Since(start); d < 3*time.Second || d > 15*time.Second {
		t.Errorf("deploy of an unhealthy version returned after %s", d)
	}
	if strings.Contains(s.mustTen("ps"), "web:bad") {
		t.Errorf("the failed version is still listed:\n%s", s.mustTen("ps"))
	}
	if got := show(t, "tenement-web@bad.socket", "LoadState"); got != "not-found" {
		t.Errorf("failed version's socket: %s", got)
	}
	if w := s.weights(); w["web:v1"] != 0 || w["web:v2"] != 100 || len(w) != 2 {
		t.Errorf("weights after a failed deploy: %v", w)
	}
	if seen := s.hits("web.localhost", 10); seen["web:v2"] != 10 {
		t.Errorf("traffic after a failed deploy: %v", seen)
	}
	// Deploying a version that runs already succeeds, as tenement's does (a
	// deploy script run twice): it is not re-made, and gets the weight.
	pid := show(t, "tenement-web@v2.service", "MainPID")
	out = s.mustTen("deploy", "web:v2", "--weight", "70")
	if !strings.Contains(out, "Deployed web:v2 (healthy after") || !strings.Contains(out, "Weight: 70\nStatus: healthy") || !strings.Contains(out, "existed already") {
		t.Errorf("deploy of a running version: %q", out)
	}
	if got := show(t, "tenement-web@v2.service", "MainPID"); got != pid || pid == "0" {
		t.Errorf("deploy of a running version re-made it: pid %s, then %s", pid, got)
	}
	if w := s.weights(); w["web:v1"] != 0 || w["web:v2"] != 70 {
		t.Errorf("weights after a deploy of a running version: %v", w)
	}
	// One that sleeps is woken; one whose health fails is left as it was.
	s.mustTen("deploy", "web:v4", "--weight", "0")
	s.mustSleep(t, "web:v4")
	s.waitState("web:v4", "sleeping", 10*time.Second)
	out = s.mustTen("--json", "deploy", "web:v4", "--weight", "0")
	if err := json.Unmarshal([]byte(out), &dr); err != nil || dr["existed"] != true || dr["status"] != "healthy" {
		t.Errorf("deploy of a sleeping version, --json: %v %q", err, out)
	}
	if got := show(t, "tenement-web@v4.service", "ActiveState"); got != "active" {
		t.Errorf("sleeping version after its deploy: %s", got)
	}
	healthFile(t, "v4", "500")
	if out, err := s.ten("deploy", "web:v4", "--weight", "50", "--timeout", "2"); err == nil || !strings.Contains(out, "left as it was") {
		t.Errorf("deploy of an existing version whose health fails: %v %q", err, out)
	}
	if w := s.weights(); w["web:v4"] != 0 || w["web:v2"] != 70 {
		t.Errorf("weights after a failed deploy of an existing version: %v", w)
	}
	if got := show(t, "tenement-web@v4.service", "ActiveState"); got != "active" {
		t.Errorf("existing version after its failed deploy: %s", got)
	}
	s.mustTen("stop", "web:v4")
	s.mustTen("weight", "web:v2", "100")

	// Weights survive kill -9 and a new ten serve.
	s.mustTen("weight", "web:v1", "30")
	s.kill()
	s.start()
	if w := s.weights(); w["web:v1"] != 30 || w["web:v2"] != 100 {
		t.Errorf("weights after kill -9 and restart of ten serve: %v", w)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "data", "state.json")); err != nil {
		t.Error(err)
	}
}

// deploy --replace moves all traffic to the new version, lets the old one
// finish its requests in flight, then removes it.
func TestDeployReplaceDrains(t *testing.T) {
	s := startTen(t, deployConfig)
	s.waitState("web:v1", "running", 10*time.Second)

	var wg sync.WaitGroup
	var streamEnd time.Time
	var code int
	var body string
	var streamErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		// 10 chunks 300 ms apart: in flight for 3 s.
		code, body, streamErr = s.get("web.localhost", "/stream?n=10&ms=300")
		streamEnd = time.Now()
	}()
	time.Sleep(300 * time.Millisecond)
	out := s.mustTen("deploy", "web:v2", "--replace")
	deployEnd := time.Now()
	wg.Wait()
	if streamErr != nil || code != 200 || strings.Count(body, "chunk") != 10 {
		t.Errorf("request in flight during the replace: %d %v, %d chunks", code, streamErr, strings.Count(body, "chunk"))
	}
	if deployEnd.Before(streamEnd.Add(-200 * time.Millisecond)) {
		t.Errorf("deploy --replace returned %s before the old version's request finished", streamEnd.Sub(deployEnd))
	}
	if !strings.Contains(out, "drained and removed web:v1") {
		t.Errorf("deploy --replace output: %q", out)
	}
	for _, u := range []string{"tenement-web@v1.socket", "tenement-web@v1.service"} {
		if got := show(t, u, "LoadState"); got != "not-found" {
			t.Errorf("%s after replace: %s", u, got)
		}
	}
	if w := s.weights(); len(w) != 1 || w["web:v2"] != 100 {
		t.Errorf("instances after replace: %v", w)
	}
	if seen := s.hits("web.localhost", 10); seen["web:v2"] != 10 {
		t.Errorf("traffic after replace: %v", seen)
	}
}

// A deploy whose spawn fails (here: its workdir does not exist, so systemd
// cannot start it) leaves nothing behind: a later spawn of the same instance
// gets the default weight, not the deploy's weight 0.
func TestFailedDeploySpawnLeavesNoWeight(t *testing.T) {
	wd := "/run/ten-test/wd-v2"
	os.RemoveAll(wd)
	t.Cleanup(func() { os.RemoveAll(wd) })
	s := startTen(t, `
[service.web]
command = "ECHO --mode activation"
activation = "socket"
workdir = "/run/ten-test/wd-v2"
isolation = "process"
start = "eager"
`)
	if out, err := s.ten("deploy", "web:v2", "--timeout", "5"); err == nil {
		t.Fatalf("deploy with a missing workdir succeeded: %s", out)
	}
	if strings.Contains(s.mustTen("ps"), "web:v2") {
		t.Fatalf("failed deploy is listed:\n%s", s.mustTen("ps"))
	}
	if err := os.MkdirAll(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	s.mustTen("spawn", "web:v2")
	if w := s.weights(); w["web:v2"] != 100 {
		t.Errorf("weight of web:v2 spawned after a failed deploy: %d, want 100 (%v)", w["web:v2"], w)
	}
}
