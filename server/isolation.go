package server

// Isolation and limits that ten enforces or reports beyond unit properties
// (package isolation): OOM kills and the last exit of an instance for ps,
// the API and metrics, and the use of its storage_quota_mb file system.

import (
	"context"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// noteServiceState is called for every state change of a service (follow):
// a crashed one has its exit recorded before systemd starts it again, and
// the app of one systemd restarted after a crash is started behind its
// standby waiter. (An active one's OOM watch: activeNow.) It reports
// whether c is an active service that systemd restarted after a crash.
func (s *Server) noteServiceState(ctx context.Context, c systemd.Change) (restarted bool) {
	switch {
	case c.ActiveState == "active":
		if restarted = s.crashed.take(c.Instance); restarted {
			// systemd restarted a crashed app: behind the standby waiter
			// it would wait for a first client (kickWaiter).
			if e, ok := s.reg.Get(c.Instance); ok {
				go s.kickWaiter(ctx, e)
			}
		}
	case c.SubState == "auto-restart":
		go s.recordExit(c.Instance)
		if s.reg.Has(c.Instance) {
			s.crashed.mark(c.Instance)
		}
	case c.ActiveState == "failed":
		// Given up (or not restarted). A restart passes through
		// inactive (the restart job's stop) before it starts: that does
		// not clear the mark.
		go s.recordExit(c.Instance)
		s.crashed.take(c.Instance)
	}
	return restarted
}

// crashMarks holds the instances systemd is restarting after a crash
// (auto-restart), until their service is active again, fails for good, or
// the instance is removed.
type crashMarks struct {
	mu sync.Mutex
	m  map[units.Instance]bool
}

func (c *crashMarks) mark(inst units.Instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[units.Instance]bool{}
	}
	c.m[inst] = true
}

// take reports whether inst was marked, and clears the mark.
func (c *crashMarks) take(inst units.Instance) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	marked := c.m[inst]
	delete(c.m, inst)
	return marked
}

// activeNow is what turns on once an instance's service is active: the
// OOM watch of its new cgroup, and an L4 service's clients steered to its
// app's own socket once it listens. ctx must outlive the request that made
// the instance, if any.
func (s *Server) activeNow(ctx context.Context, inst units.Instance) {
	go s.watchOOM(ctx, inst)
	go s.l4AppSocket(inst)
}

// watchOOM starts the OOM watch of inst's present cgroup (package
// isolation); it ends with ctx, the cgroup, or the instance.
//
// The cgroup's path is ten's own naming (the instance's slice and service
// unit, as systemd.ServiceDir finds them), not a read of the unit's
// ControlGroup: that was one D-Bus call into PID 1 at every wake. Where
// there is no memory hierarchy of cgroup v1 (a cgroup v2 host), there is
// nothing to watch and nothing is done.
func (s *Server) watchOOM(ctx context.Context, inst units.Instance) {
	if !s.reg.Has(inst) {
		return
	}
	dir := systemd.ServiceDir(memoryV1Root, inst)
	if _, err := os.Stat(dir); err != nil {
		return // cgroup v2, or the service already stopped
	}
	s.oom.Watch(ctx, inst, strings.TrimPrefix(dir, memoryV1Root))
}

// memoryV1Root is where cgroup v1's memory hierarchy is mounted.
const memoryV1Root = "/sys/fs/cgroup/memory"

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
