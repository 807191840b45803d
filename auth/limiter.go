package auth

import (
	"net/netip"
	"sync"
	"time"
)

// tenement's numbers: 10 failures lock the client out for 5 seconds.
const (
	MaxFailures = 10
	Lockout     = 5 * time.Second
	// forget is how long a key's failure count lasts without a new failure.
	forget = 5 * time.Minute
	// maxKeys bounds the limiter's memory under a flood of addresses.
	maxKeys = 10000
)

// Limiter counts failed authentications per key (a client's network, see
// ClientKey, or a token id) and locks a key out after MaxFailures failures
// in a row. Attempts still being checked count as failures until they end
// (Begin, End): a burst of parallel guesses is refused from the
// MaxFailures-th on, not only after all of them failed. It is safe for
// concurrent use.
type Limiter struct {
	now func() time.Time

	mu   sync.Mutex // mu guards the following
	keys map[string]*keyState
}

type keyState struct {
	failures int
	pending  int // attempts begun and not ended
	last     time.Time
	lockedTo time.Time
}

// NewLimiter returns a limiter; now may be nil for time.Now.
func NewLimiter(now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{now: now, keys: map[string]*keyState{}}
}

// Locked reports whether key is locked out, and for how much longer.
func (l *Limiter) Locked(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.keys[key]
	if c == nil {
		return false, 0
	}
	if left := c.lockedTo.Sub(l.now()); left > 0 {
		return true, left
	}
	return false, 0
}

// Begin admits one attempt of key, counted as a failure until End says
// otherwise. It refuses (ok false) while key is locked out, or when the
// failures so far and the attempts in flight reach MaxFailures; left is
// then how long to wait.
func (l *Limiter) Begin(key string) (ok bool, left time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c := l.getLocked(key, now)
	if left := c.lockedTo.Sub(now); left > 0 {
		return false, left
	}
	if c.failures+c.pending >= MaxFailures {
		// Attempts in flight will decide; they end within a second or two.
		return false, time.Second
	}
	c.pending++
	c.last = now
	return true, 0
}

// End ends an attempt Begin admitted: success clears key's failures, a
// failure counts (and may start a lockout, which it reports).
func (l *Limiter) End(key string, success bool) (lockedOut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.keys[key]
	if c == nil {
		return false
	}
	if c.pending > 0 {
		c.pending--
	}
	if success {
		c.failures = 0
		return false
	}
	return l.failLocked(c, l.now())
}

// Cancel ends an attempt Begin admitted without counting it either way
// (it was never checked).
func (l *Limiter) Cancel(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.keys[key]; c != nil && c.pending > 0 {
		c.pending--
	}
}

// Fail records a failure that needed no Begin (a malformed token); it
// reports whether this one started a lockout.
func (l *Limiter) Fail(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	return l.failLocked(l.getLocked(key, now), now)
}

// Succeed clears key's failures.
func (l *Limiter) Succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.keys[key]; c != nil && !c.lockedTo.After(l.now()) {
		c.failures = 0
		if c.pending == 0 {
			delete(l.keys, key)
		}
	}
}

func (l *Limiter) failLocked(c *keyState, now time.Time) bool {
	c.last = now
	c.failures++
	if c.failures >= MaxFailures {
		c.failures = 0
		c.lockedTo = now.Add(Lockout)
		return true
	}
	return false
}

func (l *Limiter) getLocked(key string, now time.Time) *keyState {
	c := l.keys[key]
	if c != nil && c.pending == 0 && now.Sub(c.last) > forget && !c.lockedTo.After(now) {
		c.failures = 0
	}
	if c == nil {
		if len(l.keys) >= maxKeys {
			l.pruneLocked(now)
		}
		c = &keyState{last: now}
		l.keys[key] = c
	}
	return c
}

func (l *Limiter) pruneLocked(now time.Time) {
	for k, c := range l.keys {
		if c.pending == 0 && now.Sub(c.last) > forget && !c.lockedTo.After(now) {
			delete(l.keys, k)
		}
	}
	// Still full: a flood of fresh networks. Drop everything that is
	// neither locked out nor in flight rather than grow without bound.
	if len(l.keys) >= maxKeys {
		for k, c := range l.keys {
			if c.pending == 0 && !c.lockedTo.After(now) {
				delete(l.keys, k)
			}
		}
	}
}

// ClientKey is the key failures of a client are counted by: its network
// rather than its address, because one host usually holds many addresses.
// Every loopback address (127.0.0.0/8, ::1) is one client, "loopback"; an
// IPv4 address counts by its /24 ("192.0.2.0/24"), an IPv6 address by its
// /64 (the smallest network a host is usually given), an IPv4-mapped IPv6
// address as the IPv4 one. Anything else (a unix socket peer) is taken as it is.
func ClientKey(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	var a netip.Addr
	if err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(remoteAddr); err != nil {
		return remoteAddr
	}
	a = a.Unmap().WithZone("")
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.Is4():
		p, _ := a.Prefix(24)
		return p.String()
	default:
		p, _ := a.Prefix(64)
		return p.String()
	}
}
