package router

import (
	"context"
	"time"
)

// Reap puts to sleep, once, every awake instance that has had no request in
// flight and no activity for its idle_timeout. Requests that arrive while an
// instance is being stopped wait, then wake it again.
func (r *Router) Reap(ctx context.Context, now time.Time) {
	r.mu.RLock()
	var idle []*backend
	for _, b := range r.backends {
		if b.IdleTimeout > 0 && b.awake.Load() {
			idle = append(idle, b)
		}
	}
	r.mu.RUnlock()
	for _, b := range idle {
		if now.Sub(r.lastActivity(b)) < b.IdleTimeout {
			continue
		}
		b.mu.Lock()
		if b.inflight > 0 || b.probing > 0 || b.stopping != nil || b.removed {
			b.mu.Unlock()
			continue
		}
		ch := make(chan struct{})
		b.stopping = ch
		b.mu.Unlock()

		b.transport.CloseIdleConnections()
		r.log.Info("instance idle; sleeping", "instance", b.Instance.String(), "idle_timeout", b.IdleTimeout)
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := r.ctrl.Sleep(sctx, b.Instance)
		cancel()
		if err != nil {
			r.log.Warn("sleep failed", "instance", b.Instance.String(), "err", err)
		} else {
			b.awake.Store(false)
		}
		b.mu.Lock()
		b.stopping = nil
		b.mu.Unlock()
		close(ch)
	}
}

// RunReaper calls Reap every interval until ctx ends.
func (r *Router) RunReaper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.Reap(ctx, now)
		}
	}
}
