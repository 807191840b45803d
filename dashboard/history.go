package dashboard

import (
	"sync"
	"sync/atomic"
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
	// gen counts Retain calls that dropped rings: a Recorder's ring is
	// current while gen is what it was when the ring was found.
	gen atomic.Uint64
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
	mu        sync.Mutex // mu guards the following (History.mu only the map)
	b         [Buckets]slot
	wakes     uint64
	lastWake  time.Duration
	wakeFails uint64
}

// NewHistory returns an empty history.
func NewHistory() *History { return &History{by: map[units.Instance]*ring{}} }

// ring returns the instance's ring, made at its first use; nil when the
// instance cannot be tracked. Call with mu held.
func (h *History) ring(inst units.Instance) *ring {
	r := h.by[inst]
	if r == nil {
		if len(h.by) >= MaxInstances {
			return nil
		}
		r = &ring{}
		h.by[inst] = r
	}
	return r
}

// slot returns the bucket for now, clearing it when it is stale. Call with
// r.mu held.
func (r *ring) slot(now time.Time) *slot {
	start := now.Unix() / int64(Step/time.Second) * int64(Step/time.Second)
	b := &r.b[(start/int64(Step/time.Second))%Buckets]
	if int64(b.start) != start {
		*b = slot{start: uint32(start)}
	}
	return b
}

func (h *History) lockedRing(inst units.Instance) *ring {
	h.mu.Lock()
	r := h.ring(inst)
	h.mu.Unlock()
	if r != nil {
		r.mu.Lock()
	}
	return r
}

// ObserveRequest records a finished request.
func (h *History) ObserveRequest(inst units.Instance, code int, d time.Duration) {
	if r := h.lockedRing(inst); r != nil {
		r.observeRequest(code, d, time.Now())
		r.mu.Unlock()
	}
}

func (r *ring) observeRequest(code int, d time.Duration, now time.Time) {
	b := r.slot(now)
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

// Recorder records the requests of one instance into a History without
// its lock or map lookup per request (the router holds one per instance).
type Recorder struct {
	h    *History
	inst units.Instance
	r    atomic.Pointer[ring]
	gen  atomic.Uint64
}

// Recorder returns inst's recorder; its ring is made at the first request.
func (h *History) Recorder(inst units.Instance) *Recorder {
	return &Recorder{h: h, inst: inst}
}

// ObserveRequest records a finished request.
func (rc *Recorder) ObserveRequest(code int, d time.Duration) {
	r := rc.r.Load()
	if gen := rc.h.gen.Load(); r == nil || rc.gen.Load() != gen {
		rc.h.mu.Lock()
		r = rc.h.ring(rc.inst)
		rc.h.mu.Unlock()
		if r == nil {
			return
		}
		rc.r.Store(r)
		rc.gen.Store(gen)
	}
	r.mu.Lock()
	r.observeRequest(code, d, time.Now())
	r.mu.Unlock()
}

// ObserveWake records a wake.
func (h *History) ObserveWake(inst units.Instance, d time.Duration, err error) {
	r := h.lockedRing(inst)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
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
	if r := h.lockedRing(inst); r != nil {
		r.slot(now).memKiB = uint32(min(bytes/1024, 1<<32-1))
		r.mu.Unlock()
	}
}

// Retain forgets every instance not in keep.
func (h *History) Retain(keep map[units.Instance]bool) {
	h.RetainFunc(func(inst units.Instance) bool { return keep[inst] })
}

// RetainFunc forgets every instance for which keep is false.
func (h *History) RetainFunc(keep func(units.Instance) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	dropped := false
	for inst := range h.by {
		if !keep(inst) {
			delete(h.by, inst)
			dropped = true
		}
	}
	if dropped {
		h.gen.Add(1)
	}
}

// Series returns the instance's last hour, oldest first, with empty
// buckets for steps without data.
func (h *History) Series(inst units.Instance, now time.Time) []Bucket {
	h.mu.Lock()
	r := h.by[inst]
	h.mu.Unlock()
	step := int64(Step / time.Second)
	end := now.Unix() / step * step
	out := make([]Bucket, 0, Buckets)
	if r != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
	}
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
	r := h.by[inst]
	h.mu.Unlock()
	if r == nil {
		return 0, 0, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
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
