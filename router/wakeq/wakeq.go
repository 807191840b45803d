// Package wakeq bounds how many sleeping instances wake at once. A wake
// storm (hundreds of sleepers hit at the same moment) otherwise starts every
// service together: they share the CPU, each takes many times longer than
// alone, and all of them run into their startup_timeout. The queue lets
// max_concurrent_wakes wakes run, holds up to wake_queue more in FIFO order,
// and turns away the rest at once (the router answers 503 with Retry-After),
// so that no request hangs and no instance's startup_timeout runs while it
// waits for other instances' wakes. A wake waits in the queue at most a
// bound of its own (wake_queue_timeout), and one that the queue ahead of it
// would, at the recent pace of wakes, keep waiting longer than that is
// turned away at once instead of after the wait.
//
// Requests for an instance whose wake is already queued or running join that
// wake: one instance takes one place, however many requests wait for it.
package wakeq

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrFull is returned by Acquire when the queue is full.
var ErrFull = errors.New("too many instances waking at once: wake queue full")

// ErrBacklog is returned by Acquire when the wakes queued ahead would, at
// the recent pace, take longer than the wait allowed.
var ErrBacklog = errors.New("too many instances waking at once: the wakes queued ahead would take longer than the wait allowed")

// ErrWaited is returned by Acquire when the wake waited in the queue for
// the longest time allowed and has still not started.
var ErrWaited = errors.New("too many instances waking at once: waited too long in the wake queue")

// Queue is a bounded FIFO of wakes keyed by instance. The zero value is not
// usable; call New.
type Queue struct {
	max, maxQueued int
	now            func() time.Time

	mu sync.Mutex // mu guards the following
	// running counts granted wakes not yet done.
	running int
	// queue holds waiting wakes in arrival order.
	queue []*wake
	// byKey is every queued or running wake.
	byKey map[string]*wake
	// avg is a moving average of how long a wake ran (grant to done).
	avg time.Duration

	waiting  prometheus.GaugeFunc
	progress prometheus.GaugeFunc
	rejected prometheus.Counter
	waitHist prometheus.Histogram
}

// wake is one instance's wake, shared by every request waiting for it.
type wake struct {
	key     string
	holders int
	granted chan struct{} // closed when the wake may start
	// refused is closed when the queue turned the waiting wake away: at
	// the pace of the wakes before it, it would not start by deadline.
	refused  chan struct{}
	deadline time.Time // the latest start its requests wait for (zero: none)
	start    time.Time // when it was granted
	done     bool
}

// New returns a queue that runs at most maxConcurrent wakes at once and
// holds at most maxQueued more. maxConcurrent <= 0 means no bound (every
// wake starts at once; the queue only counts).
func New(maxConcurrent, maxQueued int) *Queue {
	q := &Queue{max: maxConcurrent, maxQueued: maxQueued, now: time.Now, byKey: map[string]*wake{}}
	q.waiting = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: prometheus.BuildFQName("ten", "wake_queue", "waiting"),
		Help: "Instances whose wake waits for a place (max_concurrent_wakes are running).",
	}, func() float64 { w, _ := q.Len(); return float64(w) })
	q.progress = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: prometheus.BuildFQName("ten", "wake_queue", "in_progress"),
		Help: "Wakes running now (from their start until the instance answered or the wake failed).",
	}, func() float64 { _, r := q.Len(); return float64(r) })
	q.rejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: prometheus.BuildFQName("ten", "wake_queue", "rejected_total"),
		Help: "Requests answered 503 because the wake queue was full, the wakes queued ahead would take longer than wake_queue_timeout, or their wake waited in it that long.",
	})
	q.waitHist = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    prometheus.BuildFQName("ten", "wake_queue", "wait_seconds"),
		Help:    "Time a wake waited in the queue before it started.",
		Buckets: []float64{0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	})
	return q
}

// Collectors are the queue's metrics (ten_wake_queue_*).
func (q *Queue) Collectors() []prometheus.Collector {
	return []prometheus.Collector{q.waiting, q.progress, q.rejected, q.waitHist}
}

// Len returns the wakes waiting and the wakes running.
func (q *Queue) Len() (waiting, running int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue), q.running
}

// Ticket is one request's share of a wake. Call Done exactly once.
type Ticket struct {
	q    *Queue
	w    *wake
	once sync.Once
}

