package auth

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Bounds of a Guard's argon2id work.
const (
	// MaxWaiting bounds the token checks waiting for a derivation slot;
	// more are refused at once with ErrBusy.
	MaxWaiting = 16
	// MaxWait is how long a check waits for a slot before ErrBusy.
	MaxWait = 2 * time.Second
)

// ErrBusy means too many token checks wait for argon2id already; the
// client should try again in a moment (503 with Retry-After).
var ErrBusy = errors.New("too many token checks at once")

// LockedError means a client network, or a token id, failed MaxFailures
// times in a row and is locked out for a while (429).
type LockedError struct {
	// Key is the client's network (ClientKey), or "token id ID".
	Key string
	// Left is how long the lockout lasts.
	Left time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s is locked out after repeated bad tokens; try again in %s", e.Key, e.Left.Round(time.Second))
}

// Guard checks bearer tokens for a server: the only way a request makes
// ten do argon2id work, so it is where that work is bounded.
//
//   - A token known without work (the api_token file's, or one that
//     verified before: Store.Cached) passes at once, even while its client
//     or its id is locked out: a flood of bad guesses never slows down or
//     locks out a client with a good token. Lockouts stop guessing; a
//     cached token is not a guess.
//   - A token of the wrong shape costs nothing and counts as a failure of
//     its client.
//   - Everything else is an attempt, counted against its client's network
//     and its token id before any work (Limiter.Begin): ten failures or
//     attempts in flight lock either out for Lockout. Then it waits for one
//     of a few derivation slots (as many as cores, at most 2; at most
//     MaxWaiting wait, each at most MaxWait), so a flood costs at most that
//     many 19 MiB derivations at once and the rest are refused.
type Guard struct {
	store   *Store
	clients *Limiter
	ids     *Limiter
	slots   chan struct{} // derivations running
	queue   chan struct{} // checks waiting or running
	onLock  func(key string)
}

// GuardOptions tune a guard; the zero value is right outside tests.
type GuardOptions struct {
	// Derivations is how many argon2id derivations run at once (default:
	// the threads Go runs on, GOMAXPROCS, at most 2: a derivation holds
	// its thread for tens of milliseconds, and the router needs one).
	Derivations int
	// Now overrides time.Now for the lockouts.
	Now func() time.Time
	// OnLockout, when set, is called when a key's lockout begins.
	OnLockout func(key string)
}

// NewGuard returns a guard over store.
func NewGuard(store *Store, o GuardOptions) *Guard {
	n := o.Derivations
	if n <= 0 {
		n = min(runtime.GOMAXPROCS(0), 2)
	}
	return &Guard{
		store:   store,
		clients: NewLimiter(o.Now),
		ids:     NewLimiter(o.Now),
		slots:   make(chan struct{}, n),
		queue:   make(chan struct{}, n+MaxWaiting),
		onLock:  o.OnLockout,
	}
}

// Store is the token store the guard checks against.
func (g *Guard) Store() *Store { return g.store }

// Check returns the principal of tok presented by a client (ClientKey of
// its address), or ErrInvalid, a *LockedError or ErrBusy.
func (g *Guard) Check(ctx context.Context, tok, client string) (Principal, error) {
	if p, ok := g.store.Cached(tok); ok {
		return p, nil
	}
	if locked, left := g.clients.Locked(client); locked {
		return Principal{}, &LockedError{Key: client, Left: left}
	}
	c, ok := g.store.Candidate(tok)
	if !ok {
		if g.clients.Fail(client) {
			g.locked(client)
		}
		return Principal{}, ErrInvalid
	}
	if ok, left := g.clients.Begin(client); !ok {
		return Principal{}, &LockedError{Key: client, Left: left}
	}
	idKey := "token id " + c.ID
	if ok, left := g.ids.Begin(idKey); !ok {
		g.clients.Cancel(client)
		return Principal{}, &LockedError{Key: idKey, Left: left}
	}
	release, err := g.slot(ctx)
	if err != nil {
		g.clients.Cancel(client)
		g.ids.Cancel(idKey)
		return Principal{}, err
	}
	p, err := c.Check()
	release()
	if g.clients.End(client, err == nil) {
		g.locked(client)
	}
	if g.ids.End(idKey, err == nil) {
		g.locked(idKey)
	}
	return p, err
}

func (g *Guard) locked(key string) {
	if g.onLock != nil {
		g.onLock(key)
	}
}

// slot waits for a derivation slot: at most MaxWait, and only when fewer
// than MaxWaiting checks wait already.
func (g *Guard) slot(ctx context.Context) (release func(), err error) {
	select {
	case g.queue <- struct{}{}:
	default:
		return nil, ErrBusy
	}
	t := time.NewTimer(MaxWait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots; <-g.queue }, nil
	case <-t.C:
	case <-ctx.Done():
	}
	<-g.queue
	return nil, ErrBusy
}

// Locked reports whether a client is locked out (for how much longer).
func (g *Guard) Locked(client string) (bool, time.Duration) { return g.clients.Locked(client) }
