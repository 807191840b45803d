package router

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tenhq/ten/units"
)

type recorder struct {
	mu       sync.Mutex
	requests map[int]int
	wakes    int
}

func (r *recorder) ObserveRequest(_ units.Instance, code int, _ time.Duration) {
	r.mu.Lock()
	r.requests[code]++
	r.mu.Unlock()
}

func (r *recorder) ObserveWake(units.Instance, time.Duration, error) {
	r.mu.Lock()
	r.wakes++
	r.mu.Unlock()
}

// app serves HTTP on a unix socket, as an instance behind its systemd socket.
func app(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func newTestRouter(t testing.TB) (*Router, *recorder) {
	rec := &recorder{requests: map[int]int{}}
	r := New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Observer: rec})
	return r, rec
}

func get(r *Router, host, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://"+host+path, nil)
	r.ServeHTTP(w, req)
	return w
}

func TestObserverCountsRequestsAndOneWake(t *testing.T) {
	r, rec := newTestRouter(t)
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/missing" {
			http.NotFound(w, req)
			return
		}
		io.WriteString(w, "hi")
	})
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, false)
	for i := 0; i < 3; i++ {
		if w := get(r, "a.api.example.test", "/"); w.Code != 200 {
			t.Fatalf("GET: %d", w.Code)
		}
	}
	get(r, "a.api.example.test", "/missing")
	if rec.requests[200] != 3 || rec.requests[404] != 1 || rec.wakes != 1 {
		t.Errorf("requests %v wakes %d", rec.requests, rec.wakes)
	}
}

func TestProbeNeverWakesAndIsNotActivity(t *testing.T) {
	r, _ := newTestRouter(t)
	var hosts []string
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		hosts = append(hosts, req.Host)
		w.WriteHeader(503)
	})
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100}, false)
	if _, err := r.Probe(context.Background(), inst, "/health", time.Second, false); !errors.Is(err, ErrAsleep) {
		t.Fatalf("probe of a sleeping instance: %v", err)
	}
	if len(hosts) != 0 {
		t.Fatal("probe reached a sleeping instance")
	}
	r.SetAwake(inst, true)
	before, _ := r.Stat(inst)
	time.Sleep(10 * time.Millisecond)
	code, err := r.Probe(context.Background(), inst, "/health", time.Second, false)
	if err != nil || code != 503 {
		t.Fatalf("probe: %d %v", code, err)
	}
	if len(hosts) != 1 || hosts[0] != "a.api.example.test" {
		t.Errorf("probe Host %v", hosts)
	}
	if after, _ := r.Stat(inst); !after.LastActivity.Equal(before.LastActivity) {
		t.Error("a probe counted as activity")
	}
	if _, err := r.Probe(context.Background(), units.Instance{Service: "x", ID: "y"}, "/", time.Second, true); !errors.Is(err, ErrNoInstance) {
		t.Errorf("probe of an unknown instance: %v", err)
	}
}

