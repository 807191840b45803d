package coalesce

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Callers that arrive while a call runs share the next one (never the
// running one, which began before they asked); a caller that gives up does
// not stop the others; at most one call runs at a time.
func TestGroup(t *testing.T) {
	var g Group[int]
	var calls, inside, most atomic.Int32
	release := make(chan struct{}, 10)
	fn := func() (int, error) {
		n := calls.Add(1)
		if in := inside.Add(1); in > most.Load() {
			most.Store(in)
		}
		defer inside.Add(-1)
		<-release
		return int(n), nil
	}
	first := make(chan int)
	go func() { v, _ := g.Do(context.Background(), fn); first <- v }()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// 50 callers arrive while call 1 runs.
	var wg sync.WaitGroup
	var started atomic.Int32
	results := make([]int, 50)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Add(1)
			results[i], _ = g.Do(context.Background(), fn)
		}()
	}
	for started.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // from started to inside Do
	// One that gives up while it waits.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.Do(ctx, fn); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a caller whose context ended: %v", err)
	}
	release <- struct{}{} // call 1 ends; call 2 starts for the 50
	if v := <-first; v != 1 {
		t.Errorf("the first caller got %d, want call 1", v)
	}
	release <- struct{}{}
	wg.Wait()
	if calls.Load() != 2 || most.Load() != 1 {
		t.Errorf("%d calls (at most %d at once) for 51 callers, want 2 (1)", calls.Load(), most.Load())
	}
	for i, r := range results {
		if r != 2 {
			t.Fatalf("caller %d got %d, want call 2, which began after it asked", i, r)
		}
	}
	release <- struct{}{}
	if v, _ := g.Do(context.Background(), fn); v != 3 {
		t.Errorf("a call after the others ended: got %d, want a new call", v)
	}
}
