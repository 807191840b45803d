package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/dashboard"
	"github.com/tenhq/ten/logs"
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

// Instances is every instance of this node, one reading of systemd per
// rowsTTL for all open pages.
func (b *dashBackend) Instances(ctx context.Context) ([]dashboard.Instance, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.at) < rowsTTL {
		return append([]dashboard.Instance(nil), b.rows...), nil
	}
	rows, err := b.s.ps.Rows(ctx)
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

// SampleMemory implements dashboard.MemorySampler: the memory of every
// instance that is not asleep in the state cache, from its cgroup where
// ten can read it (no D-Bus call), else from systemd.
func (b *dashBackend) SampleMemory(ctx context.Context, fn func(inst units.Instance, bytes uint64)) {
	for _, inst := range b.s.reg.Names() {
		if svc, _, ok := b.s.sd.State(inst); ok && svc.ActiveState == "inactive" {
			continue
		}
		if mem, ok := b.s.frz.MemoryOf(inst); ok {
			fn(inst, mem)
		} else if info, err := b.s.sd.Info(ctx, inst); err == nil {
			fn(inst, info.MemoryCurrent)
		}
	}
}

// Exists implements dashboard.MemorySampler.
func (b *dashBackend) Exists(inst units.Instance) bool { return b.s.reg.Has(inst) }

var _ dashboard.MemorySampler = (*dashBackend)(nil)

// invalidate makes the next Instances read systemd again (after an action).
func (b *dashBackend) invalidate() {
	b.mu.Lock()
	b.at = time.Time{}
	b.mu.Unlock()
}

// Restart restarts inst.
func (b *dashBackend) Restart(ctx context.Context, inst units.Instance) error {
	defer b.invalidate()
	return b.s.Restart(ctx, inst)
}

// Stop removes inst, letting its requests in flight end first.
func (b *dashBackend) Stop(ctx context.Context, inst units.Instance) error {
	defer b.invalidate()
	return b.s.StopDraining(ctx, inst)
}

// SetWeight changes inst's weight.
func (b *dashBackend) SetWeight(inst units.Instance, w int) error {
	defer b.invalidate()
	return b.s.SetWeight(inst, w)
}

// FollowLogs follows the instance's journal; it takes one of the log
// stream slots the API's streams share (with the same share per tenant).
func (b *dashBackend) FollowLogs(ctx context.Context, p auth.Principal, inst units.Instance, last int, fn func(dashboard.LogLine) error) error {
	return logs.Follow(ctx, &b.s.streams, p, journal.Query{Instance: inst, Follow: true, Limit: last}, func(e journal.Entry) error {
		return fn(dashboard.LogLine{Time: e.Time, Stream: e.Stream, Message: e.Message})
	})
}

// SignIn verifies a token with the API's lockout of clients that keep
// sending bad ones.
func (b *dashBackend) SignIn(r *http.Request, token string) (auth.Principal, error) {
	return b.s.api.SignIn(r, token)
}
