package router

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenhq/ten/units"
)

// awakeSet holds the routes that were set awake and have an idle timeout:
// what the reaper looks at every 250 ms, instead of every instance (with
// 10,000 sleepers, the scan of all of them was a fifth of ten's idle CPU).
// A route is added whenever it is set awake (Route.setAwake) and dropped by
// the reaper once it is no longer awake or no longer routed.
type awakeSet struct {
	mu sync.Mutex
	m  map[*Route]struct{}
}

func (s *awakeSet) add(b *Route) {
	if b.IdleTimeout <= 0 {
		return // never put to sleep
	}
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*Route]struct{}{}
	}
	s.m[b] = struct{}{}
	s.mu.Unlock()
}

// candidates returns the routes that are awake and current (routed); it
// drops the others.
func (s *awakeSet) candidates(current func(*Route) bool) []*Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Route
	for b := range s.m {
		if !b.awake.Load() || !current(b) {
			delete(s.m, b)
			continue
		}
		out = append(out, b)
	}
	return out
}

// setAwake marks the route awake and makes it one the reaper looks at.
func (b *Route) setAwake() {
	b.awake.Store(true)
	if b.reap != nil {
		b.reap.add(b)
	}
}

// ErrWokenWhileFreezing is what a Freezer returns when a connection arrived
// while it froze the instance, and it thawed it again: the instance runs.
var ErrWokenWhileFreezing = errors.New("a connection arrived while freezing")

// MaxSleeps is how many instances the reaper freezes or stops at once.
// Each runs on its own: an app that takes long to stop (a graceful
// shutdown, or one that ignores SIGTERM until systemd's timeout) holds up
// no other instance's sleep, and a thousand instances that go idle
// together are put to sleep at the rate systemd stops services, not one
// stop job after another. An instance over the bound is taken at a later
// tick.
const MaxSleeps = 64

// sleepSlots bounds and tracks the reaper's sleeps under way.
// Its zero value is ready for use.
type sleepSlots struct {
	n  atomic.Int32 // slots in use
	wg sync.WaitGroup
}

// take reserves a slot, or reports that all MaxSleeps are in use.
func (s *sleepSlots) take() bool {
	for {
		n := s.n.Load()
		if n >= MaxSleeps {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			s.wg.Add(1)
			return true
		}
	}
}

// give returns a slot taken with take.
func (s *sleepSlots) give() {
	s.n.Add(-1)
	s.wg.Done()
}

// Reap puts to sleep, once, every awake instance that has had no request in
// flight, no open connection and no activity for its idle_timeout: it
// freezes the ones whose Backend says Freeze and stops the others, up to
// MaxSleeps at once, and returns when they are done. A frozen instance
// with StopAfter is stopped once it has been silent that long. Requests
// that arrive while an instance is being frozen or stopped wait, then
// thaw or wake it again.
func (r *Router) Reap(ctx context.Context, now time.Time) {
	r.reap(ctx, now)
	r.sleeps.wg.Wait()
}

// reap starts the sleeps Reap describes, each in its own goroutine, and
// returns without waiting for them.
func (r *Router) reap(ctx context.Context, now time.Time) {
	r.mu.RLock()
	idle := r.awake.candidates(func(b *Route) bool { return r.backends[b.Instance] == b })
	r.mu.RUnlock()
	for _, b := range idle {
		silent := now.Sub(r.lastActivity(b))
		frozen := b.frozen.Load()
		limit := b.IdleTimeout
		if frozen {
			limit = b.StopAfter
		}
		if limit <= 0 || silent < limit {
			continue
		}
		if r.connections != nil && r.connections(b.Instance) > 0 {
			// An open connection is activity, as a request in flight is.
			// The router's own idle keep-alive connections are not: close
			// them, for a shim-mode app counts the shim's upstream
			// connection that each of them holds open.
			b.closeIdle()
			continue
		}
		freeze := !frozen && b.Freeze && r.freezer != nil
		b.mu.Lock()
		if b.inflight > 0 || b.probing > 0 || b.stopping != nil || b.thawing != nil || b.removed {
			b.mu.Unlock()
			continue
		}
		// What was read above may be stale: a thaw (an L4 wake) or a
		// request may have come and gone since. Both change these under
		// b.mu, so they hold from here until stopping is set.
		if b.frozen.Load() != frozen || now.Sub(time.Unix(0, b.last.Load())) < limit {
			b.mu.Unlock()
			continue
		}
		if !r.sleeps.take() {
			b.mu.Unlock()
			return // the rest at a later tick
		}
		ch := make(chan struct{})
		b.stopping = ch
		b.mu.Unlock()
		go func() {
			defer r.sleeps.give()
			r.sleep(ctx, b, frozen, freeze)
			b.mu.Lock()
			b.stopping = nil
			b.mu.Unlock()
			close(ch)
		}()
	}
}

