package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"

	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router/upstream"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// readiness tells systemd when a directly run app (units.AppListens) is
// ready: its service is Type=notify, and ten, which polls the app's own
// address from its own process, sends READY=1 on the app's behalf once the
// app listens. Until then the service is "activating" (ps: starting); an app
// that never listens fails at startup_timeout (the unit's TimeoutStartSec).
// At most one watch runs per instance; a stop or failure ends it.
type readiness struct {
	mu      sync.Mutex
	watches map[units.Instance]*watch
	// notify caches whether an instance's service takes ten's READY=1
	// (NotifyAccess=all): one made by an older ten, with its own waiter,
	// does not, and systemd would log each refused message.
	notify flagCache
}

// takesReady reports whether inst's service takes a READY=1 from ten
// (NotifyAccess=all), read once per instance.
func (s *Server) takesReady(ctx context.Context, inst units.Instance) bool {
	// Unread, ten tries: systemd says no at worst.
	return s.ready.notify.get(inst, true, func() (bool, bool) {
		access, err := s.sd.NotifyAccess(ctx, inst)
		return access == "all", err == nil
	})
}

// watch is one instance's wait for its app to listen.
type watch struct {
	cancel context.CancelFunc
	// activating is set once systemd reported the service activating: a
	// watch spawn starts before the unit exists, and the unit's first
	// state ("inactive", as it is made) must not end it.
	activating bool
}

// starting is called when inst's service is activating: it starts a watch
// unless one runs.
func (s *Server) starting(ctx context.Context, inst units.Instance) {
	s.ready.mu.Lock()
	if w := s.ready.watches[inst]; w != nil {
		w.activating = true
		s.ready.mu.Unlock()
		return
	}
	s.ready.mu.Unlock()
	if e, ok := s.reg.Get(inst); ok {
		s.watchReady(ctx, e)
	}
}

// watchReady starts the watch of e's app unless one runs or e's app is not
// run directly. spawn calls it before the instance is registered: its start
// job ends only once the app is ready.
func (s *Server) watchReady(ctx context.Context, e registry.Entry) {
	inst := e.Inst
	if e.Svc == nil || !units.AppListens(e.Svc) {
		return
	}
	s.ready.mu.Lock()
	if s.ready.watches == nil {
		s.ready.watches = map[units.Instance]*watch{}
	}
	if _, busy := s.ready.watches[inst]; busy {
		s.ready.mu.Unlock()
		return
	}
	b := s.backend(e)
	wctx, cancel := context.WithTimeout(ctx, b.StartupTimeout)
	s.ready.watches[inst] = &watch{cancel: cancel, activating: s.reg.Has(inst)}
	s.ready.mu.Unlock()
	go func() {
		defer func() {
			s.ready.mu.Lock()
			delete(s.ready.watches, inst)
			s.ready.mu.Unlock()
			cancel()
		}()
		d := s.router.AppDialer(inst)
		if d == nil { // not routed yet (a spawn's watch)
			d = upstream.NewAppDialer(b.Socket, b.AppSocket, b.AppPort, b.AppNetns)
		}
		if err := d.WaitListening(wctx, s.behindWaiter(wctx, e)); err != nil {
			if ctx.Err() != nil || wctx.Err() == context.Canceled {
				return // ten stops, or the service did
			}
			msg := fmt.Sprintf("instance %s: app did not listen on SOCKET_PATH=%s or PORT=%d within startup_timeout %s", inst, b.AppSocket, b.AppPort, b.StartupTimeout)
			s.log.Warn("app did not listen", "instance", inst.String(), "startup_timeout", b.StartupTimeout)
			// In the instance's own log (journalctl -u, ten logs) beside
			// systemd's "start operation timed out".
			_ = sdjournal.Send(msg, sdjournal.PriErr, map[string]string{"OBJECT_SYSTEMD_UNIT": inst.ServiceUnit(), "TEN_INSTANCE": inst.String()})
			return
		}
		if units.Launched(e.Svc) && !s.relayMissed(wctx, inst) {
			return // the relay said READY=1 (see relayMissed)
		}
		if !s.takesReady(wctx, inst) {
			return // its own waiter says READY=1
		}
		pid, err := s.sd.MainPID(wctx, inst)
		if err == nil {
			err = systemd.NotifyReady(pid)
		}
		if err != nil {
			s.log.Warn("tell systemd the app is ready", "instance", inst.String(), "err", err)
		}
	}()
}

// behindWaiter reports whether e's app starts behind the standby waiter,
// which waits for a connection on the systemd socket: units made while
// settings.standby is set, or an earlier unit that has the waiter.
func (s *Server) behindWaiter(ctx context.Context, e registry.Entry) bool {
	if !units.Standby(e.Svc) {
		return false
	}
	return s.cfg.Settings.StandbyCount() > 0 || s.standbyCapable(ctx, e.Inst)
}

// settled ends inst's watch: its service is stopping, failed or, once it
// was activating, inactive.
func (s *Server) settled(inst units.Instance, state string) {
	s.ready.mu.Lock()
	w := s.ready.watches[inst]
	s.ready.mu.Unlock()
	if w != nil && (state != "inactive" || w.activating) {
		w.cancel()
	}
}

// relayMissed waits up to a second for an L4 service's relay to make the
// service active and reports whether it did not. The relay sends READY=1
// itself once the app listens, after it set up its hand-off signal: an
// "active" from ten before that would have ten signal a relay whose Go
// runtime drops the signal, and the relay would stay. ten speaks only for
// a relay that did not (it failed to start).
func (s *Server) relayMissed(ctx context.Context, inst units.Instance) bool {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if svc, _, ok := s.sd.State(inst); ok && svc.ActiveState != "activating" {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-tick.C:
		}
	}
}
