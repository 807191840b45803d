package wakeq

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func acquire(t *testing.T, q *Queue, key string) *Ticket {
	t.Helper()
	tk, err := q.Acquire(context.Background(), key, 0)
	if err != nil {
		t.Fatalf("acquire %s: %v", key, err)
	}
	return tk
}

// later acquires key in a goroutine and delivers the ticket.
func later(q *Queue, ctx context.Context, key string) <-chan any {
	ch := make(chan any, 1)
	go func() {
		tk, err := q.Acquire(ctx, key, 0)
		if err != nil {
			ch <- err
			return
		}
		ch <- tk
	}()
	return ch
}

func waitLen(t *testing.T, q *Queue, waiting, running int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, r := q.Len()
		if w == waiting && r == running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue: %d waiting, %d running; want %d, %d", w, r, waiting, running)
		}
		time.Sleep(time.Millisecond)
	}
}

func pending(ch <-chan any) bool {
	select {
	case <-ch:
		return false
	case <-time.After(20 * time.Millisecond):
		return true
	}
}

func TestBoundAndFIFO(t *testing.T) {
	q := New(2, 2)
	a, b := acquire(t, q, "a"), acquire(t, q, "b")
	c := later(q, context.Background(), "c")
	waitLen(t, q, 1, 2)
	d := later(q, context.Background(), "d")
	waitLen(t, q, 2, 2)
	// Full: the fifth instance is turned away at once.
	if _, err := q.Acquire(context.Background(), "e", 0); !errors.Is(err, ErrFull) {
		t.Fatalf("e: %v, want ErrFull", err)
	}
	if got := testutil.ToFloat64(q.rejected); got != 1 {
		t.Errorf("rejected_total %v", got)
	}
	if !pending(c) || !pending(d) {
		t.Fatal("queued wake started while two ran")
	}
	a.Done(true)
	tc := (<-c).(*Ticket)
	if !pending(d) {
		t.Fatal("d started before c's place was free (FIFO)")
	}
	b.Done(false)
	td := (<-d).(*Ticket)
	waitLen(t, q, 0, 2)
	tc.Done(true)
	td.Done(true)
	td.Done(true) // a second Done is ignored
	waitLen(t, q, 0, 0)
}

func TestJoinSameInstance(t *testing.T) {
	q := New(1, 0)
	a1 := acquire(t, q, "a")
	a2 := acquire(t, q, "a") // joins the running wake: no second place
	waitLen(t, q, 0, 1)
	if _, err := q.Acquire(context.Background(), "b", 0); !errors.Is(err, ErrFull) {
		t.Fatalf("b with no queue: %v", err)
	}
	// A failed request keeps the wake running while another waits for it.
	a1.Done(false)
	waitLen(t, q, 0, 1)
	a2.Done(false)
	waitLen(t, q, 0, 0)

	// The first answer ends the wake for everyone.
	a1, a2 = acquire(t, q, "a"), acquire(t, q, "a")
	a1.Done(true)
	waitLen(t, q, 0, 0)
	b := acquire(t, q, "b")
	a2.Done(false) // a late Done of the finished wake frees nothing twice
	waitLen(t, q, 0, 1)
	b.Done(true)
	waitLen(t, q, 0, 0)
}

func TestJoinQueued(t *testing.T) {
	q := New(1, 1)
	a := acquire(t, q, "a")
	b1 := later(q, context.Background(), "b")
	waitLen(t, q, 1, 1)
	b2 := later(q, context.Background(), "b") // joins b's place in the queue
	time.Sleep(10 * time.Millisecond)
	waitLen(t, q, 1, 1)
	a.Done(true)
	t1, t2 := (<-b1).(*Ticket), (<-b2).(*Ticket)
	waitLen(t, q, 0, 1)
	t1.Done(true)
	t2.Done(true)
	waitLen(t, q, 0, 0)
}

func TestCancelWhileQueued(t *testing.T) {
	q := New(1, 4)
	a := acquire(t, q, "a")
	ctx, cancel := context.WithCancel(context.Background())
	b := later(q, ctx, "b")
	c := later(q, context.Background(), "c")
	waitLen(t, q, 2, 1)
	cancel()
	if err := (<-b).(error); !errors.Is(err, context.Canceled) {
		t.Fatalf("b: %v", err)
	}
	waitLen(t, q, 1, 1)
	a.Done(true)
	tc := (<-c).(*Ticket)
	tc.Done(true)
	waitLen(t, q, 0, 0)
}

