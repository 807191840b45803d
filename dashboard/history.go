package dashboard

import (
	"sync"
	"time"

	"github.com/tenhq/ten/units"
)

// History keeps the last hour of each instance in memory: requests,
// latency and memory in 10-second buckets, in a fixed ring per instance,
// for the dashboard's charts. It implements router.Observer's methods, so
// the server can hand it every request and wake.
type History struct {
	mu sync.Mutex // mu guards the following
	by map[units.Instance]*ring
}

// Bucket is one step of an instance's history.
type Bucket struct {
	// Start is the Unix time the bucket began.
	Start    int64   `json:"t"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	AvgMs    float64 `json:"avg_ms"`
	MaxMs    float64 `json:"max_ms"`
	// Memory is the last sample of the service's memory in the bucket.
	Memory uint64 `json:"memory"`
}

// slot is a Bucket as stored: 24 bytes, so an hour of one instance takes
// 8.6 KiB.
type slot struct {
	start    uint32 // Unix time
	requests uint32
	errors   uint32
	sumMs    float32
	maxMs    float32
	memKiB   uint32
}

func (s slot) bucket() Bucket {
	b := Bucket{Start: int64(s.start), Requests: int(s.requests), Errors: int(s.errors), MaxMs: float64(s.maxMs), Memory: uint64(s.memKiB) * 1024}
	if s.requests > 0 {
		b.AvgMs = float64(s.sumMs) / float64(s.requests)
	}
	return b
}

// Step and Buckets shape the ring: an hour in 10-second steps.
const (
	Step    = 10 * time.Second
	Buckets = 360
)

// MaxInstances bounds how many instances History tracks (at most about
// 43 MiB); past it new ones are not recorded until Retain drops gone ones.
// An instance gets a ring at its first request or its first memory sample
// while running, so sleepers that never wake cost nothing.
const MaxInstances = 5000

type ring struct {
	b         [Buckets]slot
	wakes     uint64
	lastWake  time.Duration
	wakeFails uint64
}

// NewHistory returns an empty history.
func NewHistory() *History { return &History{by: map[units.Instance]*ring{}} }

// bucket returns the bucket for now, clearing it when it is stale; nil when
// the instance cannot be tracked. Call with mu held.
func (h *History) bucket(inst units.Instance, now time.Time) (*ring, *slot) {
	r := h.by[inst]
	if r == nil {
		if len(h.by) >= MaxInstances {
			return nil, nil
		}
		r = &ring{}
		h.by[inst] = r
	}
	start := now.Unix() / int64(Step/time.Second) * int64(Step/time.Second)
	b := &r.b[(start/int64(Step/time.Second))%Buckets]
	if int64(b.start) != start {
		*b = slot{start: uint32(start)}
	}
	return r, b
}

// ObserveRequest records a finished request.
func (h *History) ObserveRequest(inst units.Instance, code int, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, b := h.bucket(inst, time.Now())
	if b == nil {
		return
	}
	ms := float32(float64(d) / float64(time.Millisecond))
	b.requests++
	if code >= 500 {
		b.errors++
	}
	b.sumMs += ms
	if ms > b.maxMs {
		b.maxMs = ms
	}
}

// ObserveWake records a wake.
func (h *History) ObserveWake(inst units.Instance, d time.Duration, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, _ := h.bucket(inst, time.Now())
	if r == nil {
		return
	}
	if err != nil {
		r.wakeFails++
		return
	}
	r.wakes++
	r.lastWake = d
}

// Memory records a memory sample (none for 0: a sleeping instance).
func (h *History) Memory(inst units.Instance, bytes uint64, now time.Time) {
	if bytes == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, b := h.bucket(inst, now); b != nil {
		b.memKiB = uint32(min(bytes/1024, 1<<32-1))
	}
}

// Retain forgets every instance not in keep.
func (h *History) Retain(keep map[units.Instance]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for inst := range h.by {
		if !keep[inst] {
			delete(h.by, inst)
		}
	}
}

// Series returns the instance's last hour, oldest first, with empty
// buckets for steps without data.
func (h *History) Series(inst units.Instance, now time.Time) []Bucket {
	h.mu.Lock()
	defer h.mu.Unlock()
	step := int64(Step / time.Second)
	end := now.Unix() / step * step
	out := make([]Bucket, 0, Buckets)
	r := h.by[inst]
	for t := end - (Buckets-1)*step; t <= end; t += step {
		b := Bucket{Start: t}
		if r != nil {
			if got := r.b[(t/step)%Buckets]; int64(got.start) == t {
				b = got.bucket()
			}
		}
		out = append(out, b)
	}
	return out
}

// Rates returns requests per second over the last full step plus the
// current one, the wakes and the last wake's duration.
func (h *History) Rates(inst units.Instance, now time.Time) (rps float64, wakes uint64, lastWake time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.by[inst]
	if r == nil {
		return 0, 0, 0
	}
	step := int64(Step / time.Second)
	cur := now.Unix() / step * step
	n := 0
	for _, t := range []int64{cur - step, cur} {
		if b := r.b[(t/step)%Buckets]; int64(b.start) == t {
			n += int(b.requests)
		}
	}
	secs := float64(now.Unix()-(cur-step)) + 1
	return float64(n) / secs, r.wakes, r.lastWake
}
