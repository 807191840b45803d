package auth

import (
	"sync"
	"time"
)

// tenement's numbers: 10 failures lock the client out for 5 seconds.
const (
	MaxFailures = 10
	Lockout     = 5 * time.Second
	// forget is how long a client's failure count lasts without a new failure.
	forget = 5 * time.Minute
	// maxClients bounds the limiter's memory under a flood of addresses.
	maxClients = 10000
)

// Limiter counts failed authentications per client (an IP address) and
// locks a client out after MaxFailures failures in a row. It is safe for
// concurrent use.
type Limiter struct {
	now func() time.Time

	mu      sync.Mutex
	clients map[string]*client
}

type client struct {
	failures int
	last     time.Time
	lockedTo time.Time
}

// NewLimiter returns a limiter; now may be nil for time.Now.
func NewLimiter(now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{now: now, clients: map[string]*client{}}
}

// Locked reports whether key is locked out, and for how much longer.
func (l *Limiter) Locked(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[key]
	if c == nil {
		return false, 0
	}
	if left := c.lockedTo.Sub(l.now()); left > 0 {
		return true, left
	}
	return false, 0
}

// Fail records a failure; it reports whether this one started a lockout.
func (l *Limiter) Fail(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c := l.clients[key]
	if c == nil || now.Sub(c.last) > forget {
		if len(l.clients) >= maxClients {
			l.pruneLocked(now)
		}
		c = &client{}
		l.clients[key] = c
	}
	c.last = now
	c.failures++
	if c.failures >= MaxFailures {
		c.failures = 0
		c.lockedTo = now.Add(Lockout)
		return true
	}
	return false
}

// Succeed clears key's failures.
func (l *Limiter) Succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.clients[key]; c != nil && !c.lockedTo.After(l.now()) {
		delete(l.clients, key)
	}
}

func (l *Limiter) pruneLocked(now time.Time) {
	for k, c := range l.clients {
		if now.Sub(c.last) > forget && !c.lockedTo.After(now) {
			delete(l.clients, k)
		}
	}
	// Still full: a flood of fresh addresses. Drop everything that is not
	// locked out rather than grow without bound.
	if len(l.clients) >= maxClients {
		for k, c := range l.clients {
			if !c.lockedTo.After(now) {
				delete(l.clients, k)
			}
		}
	}
}