func TestUnbounded(t *testing.T) {
	q := New(0, 0)
	var ts []*Ticket
	for _, k := range []string{"a", "b", "c", "d"} {
		ts = append(ts, acquire(t, q, k))
	}
	waitLen(t, q, 0, 4)
	for _, tk := range ts {
		tk.Done(true)
	}
	waitLen(t, q, 0, 0)
}

func TestRetryAfter(t *testing.T) {
	now := time.Unix(1000, 0)
	q := New(2, 10)
	q.now = func() time.Time { return now }
	if got := q.RetryAfter(); got != 1 {
		t.Errorf("no history, empty queue: %d, want 1 (one round of the assumed 1 s)", got)
	}
	a := acquire(t, q, "a")
	now = now.Add(3 * time.Second)
	a.Done(true)
	// Average wake 3 s, nothing queued: one round.
	if got := q.RetryAfter(); got != 3 {
		t.Errorf("avg 3s: %d, want 3", got)
	}
	q.avg = time.Hour
	if got := q.RetryAfter(); got != 60 {
		t.Errorf("capped: %d", got)
	}
}

func TestMetrics(t *testing.T) {
	q := New(1, 1)
	reg := prometheus.NewRegistry()
	reg.MustRegister(q.Collectors()...)
	a := acquire(t, q, "a")
	b := later(q, context.Background(), "b")
	waitLen(t, q, 1, 1)
	q.Acquire(context.Background(), "c", 0)
	want := `
# HELP ten_wake_queue_in_progress Wakes running now (from their start until the instance answered or the wake failed).
# TYPE ten_wake_queue_in_progress gauge
ten_wake_queue_in_progress 1
# HELP ten_wake_queue_rejected_total Requests answered 503 because the wake queue was full, the wakes queued ahead would take longer than wake_queue_timeout, or their wake waited in it that long.
# TYPE ten_wake_queue_rejected_total counter
ten_wake_queue_rejected_total 1
# HELP ten_wake_queue_waiting Instances whose wake waits for a place (max_concurrent_wakes are running).
# TYPE ten_wake_queue_waiting gauge
ten_wake_queue_waiting 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ten_wake_queue_in_progress", "ten_wake_queue_rejected_total", "ten_wake_queue_waiting"); err != nil {
		t.Error(err)
	}
	a.Done(true)
	(<-b).(*Ticket).Done(true)
	if n := testutil.CollectAndCount(q.waitHist); n != 1 {
		t.Errorf("histogram series %d", n)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "ten_wake_queue_wait_seconds" {
			if c := mf.Metric[0].Histogram.GetSampleCount(); c != 2 {
				t.Errorf("wait_seconds count %d, want 2 (a at once, b after the queue)", c)
			}
		}
	}
}

func TestMaxWait(t *testing.T) {
	q := New(1, 4)
	a := acquire(t, q, "a")
	t0 := time.Now()
	if _, err := q.Acquire(context.Background(), "b", 50*time.Millisecond); !errors.Is(err, ErrWaited) {
		t.Fatalf("b: %v, want ErrWaited", err)
	}
	if d := time.Since(t0); d < 50*time.Millisecond || d > 2*time.Second {
		t.Errorf("b gave up after %s", d)
	}
	if got := testutil.ToFloat64(q.rejected); got != 1 {
		t.Errorf("rejected_total %v", got)
	}
	waitLen(t, q, 0, 1) // b left the queue
	a.Done(true)
	waitLen(t, q, 0, 0)
}

// fakeClock is a settable clock for the queue's wake durations.
type fakeClock struct {
	mu sync.Mutex // mu guards t
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestBacklogAdmission: once wakes have been seen to take a second each,
// with 2 running, the k-th queued wake is estimated to wait k/2 s; a wake
// whose estimate is over the wait allowed is turned away at once
// (ErrBacklog), the ones within it queue, and with no wake finished yet
// nothing is turned away on a guess.
func TestBacklogAdmission(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	q := New(2, 100)
	q.now = clk.now
	// No history: a burst far past what could start in time still queues.
	a, b := acquire(t, q, "a"), acquire(t, q, "b")
	if est := q.Estimate(50); est != 0 {
		t.Fatalf("estimate with no finished wake %s, want 0", est)
	}
	ctx, cancel := context.WithCancel(context.Background())
	early := later(q, ctx, "early")
	waitLen(t, q, 1, 2)
	cancel()
	if err, _ := (<-early).(error); !errors.Is(err, context.Canceled) {
		t.Fatalf("early: %v, want context.Canceled", err)
	}
	// Both wakes took 1 s: the pace is 2 per second.
	clk.add(time.Second)
	a.Done(true)
	b.Done(true)
	if est := q.Estimate(3); est != 1500*time.Millisecond {
		t.Fatalf("estimate for the 3rd in the queue %s, want 1.5s", est)
	}
	r1, r2 := acquire(t, q, "r1"), acquire(t, q, "r2")
	const wait = 2 * time.Second
	// Queue positions 1..4 wait 0.5, 1, 1.5, 2 s: within 2 s.
	var queued []<-chan any
	for _, k := range []string{"q1", "q2", "q3", "q4"} {
		queued = append(queued, laterWait(q, k, wait))
		waitLen(t, q, len(queued), 2)
	}
	// The 5th would wait 2.5 s: turned away at once.
	t0 := time.Now()
	if _, err := q.Acquire(context.Background(), "q5", wait); !errors.Is(err, ErrBacklog) {
		t.Fatalf("q5: %v, want ErrBacklog", err)
	}
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Errorf("q5 was turned away after %s, want at once", d)
	}
	if got := testutil.ToFloat64(q.rejected); got != 1 {
		t.Errorf("rejected_total %v, want 1", got)
	}
	// A request for a queued instance joins its wake, whatever the backlog.
	join := laterWait(q, "q4", wait)
	if !pending(join) {
		t.Fatal("a request for a queued instance did not join its wake")
	}
	// Without a wait bound (0) nothing is turned away on the estimate.
	nolimit := later(q, context.Background(), "q6")
	waitLen(t, q, 5, 2)
	// Let everything through; each queued wake starts in order.
	r1.Done(true)
	r2.Done(true)
	for i, ch := range append(queued, join, nolimit) {
		tk, ok := (<-ch).(*Ticket)
		if !ok {
			t.Fatalf("queued wake %d did not start", i)
		}
		tk.Done(true)
	}
	waitLen(t, q, 0, 0)
}

func laterWait(q *Queue, key string, wait time.Duration) <-chan any {
	ch := make(chan any, 1)
	go func() {
		tk, err := q.Acquire(context.Background(), key, wait)
		if err != nil {
			ch <- err
			return
		}
		ch <- tk
	}()
	return ch
}

// TestShedOnPace: a burst arrives before any wake has finished, so all of
// it queues. When the first wake ends (it took 1 s, one runs at a time),
// the wakes queued past what can start within their 2 s wait are turned
// away at once with ErrBacklog, not when their wait runs out; the others
// keep their places.
func TestShedOnPace(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	q := New(1, 100)
	q.now = clk.now
	a := acquire(t, q, "a")
	const wait = 2 * time.Second
	b := laterWait(q, "b", wait)
	waitLen(t, q, 1, 1)
	c := laterWait(q, "c", wait)
	waitLen(t, q, 2, 1)
	d := laterWait(q, "d", wait)
	waitLen(t, q, 3, 1)
	clk.add(time.Second)
	t0 := time.Now()
	a.Done(true)
	// b starts now; c would start 1 s from now (its deadline: kept); d
	// 2 s from now, past its deadline: turned away.
	tb, ok := (<-b).(*Ticket)
	if !ok {
		t.Fatal("b did not start when a was done")
	}
	if err, _ := (<-d).(error); !errors.Is(err, ErrBacklog) {
		t.Fatalf("d: %v, want ErrBacklog", err)
	}
	if el := time.Since(t0); el > time.Second {
		t.Errorf("d was turned away %s after the pace was known, want at once", el)
	}
	if !pending(c) {
		t.Fatal("c left the queue although it can start in time")
	}
	waitLen(t, q, 1, 1)
	if got := testutil.ToFloat64(q.rejected); got != 1 {
		t.Errorf("rejected_total %v, want 1", got)
	}
	// d's instance can queue again later, as a new wake.
	tb.Done(true)
	tc, ok := (<-c).(*Ticket)
	if !ok {
		t.Fatal("c did not start when b was done")
	}
	tc.Done(true)
	waitLen(t, q, 0, 0)
	acquire(t, q, "d").Done(true)
}