func TestSwapAndFailed(t *testing.T) {
	r, _ := newTestRouter(t)
	a, b := units.Instance{Service: "api", ID: "v1"}, units.Instance{Service: "api", ID: "v2"}
	var mu sync.Mutex
	seen := map[string]int{}
	for _, inst := range []units.Instance{a, b} {
		id := inst.ID
		sock := app(t, func(w http.ResponseWriter, req *http.Request) {
			mu.Lock()
			seen[id]++
			mu.Unlock()
		})
		r.Put(Backend{Instance: inst, Socket: sock, Weight: 0, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	}
	r.SetWeight(a, 70)
	if w, ok := r.Swap(a, b); !ok || w != 70 {
		t.Fatalf("swap: %d %v", w, ok)
	}
	if sa, _ := r.Stat(a); sa.Weight != 0 {
		t.Errorf("from keeps weight %d", sa.Weight)
	}
	if sb, _ := r.Stat(b); sb.Weight != 70 {
		t.Errorf("to has weight %d", sb.Weight)
	}
	for i := 0; i < 20; i++ {
		get(r, "api.example.test", "/")
	}
	if seen["v1"] != 0 || seen["v2"] != 20 {
		t.Errorf("after swap: %v", seen)
	}
	r.SetFailed(b, "crashed 4 times")
	if w := get(r, "v2.api.example.test", "/"); w.Code != 503 || seen["v2"] != 20 {
		t.Errorf("failed instance: %d, reached %d", w.Code, seen["v2"])
	}
	if w := get(r, "api.example.test", "/"); w.Code != 503 {
		t.Errorf("service with only a failed instance in rotation: %d", w.Code)
	}
	if _, ok := r.Swap(a, units.Instance{Service: "api", ID: "nope"}); ok {
		t.Error("swap with an unknown instance")
	}
	// A repeated swap (a retried route) leaves the traffic where it went.
	r.SetFailed(b, "")
	if w, ok := r.Swap(a, b); !ok || w != 70 {
		t.Errorf("repeated swap: %d %v", w, ok)
	}
	if sb, _ := r.Stat(b); sb.Weight != 70 {
		t.Errorf("to has weight %d after a repeated swap", sb.Weight)
	}
}

func TestSwapWeight(t *testing.T) {
	for _, c := range []struct{ from, to, want int }{
		{100, 0, 100}, // blue/green
		{0, 100, 100}, // repeated
		{70, 0, 70},   // one of several instances: its share moves
		{30, 50, 80},  // the target keeps its own share too
		{100, 10, 100},
		{0, 0, 100}, // nothing to move: as tenement, the target gets 100
		{0, 40, 40},
	} {
		if got := SwapWeight(c.from, c.to); got != c.want {
			t.Errorf("SwapWeight(%d, %d) = %d, want %d", c.from, c.to, got, c.want)
		}
	}
}

// TestCreateOnRequestAndCaseFold: a request for a missing id of a service
// asks Create, which Puts it (then the request is served) or refuses (the
// client gets its status and message); an id with capitals is reached by a
// lower-cased Host.
func TestCreateOnRequestAndCaseFold(t *testing.T) {
	sock := app(t, func(w http.ResponseWriter, req *http.Request) { io.WriteString(w, "hi "+req.Host) })
	var asked []string
	var r *Router
	create := func(_ context.Context, inst units.Instance, client string) error {
		asked = append(asked, inst.String()+" from "+client)
		if inst.ID == "full" {
			return &Refused{Status: http.StatusTooManyRequests, Msg: "service api has max_instances 1"}
		}
		r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
		return nil
	}
	r = New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Create: create})
	if w := get(r, "new.api.example.test", "/"); w.Code != 200 || w.Body.String() != "hi new.api.example.test" {
		t.Errorf("new id: %d %q", w.Code, w.Body.String())
	}
	if w := get(r, "new.api.example.test", "/"); w.Code != 200 {
		t.Errorf("second request: %d", w.Code)
	}
	if w := get(r, "full.api.example.test", "/"); w.Code != 429 || w.Body.String() != "service api has max_instances 1\n" {
		t.Errorf("refused: %d %q", w.Code, w.Body.String())
	}
	if len(asked) != 2 || asked[0] != "api:new from 192.0.2.1" {
		t.Errorf("Create asked %v", asked)
	}
	r.Put(Backend{Instance: units.Instance{Service: "api", ID: "WR_A"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)
	if w := get(r, "wr_a.api.example.test", "/"); w.Code != 200 || len(asked) != 2 {
		t.Errorf("case-folded id: %d, Create asked %v", w.Code, asked)
	}
}

// TestRemoveAndDrain: a stop asked for by a user lets the requests in
// flight finish (up to its grace) before the instance goes; new requests
// no longer reach it meanwhile.
func TestRemoveAndDrain(t *testing.T) {
	r, _ := newTestRouter(t)
	release := make(chan struct{}, 2)
	started := make(chan struct{}, 1)
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "done")
	})
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: 5 * time.Second}, true)
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() { answered <- get(r, "a.api.example.test", "/") }()
	<-started
	go func() { time.Sleep(200 * time.Millisecond); release <- struct{}{} }()
	t0 := time.Now()
	if left := r.RemoveAndDrain(context.Background(), inst, 5*time.Second); left != 0 {
		t.Errorf("%d requests left in flight", left)
	}
	if d := time.Since(t0); d < 150*time.Millisecond || d > 3*time.Second {
		t.Errorf("drained after %s; the request took 200ms", d)
	}
	if w := <-answered; w.Code != 200 || w.Body.String() != "done" {
		t.Errorf("request in flight: %d %q", w.Code, w.Body.String())
	}
	if _, ok := r.Stat(inst); ok {
		t.Error("instance still routed")
	}

	// Past the grace, it returns with the request still in flight.
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: 5 * time.Second}, true)
	defer func() { release <- struct{}{} }()
	go func() { answered <- get(r, "a.api.example.test", "/") }()
	<-started
	if left := r.RemoveAndDrain(context.Background(), inst, 100*time.Millisecond); left != 1 {
		t.Errorf("after the grace: %d in flight, want 1", left)
	}
}

// TestRefusedInstance: an instance put with Refuse (its service no longer
// declared) answers 503 with the reason at once, awake or asleep, without
// reaching its socket, and is out of its service's rotation.
func TestRefusedInstance(t *testing.T) {
	r, _ := newTestRouter(t)
	reached := 0
	sock := app(t, func(w http.ResponseWriter, req *http.Request) { reached++; io.WriteString(w, "hi") })
	why := "instance old:a is not served: service \"old\" is no longer declared in the config"
	for _, awake := range []bool{false, true} {
		r.Put(Backend{Instance: units.Instance{Service: "old", ID: "a"}, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second, Refuse: why}, awake)
		start := time.Now()
		if w := get(r, "a.old.example.test", "/"); w.Code != 503 || w.Body.String() != why+"\n" {
			t.Errorf("awake %v: %d %q", awake, w.Code, w.Body.String())
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("awake %v: answered after %v, not at once", awake, d)
		}
		if w := get(r, "old.example.test", "/"); w.Code == 200 {
			t.Errorf("awake %v: service host reached a refused instance", awake)
		}
	}
	if reached != 0 {
		t.Errorf("the app was reached %d times", reached)
	}
}

// A Host whose port is not a TCP port is refused with 400 by ServeHTTP too
// (requests that did not come through the fast path's parser: h2c, TLS),
// before it is routed or wakes anything.
func TestHostPortOutOfRange(t *testing.T) {
	r, rec := newTestRouter(t)
	sock := app(t, func(w http.ResponseWriter, req *http.Request) { io.WriteString(w, "hi") })
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, StartupTimeout: time.Second, RequestTimeout: time.Second}, false)
	for _, host := range []string{"a.api.example.test:99999999", "a.api.example.test:65536", "a.api.example.test:8x"} {
		w := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Host = host
		if r.ServeHTTP(w, req); w.Code != http.StatusBadRequest {
			t.Errorf("Host %s: %d %q, want 400", host, w.Code, w.Body.String())
		}
	}
	if rec.wakes != 0 {
		t.Errorf("a refused Host woke the instance (%d wakes)", rec.wakes)
	}
	if w := get(r, "a.api.example.test:8080", "/"); w.Code != 200 {
		t.Errorf("a valid port: %d", w.Code)
	}
}
