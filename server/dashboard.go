package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/dashboard"
	"github.com/tenhq/ten/systemd/journal"
	"github.com/tenhq/ten/units"
)

// dashBackend is what the dashboard sees of the server.
type dashBackend struct {
	s *Server

	mu   sync.Mutex // mu guards the following: one systemd read a second for every open page
	at   time.Time
	rows []dashboard.Instance
}

// rowsTTL is how long one reading of the instances serves every open
// dashboard (each polls once a second).
const rowsTTL = 900 * time.Millisecond

func (b *dashBackend) Instances(ctx context.Context) ([]dashboard.Instance, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.at) < rowsTTL {
		return append([]dashboard.Instance(nil), b.rows...), nil
	}
	rows, err := b.s.Rows(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.Instance, 0, len(rows))
	for _, r := range rows {
		inst, err := units.ParseInstance(r.Instance)
		if err != nil {
			continue
		}
		out = append(out, dashboard.Instance{Instance: r.Instance, Service: inst.Service, ID: inst.ID, State: r.State, Detail: r.Detail,
			Health: r.Health, MemoryBytes: r.MemoryBytes, CPUSeconds: float64(r.CPUNSec) / 1e9, Weight: r.Weight,
			UptimeSec: r.UptimeSec, IdleSec: r.IdleSec, Restarts: r.Restarts})
	}
	b.rows, b.at = out, time.Now()
	return append([]dashboard.Instance(nil), out...), nil
}

// invalidate makes the next Instances read systemd again (after an action).
func (b *dashBackend) invalidate() {
	b.mu.Lock()
	b.at = time.Time{}
	b.mu.Unlock()
}

func (b *dashBackend) Restart(ctx context.Context, inst units.Instance) error {
	defer b.invalidate()
	return b.s.Restart(ctx, inst)
}

func (b *dashBackend) Stop(ctx context.Context, inst units.Instance) error {
	defer b.invalidate()
	return b.s.Stop(ctx, inst)
}

func (b *dashBackend) SetWeight(inst units.Instance, w int) error {
	defer b.invalidate()
	return b.s.SetWeight(inst, w)
}

// FollowLogs follows the instance's journal; it takes one of the log
// stream slots the API's streams share (with the same share per tenant).
func (b *dashBackend) FollowLogs(ctx context.Context, p auth.Principal, inst units.Instance, last int, fn func(dashboard.LogLine) error) error {
	release, _, msg := b.s.streams.acquire(p)
	if release == nil {
		return errors.New(msg)
	}
	defer release()
	q := journal.Query{Instance: inst, Follow: true, Limit: last}
	return journal.Read(ctx, q, func(e journal.Entry) error {
		return fn(dashboard.LogLine{Time: e.Time, Stream: e.Stream, Message: e.Message})
	})
}

// SignIn verifies a token with the API's lockout of clients that keep
// sending bad ones.
func (b *dashBackend) SignIn(r *http.Request, token string) (auth.Principal, error) {
	a := b.s.auth
	key := clientKey(r)
	if locked, left := a.guard.Locked(key); locked {
		return auth.Principal{}, &dashboard.LockedError{RetryAfter: left}
	}
	token = strings.TrimSpace(token)
	if token == "" || len(token) > 512 {
		return auth.Principal{}, errors.New("paste a token")
	}
	p, err := a.guard.Check(r.Context(), token, key)
	var le *auth.LockedError
	switch {
	case errors.As(err, &le):
		return auth.Principal{}, &dashboard.LockedError{RetryAfter: le.Left}
	case err != nil:
		return auth.Principal{}, fmt.Errorf("sign-in: %w", err)
	}
	return p, nil
}
