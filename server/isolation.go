package server

// Isolation and limits that ten enforces or reports beyond unit properties
// (package isolation): OOM kills and the last exit of an instance for ps,
// the API and metrics, and the use of its storage_quota_mb file system.

import (
	"context"
	"time"

	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// noteServiceState is called for every state change of a service (follow):
// a started service gets an OOM watch on its new cgroup, a crashed one has
// its exit recorded before systemd starts it again, and the app of one
// systemd restarted after a crash is started behind its standby waiter.
func (s *Server) noteServiceState(ctx context.Context, c systemd.Change) {
	switch {
	case c.ActiveState == "active":
		go s.watchOOM(ctx, c.Instance)
		if s.crashed[c.Instance] {
			// systemd restarted a crashed app: behind the standby waiter
			// it would wait for a first client (kickWaiter).
			delete(s.crashed, c.Instance)
			if e, ok := s.reg.Get(c.Instance); ok {
				go s.kickWaiter(ctx, e)
			}
		}
	case c.SubState == "auto-restart" || c.ActiveState == "failed":
		go s.recordExit(c.Instance)
		if c.SubState == "auto-restart" {
			if s.crashed == nil {
				s.crashed = map[units.Instance]bool{}
			}
			s.crashed[c.Instance] = true
		}
	}
	if c.ActiveState == "failed" && c.SubState == "failed" {
		// Given up (or not restarted). A restart passes through
		// inactive (the restart job's stop) before it starts: that does
		// not clear it.
		delete(s.crashed, c.Instance)
	}
}

// watchOOM starts the OOM watch of inst's present cgroup (package
// isolation); it ends with ctx, the cgroup, or the instance.
func (s *Server) watchOOM(ctx context.Context, inst units.Instance) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cg, err := s.sd.ControlGroup(rctx, inst)
	cancel()
	if err != nil || cg == "" || !s.reg.Has(inst) {
		return
	}
	s.oom.Watch(ctx, inst, cg)
}

func (s *Server) recordExit(inst units.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// One read: ExecMain* and Result are reset when systemd starts it again.
	e, err := s.sd.LastExit(ctx, inst.ServiceUnit())
	if err != nil {
		return
	}
	s.log.Debug("instance exit", "instance", inst.String(), "code", e.Code, "status", e.Status, "result", e.Result, "exited_at", e.At)
	// The OOM event that explains a SIGKILL may be read before or after
	// this: the book matches them in either order.
	s.oom.Exit(inst, e)
}