// sleep freezes b (freeze), stops it, or thaws and stops it (frozen), as
// reap decided; b.stopping is set meanwhile.
func (r *Router) sleep(ctx context.Context, b *Route, frozen, freeze bool) {
	b.closeIdle()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if freeze {
		r.log.Info("instance idle; freezing", "instance", b.Instance.String(), "idle_timeout", b.IdleTimeout)
		if err := r.freezer.Freeze(sctx, b.Instance); errors.Is(err, ErrWokenWhileFreezing) {
			r.log.Info("instance woken while freezing; left running", "instance", b.Instance.String())
			b.last.Store(time.Now().UnixNano())
		} else if err != nil {
			r.log.Warn("freeze failed", "instance", b.Instance.String(), "err", err)
		} else {
			b.frozenSince.Store(time.Now().UnixNano())
			b.frozen.Store(true)
		}
		return
	}
	var err error
	if frozen {
		// A frozen service cannot be stopped cleanly: thaw it first.
		r.log.Info("frozen instance silent; stopping", "instance", b.Instance.String(), "stop_after", b.StopAfter)
		if err = r.freezer.Thaw(sctx, b.Instance, "stop"); err == nil {
			b.frozen.Store(false)
		}
	} else {
		r.log.Info("instance idle; sleeping", "instance", b.Instance.String(), "idle_timeout", b.IdleTimeout)
	}
	gen := b.awakeGen.Load()
	if err == nil {
		err = r.ctrl.Sleep(sctx, b.Instance)
	}
	if err != nil {
		r.log.Warn("sleep failed", "instance", b.Instance.String(), "err", err)
	} else {
		b.markAsleep(gen)
	}
}

// StopFrozen stops a frozen instance now (thaw, then the Controller's
// Sleep), as the reaper does after StopAfter; for the frozen-memory cap.
// It does nothing to an instance that is not frozen or is busy.
func (r *Router) StopFrozen(ctx context.Context, inst units.Instance) (bool, error) {
	b := r.get(inst)
	if b == nil || !b.frozen.Load() {
		return false, nil
	}
	b.mu.Lock()
	if b.inflight > 0 || b.probing > 0 || b.stopping != nil || b.thawing != nil || b.removed {
		b.mu.Unlock()
		return false, nil
	}
	ch := make(chan struct{})
	b.stopping = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.stopping = nil
		b.mu.Unlock()
		close(ch)
	}()
	if err := r.freezer.Thaw(ctx, b.Instance, "stop"); err != nil {
		return false, err
	}
	b.frozen.Store(false)
	gen := b.awakeGen.Load()
	if err := r.ctrl.Sleep(ctx, b.Instance); err != nil {
		return false, err
	}
	b.markAsleep(gen)
	b.closeIdle()
	return true, nil
}

// RunReaper puts idle instances to sleep every interval until ctx ends, as
// Reap does, without waiting at a tick for the sleeps it started (a slow
// stop delays no other instance's); it returns once they are done.
func (r *Router) RunReaper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	defer r.sleeps.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.reap(ctx, now)
		}
	}
}
