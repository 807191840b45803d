// Package coalesce runs one call for every caller that asks while it runs:
// a flood of requests that each cost ten a walk over every instance (a
// /metrics scrape, a list of instances) costs one walk at a time, however
// many ask at once, and each caller still gets a result that began after
// it asked (what it changed before asking is in it). Pure.
package coalesce

import (
	"context"
	"sync"
)

// Group shares calls of a function among callers. At most one call runs at
// a time; callers that arrive while it runs share the next one, which
// starts when it ends. The zero Group is ready to use.
type Group[T any] struct {
	mu      sync.Mutex
	running *call[T]
	next    *call[T]
}

type call[T any] struct {
	fn   func() (T, error)
	done chan struct{}
	v    T
	err  error
}

// Do returns the result of a call of fn that started after Do was called:
// one it starts, or, while another runs, the next one, shared with every
// caller that arrives meanwhile (it runs the first such caller's fn). A
// caller whose ctx ends stops waiting and gets ctx's error; the call goes
// on for the others.
func (g *Group[T]) Do(ctx context.Context, fn func() (T, error)) (T, error) {
	g.mu.Lock()
	var c *call[T]
	switch {
	case g.running == nil:
		c = &call[T]{fn: fn, done: make(chan struct{})}
		g.running = c
		go g.run(c)
	case g.next != nil:
		c = g.next
	default:
		c = &call[T]{fn: fn, done: make(chan struct{})}
		g.next = c
	}
	g.mu.Unlock()
	select {
	case <-c.done:
		return c.v, c.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// run runs c, then the call that waited for it, if any.
func (g *Group[T]) run(c *call[T]) {
	for c != nil {
		c.v, c.err = c.fn()
		g.mu.Lock()
		g.running, g.next = g.next, nil
		next := g.running
		g.mu.Unlock()
		close(c.done)
		c = next
	}
}
