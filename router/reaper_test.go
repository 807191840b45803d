package router

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenhq/ten/units"
)

// gateSleeper is a Controller whose Sleep blocks until its gate opens and
// counts how many run at once.
type gateSleeper struct {
	sleeper
	gate    chan struct{}
	running atomic.Int32
	peak    atomic.Int32
	started chan units.Instance
}

func (s *gateSleeper) Sleep(ctx context.Context, inst units.Instance) error {
	n := s.running.Add(1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	s.started <- inst
	<-s.gate
	s.running.Add(-1)
	return s.sleeper.Sleep(ctx, inst)
}

// The reaper stops idle instances concurrently, at most MaxSleeps at once,
// and one that is slow to stop holds up no other: the rest are taken at the
// next tick.
func TestReapSleepsConcurrently(t *testing.T) {
	r, _ := newTestRouter(t)
	n := MaxSleeps + 36
	sl := &gateSleeper{gate: make(chan struct{}), started: make(chan units.Instance, n)}
	r.ctrl = sl
	sock := app(t, func(http.ResponseWriter, *http.Request) {})
	for i := range n {
		r.Put(Backend{Instance: units.Instance{Service: "api", ID: fmt.Sprintf("i%03d", i)}, Socket: sock, Weight: 100, IdleTimeout: time.Second}, true)
	}
	later := time.Now().Add(2 * time.Second)
	r.reap(context.Background(), later) // returns with the stops under way
	for range MaxSleeps {
		select {
		case <-sl.started:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d stops began at one tick, want %d at once", sl.running.Load(), n, MaxSleeps)
		}
	}
	if got := sl.running.Load(); got != int32(MaxSleeps) {
		t.Fatalf("%d stops at once, want MaxSleeps (%d)", got, MaxSleeps)
	}
	// The next tick, with every slot busy, starts nothing and does not wait.
	done := make(chan struct{})
	go func() { r.reap(context.Background(), later); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a tick waited for the stops under way")
	}
	if got := sl.peak.Load(); got != int32(MaxSleeps) {
		t.Fatalf("peak %d stops at once, want %d", got, MaxSleeps)
	}
	close(sl.gate)
	r.sleeps.wg.Wait()                  // the first 64 done: their slots are free
	r.Reap(context.Background(), later) // the other 36, waiting for them
	if got := sl.n.Load(); got != int32(n) {
		t.Fatalf("%d instances put to sleep, want %d", got, n)
	}
	for i := range n {
		if st, _ := r.Stat(units.Instance{Service: "api", ID: fmt.Sprintf("i%03d", i)}); st.Awake {
			t.Fatalf("i%03d still awake", i)
		}
	}
}

// RunReaper returns only once the sleeps it started are done.
func TestRunReaperWaitsForItsSleeps(t *testing.T) {
	r, _ := newTestRouter(t)
	sl := &gateSleeper{gate: make(chan struct{}), started: make(chan units.Instance, 1)}
	r.ctrl = sl
	sock := app(t, func(http.ResponseWriter, *http.Request) {})
	r.Put(Backend{Instance: units.Instance{Service: "api", ID: "a"}, Socket: sock, Weight: 100, IdleTimeout: time.Millisecond}, true)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	returned := atomic.Bool{}
	go func() { r.RunReaper(ctx, 5*time.Millisecond); returned.Store(true); wg.Done() }()
	<-sl.started
	cancel()
	time.Sleep(50 * time.Millisecond)
	if returned.Load() {
		t.Fatal("RunReaper returned with a stop under way")
	}
	close(sl.gate)
	wg.Wait()
	if sl.n.Load() != 1 {
		t.Fatalf("%d sleeps", sl.n.Load())
	}
}
