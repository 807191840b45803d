package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000":                "loopback",
		"127.9.8.7:1":                   "loopback",
		"[::1]:80":                      "loopback",
		"192.0.2.77:443":                "192.0.2.0/24",
		"192.0.2.1:1":                   "192.0.2.0/24",
		"[::ffff:192.0.2.9]:8080":       "192.0.2.0/24",
		"[2001:db8:1:2:3:4:5:6]:80":     "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1%eth0]:1": "2001:db8:1:2::/64",
		"@":                             "@",
	} {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// A burst of parallel guesses is cut off at MaxFailures attempts, counted
// before any work, and a token that verified before passes all the same.
func TestGuardBurst(t *testing.T) {
	s := open(t, t.TempDir())
	good, tk, err := s.Create("acme", "")
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(s, GuardOptions{Derivations: 1})
	if p, err := g.Check(context.Background(), good, "loopback"); err != nil || p.Tenant != "acme" {
		t.Fatalf("good token: %+v %v", p, err)
	}
	bad := "ten_" + tk.ID + "_wrongsecret"
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := g.Check(context.Background(), bad, "192.0.2.0/24")
			var le *LockedError
			k := "other"
			switch {
			case errors.Is(err, ErrInvalid):
				k = "invalid"
			case errors.As(err, &le):
				k = "locked"
			case errors.Is(err, ErrBusy):
				k = "busy"
			}
			mu.Lock()
			counts[k]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if counts["invalid"]+counts["busy"] > MaxFailures || counts["locked"] < 200-MaxFailures || counts["other"] != 0 {
		t.Errorf("200 parallel guesses: %v; want at most %d checked, the rest locked out", counts, MaxFailures)
	}
	// The client is locked out now, and so is the token id (from anywhere)...
	if _, err := g.Check(context.Background(), bad, "192.0.2.0/24"); !isLocked(err) {
		t.Errorf("guess after the burst: %v", err)
	}
	if _, err := g.Check(context.Background(), bad, "198.51.100.0/24"); !isLocked(err) {
		t.Errorf("same id from another network: %v", err)
	}
	// ...but the good token, known without work, passes from both.
	for _, c := range []string{"192.0.2.0/24", "198.51.100.0/24"} {
		if p, err := g.Check(context.Background(), good, c); err != nil || p.Tenant != "acme" {
			t.Errorf("good token from %s during the lockout: %+v %v", c, p, err)
		}
	}
	// Another id from another network is unaffected.
	other, _, _ := s.Create("other", "")
	if _, err := g.Check(context.Background(), other, "203.0.113.0/24"); err != nil {
		t.Errorf("unrelated token: %v", err)
	}
	// Wrong shapes count against the client without work.
	g2 := NewGuard(s, GuardOptions{})
	for i := range MaxFailures {
		if _, err := g2.Check(context.Background(), "nonsense", "x"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("malformed #%d: %v", i, err)
		}
	}
	if _, err := g2.Check(context.Background(), "nonsense", "x"); !isLocked(err) {
		t.Errorf("after %d malformed tokens: %v", MaxFailures, err)
	}
}

func isLocked(err error) bool {
	var le *LockedError
	return errors.As(err, &le) && le.Left > 0
}

// Checks that cannot get a derivation slot in time are refused with
// ErrBusy, and nothing is left counted.
func TestGuardBusy(t *testing.T) {
	s := open(t, t.TempDir())
	g := NewGuard(s, GuardOptions{Derivations: 1})
	g.slots <- struct{}{} // the only slot is taken
	for i := 0; i < MaxWaiting; i++ {
		g.queue <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// queue has room for one more (n + MaxWaiting): it waits, then gives up.
	if _, err := g.Check(ctx, "ten_0123456789abcdef_x", "a"); !errors.Is(err, ErrBusy) {
		t.Errorf("no slot: %v", err)
	}
	g.queue <- struct{}{} // now the queue is full: refused at once
	if _, err := g.Check(context.Background(), "ten_0123456789abcdef_x", "a"); !errors.Is(err, ErrBusy) {
		t.Errorf("full queue: %v", err)
	}
	if g.clients.keys["a"].pending != 0 || g.clients.keys["a"].failures != 0 {
		t.Errorf("busy refusals were counted: %+v", *g.clients.keys["a"])
	}
}

func TestLimiterBeginEnd(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(func() time.Time { return now })
	for i := range MaxFailures {
		if ok, _ := l.Begin("k"); !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	if ok, left := l.Begin("k"); ok || left <= 0 {
		t.Fatalf("attempt %d admitted while %d are in flight", MaxFailures+1, MaxFailures)
	}
	l.End("k", true) // one succeeded: the count starts over
	if ok, _ := l.Begin("k"); !ok {
		t.Fatal("refused after a success")
	}
	l.Cancel("k")
	l.Begin("k") // MaxFailures in flight again
	for range MaxFailures - 1 {
		if l.End("k", false) {
			t.Fatal("locked out early")
		}
	}
	if !l.End("k", false) {
		t.Fatal("failures in flight did not lock out once they failed")
	}
	if locked, left := l.Locked("k"); !locked || left != Lockout {
		t.Fatalf("locked=%v left=%s", locked, left)
	}
}