// Acquire waits until the wake of key may start and returns the request's
// ticket. It joins a wake of key that is queued or running already. When
// the queue is full it returns ErrFull at once, and ErrBacklog at once when
// maxWait > 0 and the wakes queued ahead would take longer than maxWait at
// the recent pace (Estimate); after maxWait in the queue (0: no limit)
// ErrWaited; when ctx ends first, ctx's error.
func (q *Queue) Acquire(ctx context.Context, key string, maxWait time.Duration) (*Ticket, error) {
	q.mu.Lock()
	w := q.byKey[key]
	queued := false
	switch {
	case w != nil:
		w.holders++
	case q.max <= 0 || q.running < q.max:
		w = &wake{key: key, holders: 1, granted: make(chan struct{}), start: q.now()}
		close(w.granted)
		q.running++
		q.byKey[key] = w
		q.mu.Unlock()
		q.waitHist.Observe(0)
		return &Ticket{q: q, w: w}, nil
	case len(q.queue) >= q.maxQueued:
		q.mu.Unlock()
		q.rejected.Inc()
		return nil, ErrFull
	case maxWait > 0 && q.estimateLocked(len(q.queue)+1) > maxWait:
		q.mu.Unlock()
		q.rejected.Inc()
		return nil, ErrBacklog
	default:
		w = &wake{key: key, holders: 1, granted: make(chan struct{}), refused: make(chan struct{})}
		if maxWait > 0 {
			w.deadline = q.now().Add(maxWait)
		}
		queued = true
		q.queue = append(q.queue, w)
		q.byKey[key] = w
	}
	q.mu.Unlock()
	t0 := q.now()
	var expired <-chan time.Time
	if maxWait > 0 {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		expired = t.C
	}
	cause := error(nil)
	select {
	case <-w.granted:
		if queued {
			q.waitHist.Observe(q.now().Sub(t0).Seconds())
		}
		return &Ticket{q: q, w: w}, nil
	case <-ctx.Done():
		cause = ctx.Err()
	case <-expired:
		cause = ErrWaited
	case <-w.refused:
		cause = ErrBacklog
	}
	q.mu.Lock()
	select {
	case <-w.granted:
		// Granted meanwhile: take it after all, unless the client is gone.
		q.mu.Unlock()
		tk := &Ticket{q: q, w: w}
		if cause == ErrWaited {
			return tk, nil
		}
		tk.Done(false)
		return nil, cause
	default:
	}
	w.holders--
	if w.holders == 0 {
		q.unqueue(w)
	}
	q.mu.Unlock()
	if cause == ErrWaited || cause == ErrBacklog {
		q.rejected.Inc()
	}
	return nil, cause
}

// Done ends the ticket's share of the wake. awake says the instance
// answered: the wake is over and its place goes to the next in the queue,
// even while other requests of the same instance still wait for their
// answers. Otherwise (the request failed or went away) the place is given
// back when the last request of the wake is done.
func (t *Ticket) Done(awake bool) {
	t.once.Do(func() { t.q.done(t.w, awake) })
}

func (q *Queue) done(w *wake, awake bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w.holders--
	if w.done || (!awake && w.holders > 0) {
		return
	}
	w.done = true
	if q.byKey[w.key] == w {
		delete(q.byKey, w.key)
	}
	d := q.now().Sub(w.start)
	if q.avg == 0 {
		q.avg = d
	} else {
		q.avg = (q.avg*7 + d) / 8
	}
	q.running--
	q.grantLocked()
	q.shedLocked()
}

// shedLocked turns away, at once, the queued wakes that at the pace now
// known would not start before their deadline: a burst that arrived before
// any wake had finished learns its fate when the first one does, not when
// its wait runs out.
func (q *Queue) shedLocked() {
	now := q.now()
	kept := q.queue[:0]
	for _, w := range q.queue {
		if !w.deadline.IsZero() && now.Add(q.estimateLocked(len(kept)+1)).After(w.deadline) {
			if q.byKey[w.key] == w {
				delete(q.byKey, w.key)
			}
			close(w.refused)
			continue
		}
		kept = append(kept, w)
	}
	clear(q.queue[len(kept):])
	q.queue = kept
}

// grantLocked starts queued wakes while there is room.
func (q *Queue) grantLocked() {
	for len(q.queue) > 0 && (q.max <= 0 || q.running < q.max) {
		w := q.queue[0]
		q.queue[0] = nil
		q.queue = q.queue[1:]
		w.start = q.now()
		q.running++
		close(w.granted)
	}
}

func (q *Queue) unqueue(w *wake) {
	for i, x := range q.queue {
		if x == w {
			q.queue = append(q.queue[:i], q.queue[i+1:]...)
			break
		}
	}
	if q.byKey[w.key] == w {
		delete(q.byKey, w.key)
	}
}

// Estimate is how long the k-th wake in the queue waits before it starts
// at the recent pace: k/max_concurrent_wakes rounds of the average wake
// (the moving average of the last wakes, from start to answer). With no
// wake finished yet it is 0: nothing is known, so nothing is turned away
// on a guess.
func (q *Queue) Estimate(k int) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.estimateLocked(k)
}

func (q *Queue) estimateLocked(k int) time.Duration {
	if q.max <= 0 || k <= 0 {
		return 0
	}
	return time.Duration(float64(k) / float64(q.max) * float64(q.avg))
}

// RetryAfter is how many seconds a turned-away client should wait: the
// time the queue now holds (waiting wakes in rounds of max_concurrent_wakes,
// each as long as the average wake), at least 1 and at most 60.
func (q *Queue) RetryAfter() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	par := q.max
	if par <= 0 {
		par = 1
	}
	avg := q.avg
	if avg == 0 {
		avg = time.Second
	}
	rounds := float64(len(q.queue))/float64(par) + 1
	s := int(math.Ceil(rounds * avg.Seconds()))
	return min(max(s, 1), 60)
}
