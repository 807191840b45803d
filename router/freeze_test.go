package router

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenhq/ten/units"
)

// fakeFreezer records freezes and thaws; a thaw takes a moment, so that
// concurrent requests meet one in progress.
type fakeFreezer struct {
	freezes, thaws atomic.Int32
	frozen         atomic.Bool
}

func (f *fakeFreezer) Freeze(context.Context, units.Instance) error {
	f.freezes.Add(1)
	f.frozen.Store(true)
	return nil
}

func (f *fakeFreezer) Thaw(context.Context, units.Instance, string) error {
	time.Sleep(20 * time.Millisecond)
	f.thaws.Add(1)
	f.frozen.Store(false)
	return nil
}

func TestFreezeAfterIdleThawOnRequest(t *testing.T) {
	r, _ := newTestRouter(t)
	ff := &fakeFreezer{}
	r.freezer = ff // a test router gets its Freezer after New
	release := make(chan struct{})
	var thawedAtArrival atomic.Int32
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		// A frozen app does not run: like the kernel's freezer, hold the
		// request until the thaw, and count any answered while frozen.
		for i := 0; ff.frozen.Load() && i < 2000; i++ {
			time.Sleep(time.Millisecond)
		}
		if ff.frozen.Load() {
			thawedAtArrival.Add(1)
		}
		if req.URL.Path == "/slow" {
			<-release
		}
	})
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, IdleTimeout: 50 * time.Millisecond, Freeze: true, StartupTimeout: time.Second, RequestTimeout: 5 * time.Second}, true)

	// A request in flight keeps it from freezing, however long it takes.
	done := make(chan int)
	go func() { done <- get(r, "a.api.example.test", "/slow").Code }()
	time.Sleep(20 * time.Millisecond)
	r.Reap(context.Background(), time.Now().Add(time.Second))
	if ff.freezes.Load() != 0 {
		t.Fatal("froze an instance with a request in flight")
	}
	close(release)
	if c := <-done; c != 200 {
		t.Fatalf("slow request: %d", c)
	}

	// An open connection the router does not relay keeps it awake too.
	open := 1
	r.connections = func(units.Instance) int { return open }
	r.Reap(context.Background(), time.Now().Add(time.Second))
	if ff.freezes.Load() != 0 {
		t.Fatal("froze an instance with an open connection")
	}
	open = 0
	r.Reap(context.Background(), time.Now().Add(time.Second))
	st, _ := r.Stat(inst)
	if ff.freezes.Load() != 1 || !st.Frozen || !st.Awake || st.FrozenSince.IsZero() {
		t.Fatalf("after idle: freezes %d, stat %+v", ff.freezes.Load(), st)
	}
	// Frozen: a probe does not thaw it.
	if _, err := r.Probe(context.Background(), inst, "/", time.Second, false); !errors.Is(err, ErrAsleep) {
		t.Fatalf("probe of a frozen instance: %v", err)
	}
	// Concurrent requests share one thaw (started as they are sent: they
	// wait in the backlog meanwhile), and none is answered by a frozen app.
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); codes <- get(r, "a.api.example.test", "/").Code }()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("request during thaw: %d", c)
		}
	}
	if n := ff.thaws.Load(); n != 1 {
		t.Errorf("%d thaws for 8 concurrent requests", n)
	}
	if n := thawedAtArrival.Load(); n != 0 {
		t.Errorf("%d requests answered by the app while frozen", n)
	}
	if st, _ := r.Stat(inst); st.Frozen {
		t.Error("still frozen after requests")
	}
}

// sleeper is a Controller that records Sleep calls.
type sleeper struct{ n atomic.Int32 }

func (s *sleeper) Sleep(context.Context, units.Instance) error { s.n.Add(1); return nil }
func (s *sleeper) WakeFailed(units.Instance, string)           {}
func (s *sleeper) Answered(units.Instance)                     {}

func TestFreezeThenStop(t *testing.T) {
	r, _ := newTestRouter(t)
	sl := &sleeper{}
	r.ctrl = sl
	ff := &fakeFreezer{}
	r.freezer = ff // a test router gets its Freezer after New
	sock := app(t, func(http.ResponseWriter, *http.Request) {})
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, IdleTimeout: time.Second, StopAfter: 3 * time.Second, Freeze: true}, true)
	now := time.Now()
	r.Reap(context.Background(), now.Add(2*time.Second))
	if st, _ := r.Stat(inst); !st.Frozen || sl.n.Load() != 0 {
		t.Fatalf("after idle_timeout: %+v, sleeps %d", st, sl.n.Load())
	}
	r.Reap(context.Background(), now.Add(2500*time.Millisecond))
	if sl.n.Load() != 0 {
		t.Fatal("stopped before stop_after")
	}
	r.Reap(context.Background(), now.Add(4*time.Second))
	st, _ := r.Stat(inst)
	if sl.n.Load() != 1 || st.Frozen || st.Awake || ff.thaws.Load() != 1 {
		t.Fatalf("after stop_after: sleeps %d thaws %d stat %+v", sl.n.Load(), ff.thaws.Load(), st)
	}
}

// The reaper decides from what it read before taking the backend's lock; an
// L4 wake that thaws the instance, or a request that comes and goes, in
// between must keep it from putting the instance to sleep. The Connections
// hook runs in that window, so the test does its work there.
func TestReapRechecksUnderLock(t *testing.T) {
	r, _ := newTestRouter(t)
	sl := &sleeper{}
	r.ctrl = sl
	ff := &fakeFreezer{}
	r.freezer = ff // a test router gets its Freezer after New
	sock := app(t, func(http.ResponseWriter, *http.Request) {})
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, IdleTimeout: 50 * time.Millisecond, StopAfter: 50 * time.Millisecond,
		Freeze: true, StartupTimeout: time.Second, RequestTimeout: time.Second}, true)

	// Frozen and silent past stop_after, but thawed (L4 wake) meanwhile.
	time.Sleep(100 * time.Millisecond)
	r.Reap(context.Background(), time.Now())
	if st, _ := r.Stat(inst); !st.Frozen {
		t.Fatalf("not frozen after idle_timeout: %+v", st)
	}
	time.Sleep(100 * time.Millisecond)
	r.connections = func(units.Instance) int {
		if err := r.Thaw(context.Background(), inst, "l4"); err != nil {
			t.Error(err)
		}
		return 0
	}
	r.Reap(context.Background(), time.Now())
	if st, _ := r.Stat(inst); sl.n.Load() != 0 || !st.Awake {
		t.Fatalf("stopped an instance an L4 connection had just thawed: sleeps %d, %+v", sl.n.Load(), st)
	}

	// Awake and idle past idle_timeout, but a request came and went meanwhile.
	time.Sleep(100 * time.Millisecond)
	now := time.Now()
	r.connections = func(units.Instance) int {
		if c := get(r, "a.api.example.test", "/").Code; c != 200 {
			t.Errorf("request: %d", c)
		}
		return 0
	}
	n := ff.freezes.Load()
	r.Reap(context.Background(), now)
	if st, _ := r.Stat(inst); ff.freezes.Load() != n || st.Frozen {
		t.Fatalf("froze an instance that had just answered a request: %+v", st)
	}
}

// wakingSleeper is a Controller whose Sleep sees systemd report the service
// running again before it returns: a connection re-activated it meanwhile.
type wakingSleeper struct {
	sleeper
	r    *Router
	inst units.Instance
}

func (s *wakingSleeper) Sleep(ctx context.Context, inst units.Instance) error {
	s.r.SetAwake(inst, false) // deactivating
	s.r.SetAwake(inst, true)  // activating: a connection arrived
	return s.sleeper.Sleep(ctx, inst)
}

// The reaper must not mark an instance asleep that systemd reported running
// again while it was being stopped; otherwise the router would treat a
// running instance as asleep and never reap it again.
func TestReapKeepsAwakeWhenWokenDuringStop(t *testing.T) {
	r, _ := newTestRouter(t)
	inst := units.Instance{Service: "api", ID: "a"}
	r.ctrl = &wakingSleeper{r: r, inst: inst}
	sock := app(t, func(http.ResponseWriter, *http.Request) {})
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, IdleTimeout: time.Second}, true)
	r.Reap(context.Background(), time.Now().Add(2*time.Second))
	if st, _ := r.Stat(inst); !st.Awake {
		t.Fatalf("reaper marked asleep an instance systemd reported running: %+v", st)
	}
	// Without a wake during the stop, the instance is asleep afterwards.
	r.ctrl = &sleeper{}
	r.Reap(context.Background(), time.Now().Add(4*time.Second))
	if st, _ := r.Stat(inst); st.Awake {
		t.Fatalf("reaper did not mark a stopped instance asleep: %+v", st)
	}
}

// failingFreezer freezes but cannot thaw.
type failingFreezer struct{ fakeFreezer }

func (f *failingFreezer) Thaw(context.Context, units.Instance, string) error {
	return errors.New("cgroup.freeze: permission denied")
}

// A request to a frozen instance that cannot be thawed gets a 502 naming the
// cause at once, not a wait until its timeout.
func TestThawFailureAnswers502(t *testing.T) {
	r, _ := newTestRouter(t)
	ff := &failingFreezer{}
	r.freezer = ff // a test router gets its Freezer after New
	sock := app(t, func(w http.ResponseWriter, req *http.Request) {
		for ff.frozen.Load() { // frozen for good: never answers
			time.Sleep(time.Millisecond)
			if req.Context().Err() != nil {
				return
			}
		}
	})
	inst := units.Instance{Service: "api", ID: "a"}
	r.Put(Backend{Instance: inst, Socket: sock, Weight: 100, IdleTimeout: 50 * time.Millisecond, Freeze: true, StartupTimeout: time.Minute, RequestTimeout: time.Minute}, true)
	r.Reap(context.Background(), time.Now().Add(time.Second))
	if st, _ := r.Stat(inst); !st.Frozen {
		t.Fatalf("not frozen: %+v", st)
	}
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- get(r, "a.api.example.test", "/") }()
	select {
	case w := <-done:
		if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "could not be thawed") || !strings.Contains(w.Body.String(), "permission denied") {
			t.Errorf("got %d %q", w.Code, w.Body.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("request to an instance that cannot be thawed hangs")
	}
}
